import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { bucketStartMs, bucketStartSql, countBuckets, weekStartMs, type BucketUnit } from "../../../src/server/analytics/time-buckets.js";

const at = (iso: string) => Date.parse(iso);

describe("bucketStartMs", () => {
  it.each<[BucketUnit, string, string]>([
    ["minute", "2026-11-03T10:17:59.999Z", "2026-11-03T10:17:00.000Z"],
    ["minute", "2026-11-03T10:17:00.000Z", "2026-11-03T10:17:00.000Z"],
    ["hour", "2026-11-03T10:59:59.999Z", "2026-11-03T10:00:00.000Z"],
    ["hour", "2026-11-03T11:00:00.000Z", "2026-11-03T11:00:00.000Z"],
    ["day", "2026-11-03T23:59:59.999Z", "2026-11-03T00:00:00.000Z"],
    ["day", "2026-11-04T00:00:00.000Z", "2026-11-04T00:00:00.000Z"],
    ["week", "2026-11-02T00:00:00.000Z", "2026-11-02T00:00:00.000Z"],
    ["week", "2026-11-08T23:59:59.999Z", "2026-11-02T00:00:00.000Z"],
    ["week", "2026-11-09T00:00:00.000Z", "2026-11-09T00:00:00.000Z"],
    ["week", "2026-01-01T12:00:00.000Z", "2025-12-29T00:00:00.000Z"],
    ["week", "1970-01-01T00:00:00.000Z", "1969-12-29T00:00:00.000Z"],
  ])("puts %s of %s at %s", (unit, time, start) => {
    expect(new Date(bucketStartMs(at(time), unit)).toISOString()).toBe(start);
  });

  it("starts every week on a Monday", () => {
    for (let day = 0; day < 14; day += 1) {
      const start = weekStartMs(at("2026-03-01T15:00:00Z") + day * 86_400_000);
      expect(new Date(start).getUTCDay()).toBe(1);
      expect(start % 86_400_000).toBe(0);
    }
  });
});

describe("countBuckets", () => {
  it.each<[string, string, BucketUnit, number]>([
    ["2026-11-03T10:00:00Z", "2026-11-03T11:00:00Z", "hour", 1],
    ["2026-11-03T10:00:00Z", "2026-11-03T11:00:00.001Z", "hour", 2],
    ["2026-11-03T10:30:00Z", "2026-11-03T11:30:00Z", "hour", 2],
    ["2026-11-03T10:00:00Z", "2026-11-10T10:00:00Z", "minute", 7 * 1440],
    ["2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z", "week", 2],
    ["2026-11-02T00:00:00Z", "2026-11-09T00:00:00Z", "week", 1],
    ["2026-11-03T10:00:00Z", "2026-11-03T10:00:00Z", "day", 0],
  ])("counts [%s, %s) as %s buckets: %i", (start, end, unit, count) => {
    expect(countBuckets(at(start), at(end), unit)).toBe(count);
  });
});

describe("bucketStartSql", () => {
  it("agrees with bucketStartMs in SQLite", () => {
    const db = new Database(":memory:");
    const times = ["2026-11-08T23:59:00Z", "2026-11-09T00:00:00Z", "2026-01-01T00:01:00Z", "2026-07-15T13:45:00Z"].map(at);
    for (const unit of ["minute", "hour", "day", "week"] as const) {
      for (const time of times) {
        const row = db.prepare(`SELECT ${bucketStartSql("t", unit)} AS start FROM (SELECT ? AS t)`).get(time) as { start: number };
        expect(row.start, `${unit} of ${new Date(time).toISOString()}`).toBe(bucketStartMs(time, unit));
      }
    }
    db.close();
  });
});
