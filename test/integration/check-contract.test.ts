import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { storePath } from "../../src/config/sidecar-config.js";
import { CheckRequestSchema, CheckResponseSchema, type CheckResponse, type OkHttpResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { generateKey } from "../../src/keys/key-format.js";
import type { ApiRecord } from "../../src/keys/records.js";
import { CHECK_PATH, protobufMethod } from "../../src/sidecar/grpc-server.js";
import {
  clientHeadersOf,
  httpStatusOf,
  problemOf,
  reasonOf,
  startSidecarHarness,
  upstreamHeadersOf,
  type SidecarHarness,
} from "../helpers/sidecar-harness.js";

let harness: SidecarHarness;
let api: ApiRecord;
let secret: string;
let keyId: string;

beforeEach(async () => {
  harness = await startSidecarHarness();
  api = harness.store.createApi("shop", "shop");
  harness.store.setPlan(api.id, "free", [
    { limit: 3, windowMs: 1_000, mode: "reject" },
    { limit: 10, windowMs: 60_000, mode: "reject" },
    { limit: 2, windowMs: 3_600_000, mode: "shadow" },
  ]);
  const created = harness.store.createKey({ apiId: api.id, ownerId: "acme", scopes: ["read"] });
  secret = created.secret;
  keyId = created.key.id;
});

afterEach(async () => {
  await harness.close();
});

function expectDenied(response: CheckResponse, status: number, reason: string): void {
  expect(response.httpResponse.case).toBe("deniedResponse");
  expect(response.status?.code).not.toBe(0);
  expect(httpStatusOf(response)).toBe(status);
  expect(reasonOf(response)).toBe(reason);
  expect(problemOf(response).reason).toBe(reason);
}

/** Returns the ok_response, failing the test when the request was denied. */
function okResponseOf(response: CheckResponse) {
  expect(response.httpResponse.case).toBe("okResponse");
  return response.httpResponse.value as OkHttpResponse;
}

function headerOptionsOf(response: CheckResponse) {
  const value = response.httpResponse.value;
  if (!value) return [];
  return "responseHeadersToAdd" in value ? [...value.headers, ...value.responseHeadersToAdd] : value.headers;
}

describe("credential", () => {
  it.each([
    ["Bearer KEY"],
    ["bearer KEY"],
    ["BEARER    KEY  "],
    ["  Bearer\tKEY"],
  ])("accepts Authorization %j", async (template) => {
    const response = await harness.check({ headers: { authorization: template.replace("KEY", secret) } });
    expect(httpStatusOf(response)).toBe(200);
  });

  it("accepts x-api-key and removes it upstream", async () => {
    const response = await harness.check({ headers: { "x-api-key": secret } });
    expect(httpStatusOf(response)).toBe(200);
    expect(okResponseOf(response).headersToRemove).toContain("x-api-key");
  });

  it("removes the Authorization header upstream", async () => {
    const response = await harness.check({ key: secret });
    expect(okResponseOf(response).headersToRemove).toContain("authorization");
  });

  it("ignores the query parameter by default", async () => {
    const response = await harness.check({ path: `/v1/hello?api_key=${secret}` });
    expectDenied(response, 401, "missing_key");
  });

  it("denies two different keys", async () => {
    const other = harness.store.createKey({ apiId: api.id }).secret;
    const response = await harness.check({ key: secret, headers: { "x-api-key": other } });
    expectDenied(response, 401, "ambiguous_key");
  });

  it("ignores empty parts of a joined header", async () => {
    const response = await harness.check({ key: secret, headers: { "x-api-key": " , " } });
    expect(httpStatusOf(response)).toBe(200);
  });

  it("accepts the same key in two headers", async () => {
    const response = await harness.check({ key: secret, headers: { "x-api-key": secret } });
    expect(httpStatusOf(response)).toBe(200);
  });
});

describe("query parameter credential", () => {
  let queryHarness: SidecarHarness;
  afterEach(async () => queryHarness?.close());

  it("accepts the key in the configured parameter and removes it", async () => {
    queryHarness = await startSidecarHarness({ keyQueryParam: "api_key" });
    const queryApi = queryHarness.store.createApi("shop", "shop");
    const querySecret = queryHarness.store.createKey({ apiId: queryApi.id }).secret;

    const response = await queryHarness.check({ path: `/v1/hello?a=1&api_key=${querySecret}` });
    expect(httpStatusOf(response)).toBe(200);
    expect(okResponseOf(response).queryParametersToRemove).toEqual(["api_key"]);
  });
});

describe("denial reasons in order", () => {
  it("answers missing_key with WWW-Authenticate", async () => {
    const response = await harness.check({});
    expectDenied(response, 401, "missing_key");
    expect(clientHeadersOf(response)["www-authenticate"]).toMatch(/^Bearer realm="tollgate"$/);
  });

  it("answers malformed_key for a bad checksum", async () => {
    const last = secret.at(-1) === "a" ? "b" : "a";
    const response = await harness.check({ key: secret.slice(0, -1) + last });
    expectDenied(response, 401, "malformed_key");
    expect(clientHeadersOf(response)["www-authenticate"]).toContain('error="invalid_token"');
  });

  it("answers unknown_key for a well-formed stranger", async () => {
    expectDenied(await harness.check({ key: generateKey("shop") }), 401, "unknown_key");
  });

  it("answers unknown_key for a key of another API", async () => {
    harness.store.createApi("billing", "bill");
    const response = await harness.check({ key: secret, contextExtensions: { "tollgate.api": "billing" } });
    expectDenied(response, 401, "unknown_key");
  });

  it("answers revoked_key before expired_key", async () => {
    const expiring = harness.store.createKey({ apiId: api.id, expiresAtMs: harness.clock.wallMs() + 1_000 });
    harness.store.revokeKey(expiring.key.id);
    harness.clock.advance(2_000);
    expectDenied(await harness.check({ key: expiring.secret }), 401, "revoked_key");
  });

  it("answers expired_key once the expiry passes", async () => {
    const expiring = harness.store.createKey({ apiId: api.id, expiresAtMs: harness.clock.wallMs() + 1_000 });
    expect(httpStatusOf(await harness.check({ key: expiring.secret }))).toBe(200);
    harness.clock.advance(1_000);
    expectDenied(await harness.check({ key: expiring.secret }), 401, "expired_key");
  });

  it("answers disabled_key with 403 and no WWW-Authenticate", async () => {
    harness.store.setKeyEnabled(keyId, false);
    const response = await harness.check({ key: secret });
    expectDenied(response, 403, "disabled_key");
    expect(clientHeadersOf(response)["www-authenticate"]).toBeUndefined();
  });

  it("answers insufficient_scope for a missing route scope", async () => {
    expectDenied(await harness.check({ key: secret, contextExtensions: { "tollgate.scope": "write" } }), 403, "insufficient_scope");
    expect(httpStatusOf(await harness.check({ key: secret, contextExtensions: { "tollgate.scope": "read" } }))).toBe(200);
  });

  it("enforces a cached key's revocation within a second", async () => {
    // No plan, so that polling is never rate limited.
    const unlimited = harness.store.createKey({ apiId: api.id, planId: null });
    expect(httpStatusOf(await harness.check({ key: unlimited.secret }))).toBe(200);
    harness.store.revokeKey(unlimited.key.id);

    const revokedAtMs = Date.now();
    let response = await harness.check({ key: unlimited.secret });
    while (httpStatusOf(response) === 200 && Date.now() - revokedAtMs < 1_000) response = await harness.check({ key: unlimited.secret });
    expectDenied(response, 401, "revoked_key");
    expect(Date.now() - revokedAtMs).toBeLessThan(1_000);
  });
});

describe("rate limits", () => {
  it("answers 429 with Retry-After once a reject tier is full", async () => {
    for (let i = 0; i < 3; i++) expect(httpStatusOf(await harness.check({ key: secret }))).toBe(200);
    const response = await harness.check({ key: secret });
    expectDenied(response, 429, "rate_limited");
    const headers = clientHeadersOf(response);
    expect(Number(headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(headers["retry-after"])).toBeLessThanOrEqual(1);
    expect(problemOf(response).retry_after).toBe(Number(headers["retry-after"]));
  });

  it("consumes nothing for a denied request", async () => {
    for (let i = 0; i < 3; i++) await harness.check({ key: secret });
    for (let i = 0; i < 5; i++) expectDenied(await harness.check({ key: secret }), 429, "rate_limited");
    harness.clock.advance(2_000);
    // Three admitted so far: seven of the minute tier remain, though eight requests were sent.
    const response = await harness.check({ key: secret });
    expect(clientHeadersOf(response).ratelimit).toContain('"10/1m";r=6;');
  });

  it("admits again after Retry-After seconds", async () => {
    for (let i = 0; i < 3; i++) await harness.check({ key: secret });
    const retryAfter = Number(clientHeadersOf(await harness.check({ key: secret }))["retry-after"]);
    harness.clock.advance(retryAfter * 1_000);
    expect(httpStatusOf(await harness.check({ key: secret }))).toBe(200);
  });

  it("reports shadow tiers without enforcing them", async () => {
    for (let i = 0; i < 3; i++) {
      expect(httpStatusOf(await harness.check({ key: secret }))).toBe(200);
      harness.clock.advance(1_000);
    }
    const response = await harness.check({ key: secret });
    expect(httpStatusOf(response)).toBe(200);
    expect(clientHeadersOf(response)["ratelimit-policy"]).toContain('"2/1h:shadow";q=2;w=3600');
    expect(response.dynamicMetadata?.shadow_exceeded).toBe(true);
    expect(harness.logLines.some((line) => line.msg === "check" && line.shadowExceeded === true)).toBe(true);
  });

  it("overage tier allows and marks requests", async () => {
    const plan = harness.store.setPlan(api.id, "metered", [{ limit: 1, windowMs: 60_000, mode: "overage" }]);
    const metered = harness.store.createKey({ apiId: api.id, planId: plan.id });

    const first = await harness.check({ key: metered.secret });
    const second = await harness.check({ key: metered.secret });

    expect(upstreamHeadersOf(first)["x-tollgate-overage"]).toBeUndefined();
    expect(first.dynamicMetadata?.overage).toBeUndefined();
    expect(httpStatusOf(second)).toBe(200);
    expect(upstreamHeadersOf(second)["x-tollgate-overage"]).toBe("true");
    expect(second.dynamicMetadata?.overage).toBe(true);
    expect(harness.logLines.filter((line) => line.msg === "check").map((line) => line.overage)).toEqual([undefined, true]);
  });

  it("sends rate-limit headers to the client on allow", async () => {
    const headers = clientHeadersOf(await harness.check({ key: secret }));
    expect(headers["ratelimit-policy"]).toBe('"3/1s";q=3;w=1, "10/1m";q=10;w=60, "2/1h:shadow";q=2;w=3600');
    expect(headers.ratelimit).toMatch(/^"3\/1s";r=2;t=1, "10\/1m";r=9;t=\d+, "2\/1h:shadow";r=1;t=\d+$/);
    expect(headers["x-ratelimit-limit"]).toBe("3");
    expect(headers["x-ratelimit-remaining"]).toBe("2");
    expect(headers["x-ratelimit-reset"]).toBe("1");
    expect(headers["retry-after"]).toBeUndefined();
  });

  it("charges the route cost", async () => {
    const response = await harness.check({ key: secret, contextExtensions: { "tollgate.cost": "3" } });
    expect(clientHeadersOf(response)["x-ratelimit-remaining"]).toBe("0");
    expectDenied(await harness.check({ key: secret }), 429, "rate_limited");
  });

  it("creates no counter for keys that fail verification", async () => {
    const counters = async () => (await harness.sidecar.metrics.registry.getSingleMetric("tollgate_ratelimit_counters")!.get()).values[0]!.value;
    for (let i = 0; i < 50; i++) await harness.check({ key: generateKey("shop") });
    for (let i = 0; i < 50; i++) await harness.check({ key: `shop_${i}` });
    harness.store.revokeKey(harness.store.createKey({ apiId: api.id }).key.id);
    expect(await counters()).toBe(0);

    await harness.check({ key: secret });
    // One counter per window length of the plan: 1s, 1m and 1h.
    expect(await counters()).toBe(3);
  });
});

describe("allowed answer", () => {
  it("overwrites identity headers and strips spoofed ones", async () => {
    const response = await harness.check({
      key: secret,
      headers: { "x-tollgate-key-id": "key_forged", "x-tollgate-owner-id": "mallory", "x-tollgate-admin": "yes" },
    });
    const upstream = upstreamHeadersOf(response);
    expect(upstream["x-tollgate-key-id"]).toBe(keyId);
    expect(upstream["x-tollgate-owner-id"]).toBe("acme");
    expect(upstream["x-tollgate-plan"]).toBe("free");
    const removed = okResponseOf(response).headersToRemove;
    expect(removed).toContain("x-tollgate-admin");
    expect(removed).not.toContain("x-tollgate-key-id");
  });

  it("strips a spoofed owner when the key has none", async () => {
    const ownerless = harness.store.createKey({ apiId: api.id });
    const response = await harness.check({ key: ownerless.secret, headers: { "x-tollgate-owner-id": "mallory" } });
    expect(upstreamHeadersOf(response)["x-tollgate-owner-id"]).toBeUndefined();
    expect(okResponseOf(response).headersToRemove).toContain("x-tollgate-owner-id");
  });

  it("sets append explicitly on every header option", async () => {
    const answers = [await harness.check({ key: secret }), await harness.check({}), await harness.check({ key: generateKey("shop") })];
    for (const response of answers) {
      const options = headerOptionsOf(response);
      expect(options.length).toBeGreaterThan(0);
      for (const option of options) expect(option.append).toBe(false);
    }
  });

  it("puts key id, api, plan and decision in dynamic metadata", async () => {
    const response = await harness.check({ key: secret });
    expect(response.dynamicMetadata).toMatchObject({ key_id: keyId, api: "shop", plan: "free", decision: "allow", reason: "ok" });
  });
});

describe("malformed requests", () => {
  it("denies a request without attributes with 400", async () => {
    const response = await harness.client.check(create(CheckRequestSchema, {}));
    expectDenied(response, 400, "invalid_request");
  });

  it("denies a request without headers with 400", async () => {
    const response = await harness.client.check(create(CheckRequestSchema, { attributes: { request: { http: { method: "GET", path: "/" } } } }));
    expectDenied(response, 400, "invalid_request");
  });

  it("denies a bad tollgate.cost with 400", async () => {
    expectDenied(await harness.check({ key: secret, contextExtensions: { "tollgate.cost": "-1" } }), 400, "invalid_request");
  });

  it("denies bytes that are not a protobuf message", async () => {
    const raw = new grpc.Client(`127.0.0.1:${harness.sidecar.grpcPort}`, grpc.credentials.createInsecure());
    const method = protobufMethod(CHECK_PATH, CheckRequestSchema, CheckResponseSchema);
    const response = await new Promise<CheckResponse>((resolve, reject) =>
      raw.makeUnaryRequest(CHECK_PATH, (bytes: Buffer) => bytes, method.responseDeserialize, Buffer.from([0x0a, 0xff, 0xff, 0xff]), (error, value) =>
        error ? reject(error) : resolve(value!),
      ),
    );
    raw.close();
    expectDenied(response, 400, "invalid_request");
    expect(harness.logLines.some((line) => line.msg === "check" && line.reason === "invalid_request")).toBe(true);
    // The sidecar keeps serving.
    expect(httpStatusOf(await harness.check({ key: secret }))).toBe(200);
  });
});

describe("secrets", () => {
  it("keeps raw keys out of logs, answers and the store file", async () => {
    const unknown = generateKey("shop");
    const answers = [
      await harness.check({ key: secret }),
      await harness.check({ key: unknown }),
      await harness.check({ key: secret, headers: { "x-api-key": unknown } }),
      await harness.check({ key: `${secret}x` }),
    ];
    for (const response of answers) {
      const wire = Buffer.from(toBinary(CheckResponseSchema, response)).toString("latin1");
      expect(wire).not.toContain(secret);
      expect(wire).not.toContain(unknown);
    }
    expect(harness.logText()).not.toContain(secret);
    expect(harness.logText()).not.toContain(unknown);
    expect(readFileSync(storePath(harness.dataDir)).toString("latin1")).not.toContain(secret);
  });

  it("logs one debug line per decision with its reason", async () => {
    await harness.check({ key: secret, headers: { "x-request-id": "req-1" } });
    await harness.check({ headers: { "x-request-id": "req-2" } });
    const checks = harness.logLines.filter((line) => line.msg === "check");
    expect(checks).toHaveLength(2);
    expect(checks[0]).toMatchObject({ decision: "allow", reason: "ok", keyId, requestId: "req-1", path: "/v1/hello" });
    expect(checks[1]).toMatchObject({ decision: "deny", reason: "missing_key", status: 401, requestId: "req-2" });
  });
});
