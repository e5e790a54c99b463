/**
 * Time buckets of the analytics API, aligned in UTC. Pure arithmetic on
 * milliseconds since the Unix epoch, shared by the SQL that groups rollups and
 * by the code that checks ranges, so both agree on every edge.
 */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;
export const WEEK_MS = 7 * DAY_MS;

/**
 * Maximum span of an analytics range: 366 days, so a year of billing fits,
 * while a query cannot sum rollups over many years. The CLI checks it too.
 */
export const MAX_RANGE_MS = 366 * DAY_MS;

export type BucketUnit = "minute" | "hour" | "day" | "week";

/**
 * Width and offset of each bucket unit: a bucket starts where
 * `(ms + offsetMs) % sizeMs` is 0. The Unix epoch fell on a Thursday, three
 * days after a Monday, so weeks need a three-day offset to start on Monday.
 */
export const BUCKET_UNITS: Readonly<Record<BucketUnit, { sizeMs: number; offsetMs: number }>> = {
  minute: { sizeMs: MINUTE_MS, offsetMs: 0 },
  hour: { sizeMs: HOUR_MS, offsetMs: 0 },
  day: { sizeMs: DAY_MS, offsetMs: 0 },
  week: { sizeMs: WEEK_MS, offsetMs: 3 * DAY_MS },
};

/** Returns the start of the bucket that contains `ms`. */
export function bucketStartMs(ms: number, unit: BucketUnit): number {
  const { sizeMs, offsetMs } = BUCKET_UNITS[unit];
  // The double remainder keeps the result right for times before the epoch too.
  return ms - ((((ms + offsetMs) % sizeMs) + sizeMs) % sizeMs);
}

/** Returns the Monday 00:00 UTC at or before `ms`. */
export function weekStartMs(ms: number): number {
  return bucketStartMs(ms, "week");
}

/** Counts the buckets that [startMs, endMs) touches, partial ones included. */
export function countBuckets(startMs: number, endMs: number, unit: BucketUnit): number {
  if (endMs <= startMs) return 0;
  const { sizeMs } = BUCKET_UNITS[unit];
  return (bucketStartMs(endMs - 1, unit) - bucketStartMs(startMs, unit)) / sizeMs + 1;
}

/**
 * Returns an SQL expression for the bucket start of the integer column
 * `column`. The column name must come from code, never from a request.
 */
export function bucketStartSql(column: string, unit: BucketUnit): string {
  const { sizeMs, offsetMs } = BUCKET_UNITS[unit];
  // Rollup minutes are never before the epoch, so one remainder suffices here.
  return `(${column} - ((${column} + ${offsetMs}) % ${sizeMs}))`;
}
