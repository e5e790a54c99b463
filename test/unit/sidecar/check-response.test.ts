import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import type { HeaderValueOption } from "../../../src/gen/envoy/config/core/v3/base_pb.js";
import { CheckRequestSchema, CheckResponseSchema, type CheckResponse } from "../../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import type { KeyGrant } from "../../../src/keys/records.js";
import { parseCheckRequest } from "../../../src/sidecar/check-request.js";
import { buildCheckResponse, internalErrorResponse, invalidRequestResponse } from "../../../src/sidecar/check-response.js";
import { extractCredential } from "../../../src/sidecar/credential.js";
import { decide } from "../../../src/sidecar/decide.js";
import { REASONS } from "../../../src/sidecar/reasons.js";
import { START_WALL_MS, createFakeContext, issueKey, tier } from "../fakes.js";

const SECOND = 1_000;
const MINUTE = 60_000;

interface CheckScenario {
  /** Request headers, built from the issued key. */
  headers: (key: string) => Record<string, string>;
  path?: (key: string) => string;
  extensions?: Record<string, string>;
  grant?: Partial<KeyGrant>;
  ready?: boolean;
  queryParameter?: string;
  /** Requests the key already made in this second. */
  spent?: number;
}

/**
 * Runs one request through parsing, credential extraction, the decision and
 * response building, the way the sidecar composes them, against an in-memory key.
 */
function runCheck(scenario: CheckScenario) {
  const issued = issueKey({ tiers: [tier(5, SECOND), tier(100, MINUTE)], ...scenario.grant });
  const context = createFakeContext([issued], { ready: scenario.ready });
  for (let request = 0; request < (scenario.spent ?? 0); request++) {
    context.limiter.admit(issued.grant.id, issued.grant.tiers, 1, context.clock.monotonicMs());
  }

  const path = scenario.path?.(issued.key) ?? "/v1/items";
  // Envoy's header map includes the pseudo-headers.
  const headers = { ":authority": "api.example", ":method": "GET", ":path": path, ...scenario.headers(issued.key) };
  const request = create(CheckRequestSchema, {
    attributes: { request: { http: { method: "GET", path, headers } }, contextExtensions: scenario.extensions ?? {} },
  });
  const parsed = parseCheckRequest(request);
  if (!parsed.ok) throw new Error(`test request invalid: ${parsed.problem}`);

  const { input } = parsed;
  const credential = extractCredential(input.headers, input.path, { queryParameter: scenario.queryParameter });
  const decision = decide(credential, input.route, context);
  const response = buildCheckResponse(decision, {
    headerNames: input.headers.keys(),
    credentialSources: credential.kind === "present" ? credential.sources : [],
    queryParameter: scenario.queryParameter,
    requestId: input.requestId,
  });
  return { response, decision, key: issued.key, grant: issued.grant };
}

function okOf(response: CheckResponse) {
  if (response.httpResponse.case !== "okResponse") throw new Error(`expected ok_response, got ${response.httpResponse.case}`);
  return response.httpResponse.value;
}

function deniedOf(response: CheckResponse) {
  if (response.httpResponse.case !== "deniedResponse") throw new Error(`expected denied_response, got ${response.httpResponse.case}`);
  return response.httpResponse.value;
}

function valuesOf(options: readonly HeaderValueOption[]): Record<string, string> {
  return Object.fromEntries(options.map((option) => [option.header?.key ?? "", option.header?.value ?? ""]));
}

function namesOf(options: readonly HeaderValueOption[]): string[] {
  return options.map((option) => option.header?.key ?? "");
}

/** Encodes and decodes a response, then returns every header option it carries. */
function headerOptionsOnWire(response: CheckResponse): HeaderValueOption[] {
  const decoded = fromBinary(CheckResponseSchema, toBinary(CheckResponseSchema, response));
  const { value } = decoded.httpResponse;
  if (!value) return [];
  return "responseHeadersToAdd" in value ? [...value.headers, ...value.responseHeadersToAdd] : value.headers;
}

/**
 * Computes the path Envoy sends upstream after `query_parameters_to_remove`. Envoy's
 * ext_authz filter splits the query with Http::Utility::parseQueryString,
 * which does not percent-decode, so a name is removed only when it matches
 * the name as the client wrote it (envoyproxy/envoy,
 * source/extensions/filters/http/ext_authz/ext_authz.cc and
 * source/common/http/utility.cc).
 */
function forwardedPath(path: string, namesToRemove: readonly string[]): string {
  const start = path.indexOf("?");
  if (start < 0) return path;
  const keptPairs = path
    .slice(start + 1)
    .split("&")
    .filter((pair) => !namesToRemove.includes(pair.split("=", 1)[0]!));
  return keptPairs.length > 0 ? `${path.slice(0, start)}?${keptPairs.join("&")}` : path.slice(0, start);
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe("buildCheckResponse allowed", () => {
  it("allowed response has status 0", () => {
    const { response } = runCheck({ headers: bearer });

    expect(response.status?.code).toBe(0);
    expect(response.httpResponse.case).toBe("okResponse");
  });

  it("identity headers sent upstream", () => {
    const { response, grant } = runCheck({ headers: bearer });

    expect(valuesOf(okOf(response).headers)).toEqual({
      "x-tollgate-key-id": grant.id,
      "x-tollgate-api": "payments",
      "x-tollgate-owner-id": "org_acme",
      "x-tollgate-plan": "basic",
    });
  });

  it("client identity headers overwritten", () => {
    const { response, grant } = runCheck({
      headers: (key) => ({ ...bearer(key), "x-tollgate-key-id": "key_forged", "x-tollgate-plan": "enterprise" }),
    });
    const ok = okOf(response);

    expect(valuesOf(ok.headers)["x-tollgate-key-id"]).toBe(grant.id);
    expect(valuesOf(ok.headers)["x-tollgate-plan"]).toBe("basic");
    expect(ok.headers.map((option) => option.append)).toEqual(ok.headers.map(() => false));
    // Removing a header that the response also sets could drop the sidecar's own value.
    expect(ok.headersToRemove).not.toContain("x-tollgate-key-id");
    expect(ok.headersToRemove).not.toContain("x-tollgate-plan");
  });

  it("spoofed identity headers removed", () => {
    const { response } = runCheck({
      headers: (key) => ({ ...bearer(key), "x-tollgate-admin": "true", "x-tollgate-owner-id": "org_evil", "x-tollgate-overage": "1" }),
      grant: { ownerId: null },
    });

    expect(okOf(response).headersToRemove).toEqual(expect.arrayContaining(["x-tollgate-admin", "x-tollgate-owner-id", "x-tollgate-overage"]));
    expect(namesOf(okOf(response).headers)).not.toContain("x-tollgate-owner-id");
  });

  it("bearer credential header removed", () => {
    const { response } = runCheck({ headers: bearer });

    expect(okOf(response).headersToRemove).toEqual(["authorization"]);
    expect(okOf(response).queryParametersToRemove).toEqual([]);
  });

  it("x-api-key header removed", () => {
    const { response } = runCheck({ headers: (key) => ({ "x-api-key": key, authorization: "Basic dXNlcjpwYXNz" }) });

    // The Basic credential belongs to the upstream and stays.
    expect(okOf(response).headersToRemove).toEqual(["x-api-key"]);
  });

  it("both credential headers removed", () => {
    const { response } = runCheck({ headers: (key) => ({ ...bearer(key), "x-api-key": key }) });

    expect([...okOf(response).headersToRemove].sort()).toEqual(["authorization", "x-api-key"]);
  });

  it("query key parameter removed", () => {
    const { response } = runCheck({ headers: () => ({ accept: "*/*" }), path: (key) => `/v1/items?page=2&api_key=${key}`, queryParameter: "api_key" });

    expect(okOf(response).queryParametersToRemove).toEqual(["api_key"]);
    expect(okOf(response).headersToRemove).toEqual([]);
  });

  it("query key not forwarded upstream", () => {
    const path = (key: string) => `/v1/items?page=2&api_key=${key}`;
    const { response, key } = runCheck({ headers: () => ({ accept: "*/*" }), path, queryParameter: "api_key" });

    expect(forwardedPath(path(key), okOf(response).queryParametersToRemove)).toBe("/v1/items?page=2");
  });

  it("encoded query key not forwarded", () => {
    const path = (key: string) => `/v1/items?page=2&api%5Fkey=${key}`;
    const { response, key } = runCheck({ headers: () => ({ accept: "*/*" }), path, queryParameter: "api_key" });
    // A denial forwards nothing, and an allowed request must lose the parameter that carried the key.
    const upstreamPath = response.httpResponse.case === "okResponse" ? forwardedPath(path(key), response.httpResponse.value.queryParametersToRemove) : "";

    expect(upstreamPath).not.toContain(key);
  });

  it("header key leaves query alone", () => {
    const { response } = runCheck({ headers: bearer, path: () => "/v1/items?page=2", queryParameter: "api_key" });

    expect(okOf(response).queryParametersToRemove).toEqual([]);
  });

  it("rate-limit headers sent to client", () => {
    const { response } = runCheck({ headers: bearer });

    expect(valuesOf(okOf(response).responseHeadersToAdd)).toMatchObject({
      "ratelimit-policy": '"5/1s";q=5;w=1, "100/1m";q=100;w=60',
      "x-ratelimit-limit": "5",
      "x-ratelimit-remaining": "4",
    });
  });

  it("allowed header options append false on wire", () => {
    const { response } = runCheck({ headers: (key) => ({ ...bearer(key), "x-tollgate-key-id": "key_forged" }) });
    const options = headerOptionsOnWire(response);

    expect(options.length).toBeGreaterThan(4);
    expect(options.map((option) => option.append)).toEqual(options.map(() => false));
  });

  it("allowed metadata names key", () => {
    const { response, grant } = runCheck({ headers: bearer });

    expect(response.dynamicMetadata).toEqual({
      decision: "allow",
      reason: "ok",
      key_id: grant.id,
      api: "payments",
      plan: "basic",
      owner_id: "org_acme",
    });
  });

  it("shadow excess flagged in metadata", () => {
    const { response } = runCheck({ headers: bearer, grant: { tiers: [tier(1, SECOND, "shadow")] }, spent: 1 });

    expect(response.status?.code).toBe(0);
    expect(response.dynamicMetadata).toMatchObject({ decision: "allow", shadow_exceeded: true });
  });
});

const DENIALS: [string, CheckScenario, keyof typeof REASONS][] = [
  ["store not loaded", { headers: bearer, ready: false }, "not_ready"],
  ["no key", { headers: () => ({ accept: "*/*" }) }, "missing_key"],
  ["two keys", { headers: (key) => ({ ...bearer(key), "x-api-key": "tg_other" }) }, "ambiguous_key"],
  ["invalid character in key", { headers: (key) => bearer(`${key.slice(0, -1)}0`) }, "malformed_key"],
  ["key of another API", { headers: bearer, extensions: { "tollgate.api": "billing" } }, "unknown_key"],
  ["revoked key", { headers: bearer, grant: { revokedAtMs: START_WALL_MS - 1 } }, "revoked_key"],
  ["expired key", { headers: bearer, grant: { expiresAtMs: START_WALL_MS - 1 } }, "expired_key"],
  ["disabled key", { headers: bearer, grant: { enabled: false } }, "disabled_key"],
  ["scope missing", { headers: bearer, extensions: { "tollgate.scope": "admin" } }, "insufficient_scope"],
  ["limit used up", { headers: bearer, spent: 5 }, "rate_limited"],
];

describe("buildCheckResponse denied", () => {
  it.each(DENIALS)("%s denied with its status", (_case, scenario, reason) => {
    const { response } = runCheck(scenario);
    const denied = deniedOf(response);
    const status = REASONS[reason].status;

    expect(response.status?.code).not.toBe(0);
    expect(response.status?.message).toBe(reason);
    expect(denied.status?.code).toBe(status);
    expect(valuesOf(denied.headers)["content-type"]).toBe("application/problem+json");
    expect(JSON.parse(denied.body)).toMatchObject({ type: `urn:tollgate:problem:${reason}`, title: REASONS[reason].title, status, reason });
  });

  it.each(DENIALS)("%s: WWW-Authenticate only on 401", (_case, scenario, reason) => {
    const { response } = runCheck(scenario);
    const names = namesOf(deniedOf(response).headers);

    expect(names.includes("www-authenticate")).toBe(REASONS[reason].status === 401);
  });

  it.each(DENIALS)("%s: Retry-After only on 429 and 503", (_case, scenario, reason) => {
    const { response } = runCheck(scenario);
    const names = namesOf(deniedOf(response).headers);

    expect(names.includes("retry-after")).toBe([429, 503].includes(REASONS[reason].status));
  });

  it.each(DENIALS)("%s: header options append false", (_case, scenario) => {
    const options = headerOptionsOnWire(runCheck(scenario).response);

    expect(options.length).toBeGreaterThan(0);
    expect(options.map((option) => option.append)).toEqual(options.map(() => false));
  });

  it.each(DENIALS)("%s: body omits key", (_case, scenario) => {
    const { response, key } = runCheck(scenario);

    expect(deniedOf(response).body).not.toContain(key.slice(3, 27));
  });

  it("missing key challenge has no error", () => {
    const { response } = runCheck({ headers: () => ({}) });

    expect(valuesOf(deniedOf(response).headers)["www-authenticate"]).toBe('Bearer realm="tollgate"');
  });

  it("bad key challenge names invalid_token", () => {
    const { response } = runCheck({ headers: bearer, grant: { revokedAtMs: START_WALL_MS - 1 } });

    expect(valuesOf(deniedOf(response).headers)["www-authenticate"]).toBe(
      'Bearer realm="tollgate", error="invalid_token", error_description="revoked_key"',
    );
  });

  it("rate-limited response carries wait", () => {
    const { response } = runCheck({ headers: bearer, spent: 5 });
    const denied = deniedOf(response);
    const headers = valuesOf(denied.headers);
    const retryAfter = Number(headers["retry-after"]);

    expect(denied.status?.code).toBe(429);
    expect(retryAfter).toBe(1);
    expect(JSON.parse(denied.body).retry_after).toBe(retryAfter);
    expect(headers["x-ratelimit-limit"]).toBe("5");
    expect(headers["x-ratelimit-remaining"]).toBe("0");
  });

  it("denied metadata names reason and key", () => {
    const { response, grant } = runCheck({ headers: bearer, grant: { revokedAtMs: START_WALL_MS - 1 } });

    expect(response.dynamicMetadata).toMatchObject({ decision: "deny", reason: "revoked_key", key_id: grant.id });
  });

  it("metadata without key has no key id", () => {
    const { response } = runCheck({ headers: () => ({}) });

    expect(response.dynamicMetadata).toEqual({ decision: "deny", reason: "missing_key" });
  });

  it("request id echoed in body", () => {
    const { response } = runCheck({ headers: () => ({ "x-request-id": "req-42" }) });

    expect(JSON.parse(deniedOf(response).body).request_id).toBe("req-42");
  });
});

describe("invalidRequestResponse", () => {
  it("invalid request denied with 400", () => {
    const response = invalidRequestResponse("the check request has no headers", "req-1");
    const denied = deniedOf(response);
    const names = namesOf(denied.headers);

    expect(response.status?.code).not.toBe(0);
    expect(denied.status?.code).toBe(400);
    expect(JSON.parse(denied.body)).toMatchObject({ reason: "invalid_request", detail: "the check request has no headers", request_id: "req-1" });
    expect(names).not.toContain("www-authenticate");
    expect(names).not.toContain("retry-after");
    expect(response.dynamicMetadata).toEqual({ decision: "deny", reason: "invalid_request" });
  });
});

describe("internalErrorResponse", () => {
  it("internal error denied with 503", () => {
    const response = internalErrorResponse();
    const denied = deniedOf(response);

    expect(response.status?.code).not.toBe(0);
    expect(denied.status?.code).toBe(503);
    expect(valuesOf(denied.headers)["retry-after"]).toBe("1");
    expect(headerOptionsOnWire(response).map((option) => option.append)).toEqual(denied.headers.map(() => false));
  });
});
