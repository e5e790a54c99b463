import { Writable } from "node:stream";
import { fromBinary, toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { Decision, UsageEventSchema } from "../../../src/gen/tollgate/usage/v1/usage_pb.js";
import { hashKey } from "../../../src/keys/key-format.js";
import type { KeySource } from "../../../src/keys/key-source.js";
import { createLogger } from "../../../src/log/logger.js";
import { createSidecarMetrics } from "../../../src/metrics/sidecar-metrics.js";
import { RateLimiter } from "../../../src/ratelimit/limiter.js";
import type { Tier } from "../../../src/ratelimit/tier.js";
import { buildEnvoyCheckRequest, type EnvoyRequestInput } from "../../../src/sidecar/check-client.js";
import { createCheckHandler, type CheckOutcome } from "../../../src/sidecar/check-service.js";
import { encodeUsageRecord } from "../../../src/usage/event-encoding.js";
import { buildUsageRecord, toUsageEvent, type UsageRecord } from "../../../src/usage/usage-event.js";
import { START_WALL_MS, clockAtWindowStart, issueKey, tier, type IssuedKey } from "../fakes.js";

const KNOWN_API_IDS: Record<string, string> = { payments: "api_payments", api_payments: "api_payments" };

interface HandlerOptions {
  keys?: IssuedKey[];
  trustedProxyHops?: number;
  keyQueryParameter?: string;
  ready?: boolean;
  limiter?: RateLimiter;
}

/** Runs Checks through the real handler and turns each outcome into a usage event. */
function createMeteredHandler(options: HandlerOptions = {}) {
  const grants = new Map((options.keys ?? []).map(({ key, grant }) => [hashKey(key), grant]));
  const keySource: KeySource = { ready: options.ready ?? true, findGrant: (hash) => grants.get(hash), close: () => {} };
  const clock = clockAtWindowStart(60_000);
  const records: UsageRecord[] = [];
  const onOutcome = (outcome: CheckOutcome) => {
    records.push(buildUsageRecord(outcome, { nowWallMs: clock.wallMs(), resolveApiId: (nameOrId) => KNOWN_API_IDS[nameOrId] }));
  };
  const handler = createCheckHandler({
    keys: keySource,
    limiter: options.limiter ?? new RateLimiter(),
    clock,
    logger: createLogger("silent", new Writable({ write: (_chunk, _encoding, done) => done() })),
    metrics: createSidecarMetrics(),
    keyQueryParameter: options.keyQueryParameter,
    trustedProxyHops: options.trustedProxyHops,
    onOutcome,
  });
  return { handler, records, clock };
}

function request(input: Partial<EnvoyRequestInput> & { key?: string }) {
  const headers = { ...(input.headers ?? {}) };
  if (input.key !== undefined) headers.authorization = `Bearer ${input.key}`;
  return buildEnvoyCheckRequest({ method: "GET", path: "/v1/items", sourceAddress: "10.1.2.3", ...input, headers });
}

/** Everything an event carries, as text, to search for a secret. */
function eventText(record: UsageRecord): string {
  return JSON.stringify(record) + toJsonString(UsageEventSchema, fromBinary(UsageEventSchema, encodeUsageRecord(record)));
}

describe("usage event", () => {
  it("allowed request carries key, API and route", () => {
    const issued = issueKey({ ownerId: "org_acme" });
    const { handler, records, clock } = createMeteredHandler({ keys: [issued] });

    handler(request({ key: issued.key, method: "POST", path: "/v1/items/7", headers: { "x-request-id": "req-1" }, contextExtensions: { "tollgate.scope": "read", "tollgate.cost": "3" } }));

    expect(records).toEqual([
      {
        timeMs: clock.wallMs(),
        apiId: "api_payments",
        keyId: "key_test1",
        ownerId: "org_acme",
        method: "POST",
        path: "/v1/items/7",
        scopes: ["read"],
        allowed: true,
        reason: "ok",
        status: 200,
        cost: 3,
        shadowExceeded: false,
        overage: false,
        overageCost: 0,
        clientAddress: "10.1.2.3",
        userAgent: "",
        requestId: "req-1",
      },
    ]);
  });

  it("query string stripped from path", () => {
    const issued = issueKey();
    const { handler, records } = createMeteredHandler({ keys: [issued], keyQueryParameter: "api_key" });

    handler(request({ path: `/v1/items?api_key=${issued.key}&page=2` }));

    expect(records[0]!.path).toBe("/v1/items");
    expect(records[0]!.reason).toBe("ok");
  });

  it.each([
    ["Authorization header", (key: string) => request({ key })],
    ["x-api-key header", (key: string) => request({ headers: { "x-api-key": key } })],
    ["query parameter", (key: string) => request({ path: `/v1/items?api_key=${key}` })],
    ["encoded query in the path", (key: string) => request({ path: `/v1/items%3Fapi_key=${key}`, key })],
    ["path parameter", (key: string) => request({ path: `/v1/items;api_key=${key}`, key })],
    ["user agent", (key: string) => request({ headers: { "user-agent": `bot ${key}` }, key })],
  ])("no key anywhere in event: %s", (_case, makeRequest) => {
    const active = issueKey();
    const revoked = issueKey({ id: "key_revoked", revokedAtMs: START_WALL_MS - 1 });
    const unknown = issueKey();
    const { handler, records } = createMeteredHandler({ keys: [active, revoked], keyQueryParameter: "api_key" });

    for (const { key } of [active, revoked, unknown]) handler(makeRequest(key));

    expect(records.map((record) => record.reason)).toEqual(["ok", "revoked_key", "unknown_key"]);
    for (const [index, { key }] of [active, revoked, unknown].entries()) {
      expect(eventText(records[index]!)).not.toContain(key);
      // The random part alone, in case something stripped the prefix.
      expect(eventText(records[index]!)).not.toContain(key.slice(3, 20));
    }
  });

  it("unknown key names reason and client but no key", () => {
    const { handler, records } = createMeteredHandler({ keys: [issueKey()] });

    handler(request({ key: issueKey().key, contextExtensions: { "tollgate.api": "payments" } }));

    expect(records[0]).toMatchObject({ reason: "unknown_key", status: 401, allowed: false, keyId: "", ownerId: "", clientAddress: "10.1.2.3", cost: 0 });
    expect(records[0]!.apiId).toBe("api_payments");
  });

  it("route API unknown to the replica leaves API id empty", () => {
    const { handler, records } = createMeteredHandler();

    handler(request({ contextExtensions: { "tollgate.api": "unheard-of" } }));
    handler(request({}));

    expect(records.map((record) => [record.reason, record.apiId])).toEqual([
      ["missing_key", ""],
      ["missing_key", ""],
    ]);
  });

  it.each<[string, number, string | undefined, string]>([
    ["no hops uses the peer", 0, "203.0.113.9, 198.51.100.1", "10.1.2.3"],
    ["one hop takes the last entry", 1, "203.0.113.9, 198.51.100.1", "198.51.100.1"],
    ["two hops take the second from right", 2, "192.0.2.77,203.0.113.9, 198.51.100.1", "203.0.113.9"],
    ["more hops than entries use the peer", 3, "203.0.113.9, 198.51.100.1", "10.1.2.3"],
    ["hops without the header use the peer", 1, undefined, "10.1.2.3"],
    ["an empty entry uses the peer", 1, "203.0.113.9, ", "10.1.2.3"],
  ])("client address: %s", (_case, trustedProxyHops, forwardedFor, expected) => {
    const { handler, records } = createMeteredHandler({ trustedProxyHops });

    handler(request({ headers: forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor } }));

    expect(records[0]!.clientAddress).toBe(expected);
  });

  it("user agent cut to 256 characters", () => {
    const { handler, records } = createMeteredHandler();

    handler(request({ headers: { "user-agent": "a".repeat(1000) } }));
    handler(request({ headers: { "user-agent": "curl/8.5.0" } }));

    expect(records[0]!.userAgent).toBe("a".repeat(256));
    expect(records[1]!.userAgent).toBe("curl/8.5.0");
  });

  it("invalid request still recorded with client", () => {
    const { handler, records } = createMeteredHandler();

    handler(request({ headers: { "x-request-id": "req-bad", "user-agent": "probe" }, contextExtensions: { "tollgate.cost": "lots" } }));
    handler(null);

    expect(records[0]).toMatchObject({ reason: "invalid_request", status: 400, allowed: false, clientAddress: "10.1.2.3", userAgent: "probe", requestId: "req-bad", path: "", method: "" });
    expect(records[1]).toMatchObject({ reason: "invalid_request", status: 400, clientAddress: "", requestId: "" });
  });

  it("internal error recorded with client", () => {
    const issued = issueKey();
    const failingLimiter = new RateLimiter();
    failingLimiter.admit = () => {
      throw new Error("limiter broken");
    };
    const { handler, records } = createMeteredHandler({ keys: [issued], limiter: failingLimiter });

    handler(request({ key: issued.key, headers: { "x-request-id": "req-err" } }));

    expect(records[0]).toMatchObject({ reason: "internal_error", status: 503, clientAddress: "10.1.2.3", requestId: "req-err", keyId: "" });
  });

  it("not ready recorded as a denial", () => {
    const { handler, records } = createMeteredHandler({ ready: false });

    handler(request({ key: issueKey().key }));

    expect(records[0]).toMatchObject({ reason: "not_ready", status: 503, allowed: false });
  });

  it("rate-limited denial costs nothing", () => {
    const issued = issueKey({ tiers: [tier(1, 60_000)] });
    const { handler, records } = createMeteredHandler({ keys: [issued] });

    handler(request({ key: issued.key, contextExtensions: { "tollgate.cost": "1" } }));
    handler(request({ key: issued.key, contextExtensions: { "tollgate.cost": "1" } }));

    expect(records.map((record) => [record.reason, record.status, record.cost])).toEqual([
      ["ok", 200, 1],
      ["rate_limited", 429, 0],
    ]);
  });

  it("shadow and overage tiers flagged", () => {
    const overageTier = { limit: 1, windowMs: 60_000, mode: "overage" } as unknown as Tier;
    const shadowKey = issueKey({ id: "key_shadow", tiers: [tier(1, 60_000, "shadow")] });
    const overageKey = issueKey({ id: "key_overage", tiers: [overageTier] });
    const { handler, records } = createMeteredHandler({ keys: [shadowKey, overageKey] });

    for (const key of [shadowKey.key, shadowKey.key, overageKey.key, overageKey.key]) handler(request({ key }));

    expect(records.map((record) => [record.keyId, record.reason, record.shadowExceeded, record.overage])).toEqual([
      ["key_shadow", "ok", false, false],
      ["key_shadow", "ok", true, false],
      ["key_overage", "ok", false, false],
      ["key_overage", "ok", false, true],
    ]);
  });

  it("overage cost counts only units past the quota", () => {
    const issued = issueKey({ tiers: [tier(3, 30 * 86_400_000, "overage")] });
    const { handler, records } = createMeteredHandler({ keys: [issued] });

    for (const cost of [2, 2, 2, 2, 2, 1, 1]) handler(request({ key: issued.key, contextExtensions: { "tollgate.cost": String(cost) } }));

    // The second request takes the last included unit and one past it.
    expect(records.map((record) => record.overageCost)).toEqual([0, 1, 2, 2, 2, 1, 1]);
    expect(records.map((record) => record.overage)).toEqual([false, true, true, true, true, true, true]);
    expect(records.map((record) => toUsageEvent(record).overageCost)).toEqual([0n, 1n, 2n, 2n, 2n, 1n, 1n]);
  });

  it("denial beside an exceeded overage tier has no overage cost", () => {
    const issued = issueKey({ tiers: [tier(1, 60_000, "overage"), tier(2, 60_000)] });
    const { handler, records } = createMeteredHandler({ keys: [issued] });

    for (let i = 0; i < 3; i++) handler(request({ key: issued.key }));

    expect(records.map((record) => [record.reason, record.cost, record.overage, record.overageCost])).toEqual([
      ["ok", 1, false, 0],
      ["ok", 1, true, 1],
      ["rate_limited", 0, true, 0],
    ]);
  });

  it("converts to the wire message", () => {
    const record: UsageRecord = {
      timeMs: START_WALL_MS,
      apiId: "api_1",
      keyId: "key_1",
      ownerId: "org_1",
      method: "GET",
      path: "/v1",
      scopes: ["read", "write"],
      allowed: false,
      reason: "rate_limited",
      status: 429,
      cost: 0,
      shadowExceeded: true,
      overage: false,
      overageCost: 0,
      clientAddress: "::1",
      userAgent: "ua",
      requestId: "req",
    };

    const event = toUsageEvent(record, 42);

    expect(event).toMatchObject({ sequence: 42n, timeMs: BigInt(START_WALL_MS), decision: Decision.DENY, status: 429, cost: 0n, scopes: ["read", "write"], shadowExceeded: true });
    expect(fromBinary(UsageEventSchema, encodeUsageRecord(record))).toEqual(toUsageEvent(record, 0));
  });
});
