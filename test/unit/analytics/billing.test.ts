import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { billableUsage } from "../../../src/server/analytics/billing.js";
import { formatBillingCsv, formatCsv } from "../../../src/server/analytics/billing-csv.js";
import type { ApiRecord } from "../../../src/keys/records.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

const PERIOD = { startMs: Date.parse("2026-11-01T00:00:00Z"), endMs: Date.parse("2026-12-01T00:00:00Z") };

function api(id: string, name: string): ApiRecord {
  return { id, orgId: null, name, keyPrefix: name, defaultPlanId: null, createdAtMs: 0, version: 1 };
}

describe("billableUsage", () => {
  let usage: UsageFixture;

  beforeEach(() => {
    usage = openUsageFixture();
    usage.addMinute({ minuteMs: PERIOD.startMs, requests: 10, cost: 20, overageRequests: 2, overageCost: 4 });
    usage.addMinute({ minuteMs: PERIOD.endMs - 60_000, apiId: "api_b", requests: 3, cost: 3, overageRequests: 1, overageCost: 1 });
    usage.addMinute({ minuteMs: PERIOD.startMs, decision: "deny", reason: "rate_limited", requests: 50 });
    usage.addMinute({ minuteMs: PERIOD.endMs, requests: 1000, cost: 1000 });
    usage.addMinute({ minuteMs: PERIOD.startMs - 60_000, requests: 1000, cost: 1000 });
    usage.addMinute({ minuteMs: PERIOD.startMs, keyId: "key_z", ownerId: "zeta", apiId: "api_gone", requests: 1, cost: 1 });
  });

  afterEach(() => {
    usage.close();
  });

  it("bills allowed requests of the period per owner and API, with owner totals", async () => {
    const billing = await billableUsage(usage.asyncQueries, PERIOD, {}, [api("api_a", "shop"), api("api_b", "docs")]);
    expect(billing.lines).toEqual([
      { ownerId: "owner_a", apiId: "api_a", apiName: "shop", requests: 10, costUnits: 20, overageRequests: 2, overageCostUnits: 4 },
      { ownerId: "owner_a", apiId: "api_b", apiName: "docs", requests: 3, costUnits: 3, overageRequests: 1, overageCostUnits: 1 },
      { ownerId: "zeta", apiId: "api_gone", apiName: "", requests: 1, costUnits: 1, overageRequests: 0, overageCostUnits: 0 },
    ]);
    expect(billing.ownerTotals).toEqual([
      { ownerId: "owner_a", apiId: "", apiName: "", requests: 13, costUnits: 23, overageRequests: 3, overageCostUnits: 5 },
      { ownerId: "zeta", apiId: "", apiName: "", requests: 1, costUnits: 1, overageRequests: 0, overageCostUnits: 0 },
    ]);
  });

  it("applies the API filter", async () => {
    const billing = await billableUsage(usage.asyncQueries, PERIOD, { apiId: "api_b" }, []);
    expect(billing.lines.map((line) => [line.ownerId, line.apiId, line.requests])).toEqual([["owner_a", "api_b", 3]]);
  });
});

describe("formatCsv", () => {
  it.each([
    ["plain", "plain"],
    ["with,comma", '"with,comma"'],
    ['say "hi"', '"say ""hi"""'],
    ["two\nlines", '"two\nlines"'],
    ["carriage\rreturn", '"carriage\rreturn"'],
    ["", ""],
    [" spaced ", " spaced "],
  ])("writes %j as %j", (field, written) => {
    expect(formatCsv(["h"], [[field]])).toBe(`h\r\n${written}\r\n`);
  });

  it("writes numbers and bigints as digits", () => {
    expect(formatCsv(["a", "b"], [[12, 9007199254740993n]])).toBe("a,b\r\n12,9007199254740993\r\n");
  });
});

describe("formatBillingCsv", () => {
  it("writes the header row and one row per line", async () => {
    const csv = formatBillingCsv([
      {
        period_start: "2026-11-01T00:00:00.000Z",
        period_end: "2026-12-01T00:00:00.000Z",
        owner_id: 'acme, "north"',
        api_id: "api_a",
        api_name: "shop",
        requests: 10n,
        cost_units: 20n,
        overage_requests: 2n,
        overage_cost_units: 4n,
      },
    ]);
    expect(csv.split("\r\n")).toEqual([
      "period_start,period_end,owner_id,api_id,api_name,requests,cost_units,overage_requests,overage_cost_units",
      '2026-11-01T00:00:00.000Z,2026-12-01T00:00:00.000Z,"acme, ""north""",api_a,shop,10,20,2,4',
      "",
    ]);
  });

  it("writes only the header for no lines", async () => {
    expect(formatBillingCsv([])).toBe("period_start,period_end,owner_id,api_id,api_name,requests,cost_units,overage_requests,overage_cost_units\r\n");
  });
});
