import { WEEK_MS, weekStartMs } from "./time-buckets.js";
import type { UsageFilter } from "./usage-queries.js";
import type { AsyncUsageQueries } from "./usage-query-protocol.js";

export interface AdoptionWeek {
  weekStartMs: number;
  /** Keys with at least one allowed request in the week. */
  activeKeys: number;
  /** Allowed requests in the week. */
  requests: number;
  /** `requests / activeKeys`; 0 when no key was active. */
  requestsPerActiveKey: number;
  /** Percent change from the week before; null when the week before had none. */
  activeKeysChangePercent: number | null;
  requestsChangePercent: number | null;
}

/**
 * Counts active keys and allowed requests for the `weeks` whole weeks that
 * end on the Monday 00:00 UTC at or before `endMs`, oldest first. The week
 * before the first is read as well, so that every listed week has a change.
 */
export async function weeklyAdoption(usage: AsyncUsageQueries, request: { weeks: number; endMs: number; filter: UsageFilter }): Promise<AdoptionWeek[]> {
  const lastEndMs = weekStartMs(request.endMs);
  const firstStartMs = lastEndMs - request.weeks * WEEK_MS;
  const activity = new Map((await usage.weeklyActivity({ startMs: adoptionReadStartMs(request.weeks, request.endMs), endMs: lastEndMs }, request.filter)).map((week) => [week.weekStartMs, week]));

  const weeks: AdoptionWeek[] = [];
  for (let startMs = firstStartMs; startMs < lastEndMs; startMs += WEEK_MS) {
    const week = activity.get(startMs) ?? { activeKeys: 0, requests: 0 };
    const before = activity.get(startMs - WEEK_MS) ?? { activeKeys: 0, requests: 0 };
    weeks.push({
      weekStartMs: startMs,
      activeKeys: week.activeKeys,
      requests: week.requests,
      requestsPerActiveKey: week.activeKeys === 0 ? 0 : week.requests / week.activeKeys,
      activeKeysChangePercent: changePercent(before.activeKeys, week.activeKeys),
      requestsChangePercent: changePercent(before.requests, week.requests),
    });
  }
  return weeks;
}

/** Returns the start of the earliest week that weeklyAdoption reads: the week before the first listed week. */
export function adoptionReadStartMs(weeks: number, endMs: number): number {
  return weekStartMs(endMs) - (weeks + 1) * WEEK_MS;
}

function changePercent(before: number, now: number): number | null {
  return before === 0 ? null : (100 * (now - before)) / before;
}
