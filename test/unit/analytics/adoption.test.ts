import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { weeklyAdoption } from "../../../src/server/analytics/adoption.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** Monday 2026-11-02 00:00 UTC. */
const MONDAY = Date.parse("2026-11-02T00:00:00Z");

describe("weeklyAdoption", () => {
  let usage: UsageFixture;

  beforeEach(() => {
    usage = openUsageFixture();
    // Three weeks before MONDAY: 1 key, 10 requests. Two weeks before: none. The week before: 2 keys, 30 requests.
    usage.addMinute({ minuteMs: MONDAY - 3 * WEEK_MS, keyId: "key_a", requests: 10 });
    usage.addMinute({ minuteMs: MONDAY - WEEK_MS, keyId: "key_a", requests: 20 });
    usage.addMinute({ minuteMs: MONDAY - 60_000, keyId: "key_b", ownerId: "owner_b", requests: 10 });
    usage.addMinute({ minuteMs: MONDAY - 60_000, keyId: "key_c", decision: "deny", reason: "rate_limited", requests: 50 });
    // The week of MONDAY itself is not whole yet when the end time falls inside it.
    usage.addMinute({ minuteMs: MONDAY + DAY_MS, keyId: "key_a", requests: 99 });
  });

  afterEach(() => {
    usage.close();
  });

  it("lists whole weeks before the end time", async () => {
    const weeks = await weeklyAdoption(usage.asyncQueries, { weeks: 2, endMs: MONDAY + 2 * DAY_MS, filter: {} });
    expect(weeks).toEqual([
      { weekStartMs: MONDAY - 2 * WEEK_MS, activeKeys: 0, requests: 0, requestsPerActiveKey: 0, activeKeysChangePercent: -100, requestsChangePercent: -100 },
      { weekStartMs: MONDAY - WEEK_MS, activeKeys: 2, requests: 30, requestsPerActiveKey: 15, activeKeysChangePercent: null, requestsChangePercent: null },
    ]);
  });

  it("compares the first listed week with the week before it", async () => {
    const weeks = await weeklyAdoption(usage.asyncQueries, { weeks: 1, endMs: MONDAY + WEEK_MS, filter: {} });
    expect(weeks).toEqual([
      { weekStartMs: MONDAY, activeKeys: 1, requests: 99, requestsPerActiveKey: 99, activeKeysChangePercent: -50, requestsChangePercent: 230 },
    ]);
  });

  it("ends at the end time itself when it is a Monday", async () => {
    const weeks = await weeklyAdoption(usage.asyncQueries, { weeks: 1, endMs: MONDAY, filter: {} });
    expect(weeks.map((week) => week.weekStartMs)).toEqual([MONDAY - WEEK_MS]);
  });

  it("applies the owner filter", async () => {
    const weeks = await weeklyAdoption(usage.asyncQueries, { weeks: 1, endMs: MONDAY, filter: { ownerId: "owner_b" } });
    expect(weeks).toEqual([
      { weekStartMs: MONDAY - WEEK_MS, activeKeys: 1, requests: 10, requestsPerActiveKey: 10, activeKeysChangePercent: null, requestsChangePercent: null },
    ]);
  });
});
