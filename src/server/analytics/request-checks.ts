import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServerStore } from "../store/server-store.js";
import { requireApi } from "../admin/lookup.js";
import { checkReference, type FieldProblems } from "../admin/validate.js";
import { countBuckets, DAY_MS, MAX_RANGE_MS, type BucketUnit } from "./time-buckets.js";
import type { UsageFilter, UsageRange } from "./usage-filter.js";

export { MAX_RANGE_MS } from "./time-buckets.js";
/** Maximum number of buckets a time series may touch, so minute buckets cannot span years. */
export const MAX_BUCKETS = 10_000;

/**
 * Earliest time a request may name: the Unix epoch. Usage is never recorded
 * before it, and a computed time before year 1 could not be encoded as a
 * google.protobuf.Timestamp in the JSON response.
 */
const MIN_TIME_SECONDS = 0n;
/** Latest valid google.protobuf.Timestamp: 9999-12-31T23:59:59Z. */
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;
const MIN_TIME_TEXT = "1970-01-01T00:00:00Z";

/**
 * Checks a required range: both ends set and valid, end after start, and a
 * span of at most `maxSpanMs` (by default MAX_RANGE_MS).
 */
export function checkRange(
  problems: FieldProblems,
  fields: { start: string; end: string },
  start: Timestamp | undefined,
  end: Timestamp | undefined,
  maxSpanMs: number | null = MAX_RANGE_MS,
): UsageRange {
  const startMs = checkTime(problems, fields.start, start);
  const endMs = checkTime(problems, fields.end, end);
  if (startMs === undefined || endMs === undefined) return { startMs: 0, endMs: 0 };

  if (endMs <= startMs) problems.add(fields.end, `must be after ${fields.start}`);
  else if (maxSpanMs !== null && endMs - startMs > maxSpanMs) problems.add(fields.end, `must be at most ${maxSpanMs / DAY_MS} days after ${fields.start}`);
  return { startMs, endMs };
}

/** Checks that `range` touches at most MAX_BUCKETS buckets of `unit`. */
export function checkBucketCount(problems: FieldProblems, field: string, range: UsageRange, unit: BucketUnit): void {
  const buckets = countBuckets(range.startMs, range.endMs, unit);
  if (buckets > MAX_BUCKETS) problems.add(field, `the range touches ${buckets} ${unit} buckets, more than ${MAX_BUCKETS}: use a larger bucket or a shorter range`);
}

/** Checks an optional time, where unset means `defaultMs`. */
export function checkOptionalTime(problems: FieldProblems, field: string, timestamp: Timestamp | undefined, defaultMs: number): number {
  if (timestamp === undefined) return defaultMs;
  return checkTime(problems, field, timestamp) ?? defaultMs;
}

/**
 * Checks that `startMs`, the start of the range that the time in `field` and
 * the count in `countField` set, is not before 1970.
 */
export function checkComputedStart(problems: FieldProblems, field: string, startMs: number, countField: string): void {
  if (startMs < 0) problems.add(field, `the range it sets with ${countField} starts before ${MIN_TIME_TEXT}: use a later ${field} or fewer ${countField}`);
}

/** Checks a count such as a limit, where 0 means `defaultValue`; allowed values run from `min` to `max`. */
export function checkCount(problems: FieldProblems, field: string, value: number, limits: { defaultValue: number; min: number; max: number }): number {
  if (value === 0) return limits.defaultValue;
  if (value < limits.min || value > limits.max) {
    problems.add(field, `must be from ${limits.min} to ${limits.max}, or 0 for the default ${limits.defaultValue}`);
    return limits.defaultValue;
  }
  return value;
}

/** The filter fields that analytics requests share; absent fields are not part of that request. */
export interface FilterFields {
  apiId?: string;
  keyId?: string;
  ownerId?: string;
}

/** Checks the filter fields that are set: each must be 1 to 200 printable characters. */
export function checkFilterFields(problems: FieldProblems, fields: FilterFields): void {
  if (fields.apiId) checkReference(problems, "api_id", fields.apiId);
  if (fields.keyId) checkReference(problems, "key_id", fields.keyId);
  if (fields.ownerId) checkReference(problems, "owner_id", fields.ownerId);
}

/**
 * Turns checked filter fields into a usage filter, resolving an API name to
 * its id, since the usage database stores ids. Raises NOT_FOUND naming
 * `api_id` for an unknown API.
 */
export async function resolveFilter(store: ServerStore, fields: FilterFields): Promise<UsageFilter> {
  const filter: UsageFilter = {};
  if (fields.apiId) filter.apiId = (await requireApi(store, fields.apiId)).id;
  if (fields.keyId) filter.keyId = fields.keyId;
  if (fields.ownerId) filter.ownerId = fields.ownerId;
  return filter;
}

function checkTime(problems: FieldProblems, field: string, timestamp: Timestamp | undefined): number | undefined {
  if (timestamp === undefined) {
    problems.add(field, "required");
    return undefined;
  }
  if (timestamp.seconds > MAX_TIMESTAMP_SECONDS || timestamp.nanos < 0 || timestamp.nanos > 999_999_999) {
    problems.add(field, "not a valid timestamp");
    return undefined;
  }
  if (timestamp.seconds < MIN_TIME_SECONDS) {
    problems.add(field, `must be at or after ${MIN_TIME_TEXT}`);
    return undefined;
  }
  return timestampMs(timestamp);
}
