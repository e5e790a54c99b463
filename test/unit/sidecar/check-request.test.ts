import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import type { AttributeContext_HttpRequestSchema } from "../../../src/gen/envoy/service/auth/v3/attribute_context_pb.js";
import { CheckRequestSchema } from "../../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { parseCheckRequest } from "../../../src/sidecar/check-request.js";

type CheckRequestInit = MessageInitShape<typeof CheckRequestSchema>;
type HttpRequestInit = MessageInitShape<typeof AttributeContext_HttpRequestSchema>;

const utf8 = new TextEncoder();

function httpRequest(http: HttpRequestInit, contextExtensions: Record<string, string> = {}) {
  return create(CheckRequestSchema, { attributes: { request: { http }, contextExtensions } });
}

/** Parses a request that is expected to be valid and returns what a decision reads. */
function inputOf(request: ReturnType<typeof httpRequest>) {
  const parsed = parseCheckRequest(request);
  if (!parsed.ok) throw new Error(`check request rejected: ${parsed.problem}`);
  return parsed.input;
}

function rawHeader(key: string, value: string) {
  return { key, rawValue: utf8.encode(value) };
}

describe("parseCheckRequest", () => {
  it.each<[string, CheckRequestInit]>([
    ["no attributes", {}],
    ["no request", { attributes: {} }],
    ["no HTTP request", { attributes: { request: {} } }],
    ["no headers", { attributes: { request: { http: { method: "GET", path: "/v1/items" } } } }],
    ["empty header map", { attributes: { request: { http: { method: "GET", path: "/", headerMap: { headers: [] } } } } }],
    ["no method or path", { attributes: { request: { http: { headers: { accept: "*/*" } } } } }],
    ["bad route cost", { attributes: { request: { http: { method: "GET", path: "/", headers: { a: "b" } } }, contextExtensions: { "tollgate.cost": "-1" } } }],
  ])("%s is invalid", (_case, init) => {
    const request = create(CheckRequestSchema, init);

    const parsed = parseCheckRequest(request);

    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? "" : parsed.problem).not.toBe("");
  });

  it("headers map read", () => {
    const parsed = parseCheckRequest(
      httpRequest({
        method: "POST",
        path: "/v1/items?page=2",
        headers: { authorization: "Bearer abc", "x-request-id": "req-1", ":authority": "api.example" },
      }),
    );

    expect(parsed).toEqual({
      ok: true,
      input: {
        method: "POST",
        path: "/v1/items?page=2",
        headers: new Map([
          ["authorization", "Bearer abc"],
          ["x-request-id", "req-1"],
          [":authority", "api.example"],
        ]),
        route: { api: undefined, scopes: [], cost: 1 },
        requestId: "req-1",
      },
    });
  });

  it("header_map raw values read like headers", () => {
    const fromMap = parseCheckRequest(
      httpRequest({ method: "GET", path: "/v1/items", headers: { authorization: "Bearer abc", "x-api-key": "k1" } }),
    );
    const fromRaw = parseCheckRequest(
      httpRequest({ method: "GET", path: "/v1/items", headerMap: { headers: [rawHeader("authorization", "Bearer abc"), rawHeader("x-api-key", "k1")] } }),
    );

    expect(fromRaw).toEqual(fromMap);
  });

  it("header_map names lower-cased", () => {
    const input = inputOf(
      httpRequest({ method: "GET", path: "/", headerMap: { headers: [rawHeader("X-API-Key", "k1"), rawHeader("X-Request-Id", "req-9")] } }),
    );

    expect([...input.headers]).toEqual([
      ["x-api-key", "k1"],
      ["x-request-id", "req-9"],
    ]);
    expect(input.requestId).toBe("req-9");
  });

  it("header_map repeats joined by comma", () => {
    const input = inputOf(
      httpRequest({ method: "GET", path: "/", headerMap: { headers: [rawHeader("x-api-key", "k1"), rawHeader("X-Api-Key", "k2")] } }),
    );

    expect(input.headers.get("x-api-key")).toBe("k1,k2");
  });

  it("header_map string value used without raw value", () => {
    const input = inputOf(httpRequest({ method: "GET", path: "/", headerMap: { headers: [{ key: "x-api-key", value: "k1" }] } }));

    expect(input.headers.get("x-api-key")).toBe("k1");
  });

  it("header_map non-UTF-8 bytes do not throw", () => {
    const request = httpRequest({ method: "GET", path: "/", headerMap: { headers: [{ key: "x-api-key", rawValue: new Uint8Array([0xff, 0xfe, 0x41]) }] } });

    const input = inputOf(request);

    expect(input.headers.get("x-api-key")).toBe("\uFFFD\uFFFDA");
  });

  it("pseudo-headers give method and path", () => {
    const input = inputOf(httpRequest({ headerMap: { headers: [rawHeader(":method", "DELETE"), rawHeader(":path", "/v1/items/7?x=1")] } }));

    expect(input.method).toBe("DELETE");
    expect(input.path).toBe("/v1/items/7?x=1");
  });

  it("route settings read from context extensions", () => {
    const input = inputOf(
      httpRequest(
        { method: "GET", path: "/", headers: { accept: "*/*" } },
        { "tollgate.api": "payments", "tollgate.scope": "read,write", "tollgate.cost": "0" },
      ),
    );

    expect(input.route).toEqual({ api: "payments", scopes: ["read", "write"], cost: 0 });
  });

  it("invalid request keeps request id", () => {
    const parsed = parseCheckRequest(
      httpRequest({ method: "GET", path: "/", headers: { "x-request-id": "req-5" } }, { "tollgate.cost": "lots" }),
    );

    expect(parsed).toMatchObject({ ok: false, requestId: "req-5" });
  });
});
