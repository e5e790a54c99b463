import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { TierMode, type Tier as TierMessage } from "../../gen/tollgate/admin/v1/resources_pb.js";
import { MAX_WINDOW_MS, type Tier } from "../../ratelimit/tier.js";
import { MAX_COST } from "../../sidecar/route.js";

/** Maximum length of a name, owner id or id-or-name reference, in characters. */
export const MAX_LABEL_LENGTH = 200;
/** Maximum size of a metadata object as UTF-8 JSON, in bytes. */
export const MAX_METADATA_BYTES = 16 * 1024;
/** Maximum number of scopes on one key or one verification. */
export const MAX_SCOPES = 100;
/** Maximum number of tiers in a plan or override, because every tier is checked on every request. */
export const MAX_TIERS = 16;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** Maximum grace period of a rotated secret: 30 days. */
export const MAX_GRACE_MS = 30 * 86_400_000;

const SCOPE_PATTERN = /^[A-Za-z0-9:._/-]{1,64}$/;
const CONTROL_CHARACTER = /\p{Cc}/u;
/** The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;

/**
 * Problems found in one request, each starting with the field it concerns,
 * so that a caller sees every bad field at once instead of one per attempt.
 */
export class FieldProblems {
  readonly messages: string[] = [];

  add(field: string, problem: string): void {
    this.messages.push(`${field}: ${problem}`);
  }

  /** Records a problem of the request as a whole, such as a missing choice between fields. */
  addForRequest(problem: string): void {
    this.messages.push(problem);
  }

  get empty(): boolean {
    return this.messages.length === 0;
  }
}

/** Checks a required name: 1 to 200 characters without control characters. */
export function checkLabel(problems: FieldProblems, field: string, text: string): string {
  if (!isLabel(text)) problems.add(field, `must be 1 to ${MAX_LABEL_LENGTH} printable characters`);
  return text;
}

/** Checks an optional name, where the empty string means none. */
export function checkOptionalLabel(problems: FieldProblems, field: string, text: string): string | null {
  if (text === "") return null;
  return checkLabel(problems, field, text);
}

/** Checks a required id, or an id-or-name reference. */
export function checkReference(problems: FieldProblems, field: string, reference: string): string {
  if (reference === "") problems.add(field, "required");
  else if (!isLabel(reference)) problems.add(field, `must be 1 to ${MAX_LABEL_LENGTH} printable characters`);
  return reference;
}

/** Checks scopes and returns them without duplicates. */
export function checkScopes(problems: FieldProblems, field: string, scopes: readonly string[]): string[] {
  if (scopes.length > MAX_SCOPES) problems.add(field, `at most ${MAX_SCOPES} scopes`);
  scopes.forEach((scope, i) => {
    if (!SCOPE_PATTERN.test(scope)) problems.add(`${field}[${i}]`, 'must be 1 to 64 letters, digits or ":._/-"');
  });
  return [...new Set(scopes)];
}

/**
 * Checks a list of rate-limit tiers: at least one, each with a limit from 1
 * to the largest safe integer, a window from 1 ms to MAX_WINDOW_MS, and a
 * known mode (unspecified means reject).
 */
export function checkTiers(problems: FieldProblems, field: string, tiers: readonly TierMessage[]): Tier[] {
  if (tiers.length === 0) problems.add(field, "at least one tier required");
  if (tiers.length > MAX_TIERS) problems.add(field, `at most ${MAX_TIERS} tiers`);

  return tiers.map((tier, i) => {
    const at = `${field}[${i}]`;
    if (tier.limit < 1n || tier.limit > BigInt(Number.MAX_SAFE_INTEGER)) problems.add(`${at}.limit`, `must be from 1 to ${Number.MAX_SAFE_INTEGER}`);
    if (tier.windowMs < 1n || tier.windowMs > BigInt(MAX_WINDOW_MS)) problems.add(`${at}.window_ms`, `must be from 1 to ${MAX_WINDOW_MS}`);
    const mode = TIER_MODES_BY_ENUM.get(tier.mode);
    if (mode === undefined) problems.add(`${at}.mode`, "must be TIER_MODE_REJECT, TIER_MODE_OVERAGE, TIER_MODE_SHADOW or unspecified (reject)");
    return { limit: Number(tier.limit), windowMs: Number(tier.windowMs), mode: mode ?? "reject" };
  });
}

/**
 * Checks free-form metadata: at most MAX_METADATA_BYTES of JSON, finite
 * numbers only. Returns null for an empty object, so "no metadata" has one form.
 */
export function checkMetadata(problems: FieldProblems, field: string, metadata: JsonObject): Record<string, unknown> | null {
  if (!isFiniteJson(metadata)) problems.add(field, "numbers must be finite");
  else if (Buffer.byteLength(JSON.stringify(metadata), "utf8") > MAX_METADATA_BYTES) problems.add(field, "at most 16 KiB");
  return Object.keys(metadata).length === 0 ? null : metadata;
}

/** Checks a timestamp that must lie after `nowMs` and returns it in whole milliseconds. */
export function checkFutureTime(problems: FieldProblems, field: string, timestamp: Timestamp, nowMs: number): number {
  if (timestamp.seconds < MIN_TIMESTAMP_SECONDS || timestamp.seconds > MAX_TIMESTAMP_SECONDS || timestamp.nanos < 0 || timestamp.nanos > 999_999_999) {
    problems.add(field, "not a valid timestamp");
    return 0;
  }
  const ms = Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1_000_000);
  if (ms <= nowMs) problems.add(field, "must be in the future");
  return ms;
}

/** Checks a grace period from 0 to MAX_GRACE_MS, where unset means 0. Returns whole milliseconds, rounded up. */
export function checkGracePeriod(problems: FieldProblems, field: string, duration: Duration | undefined): number {
  if (duration === undefined) return 0;
  const negative = duration.seconds < 0n || duration.nanos < 0;
  const ms = Number(duration.seconds) * 1000 + Math.ceil(duration.nanos / 1_000_000);
  if (negative || duration.nanos > 999_999_999 || ms > MAX_GRACE_MS) {
    problems.add(field, `must be from 0 to 30 days (${MAX_GRACE_MS / 1000}s)`);
    return 0;
  }
  return ms;
}

/** Checks a page size. 0 means the default, and sizes above the maximum are lowered to it. */
export function checkPageSize(problems: FieldProblems, field: string, pageSize: number): number {
  if (pageSize < 0) {
    problems.add(field, "must not be negative");
    return DEFAULT_PAGE_SIZE;
  }
  if (pageSize === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(pageSize, MAX_PAGE_SIZE);
}

/** Checks the cost of one verification, where unset means 1. */
export function checkCost(problems: FieldProblems, field: string, cost: number | undefined): number {
  if (cost === undefined) return 1;
  if (cost > MAX_COST) problems.add(field, `must be from 0 to ${MAX_COST}`);
  return cost;
}

/** Checks that an enum field is one of `allowed` and returns the matching value. */
export function checkEnum<T>(problems: FieldProblems, field: string, value: number, allowed: ReadonlyMap<number, T>, names: string): T | undefined {
  if (!allowed.has(value)) problems.add(field, `must be ${names}`);
  return allowed.get(value);
}

const TIER_MODES_BY_ENUM: ReadonlyMap<number, Tier["mode"]> = new Map([
  [TierMode.UNSPECIFIED, "reject"],
  [TierMode.REJECT, "reject"],
  [TierMode.SHADOW, "shadow"],
  [TierMode.OVERAGE, "overage"],
]);

function isLabel(text: string): boolean {
  const length = [...text].length;
  return length >= 1 && length <= MAX_LABEL_LENGTH && !CONTROL_CHARACTER.test(text);
}

function isFiniteJson(value: JsonValue): boolean {
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isFiniteJson);
  if (value !== null && typeof value === "object") return Object.values(value).every(isFiniteJson);
  return true;
}
