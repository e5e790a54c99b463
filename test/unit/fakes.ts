import { createManualClock, type ManualClock } from "../../src/clock.js";
import { generateKey, hashKey } from "../../src/keys/key-format.js";
import type { KeyGrant } from "../../src/keys/records.js";
import { RateLimiter } from "../../src/ratelimit/limiter.js";
import type { Tier } from "../../src/ratelimit/tier.js";
import type { DecisionContext } from "../../src/sidecar/decide.js";

/** Wall time of every manual clock in these tests: 2026-01-01T00:00:00Z. */
export const START_WALL_MS = Date.UTC(2026, 0, 1);

/** Creates a manual clock moved forward to the start of a fixed window of `windowMs`, plus `elapsedMs`. */
export function clockAtWindowStart(windowMs: number, elapsedMs = 0): ManualClock {
  const clock = createManualClock(START_WALL_MS);
  const intoWindowMs = clock.monotonicMs() % windowMs;
  clock.advance((windowMs - intoWindowMs) % windowMs + elapsedMs);
  return clock;
}

/** Moves a manual clock forward to the next start of a fixed window of `windowMs`. */
export function advanceToWindowStart(clock: ManualClock, windowMs: number): void {
  const intoWindowMs = clock.monotonicMs() % windowMs;
  if (intoWindowMs !== 0) clock.advance(windowMs - intoWindowMs);
}

export function tier(limit: number, windowMs: number, mode: Tier["mode"] = "reject"): Tier {
  return { limit, windowMs, mode };
}

/** Builds an active key of the API "payments" with no rate limits, changed by `overrides`. */
export function makeGrant(overrides: Partial<KeyGrant> = {}): KeyGrant {
  return {
    id: "key_test1",
    apiId: "api_payments",
    apiName: "payments",
    start: "tg_abcd",
    name: "test key",
    ownerId: "org_acme",
    planId: "plan_basic",
    planName: "basic",
    scopes: ["read"],
    enabled: true,
    expiresAtMs: null,
    revokedAtMs: null,
    createdAtMs: START_WALL_MS - 86_400_000,
    updatedAtMs: START_WALL_MS - 86_400_000,
    metadata: null,
    tierOverride: null,
    previousSecretExpiresAtMs: null,
    version: 1,
    tiers: [],
    ...overrides,
  };
}

/** A secret key together with its grant, as the store would hold it. */
export interface IssuedKey {
  key: string;
  grant: KeyGrant;
}

export function issueKey(overrides: Partial<KeyGrant> = {}, prefix = "tg"): IssuedKey {
  const key = generateKey(prefix);
  return { key, grant: makeGrant(overrides) };
}

/**
 * A decision context over an in-memory key source: a Map from key hash to
 * grant, a fresh limiter and a manual clock.
 */
export interface FakeDecisionContext extends DecisionContext {
  limiter: RateLimiter;
  clock: ManualClock;
  grantsByHash: Map<string, KeyGrant>;
}

export function createFakeContext(keys: readonly IssuedKey[], options: { ready?: boolean } = {}): FakeDecisionContext {
  const grantsByHash = new Map(keys.map(({ key, grant }) => [hashKey(key), grant]));
  return {
    ready: options.ready ?? true,
    findGrant: (hash) => grantsByHash.get(hash),
    limiter: new RateLimiter(),
    clock: clockAtWindowStart(60_000),
    grantsByHash,
  };
}
