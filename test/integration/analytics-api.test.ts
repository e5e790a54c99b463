import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenKind } from "../../src/gen/tollgate/admin/v1/resources_pb.js";
import { ApiService, KeyService, TokenService } from "../../src/gen/tollgate/admin/v1/services_pb.js";
import { AnalyticsService, Bucket, GroupBy, TopKeysOrder } from "../../src/gen/tollgate/analytics/v1/analytics_pb.js";
import { Decision, UsageEventSchema } from "../../src/gen/tollgate/usage/v1/usage_pb.js";
import { createManualClock } from "../../src/clock.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";

/** Monday 2026-11-02 00:00 UTC; the keys are created at 09:00 that day. */
const MONDAY = Date.parse("2026-11-02T00:00:00Z");
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const at = (time: string) => Date.parse(`2026-11-02T${time}Z`);

let harness: ServerHarness;
let analytics: Client<typeof AnalyticsService>;
let sidecarToken: string;
const keyIds: Record<"acme" | "beta" | "idle", string> = { acme: "", beta: "", idle: "" };
const secrets: string[] = [];

beforeAll(async () => {
  harness = await startServerHarness({ clock: createManualClock(at("09:00:00")) });
  analytics = harness.connectClient(AnalyticsService);
  const keys = harness.connectClient(KeyService);
  await harness.connectClient(ApiService).createApi({ name: "shop" });
  for (const [label, ownerId] of [["acme", "acme"], ["beta", "beta"], ["idle", "acme"]] as const) {
    const created = await keys.createKey({ apiId: "shop", ownerId, name: `${label} key` });
    keyIds[label] = created.key!.id;
    secrets.push(created.secret);
  }
  sidecarToken = (await harness.connectClient(TokenService).createToken({ name: "edge", kind: TokenKind.SIDECAR })).secret;

  // Two days later the server receives the day's events through the same store the usage stream writes to.
  harness.clock.advance(2 * DAY_MS);
  const apiId = (await harness.connectClient(ApiService).getApi({ id: "shop" })).api!.id;
  const events: MessageInitShape<typeof UsageEventSchema>[] = [
    ...repeat(3, { timeMs: BigInt(at("10:00:00")), apiId, keyId: keyIds.acme, ownerId: "acme", decision: Decision.ALLOW, reason: "ok", status: 200, cost: 2n }),
    { timeMs: BigInt(at("10:00:20")), apiId, keyId: keyIds.acme, ownerId: "acme", decision: Decision.ALLOW, reason: "ok", status: 200, cost: 2n, overage: true, overageCost: 2n },
    { timeMs: BigInt(at("10:00:30")), apiId, keyId: keyIds.acme, ownerId: "acme", decision: Decision.DENY, reason: "rate_limited", status: 429 },
    { timeMs: BigInt(at("10:00:45")), apiId, keyId: keyIds.acme, ownerId: "acme", decision: Decision.DENY, reason: "insufficient_scope", status: 403 },
    ...repeat(2, { timeMs: BigInt(at("10:05:00")), decision: Decision.DENY, reason: "unknown_key", status: 401, clientAddress: "198.51.100.7" }),
    { timeMs: BigInt(at("10:05:10")), decision: Decision.DENY, reason: "malformed_key", status: 401, clientAddress: "198.51.100.7" },
    { timeMs: BigInt(at("11:00:00")), apiId, keyId: keyIds.beta, ownerId: "beta", decision: Decision.ALLOW, reason: "ok", status: 200, cost: 1n },
  ];
  await harness.server.usage.ingest(
    { sidecarId: "edge-1", spoolId: "spool-1" },
    events.map((event, i) => create(UsageEventSchema, { method: "GET", path: "/v1/items", clientAddress: "192.0.2.10", ...event, sequence: BigInt(i + 1) })),
  );
});

afterAll(async () => {
  await harness?.close();
});

function repeat<T>(count: number, value: T): T[] {
  return Array.from({ length: count }, () => value);
}

const DAY_RANGE = { startTime: timestampFromMs(MONDAY), endTime: timestampFromMs(MONDAY + DAY_MS) };
const iso = (timestamp: Timestamp | undefined) => (timestamp === undefined ? undefined : new Date(timestampMs(timestamp)).toISOString());

/** Runs a call that must fail and returns its error. */
async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call succeeded");
}

describe("AnalyticsService over Connect", () => {
  it("returns requests per hour from ingested events", async () => {
    const response = await analytics.getRequestsOverTime({ ...DAY_RANGE, bucket: Bucket.HOUR });
    expect(response.series).toHaveLength(1);
    expect(response.series[0]!.points.map((point) => [iso(point.bucketStartTime), point.requests, point.allowed, point.denied, point.cost])).toEqual([
      ["2026-11-02T10:00:00.000Z", 9n, 4n, 5n, 8n],
      ["2026-11-02T11:00:00.000Z", 1n, 1n, 0n, 1n],
    ]);
  });

  it("groups by key and filters by API name", async () => {
    const response = await analytics.getRequestsOverTime({ ...DAY_RANGE, bucket: Bucket.DAY, groupBy: GroupBy.KEY, apiId: "shop" });
    expect(response.series.map((series) => [series.group, series.points[0]!.requests])).toEqual(
      [[keyIds.acme, 6n], [keyIds.beta, 1n]].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)),
    );
  });

  it("breaks requests down by decision and reason", async () => {
    const response = await analytics.getDecisionBreakdown({ ...DAY_RANGE, ownerId: "acme" });
    expect(response.requests).toBe(6n);
    expect(response.decisions.map((entry) => [entry.decision, entry.reason, entry.httpStatus, entry.requests])).toEqual([
      ["allow", "ok", 200, 4n],
      ["deny", "insufficient_scope", 403, 1n],
      ["deny", "rate_limited", 429, 1n],
    ]);
  });

  it("lists top keys with names from the store of record", async () => {
    const response = await analytics.listTopKeys({ ...DAY_RANGE, orderBy: TopKeysOrder.COST, limit: 1 });
    expect(response.keys.map((key) => [key.keyId, key.ownerId, key.name, key.requests, key.allowed, key.denied, key.cost])).toEqual([
      [keyIds.acme, "acme", "acme key", 6n, 4n, 2n, 8n],
    ]);
  });

  it("measures time to first call for keys created in a range", async () => {
    const response = await analytics.getTimeToFirstCall({ createStartTime: timestampFromMs(MONDAY), createEndTime: timestampFromMs(MONDAY + DAY_MS) });
    expect(response.keys.map((key) => [key.keyId, iso(key.createTime), iso(key.firstCallTime), key.timeToFirstCall && durationMs(key.timeToFirstCall)])).toEqual([
      [keyIds.acme, "2026-11-02T09:00:00.000Z", "2026-11-02T10:00:00.000Z", HOUR_MS],
      [keyIds.beta, "2026-11-02T09:00:00.000Z", "2026-11-02T11:00:00.000Z", 2 * HOUR_MS],
      [keyIds.idle, "2026-11-02T09:00:00.000Z", undefined, undefined],
    ].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)));
    const summary = response.summary!;
    expect([summary.keys, summary.keysWithFirstCall, summary.keysWithoutFirstCall]).toEqual([3n, 2n, 1n]);
    expect(durationMs(summary.medianTimeToFirstCall!)).toBe(HOUR_MS);
    expect(durationMs(summary.p90TimeToFirstCall!)).toBe(2 * HOUR_MS);
  });

  it("counts weekly adoption", async () => {
    const response = await analytics.getWeeklyAdoption({ weeks: 2, endTime: timestampFromMs(MONDAY + 7 * DAY_MS) });
    expect(response.weeks.map((week) => [iso(week.weekStartTime), week.activeKeys, week.requests, week.requestsPerActiveKey, week.activeKeysChangePercent])).toEqual([
      ["2026-10-26T00:00:00.000Z", 0n, 0n, 0, undefined],
      ["2026-11-02T00:00:00.000Z", 2n, 5n, 2.5, undefined],
    ]);
  });

  it("reports error rates per owner and cascades from raw events", async () => {
    const response = await analytics.getErrorPatterns(DAY_RANGE);
    expect(response.owners.map((owner) => [owner.ownerId, owner.requests, owner.unauthorizedRate, owner.forbiddenRate, owner.rateLimitedRate])).toEqual([
      ["", 3n, 1, 0, 0],
      ["acme", 6n, 0, 1 / 6, 1 / 6],
      ["beta", 1n, 0, 0, 0],
    ]);
    expect(response.cascades.map((cascade) => [cascade.subject.case, cascade.subject.value, iso(cascade.minuteStartTime), cascade.reasons.map((entry) => `${entry.reason}=${entry.requests}`)])).toEqual([
      // The key's denials came from one address, so that address shows the same cascade.
      ["clientAddress", "192.0.2.10", "2026-11-02T10:00:00.000Z", ["insufficient_scope=1", "rate_limited=1"]],
      ["keyId", keyIds.acme, "2026-11-02T10:00:00.000Z", ["insufficient_scope=1", "rate_limited=1"]],
      ["clientAddress", "198.51.100.7", "2026-11-02T10:05:00.000Z", ["malformed_key=1", "unknown_key=2"]],
    ]);
    expect(response.cascadesTruncated).toBe(false);
  });

  it("leaves retention cells unset until they can be observed", async () => {
    const response = await analytics.getRetention({ cohorts: 1 });
    expect(response.cohorts).toHaveLength(1);
    const [cohort] = response.cohorts;
    expect([iso(cohort!.weekStartTime), cohort!.keys, cohort!.week1, cohort!.week4, cohort!.week12]).toEqual(["2026-11-02T00:00:00.000Z", 3n, undefined, undefined, undefined]);
  });

  it("computes billable usage per owner and API", async () => {
    const response = await analytics.getBillableUsage({ startTime: timestampFromMs(Date.parse("2026-11-01T00:00:00Z")), endTime: timestampFromMs(Date.parse("2026-12-01T00:00:00Z")) });
    expect(response.lines.map((line) => [line.ownerId, line.apiName, line.requests, line.costUnits, line.overageRequests, line.overageCostUnits])).toEqual([
      ["acme", "shop", 4n, 8n, 1n, 2n],
      ["beta", "shop", 1n, 1n, 0n, 0n],
    ]);
    expect(response.ownerTotals.map((line) => [line.ownerId, line.apiId, line.requests])).toEqual([
      ["acme", "", 4n],
      ["beta", "", 1n],
    ]);
  });

  it("answers curl-style JSON with RFC 3339 times", async () => {
    const response = await fetch(`${harness.baseUrl}/tollgate.analytics.v1.AnalyticsService/GetBillableUsage`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ startTime: "2026-11-01T00:00:00Z", endTime: "2026-12-01T00:00:00Z", ownerId: "beta" }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { periodStartTime: string; lines: Record<string, string>[] };
    expect(body.periodStartTime).toBe("2026-11-01T00:00:00Z");
    expect(body.lines).toEqual([expect.objectContaining({ ownerId: "beta", apiName: "shop", requests: "1", costUnits: "1" })]);
  });

  it("never returns a key's secret", async () => {
    const responses = await Promise.all([
      analytics.listTopKeys(DAY_RANGE),
      analytics.getErrorPatterns(DAY_RANGE),
      analytics.getTimeToFirstCall({ createStartTime: DAY_RANGE.startTime, createEndTime: DAY_RANGE.endTime }),
    ]);
    const text = JSON.stringify(responses, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
    for (const secret of secrets) expect(text).not.toContain(secret);
  });
});

describe("AnalyticsService validation", () => {
  it.each([
    ["an unset bucket", { ...DAY_RANGE }, "bucket: must be BUCKET_MINUTE, BUCKET_HOUR, BUCKET_DAY or BUCKET_WEEK"],
    ["a missing start", { endTime: DAY_RANGE.endTime, bucket: Bucket.HOUR }, "start_time: required"],
    ["an end before the start", { startTime: DAY_RANGE.endTime, endTime: DAY_RANGE.startTime, bucket: Bucket.HOUR }, "end_time: must be after start_time"],
    [
      "too many minute buckets",
      { startTime: timestampFromMs(MONDAY), endTime: timestampFromMs(MONDAY + 10 * DAY_MS), bucket: Bucket.MINUTE },
      "bucket: the range touches 14400 minute buckets, more than 10000: use a larger bucket or a shorter range",
    ],
  ])("rejects %s with INVALID_ARGUMENT naming the field", async (_case, request, message) => {
    const error = await rejection(analytics.getRequestsOverTime(request));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe(message);
  });

  it("reports every bad field at once", async () => {
    const error = await rejection(analytics.getErrorPatterns({ minReasons: 1, maxCascades: 5000 }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage.split("; ")).toEqual([
      "start_time: required",
      "end_time: required",
      "min_reasons: must be from 2 to 20, or 0 for the default 2",
      "max_cascades: must be from 1 to 1000, or 0 for the default 100",
    ]);
  });

  it("rejects a billing period over 366 days", async () => {
    const error = await rejection(analytics.getBillableUsage({ startTime: timestampFromMs(MONDAY), endTime: timestampFromMs(MONDAY + 400 * DAY_MS) }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe("end_time: must be at most 366 days after start_time");
  });

  /** Posts `body` as Connect JSON to `method` and returns the status and the error body. */
  async function postJson(method: string, body: unknown): Promise<{ status: number; code?: string; message?: string }> {
    const response = await fetch(`${harness.baseUrl}/tollgate.analytics.v1.AnalyticsService/${method}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, ...((await response.json()) as { code?: string; message?: string }) };
  }

  it.each([
    ["GetWeeklyAdoption", { weeks: 52, endTime: "0001-01-01T00:00:00Z" }, "end_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetRetention", { cohorts: 52, asOfTime: "0001-01-01T00:00:00Z" }, "as_of_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetRequestsOverTime", { startTime: "1969-12-31T23:00:00Z", endTime: "1970-01-01T01:00:00Z", bucket: "BUCKET_HOUR" }, "start_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetDecisionBreakdown", { startTime: "0001-01-01T00:00:00Z", endTime: "0001-01-02T00:00:00Z" }, "start_time: must be at or after 1970-01-01T00:00:00Z; end_time: must be at or after 1970-01-01T00:00:00Z"],
    ["ListTopKeys", { startTime: "1969-01-01T00:00:00Z", endTime: "1970-01-02T00:00:00Z" }, "start_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetTimeToFirstCall", { createStartTime: "0001-01-01T00:00:00Z", createEndTime: "2026-11-03T00:00:00Z" }, "create_start_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetErrorPatterns", { startTime: "1969-12-31T00:00:00Z", endTime: "1970-01-01T12:00:00Z" }, "start_time: must be at or after 1970-01-01T00:00:00Z"],
    ["GetBillableUsage", { startTime: "1969-12-01T00:00:00Z", endTime: "1970-01-01T00:00:00Z" }, "start_time: must be at or after 1970-01-01T00:00:00Z"],
  ])("rejects a time before 1970 in %s over Connect JSON", async (method, body, message) => {
    const response = await postJson(method, body);
    expect(response.status).toBe(400);
    expect(response.code).toBe("invalid_argument");
    expect(response.message).toBe(message);
  });

  it.each([
    ["GetWeeklyAdoption", { weeks: 52, endTime: "1970-06-01T00:00:00Z" }, "end_time: the range it sets with weeks starts before 1970-01-01T00:00:00Z: use a later end_time or fewer weeks"],
    ["GetRetention", { cohorts: 2, asOfTime: "1970-01-06T00:00:00Z" }, "as_of_time: the range it sets with cohorts starts before 1970-01-01T00:00:00Z: use a later as_of_time or fewer cohorts"],
  ])("rejects a %s range that reaches before 1970", async (method, body, message) => {
    const response = await postJson(method, body);
    expect(response.status).toBe(400);
    expect(response.code).toBe("invalid_argument");
    expect(response.message).toBe(message);
  });

  it("accepts the earliest adoption and retention times", async () => {
    // 1970-01-19 is a Monday, so the one listed week and the week read before it start on 1970-01-05, the first Monday.
    const adoption = await postJson("GetWeeklyAdoption", { weeks: 1, endTime: "1970-01-19T00:00:00Z" });
    expect(adoption.status).toBe(200);
    const retention = await postJson("GetRetention", { cohorts: 1, asOfTime: "1970-01-05T00:00:00Z" });
    expect(retention.status).toBe(200);
  });

  it("answers NOT_FOUND for an unknown API", async () => {
    const error = await rejection(analytics.getDecisionBreakdown({ ...DAY_RANGE, apiId: "nope" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe('api_id: API "nope" not found');
  });
});

describe("AnalyticsService access", () => {
  it("rejects a sidecar token", async () => {
    const error = await rejection(harness.connectClient(AnalyticsService, sidecarToken).getDecisionBreakdown(DAY_RANGE));
    expect(error.code).toBe(Code.PermissionDenied);
  });

  it("rejects a call without a token, over Connect and gRPC", async () => {
    expect((await rejection(harness.connectClient(AnalyticsService, null).getDecisionBreakdown(DAY_RANGE))).code).toBe(Code.Unauthenticated);
    expect((await rejection(harness.grpcClient(AnalyticsService, null).getDecisionBreakdown(DAY_RANGE))).code).toBe(Code.Unauthenticated);
  });

  it("rejects an unknown token", async () => {
    const error = await rejection(harness.connectClient(AnalyticsService, "not-a-token-0123456789").getDecisionBreakdown(DAY_RANGE));
    expect(error.code).toBe(Code.Unauthenticated);
  });

  it("serves an admin token over gRPC too", async () => {
    const response = await harness.grpcClient(AnalyticsService).getDecisionBreakdown(DAY_RANGE);
    expect(response.requests).toBe(10n);
  });
});
