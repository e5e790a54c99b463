import { create } from "@bufbuild/protobuf";
import { timestampFromMs, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { checkBucketCount, checkComputedStart, checkCount, checkFilterFields, checkOptionalTime, checkRange } from "../../../src/server/analytics/request-checks.js";
import { FieldProblems } from "../../../src/server/admin/validate.js";

const START_MS = Date.parse("2026-11-01T00:00:00Z");
const DAY_MS = 86_400_000;
const FIELDS = { start: "start_time", end: "end_time" };

function problemsOf(check: (problems: FieldProblems) => unknown): string[] {
  const problems = new FieldProblems();
  check(problems);
  return problems.messages;
}

describe("checkRange", () => {
  it("accepts a range and returns it in milliseconds", () => {
    const problems = new FieldProblems();
    expect(checkRange(problems, FIELDS, timestampFromMs(START_MS), timestampFromMs(START_MS + DAY_MS))).toEqual({ startMs: START_MS, endMs: START_MS + DAY_MS });
    expect(problems.messages).toEqual([]);
  });

  it.each([
    ["a missing start", undefined, timestampFromMs(START_MS), ["start_time: required"]],
    ["a missing end and start", undefined, undefined, ["start_time: required", "end_time: required"]],
    ["an end equal to the start", timestampFromMs(START_MS), timestampFromMs(START_MS), ["end_time: must be after start_time"]],
    ["an end before the start", timestampFromMs(START_MS), timestampFromMs(START_MS - 1), ["end_time: must be after start_time"]],
    ["a span over 366 days", timestampFromMs(START_MS), timestampFromMs(START_MS + 366 * DAY_MS + 1), ["end_time: must be at most 366 days after start_time"]],
    ["nanos out of range", create(TimestampSchema, { seconds: 1n, nanos: -1 }), timestampFromMs(START_MS), ["start_time: not a valid timestamp"]],
    ["a start one second before 1970", create(TimestampSchema, { seconds: -1n }), timestampFromMs(START_MS), ["start_time: must be at or after 1970-01-01T00:00:00Z"]],
    ["both ends in year 1", create(TimestampSchema, { seconds: -62_135_596_800n }), create(TimestampSchema, { seconds: -62_135_596_799n }), ["start_time: must be at or after 1970-01-01T00:00:00Z", "end_time: must be at or after 1970-01-01T00:00:00Z"]],
    ["seconds past year 9999", timestampFromMs(START_MS), create(TimestampSchema, { seconds: 253_402_300_800n }), ["end_time: not a valid timestamp"]],
  ])("rejects %s", (_case, start, end, messages) => {
    expect(problemsOf((problems) => checkRange(problems, FIELDS, start, end))).toEqual(messages);
  });

  it("accepts exactly 366 days, and any span without a maximum", () => {
    expect(problemsOf((problems) => checkRange(problems, FIELDS, timestampFromMs(START_MS), timestampFromMs(START_MS + 366 * DAY_MS)))).toEqual([]);
    expect(problemsOf((problems) => checkRange(problems, FIELDS, timestampFromMs(START_MS), timestampFromMs(START_MS + 5000 * DAY_MS), null))).toEqual([]);
  });
});

describe("checkBucketCount", () => {
  it("allows 10000 minute buckets and rejects one more", () => {
    expect(problemsOf((problems) => checkBucketCount(problems, "bucket", { startMs: START_MS, endMs: START_MS + 10_000 * 60_000 }, "minute"))).toEqual([]);
    expect(problemsOf((problems) => checkBucketCount(problems, "bucket", { startMs: START_MS, endMs: START_MS + 10_000 * 60_000 + 1 }, "minute"))).toEqual([
      "bucket: the range touches 10001 minute buckets, more than 10000: use a larger bucket or a shorter range",
    ]);
  });

  it("allows a year of hour buckets", () => {
    expect(problemsOf((problems) => checkBucketCount(problems, "bucket", { startMs: START_MS, endMs: START_MS + 366 * DAY_MS }, "hour"))).toEqual([]);
  });
});

describe("checkCount", () => {
  const LIMITS = { defaultValue: 10, min: 1, max: 1000 };

  it.each([
    [0, 10, []],
    [1, 1, []],
    [1000, 1000, []],
    [1001, 10, ["limit: must be from 1 to 1000, or 0 for the default 10"]],
    [-1, 10, ["limit: must be from 1 to 1000, or 0 for the default 10"]],
  ])("reads %i as %i", (value, expected, messages) => {
    const problems = new FieldProblems();
    expect(checkCount(problems, "limit", value, LIMITS)).toBe(expected);
    expect(problems.messages).toEqual(messages);
  });
});

describe("checkOptionalTime", () => {
  it("defaults an unset time and rejects an invalid one", () => {
    expect(checkOptionalTime(new FieldProblems(), "end_time", undefined, 42)).toBe(42);
    expect(problemsOf((problems) => checkOptionalTime(problems, "end_time", create(TimestampSchema, { nanos: 1_000_000_000 }), 42))).toEqual(["end_time: not a valid timestamp"]);
  });

  it("rejects a time before 1970 and accepts the epoch", () => {
    expect(problemsOf((problems) => checkOptionalTime(problems, "as_of_time", create(TimestampSchema, { seconds: -62_135_596_800n }), 42))).toEqual(["as_of_time: must be at or after 1970-01-01T00:00:00Z"]);
    expect(problemsOf((problems) => checkOptionalTime(problems, "as_of_time", create(TimestampSchema, { seconds: 0n }), 42))).toEqual([]);
  });
});

describe("checkComputedStart", () => {
  it("rejects a computed start before 1970 and names the time field", () => {
    expect(problemsOf((problems) => checkComputedStart(problems, "end_time", -1, "weeks"))).toEqual([
      "end_time: the range it sets with weeks starts before 1970-01-01T00:00:00Z: use a later end_time or fewer weeks",
    ]);
    expect(problemsOf((problems) => checkComputedStart(problems, "end_time", 0, "weeks"))).toEqual([]);
  });
});

describe("checkFilterFields", () => {
  it("names each bad filter field", () => {
    expect(problemsOf((problems) => checkFilterFields(problems, { apiId: "x".repeat(201), keyId: "key\u0000", ownerId: "acme" }))).toEqual([
      "api_id: must be 1 to 200 printable characters",
      "key_id: must be 1 to 200 printable characters",
    ]);
  });
});
