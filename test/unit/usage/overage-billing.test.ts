import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createManualClock } from "../../../src/clock.js";
import { hashKey } from "../../../src/keys/key-format.js";
import type { KeySource } from "../../../src/keys/key-source.js";
import type { ApiRecord } from "../../../src/keys/records.js";
import { createLogger } from "../../../src/log/logger.js";
import { createSidecarMetrics } from "../../../src/metrics/sidecar-metrics.js";
import { RateLimiter } from "../../../src/ratelimit/limiter.js";
import { billableUsage } from "../../../src/server/analytics/billing.js";
import { UsageQueries } from "../../../src/server/analytics/usage-queries.js";
import { inProcessUsageQueries } from "../../../src/server/analytics/usage-query-protocol.js";
import { buildEnvoyCheckRequest } from "../../../src/sidecar/check-client.js";
import { createCheckHandler, type CheckOutcome } from "../../../src/sidecar/check-service.js";
import { decodeSpooledEvent, encodeUsageRecord } from "../../../src/usage/event-encoding.js";
import { buildUsageRecord, type UsageRecord } from "../../../src/usage/usage-event.js";
import { usageDatabasePath } from "../../../src/usage/usage-schema.js";
import { SqliteUsageStore } from "../../../src/usage/usage-store.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";
import { START_WALL_MS, clockAtWindowStart, issueKey, tier, type IssuedKey } from "../fakes.js";

const DAY = 86_400_000;
const PERIOD = { startMs: START_WALL_MS - DAY, endMs: START_WALL_MS + DAY };
const PAYMENTS: ApiRecord = { id: "api_payments", orgId: null, name: "payments", keyPrefix: "tg", defaultPlanId: null, createdAtMs: 0, version: 1 };

/** Runs each cost through the real Check handler and limiter, and returns the usage records the sidecar would spool. */
function recordChecks(issued: IssuedKey, costs: readonly number[]): UsageRecord[] {
  const keys: KeySource = { ready: true, findGrant: (hash) => (hash === hashKey(issued.key) ? issued.grant : undefined), close: () => {} };
  const clock = clockAtWindowStart(60_000);
  const records: UsageRecord[] = [];
  const handler = createCheckHandler({
    keys,
    limiter: new RateLimiter(),
    clock,
    logger: createLogger("silent", new Writable({ write: (_chunk, _encoding, done) => done() })),
    metrics: createSidecarMetrics(),
    onOutcome: (outcome: CheckOutcome) => records.push(buildUsageRecord(outcome, { nowWallMs: clock.wallMs(), resolveApiId: () => undefined })),
  });

  for (const cost of costs) {
    handler(buildEnvoyCheckRequest({ method: "GET", path: "/v1/charges", headers: { authorization: `Bearer ${issued.key}` }, contextExtensions: { "tollgate.cost": String(cost) } }));
  }
  return records;
}

describe("overage billing end to end", () => {
  let dataDir: string;
  let usage: SqliteUsageStore;

  beforeEach(() => {
    dataDir = makeTempDir("overage-billing");
    usage = SqliteUsageStore.open(usageDatabasePath(dataDir), createManualClock(START_WALL_MS));
  });
  afterEach(async () => {
    await usage.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("bills only the units past the quota", async () => {
    const issued = issueKey({ tiers: [tier(3, 30 * DAY, "overage")] });
    const records = recordChecks(issued, [2, 2, 2, 2, 2, 1, 1]);

    // Encoded and decoded as the spool stores and the usage stream sends them.
    const events = records.map((record, index) => decodeSpooledEvent(index + 1, encodeUsageRecord(record)));
    await usage.ingest({ sidecarId: "pod-1", spoolId: "spool-a" }, events);
    const billing = await billableUsage(inProcessUsageQueries(new UsageQueries(usage.db)), PERIOD, {}, [PAYMENTS]);

    expect(records.every((record) => record.allowed)).toBe(true);
    expect(billing.lines).toEqual([{ ownerId: "org_acme", apiId: "api_payments", apiName: "payments", requests: 7, costUnits: 12, overageRequests: 6, overageCostUnits: 9 }]);
    // Every unit but the 3 included ones is overage.
    expect(billing.lines[0]!.costUnits - billing.lines[0]!.overageCostUnits).toBe(3);
    // Summing the whole cost of each overage request gives 10, because the second request had 1 of its 2 units inside the quota.
    const wholeCostOfOverageRequests = records.filter((record) => record.overage).reduce((sum, record) => sum + record.cost, 0);
    expect(wholeCostOfOverageRequests).toBe(10);
  });

  it("bills a unit past two overage quotas once", async () => {
    const issued = issueKey({ tiers: [tier(2, 60_000, "overage"), tier(4, 30 * DAY, "overage")] });
    const records = recordChecks(issued, [3, 3]);

    const events = records.map((record, index) => decodeSpooledEvent(index + 1, encodeUsageRecord(record)));
    await usage.ingest({ sidecarId: "pod-1", spoolId: "spool-a" }, events);
    const billing = await billableUsage(inProcessUsageQueries(new UsageQueries(usage.db)), PERIOD, {}, [PAYMENTS]);

    // First request: 1 unit past the minute quota, none past the monthly one. Second: all 3 past the minute quota, 2 past the monthly one.
    expect(records.map((record) => record.overageCost)).toEqual([1, 3]);
    expect(billing.lines[0]).toMatchObject({ costUnits: 6, overageRequests: 2, overageCostUnits: 4 });
  });
});
