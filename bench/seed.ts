import { systemClock } from "../src/clock.js";
import { storePath } from "../src/config/sidecar-config.js";
import { generateKey } from "../src/keys/key-format.js";
import { KeyStore } from "../src/keys/key-store.js";
import type { Tier } from "../src/ratelimit/tier.js";

/** API name and key prefix of every seeded key. Requests name the API in `tollgate.api`. */
export const BENCH_API = "bench";
export const BENCH_PREFIX = "tg";

/** Per key: 1,000 per second and 10 million per day, which the valid-key workload never reaches. */
const GENEROUS_TIERS: Tier[] = [
  { limit: 1_000, windowMs: 1_000, mode: "reject" },
  { limit: 10_000_000, windowMs: 86_400_000, mode: "reject" },
];
/** One request per hour: after its first request, every call with such a key returns 429. */
const TINY_TIERS: Tier[] = [{ limit: 1, windowMs: 3_600_000, mode: "reject" }];

export interface SeedCounts {
  /** Keys on the generous plan. */
  validKeys: number;
  /** Keys on the one-per-hour plan. */
  limitedKeys: number;
  /** Well-formed keys that are never stored. */
  unknownKeys: number;
}

/** Secrets of the seeded keys, grouped by the decision they should get. */
export interface SeededKeys {
  valid: string[];
  limited: string[];
  unknown: string[];
  /** Wall time spent creating the stored keys, excluding the unknown ones. */
  insertMs: number;
}

/**
 * Creates the key store in `dataDir` with one API, a generous and a tiny plan,
 * and `validKeys + limitedKeys` keys, through the public KeyStore API so the
 * rows are exactly what the CLI would write.
 */
export function seedKeyStore(dataDir: string, counts: SeedCounts): SeededKeys {
  const store = KeyStore.open(storePath(dataDir), systemClock);
  try {
    const api = store.createApi(BENCH_API, BENCH_PREFIX);
    const generous = store.setPlan(api.id, "generous", GENEROUS_TIERS, true);
    const tiny = store.setPlan(api.id, "tiny", TINY_TIERS);

    const startedMs = performance.now();
    const { valid, limited } = store.transaction(() => ({
      valid: createKeys(store, api.id, generous.id, counts.validKeys),
      limited: createKeys(store, api.id, tiny.id, counts.limitedKeys),
    }));
    const insertMs = performance.now() - startedMs;

    const unknown = Array.from({ length: counts.unknownKeys }, () => generateKey(BENCH_PREFIX));
    return { valid, limited, unknown, insertMs };
  } finally {
    store.close();
  }
}

function createKeys(store: KeyStore, apiId: string, planId: string, count: number): string[] {
  const secrets: string[] = [];
  for (let i = 0; i < count; i++) secrets.push(store.createKey({ apiId, planId }).secret);
  return secrets;
}
