import type { KeyPatch } from "../keys/key-store.js";
import type { ApiRecord, KeyRecord, KeyState, PlanRecord } from "../keys/records.js";
import type { Tier } from "../ratelimit/tier.js";
import type { AuditRecord, TokenKind, TokenRecord } from "../server/store/records.js";

export interface CreateKeyRequest {
  /** API name or id. */
  api: string;
  /** Plan name or id; undefined for the API's default plan. */
  plan?: string;
  name: string | null;
  ownerId: string | null;
  scopes: string[];
  expiresAtMs: number | null;
}

export interface ListKeysRequest {
  /** API name or id. */
  api?: string;
  ownerId?: string;
  state?: KeyState;
}

/** A key as the CLI prints it, with the state computed by the store that keeps it. */
export interface KeyView {
  key: KeyRecord;
  state: KeyState;
}

/**
 * Operations the CLI's record commands need from a store: the local SQLite store
 * in standalone mode, or the server's admin API with `--server`. Errors are
 * thrown as UsageError (bad input) or StoreError (not found, conflicts).
 */
export interface AdminBackend {
  createApi(name: string, keyPrefix: string): Promise<ApiRecord>;
  listApis(): Promise<ApiRecord[]>;
  setPlan(api: string, name: string, tiers: Tier[], makeDefault: boolean): Promise<PlanRecord>;
  listPlans(api: string): Promise<{ plans: PlanRecord[]; defaultPlanId: string | null }>;
  createKey(request: CreateKeyRequest): Promise<{ key: KeyView; secret: string }>;
  listKeys(request: ListKeysRequest): Promise<KeyView[]>;
  updateKey(id: string, patch: KeyPatch & { plan?: string }): Promise<KeyView>;
  revokeKey(id: string): Promise<KeyView>;
  rotateKey(id: string, graceMs: number): Promise<{ key: KeyView; secret: string }>;
  /** The audit log; only a server keeps one. */
  listAudit(resourceId: string | undefined, limit: number): Promise<AuditRecord[]>;
  createToken(name: string, kind: TokenKind): Promise<{ token: TokenRecord; secret: string }>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(id: string): Promise<TokenRecord>;
  close(): Promise<void>;
}
