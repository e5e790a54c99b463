import type { ServerStore } from "../store/server-store.js";
import { listKeysCreatedIn } from "./keys-created.js";
import { nearestRankPercentile } from "./percentile.js";
import type { UsageRange } from "./usage-queries.js";
import type { AsyncUsageQueries } from "./usage-query-protocol.js";

/** A key and its first allowed request; the first-call fields are null when it has made none. */
export interface KeyFirstCall {
  keyId: string;
  apiId: string;
  ownerId: string | null;
  createdAtMs: number;
  firstCallMs: number | null;
  timeToFirstCallMs: number | null;
}

export interface FirstCallSummary {
  keys: number;
  keysWithFirstCall: number;
  keysWithoutFirstCall: number;
  /** Nearest-rank percentiles over the keys with a first call; null when none has one. */
  medianMs: number | null;
  p90Ms: number | null;
}

/**
 * Measures how long after creation each key made its first allowed request,
 * for the keys created in `created`. Lists the first `limit` keys, oldest
 * first, and summarises all of them.
 */
export async function timeToFirstCall(
  store: ServerStore,
  usage: AsyncUsageQueries,
  request: { created: UsageRange; apiId?: string; ownerId?: string; limit: number },
): Promise<{ keys: KeyFirstCall[]; summary: FirstCallSummary }> {
  const created = await listKeysCreatedIn(store, request.created, { apiId: request.apiId, ownerId: request.ownerId });
  const firstAllowed = await usage.firstAllowedTimes(created.map((key) => key.id));

  const keys = created.map((key): KeyFirstCall => {
    const firstCallMs = firstAllowed.get(key.id) ?? null;
    return {
      keyId: key.id,
      apiId: key.apiId,
      ownerId: key.ownerId,
      createdAtMs: key.createdAtMs,
      firstCallMs,
      // Sidecars stamp events with their own clocks, so a first call can seem to precede the creation a little.
      timeToFirstCallMs: firstCallMs === null ? null : Math.max(0, firstCallMs - key.createdAtMs),
    };
  });

  const durations = keys.flatMap((key) => (key.timeToFirstCallMs === null ? [] : [key.timeToFirstCallMs])).sort((a, b) => a - b);
  return {
    keys: keys.slice(0, request.limit),
    summary: {
      keys: keys.length,
      keysWithFirstCall: durations.length,
      keysWithoutFirstCall: keys.length - durations.length,
      medianMs: nearestRankPercentile(durations, 0.5) ?? null,
      p90Ms: nearestRankPercentile(durations, 0.9) ?? null,
    },
  };
}
