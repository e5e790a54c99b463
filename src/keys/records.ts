import type { Tier } from "../ratelimit/tier.js";

/** An API whose requests Tollgate guards; its keys carry its prefix. */
export interface ApiRecord {
  id: string;
  /** Organization that owns the API; null in a standalone store. */
  orgId: string | null;
  name: string;
  keyPrefix: string;
  /** Plan for keys created without one; null for no rate limits. */
  defaultPlanId: string | null;
  createdAtMs: number;
  /** Global version of the API's last change. */
  version: number;
}

/** A named list of rate-limit tiers within an API. */
export interface PlanRecord {
  id: string;
  apiId: string;
  name: string;
  tiers: Tier[];
  createdAtMs: number;
  updatedAtMs: number;
  version: number;
}

/** A stored key: everything but the secret, which exists only as a hash. */
export interface KeyRecord {
  id: string;
  apiId: string;
  /** Prefix and first characters of the secret, for people to recognise it. */
  start: string;
  name: string | null;
  ownerId: string | null;
  planId: string | null;
  scopes: string[];
  enabled: boolean;
  expiresAtMs: number | null;
  revokedAtMs: number | null;
  createdAtMs: number;
  updatedAtMs: number;
  /** Free-form JSON object for the API team's own use. */
  metadata: Record<string, unknown> | null;
  /** Tiers that replace the plan's for this key; null to use the plan's. */
  tierOverride: Tier[] | null;
  /** Until when the secret replaced by the last rotation keeps working; null when none does. */
  previousSecretExpiresAtMs: number | null;
  version: number;
}

/** A key joined with what a decision needs: its API and the tiers that apply to it. */
export interface KeyGrant extends KeyRecord {
  apiName: string;
  planName: string | null;
  /** The key's tier override when it has one, else its plan's tiers. */
  tiers: Tier[];
  /** Whether the presented secret is one replaced by a rotation and still in its grace time. */
  viaPreviousSecret?: boolean;
}

export type KeyState = "active" | "revoked" | "expired" | "disabled";

export const KEY_STATES: readonly KeyState[] = ["active", "revoked", "expired", "disabled"];

/** Returns the state shown to people, checked in the order the sidecar checks them. */
export function keyStateAt(key: KeyRecord, nowWallMs: number): KeyState {
  if (key.revokedAtMs !== null) return "revoked";
  if (key.expiresAtMs !== null && key.expiresAtMs <= nowWallMs) return "expired";
  if (!key.enabled) return "disabled";
  return "active";
}
