import type { ChangeSet, CreateKeyInput, KeyPatch, ListKeysFilter } from "../../keys/key-store.js";
import type { ApiRecord, KeyGrant, KeyRecord, PlanRecord } from "../../keys/records.js";
import type { Tier } from "../../ratelimit/tier.js";
import type { Actor, AuditRecord, OrgRecord, TokenKind, TokenRecord } from "./records.js";

export interface ListAuditFilter {
  resourceId?: string;
  /** Events after this id, in the order they were written, for paging. */
  afterId?: string;
  limit: number;
}

/**
 * The server's store of record. Every method is asynchronous and speaks in
 * records, so that a PostgreSQL implementation can satisfy it; the embedded
 * default is SQLite. Each change is one transaction that also writes its
 * audit event and takes the next global version for replication.
 *
 * Errors: a StoreError (from keys/key-store) with code not_found,
 * already_exists or invalid_argument; anything else is a fault of the store.
 */
export interface ServerStore {
  createOrg(actor: Actor, name: string): Promise<OrgRecord>;
  getOrg(id: string): Promise<OrgRecord | undefined>;
  listOrgs(): Promise<OrgRecord[]>;
  /** The org named "default", created on first use, for APIs created without one. */
  defaultOrg(actor: Actor): Promise<OrgRecord>;

  createApi(actor: Actor, input: { name: string; keyPrefix: string; orgId: string }): Promise<ApiRecord>;
  /** Finds an API by id or name. */
  findApi(idOrName: string): Promise<ApiRecord | undefined>;
  listApis(orgId?: string): Promise<ApiRecord[]>;
  setDefaultPlan(actor: Actor, apiId: string, planId: string | null): Promise<ApiRecord>;

  setPlan(actor: Actor, input: { apiId: string; name: string; tiers: Tier[]; makeDefault: boolean }): Promise<PlanRecord>;
  /** Finds a plan of an API by id or name. */
  findPlan(apiId: string, idOrName: string): Promise<PlanRecord | undefined>;
  listPlans(apiId: string): Promise<PlanRecord[]>;

  createKey(actor: Actor, input: CreateKeyInput): Promise<{ key: KeyRecord; secret: string }>;
  getKey(id: string): Promise<KeyRecord | undefined>;
  listKeys(filter: ListKeysFilter): Promise<KeyRecord[]>;
  updateKey(actor: Actor, id: string, patch: KeyPatch): Promise<KeyRecord>;
  revokeKey(actor: Actor, id: string): Promise<KeyRecord>;
  rotateKey(actor: Actor, id: string, graceMs: number): Promise<{ key: KeyRecord; secret: string }>;
  /** Finds the key whose current secret, or rotated secret in its grace time, hashes to `hash`. */
  findGrant(hash: string): Promise<KeyGrant | undefined>;

  /** Creates a token; `actor` is null only for the bootstrap admin token. */
  createToken(actor: Actor | null, input: { name: string; kind: TokenKind; secret?: string }): Promise<{ token: TokenRecord; secret: string }>;
  /** Finds an unrevoked token by the SHA-256 of its secret. */
  findToken(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(actor: Actor, id: string): Promise<TokenRecord>;
  countTokens(kind: TokenKind): Promise<number>;

  listAuditEvents(filter: ListAuditFilter): Promise<AuditRecord[]>;

  currentVersion(): Promise<number>;
  /** Lists what changed after `version`, a consistent prefix of at most `maxRows` rows per kind. */
  changesAfter(version: number, maxRows: number): Promise<ChangeSet>;
  /** Calls `listener` with the new version after every committed change; returns a function that stops it. */
  onChange(listener: (version: number) => void): () => void;

  close(): Promise<void>;
}
