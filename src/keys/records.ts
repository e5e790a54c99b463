import type { Tier } from "../ratelimit/tier.js";

/** An API whose requests Tollgate guards; its keys carry its prefix. */
export interface ApiRecord {
  id: string;
  name: string;
  keyPrefix: string;
  /** Plan for keys created without one; null for no rate limits. */
  defaultPlanId: string | null;
  createdAtMs: number;
}

/** A named list of rate-limit tiers within an API. */
export interface PlanRecord {
  id: string;
  apiId: string;
  name: string;
  tiers: Tier[];
  createdAtMs: number;
  updatedAtMs: number;
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
}

/** A key joined with what a decision needs: its API and its plan's tiers. */
export interface KeyGrant extends KeyRecord {
  apiName: string;
  planName: string | null;
  tiers: Tier[];
}

export type KeyState = "active" | "revoked" | "expired" | "disabled";

export const KEY_STATES: readonly KeyState[] = ["active", "revoked", "expired", "disabled"];

/** The state shown to people, in the order the sidecar checks them. */
export function keyStateAt(key: KeyRecord, nowWallMs: number): KeyState {
  if (key.revokedAtMs !== null) return "revoked";
  if (key.expiresAtMs !== null && key.expiresAtMs <= nowWallMs) return "expired";
  if (!key.enabled) return "disabled";
  return "active";
}
