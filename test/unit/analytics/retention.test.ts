import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { retentionCohorts } from "../../../src/server/analytics/retention.js";
import { openStoreFixture, type StoreFixture } from "./store-fixture.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** Monday 2026-10-05 00:00 UTC: the first cohort's week. */
const W0 = Date.parse("2026-10-05T00:00:00Z");
/** Exactly when week 4 of the last key of cohort W0 ends, so that cell has just become observable. */
const AS_OF = W0 + 38 * DAY_MS;

describe("retentionCohorts", () => {
  let records: StoreFixture;
  let usage: UsageFixture;

  beforeEach(async () => {
    records = openStoreFixture(W0);
    usage = openUsageFixture();
    const shop = await records.createApi("shop");

    // Cohort W0: two keys.
    const a = await records.createKeyAt(W0 + DAY_MS, shop, "acme");
    const b = await records.createKeyAt(W0 + 3 * DAY_MS, shop, "beta");
    // Cohort W1: a key created on its first instant, never used.
    await records.createKeyAt(W0 + WEEK_MS, shop, "acme");
    // Cohort W5, the week of AS_OF: one key before AS_OF and one after it.
    await records.createKeyAt(W0 + 36 * DAY_MS, shop, "acme");
    await records.createKeyAt(AS_OF + DAY_MS, shop, "acme");

    // Key a: allowed in week 1 and week 4 after creation.
    usage.addMinute({ minuteMs: a.createdAtMs + WEEK_MS + 3_600_000, keyId: a.id });
    usage.addMinute({ minuteMs: a.createdAtMs + 4 * WEEK_MS + 7_200_000, keyId: a.id });
    // Key b: allowed on the last minute of week 1 and the first minute of week 2; only denied in week 4.
    usage.addMinute({ minuteMs: b.createdAtMs + 2 * WEEK_MS - 60_000, keyId: b.id, ownerId: "beta" });
    usage.addMinute({ minuteMs: b.createdAtMs + 2 * WEEK_MS, keyId: b.id, ownerId: "beta" });
    usage.addMinute({ minuteMs: b.createdAtMs + 4 * WEEK_MS, keyId: b.id, ownerId: "beta", decision: "deny", reason: "rate_limited" });
  });

  afterEach(async () => {
    usage.close();
    await records.close();
  });

  it("measures weeks 1, 4 and 12 per cohort", async () => {
    const cohorts = await retentionCohorts(records.store, usage.asyncQueries, { cohorts: 6, asOfMs: AS_OF });
    expect(cohorts.map((cohort) => [new Date(cohort.weekStartMs).toISOString().slice(0, 10), cohort.keys, cohort.cells])).toEqual([
      ["2026-10-05", 2, { 1: { activeKeys: 2, share: 1 }, 4: { activeKeys: 1, share: 0.5 }, 12: null }],
      ["2026-10-12", 1, { 1: { activeKeys: 0, share: 0 }, 4: null, 12: null }],
      ["2026-10-19", 0, { 1: null, 4: null, 12: null }],
      ["2026-10-26", 0, { 1: null, 4: null, 12: null }],
      ["2026-11-02", 0, { 1: null, 4: null, 12: null }],
      ["2026-11-09", 1, { 1: null, 4: null, 12: null }],
    ]);
  });

  it("unsets a cell until every key finished", async () => {
    const cohorts = await retentionCohorts(records.store, usage.asyncQueries, { cohorts: 6, asOfMs: AS_OF - 1 });
    expect(cohorts[0]!.cells[4]).toBeNull();
    expect(cohorts[0]!.cells[1]).toEqual({ activeKeys: 2, share: 1 });
  });

  it("filters keys by owner", async () => {
    const cohorts = await retentionCohorts(records.store, usage.asyncQueries, { cohorts: 6, asOfMs: AS_OF, ownerId: "beta" });
    expect(cohorts[0]).toEqual({ weekStartMs: W0, keys: 1, cells: { 1: { activeKeys: 1, share: 1 }, 4: { activeKeys: 0, share: 0 }, 12: null } });
    expect(cohorts[1]!.keys).toBe(0);
  });

  it("ends with the week that contains the as-of time", async () => {
    const cohorts = await retentionCohorts(records.store, usage.asyncQueries, { cohorts: 2, asOfMs: W0 + WEEK_MS });
    expect(cohorts.map((cohort) => [cohort.weekStartMs, cohort.keys])).toEqual([
      [W0, 2],
      [W0 + WEEK_MS, 0],
    ]);
  });
});
