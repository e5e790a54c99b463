import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { timeToFirstCall } from "../../../src/server/analytics/first-call.js";
import { nearestRankPercentile } from "../../../src/server/analytics/percentile.js";
import { openStoreFixture, type StoreFixture } from "./store-fixture.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

const DAY_START = Date.parse("2026-11-02T00:00:00Z");
const DAY = { startMs: DAY_START, endMs: DAY_START + 86_400_000 };
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

describe("nearestRankPercentile", () => {
  it.each([
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5, 5],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, 9],
    [[1, 2, 3], 0.5, 2],
    [[1, 2], 0.5, 1],
    [[1, 2], 0.9, 2],
    [[7], 0.9, 7],
  ])("of %j at %d is %d", (values, fraction, expected) => {
    expect(nearestRankPercentile(values, fraction)).toBe(expected);
  });

  it("is undefined without values", () => {
    expect(nearestRankPercentile([], 0.5)).toBeUndefined();
  });
});

describe("timeToFirstCall", () => {
  let records: StoreFixture;
  let usage: UsageFixture;
  const ids: Record<string, string> = {};

  beforeEach(async () => {
    records = openStoreFixture(DAY_START - HOUR_MS);
    usage = openUsageFixture();
    const shop = await records.createApi("shop");
    const docs = await records.createApi("docs");

    // Created at the range's start, first call 5 minutes later.
    ids.first = (await records.createKeyAt(DAY_START, shop, "acme")).id;
    usage.addFirstUse(ids.first, DAY_START + 5 * MINUTE_MS);
    // A sidecar clock behind the server's stamps the first call before the creation.
    ids.skewed = (await records.createKeyAt(DAY_START + HOUR_MS, shop, "acme")).id;
    usage.addFirstUse(ids.skewed, DAY_START + HOUR_MS - 30_000);
    ids.unused = (await records.createKeyAt(DAY_START + 2 * HOUR_MS, shop, "beta")).id;
    ids.docs = (await records.createKeyAt(DAY_START + 3 * HOUR_MS, docs, "acme")).id;
    usage.addFirstUse(ids.docs, DAY_START + 5 * HOUR_MS);
    // Created at the range's end, so outside it.
    ids.late = (await records.createKeyAt(DAY.endMs, shop, "acme")).id;
    usage.addFirstUse(ids.late, DAY.endMs + MINUTE_MS);
  });

  afterEach(async () => {
    usage.close();
    await records.close();
  });

  it("lists the keys created in the range with their first call", async () => {
    const { keys } = await timeToFirstCall(records.store, usage.asyncQueries, { created: DAY, limit: 100 });
    expect(keys.map((key) => [key.keyId, key.ownerId, key.createdAtMs - DAY_START, key.firstCallMs === null ? null : key.firstCallMs - DAY_START, key.timeToFirstCallMs])).toEqual([
      [ids.first, "acme", 0, 5 * MINUTE_MS, 5 * MINUTE_MS],
      [ids.skewed, "acme", HOUR_MS, HOUR_MS - 30_000, 0],
      [ids.unused, "beta", 2 * HOUR_MS, null, null],
      [ids.docs, "acme", 3 * HOUR_MS, 5 * HOUR_MS, 2 * HOUR_MS],
    ]);
  });

  it("summarises with nearest-rank median and p90", async () => {
    const { summary } = await timeToFirstCall(records.store, usage.asyncQueries, { created: DAY, limit: 100 });
    expect(summary).toEqual({ keys: 4, keysWithFirstCall: 3, keysWithoutFirstCall: 1, medianMs: 5 * MINUTE_MS, p90Ms: 2 * HOUR_MS });
  });

  it("summarises every key while listing only the limit", async () => {
    const { keys, summary } = await timeToFirstCall(records.store, usage.asyncQueries, { created: DAY, limit: 2 });
    expect(keys.map((key) => key.keyId)).toEqual([ids.first, ids.skewed]);
    expect(summary.keys).toBe(4);
  });

  it("filters by API and owner", async () => {
    const shop = await records.store.findApi("shop");
    const byApi = await timeToFirstCall(records.store, usage.asyncQueries, { created: DAY, apiId: shop!.id, limit: 100 });
    expect(byApi.summary).toEqual({ keys: 3, keysWithFirstCall: 2, keysWithoutFirstCall: 1, medianMs: 0, p90Ms: 5 * MINUTE_MS });

    const byOwner = await timeToFirstCall(records.store, usage.asyncQueries, { created: DAY, ownerId: "beta", limit: 100 });
    expect(byOwner.summary).toEqual({ keys: 1, keysWithFirstCall: 0, keysWithoutFirstCall: 1, medianMs: null, p90Ms: null });
  });

  it("returns nothing for a range without new keys", async () => {
    const result = await timeToFirstCall(records.store, usage.asyncQueries, { created: { startMs: DAY_START - HOUR_MS, endMs: DAY_START }, limit: 100 });
    expect(result).toEqual({ keys: [], summary: { keys: 0, keysWithFirstCall: 0, keysWithoutFirstCall: 0, medianMs: null, p90Ms: null } });
  });
});
