import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { usageCondition } from "../../../src/server/analytics/usage-filter.js";
import { cascadeScanRange, errorCascadesSql } from "../../../src/server/analytics/usage-queries.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

/** Monday 2026-11-02 00:00 UTC. */
const MONDAY = Date.parse("2026-11-02T00:00:00Z");
const DAY_MS = 86_400_000;
const at = (time: string) => Date.parse(`2026-11-02T${time}Z`);

let usage: UsageFixture;

beforeEach(() => {
  usage = openUsageFixture();
});

afterEach(() => {
  usage.close();
});

/** Rows around the range [10:00, 12:00) of one day, including some just outside it. */
function addMorningRows(): void {
  usage.addMinute({ minuteMs: at("09:59:00"), requests: 7, cost: 7 });
  usage.addMinute({ minuteMs: at("10:00:00"), requests: 3, cost: 6 });
  usage.addMinute({ minuteMs: at("10:30:00"), keyId: "", ownerId: "", decision: "deny", reason: "unknown_key", requests: 4 });
  usage.addMinute({ minuteMs: at("10:59:00"), decision: "deny", reason: "rate_limited", requests: 2 });
  usage.addMinute({ minuteMs: at("11:00:00"), apiId: "api_b", keyId: "key_b", ownerId: "owner_b", requests: 5, cost: 10 });
  usage.addMinute({ minuteMs: at("12:00:00"), requests: 1, cost: 1 });
}

const MORNING = { startMs: at("10:00:00"), endMs: at("12:00:00") };

describe("requestsOverTime", () => {
  it("sums one series per hour, counting only minutes in the range", () => {
    addMorningRows();
    const { series, truncated } = usage.queries.requestsOverTime(MORNING, {}, "hour", "total", 1000);
    expect(truncated).toBe(false);
    expect(series).toEqual([
      {
        group: "",
        points: [
          { bucketStartMs: at("10:00:00"), requests: 9, allowed: 3, denied: 6, cost: 6 },
          { bucketStartMs: at("11:00:00"), requests: 5, allowed: 5, denied: 0, cost: 10 },
        ],
      },
    ]);
  });

  it("splits series by key, with requests without a key under the empty group", () => {
    addMorningRows();
    const { series } = usage.queries.requestsOverTime(MORNING, {}, "hour", "key", 1000);
    expect(series.map((entry) => entry.group)).toEqual(["", "key_a", "key_b"]);
    expect(series[0]!.points).toEqual([{ bucketStartMs: at("10:00:00"), requests: 4, allowed: 0, denied: 4, cost: 0 }]);
    expect(series[1]!.points).toEqual([{ bucketStartMs: at("10:00:00"), requests: 5, allowed: 3, denied: 2, cost: 6 }]);
    expect(series[2]!.points).toEqual([{ bucketStartMs: at("11:00:00"), requests: 5, allowed: 5, denied: 0, cost: 10 }]);
  });

  it("splits series by owner and by API", () => {
    addMorningRows();
    const byOwner = usage.queries.requestsOverTime(MORNING, {}, "day", "owner", 1000).series;
    expect(byOwner.map((entry) => [entry.group, entry.points[0]!.requests])).toEqual([["", 4], ["owner_a", 5], ["owner_b", 5]]);
    const byApi = usage.queries.requestsOverTime(MORNING, {}, "day", "api", 1000).series;
    expect(byApi.map((entry) => [entry.group, entry.points[0]!.requests])).toEqual([["api_a", 9], ["api_b", 5]]);
  });

  it("places a range that starts mid-hour in whole-hour buckets", () => {
    addMorningRows();
    const { series } = usage.queries.requestsOverTime({ startMs: at("10:30:00"), endMs: at("11:30:00") }, {}, "hour", "total", 1000);
    expect(series[0]!.points.map((point) => [new Date(point.bucketStartMs).toISOString(), point.requests])).toEqual([
      ["2026-11-02T10:00:00.000Z", 6],
      ["2026-11-02T11:00:00.000Z", 5],
    ]);
  });

  it("puts week buckets on Monday", () => {
    usage.addMinute({ minuteMs: MONDAY - 60_000, requests: 2 });
    usage.addMinute({ minuteMs: MONDAY, requests: 3 });
    usage.addMinute({ minuteMs: MONDAY + 7 * 86_400_000 - 60_000, requests: 4 });
    const { series } = usage.queries.requestsOverTime({ startMs: MONDAY - 86_400_000, endMs: MONDAY + 7 * 86_400_000 }, {}, "week", "total", 1000);
    expect(series[0]!.points.map((point) => [new Date(point.bucketStartMs).toISOString(), point.requests])).toEqual([
      ["2026-10-26T00:00:00.000Z", 2],
      ["2026-11-02T00:00:00.000Z", 7],
    ]);
  });

  it("applies the API, key and owner filters", () => {
    addMorningRows();
    const total = (filter: object) => usage.queries.requestsOverTime(MORNING, filter, "day", "total", 1000).series[0]?.points[0]?.requests;
    expect(total({ ownerId: "owner_b" })).toBe(5);
    expect(total({ apiId: "api_a" })).toBe(9);
    expect(total({ keyId: "key_a" })).toBe(5);
    expect(total({ keyId: "key_a", ownerId: "owner_b" })).toBeUndefined();
  });

  it("returns no series for an empty range", () => {
    addMorningRows();
    expect(usage.queries.requestsOverTime({ startMs: at("13:00:00"), endMs: at("14:00:00") }, {}, "minute", "total", 1000)).toEqual({ series: [], truncated: false });
  });

  it("reports truncation past the maximum points", () => {
    addMorningRows();
    const { series, truncated } = usage.queries.requestsOverTime(MORNING, {}, "hour", "total", 1);
    expect(truncated).toBe(true);
    expect(series[0]!.points).toHaveLength(1);
  });
});

describe("decisionBreakdown", () => {
  it("counts per decision and reason, most requests first", () => {
    addMorningRows();
    expect(usage.queries.decisionBreakdown(MORNING, {})).toEqual([
      { decision: "allow", reason: "ok", requests: 8 },
      { decision: "deny", reason: "unknown_key", requests: 4 },
      { decision: "deny", reason: "rate_limited", requests: 2 },
    ]);
  });

  it("applies filters and returns nothing for an empty range", () => {
    addMorningRows();
    expect(usage.queries.decisionBreakdown(MORNING, { keyId: "key_a" })).toEqual([
      { decision: "allow", reason: "ok", requests: 3 },
      { decision: "deny", reason: "rate_limited", requests: 2 },
    ]);
    expect(usage.queries.decisionBreakdown({ startMs: at("13:00:00"), endMs: at("14:00:00") }, {})).toEqual([]);
  });
});

describe("topKeys", () => {
  it("ranks keys by requests, then id", () => {
    addMorningRows();
    expect(usage.queries.topKeys(MORNING, {}, "requests", 10)).toEqual([
      { keyId: "key_a", apiId: "api_a", ownerId: "owner_a", requests: 5, allowed: 3, denied: 2, cost: 6 },
      { keyId: "key_b", apiId: "api_b", ownerId: "owner_b", requests: 5, allowed: 5, denied: 0, cost: 10 },
    ]);
  });

  it("ranks keys by cost and stops at the limit", () => {
    addMorningRows();
    expect(usage.queries.topKeys(MORNING, {}, "cost", 1).map((key) => key.keyId)).toEqual(["key_b"]);
  });

  it("applies the owner filter", () => {
    addMorningRows();
    expect(usage.queries.topKeys(MORNING, { ownerId: "owner_a" }, "requests", 10).map((key) => key.keyId)).toEqual(["key_a"]);
  });
});

describe("firstAllowedTimes", () => {
  it("returns the first use of the keys that have one", () => {
    usage.addFirstUse("key_a", at("10:00:05"));
    usage.addFirstUse("key_z", at("10:00:06"));
    expect(usage.queries.firstAllowedTimes(["key_a", "key_c"])).toEqual(new Map([["key_a", at("10:00:05")]]));
    expect(usage.queries.firstAllowedTimes([])).toEqual(new Map());
  });
});

describe("weeklyActivity", () => {
  it("counts distinct keys with allowed requests per Monday-based week", () => {
    const day = 86_400_000;
    usage.addMinute({ minuteMs: MONDAY - 60_000, keyId: "key_a", requests: 1 });
    usage.addMinute({ minuteMs: MONDAY, keyId: "key_a", requests: 2 });
    usage.addMinute({ minuteMs: MONDAY + day, keyId: "key_a", requests: 3 });
    usage.addMinute({ minuteMs: MONDAY + 6 * day, keyId: "key_b", requests: 4 });
    usage.addMinute({ minuteMs: MONDAY + 2 * day, keyId: "key_c", decision: "deny", reason: "rate_limited", requests: 9 });
    usage.addMinute({ minuteMs: MONDAY + 3 * day, keyId: "", ownerId: "", decision: "deny", reason: "missing_key", requests: 9 });

    expect(usage.queries.weeklyActivity({ startMs: MONDAY - 7 * day, endMs: MONDAY + 7 * day }, {})).toEqual([
      { weekStartMs: MONDAY - 7 * day, activeKeys: 1, requests: 1 },
      { weekStartMs: MONDAY, activeKeys: 2, requests: 9 },
    ]);
  });
});

describe("hasAllowedRequest", () => {
  it("finds allowed minutes in a half-open window and ignores denials", () => {
    addMorningRows();
    expect(usage.queries.hasAllowedRequest("key_a", at("10:00:00"), at("10:01:00"))).toBe(true);
    expect(usage.queries.hasAllowedRequest("key_a", at("10:01:00"), at("11:00:00"))).toBe(false);
    expect(usage.queries.hasAllowedRequest("key_a", at("09:00:00"), at("09:59:00"))).toBe(false);
    expect(usage.queries.hasAllowedRequest("key_b", at("10:00:00"), at("12:00:00"))).toBe(true);
  });
});

describe("reasonsByOwner", () => {
  it("counts per owner, decision and reason", () => {
    addMorningRows();
    expect(usage.queries.reasonsByOwner(MORNING, {})).toEqual([
      { ownerId: "", decision: "deny", reason: "unknown_key", requests: 4 },
      { ownerId: "owner_a", decision: "allow", reason: "ok", requests: 3 },
      { ownerId: "owner_a", decision: "deny", reason: "rate_limited", requests: 2 },
      { ownerId: "owner_b", decision: "allow", reason: "ok", requests: 5 },
    ]);
  });
});

describe("errorCascades", () => {
  /** Adds a client guessing keys at 10:00, key_a denied for two reasons at 10:10, and lone denials around both. */
  function addCascadeEvents(): void {
    usage.addEvent({ timeMs: at("10:00:05"), clientAddress: "198.51.100.7", reason: "unknown_key" }, 3);
    usage.addEvent({ timeMs: at("10:00:40"), clientAddress: "198.51.100.7", reason: "malformed_key" });
    usage.addEvent({ timeMs: at("10:00:59.999"), clientAddress: "198.51.100.7", reason: "missing_key" });
    usage.addEvent({ timeMs: at("10:01:00"), clientAddress: "198.51.100.7", reason: "ambiguous_key" });
    usage.addEvent({ timeMs: at("10:05:00"), clientAddress: "203.0.113.9", reason: "unknown_key" }, 5);
    usage.addEvent({ timeMs: at("10:09:59"), keyId: "key_a", ownerId: "owner_a", clientAddress: "192.0.2.50", reason: "disabled_key", status: 403 });
    usage.addEvent({ timeMs: at("10:10:00"), keyId: "key_a", ownerId: "owner_a", clientAddress: "192.0.2.50", reason: "rate_limited", status: 429 }, 2);
    usage.addEvent({ timeMs: at("10:10:30"), keyId: "key_a", ownerId: "owner_a", clientAddress: "192.0.2.51", reason: "insufficient_scope", status: 403 });
    usage.addEvent({ timeMs: at("10:10:31"), keyId: "key_a", ownerId: "owner_a", clientAddress: "192.0.2.51", decision: "allow", reason: "ok", status: 200 }, 4);
  }

  const ADDRESS_CASCADE = {
    kind: "client_address",
    subject: "198.51.100.7",
    minuteStartMs: at("10:00:00"),
    reasons: [
      { reason: "malformed_key", requests: 1 },
      { reason: "missing_key", requests: 1 },
      { reason: "unknown_key", requests: 3 },
    ],
    deniedRequests: 5,
  };
  const KEY_CASCADE = {
    kind: "key",
    subject: "key_a",
    minuteStartMs: at("10:10:00"),
    reasons: [
      { reason: "insufficient_scope", requests: 1 },
      { reason: "rate_limited", requests: 2 },
    ],
    deniedRequests: 3,
  };

  it("finds keys and addresses with two or more denial reasons in one minute", () => {
    addCascadeEvents();
    expect(usage.queries.errorCascades(MORNING, {}, 2, 100)).toEqual({ cascades: [ADDRESS_CASCADE, KEY_CASCADE], truncated: false });
  });

  it("raises the bar with min reasons", () => {
    addCascadeEvents();
    expect(usage.queries.errorCascades(MORNING, {}, 3, 100).cascades).toEqual([ADDRESS_CASCADE]);
    expect(usage.queries.errorCascades(MORNING, {}, 4, 100).cascades).toEqual([]);
  });

  it("lists the oldest cascades first and reports truncation", () => {
    addCascadeEvents();
    expect(usage.queries.errorCascades(MORNING, {}, 2, 1)).toEqual({ cascades: [ADDRESS_CASCADE], truncated: true });
  });

  it("applies the range and the key filter to the raw events", () => {
    addCascadeEvents();
    expect(usage.queries.errorCascades({ startMs: at("10:00:41"), endMs: MORNING.endMs }, {}, 2, 100).cascades).toEqual([KEY_CASCADE]);
    expect(usage.queries.errorCascades(MORNING, { keyId: "key_a" }, 2, 100).cascades).toEqual([KEY_CASCADE]);
  });

  it("reads only the last 24 hours of a longer range", () => {
    addCascadeEvents();
    const sixDays = { startMs: MONDAY - 5 * DAY_MS, endMs: MONDAY + DAY_MS };
    expect(usage.queries.errorCascades(sixDays, {}, 2, 100).cascades).toEqual([ADDRESS_CASCADE, KEY_CASCADE]);

    // The same events a day earlier fall outside the last 24 hours, so they show no cascade.
    const endingTomorrow = { startMs: MONDAY - 5 * DAY_MS, endMs: MONDAY + 2 * DAY_MS };
    expect(usage.queries.errorCascades(endingTomorrow, {}, 2, 100).cascades).toEqual([]);
    expect(cascadeScanRange(endingTomorrow)).toEqual({ startMs: MONDAY + DAY_MS, endMs: MONDAY + 2 * DAY_MS });
  });

  it("reads raw events through the time index", () => {
    for (const filter of [{}, { apiId: "api_a", keyId: "key_a", ownerId: "owner_a" }]) {
      const where = usageCondition("time_ms", MORNING, filter);
      const plan = usage.db.prepare(`EXPLAIN QUERY PLAN ${errorCascadesSql(where.sql)}`).all({ ...where.parameters, minReasons: 2, limit: 10 }) as { detail: string }[];
      const eventReads = plan.map((step) => step.detail).filter((detail) => detail.includes("usage_events"));
      expect(eventReads.length).toBeGreaterThan(0);
      for (const detail of eventReads) expect(detail).toMatch(/^SEARCH usage_events USING INDEX usage_events_by_time \(time_ms>\? AND time_ms<\?\)$/);
    }
  });
});

describe("billableUsage", () => {
  it("sums allowed requests, cost and overage per owner and API", () => {
    usage.addMinute({ minuteMs: at("10:00:00"), requests: 10, cost: 20, overageRequests: 2, overageCost: 4 });
    usage.addMinute({ minuteMs: at("11:00:00"), requests: 5, cost: 5 });
    usage.addMinute({ minuteMs: at("10:00:00"), decision: "deny", reason: "rate_limited", requests: 5 });
    usage.addMinute({ minuteMs: at("10:00:00"), apiId: "api_b", requests: 1, cost: 1 });
    usage.addMinute({ minuteMs: at("10:00:00"), keyId: "key_b", ownerId: "owner_b", requests: 3, cost: 3 });
    usage.addMinute({ minuteMs: at("10:00:00"), keyId: "key_c", ownerId: "", requests: 2, cost: 2 });
    usage.addMinute({ minuteMs: at("12:00:00"), requests: 100, cost: 100 });

    expect(usage.queries.billableUsage(MORNING, {})).toEqual([
      { ownerId: "", apiId: "api_a", requests: 2, costUnits: 2, overageRequests: 0, overageCostUnits: 0 },
      { ownerId: "owner_a", apiId: "api_a", requests: 15, costUnits: 25, overageRequests: 2, overageCostUnits: 4 },
      { ownerId: "owner_a", apiId: "api_b", requests: 1, costUnits: 1, overageRequests: 0, overageCostUnits: 0 },
      { ownerId: "owner_b", apiId: "api_a", requests: 3, costUnits: 3, overageRequests: 0, overageCostUnits: 0 },
    ]);
    expect(usage.queries.billableUsage(MORNING, { ownerId: "owner_b" }).map((line) => line.requests)).toEqual([3]);
  });
});
