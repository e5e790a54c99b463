import type { KeyRecord } from "../../keys/records.js";
import type { ServerStore } from "../store/server-store.js";
import { listKeysCreatedIn } from "./keys-created.js";
import { WEEK_MS, weekStartMs } from "./time-buckets.js";
import type { AsyncUsageQueries } from "./usage-query-protocol.js";

/** Weeks after creation that the retention table reports. */
export const RETENTION_WEEKS = [1, 4, 12] as const;
export type RetentionWeek = (typeof RETENTION_WEEKS)[number];

/** Keys of one cohort active in one week after creation; null until observable. */
export interface RetentionCell {
  activeKeys: number;
  /** activeKeys divided by the cohort's keys, from 0 to 1. */
  share: number;
}

export interface RetentionCohort {
  weekStartMs: number;
  keys: number;
  cells: Record<RetentionWeek, RetentionCell | null>;
}

/**
 * Groups the keys created in the `cohorts` weeks up to the one containing
 * `asOfMs` by creation week, and measures the share of each cohort that made
 * an allowed request in week 1, 4 and 12 after creation.
 *
 * Week N of a key created at C is [C + 7N days, C + 7(N+1) days). A cell is
 * null while any key of the cohort has not finished week N by `asOfMs`, and
 * for a cohort without keys, so "not observable yet" never reads as 0.
 */
export async function retentionCohorts(
  store: ServerStore,
  usage: AsyncUsageQueries,
  request: { cohorts: number; asOfMs: number; apiId?: string; ownerId?: string },
): Promise<RetentionCohort[]> {
  const lastStartMs = weekStartMs(request.asOfMs);
  const firstStartMs = firstCohortStartMs(request.cohorts, request.asOfMs);
  const keys = await listKeysCreatedIn(store, { startMs: firstStartMs, endMs: request.asOfMs }, { apiId: request.apiId, ownerId: request.ownerId });

  const cohorts: RetentionCohort[] = [];
  for (let startMs = firstStartMs; startMs <= lastStartMs; startMs += WEEK_MS) {
    const members = keys.filter((key) => key.createdAtMs >= startMs && key.createdAtMs < startMs + WEEK_MS);
    const cells = Object.fromEntries(await Promise.all(RETENTION_WEEKS.map(async (week) => [week, await retentionCell(usage, members, week, request.asOfMs)])));
    cohorts.push({ weekStartMs: startMs, keys: members.length, cells: cells as RetentionCohort["cells"] });
  }
  return cohorts;
}

/** Returns the start of the oldest of `cohorts` weekly cohorts that end with the week containing `asOfMs`. */
export function firstCohortStartMs(cohorts: number, asOfMs: number): number {
  return weekStartMs(asOfMs) - (cohorts - 1) * WEEK_MS;
}

async function retentionCell(usage: AsyncUsageQueries, members: KeyRecord[], week: RetentionWeek, asOfMs: number): Promise<RetentionCell | null> {
  if (members.length === 0) return null;
  const latestCreatedMs = members.reduce((latest, key) => Math.max(latest, key.createdAtMs), 0);
  if (latestCreatedMs + (week + 1) * WEEK_MS > asOfMs) return null;

  // Sent together, so that the worker runs them back to back instead of waiting for each reply.
  const active = await Promise.all(
    members.map((key) => {
      const startMs = key.createdAtMs + week * WEEK_MS;
      return usage.hasAllowedRequest(key.id, startMs, startMs + WEEK_MS);
    }),
  );
  const activeKeys = active.filter(Boolean).length;
  return { activeKeys, share: activeKeys / members.length };
}
