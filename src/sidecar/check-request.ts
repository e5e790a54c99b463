import type { CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { parseRouteSettings, type RouteSettings } from "./route.js";

/** The parts of Envoy's CheckRequest that a decision reads. */
export interface CheckInput {
  method: string;
  /** Path with its query string, as Envoy sends it. */
  path: string;
  /** Header names lower-cased, repeated headers joined by ",". */
  headers: Map<string, string>;
  route: RouteSettings;
  /** Envoy's x-request-id, for logs and problem bodies. */
  requestId?: string;
}

export type ParsedCheck = { ok: true; input: CheckInput } | { ok: false; problem: string; requestId?: string };

const utf8 = new TextDecoder();
const MAX_REQUEST_ID_LENGTH = 200;

/**
 * Reads a CheckRequest without trusting it: anything Envoy would never send
 * (no attributes, no HTTP request, no headers) is a problem to deny, not a
 * crash. Both header encodings are read: the `headers` map and, with
 * `encode_raw_headers`, the `header_map` list.
 */
export function parseCheckRequest(request: CheckRequest): ParsedCheck {
  const http = request.attributes?.request?.http;
  if (!http) return { ok: false, problem: "the check request has no HTTP request attributes" };

  const headers = readHeaders(http.headers, http.headerMap?.headers);
  // Bounded, because the id goes into every log line and problem body for this request.
  const requestId = headers.get("x-request-id")?.slice(0, MAX_REQUEST_ID_LENGTH);
  if (headers.size === 0) return { ok: false, problem: "the check request has no headers", requestId };

  const method = http.method || headers.get(":method") || "";
  const path = http.path || headers.get(":path") || "";
  if (!method || !path) return { ok: false, problem: "the check request has no method or path", requestId };

  const parsedRoute = parseRouteSettings(request.attributes?.contextExtensions ?? {});
  if (!parsedRoute.ok) return { ok: false, problem: parsedRoute.problem, requestId };

  return { ok: true, input: { method, path, headers, route: parsedRoute.route, requestId } };
}

function readHeaders(
  map: Readonly<Record<string, string>>,
  list: readonly { key: string; value: string; rawValue: Uint8Array }[] | undefined,
): Map<string, string> {
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(map)) headers.set(name.toLowerCase(), value);
  for (const entry of list ?? []) {
    const name = entry.key.toLowerCase();
    const value = entry.rawValue.length > 0 ? utf8.decode(entry.rawValue) : entry.value;
    const earlier = headers.get(name);
    headers.set(name, earlier === undefined ? value : `${earlier},${value}`);
  }
  return headers;
}
