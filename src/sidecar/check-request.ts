import type { CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { redactKeys } from "../keys/key-format.js";
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
  /** The client's IP address (see `readClientAddress`); undefined when Envoy sent none. */
  clientAddress?: string;
  /** The User-Agent header, cut to `MAX_USER_AGENT_LENGTH` characters. */
  userAgent?: string;
}

/** The sender of a request, read even from a request that is otherwise invalid, so that its usage event can name the client. */
export type RequestOrigin = Pick<CheckInput, "requestId" | "clientAddress" | "userAgent">;

export type ParsedCheck = { ok: true; input: CheckInput } | ({ ok: false; problem: string } & RequestOrigin);

export interface CheckRequestOptions {
  /** x-forwarded-for entries added by trusted proxies; 0 (the default) uses Envoy's downstream peer address. */
  trustedProxyHops?: number;
}

const utf8 = new TextDecoder();
const MAX_REQUEST_ID_LENGTH = 200;
/** Longest User-Agent kept; the rest is cut, because it is stored with every usage event. */
export const MAX_USER_AGENT_LENGTH = 256;
/** Maximum length of an x-forwarded-for entry taken as an address; an IPv6 address with a zone fits easily. */
const MAX_ADDRESS_LENGTH = 64;

/**
 * Reads a CheckRequest without trusting it: anything Envoy would never send
 * (no attributes, no HTTP request, no headers) is a problem to deny, not a
 * crash. Both header encodings are read: the `headers` map and, with
 * `encode_raw_headers`, the `header_map` list.
 */
export function parseCheckRequest(request: CheckRequest, options: CheckRequestOptions = {}): ParsedCheck {
  const http = request.attributes?.request?.http;
  const peerAddress = sourceAddressOf(request);
  if (!http) return { ok: false, problem: "the check request has no HTTP request attributes", clientAddress: peerAddress };

  const headers = readHeaders(http.headers, http.headerMap?.headers);
  const origin: RequestOrigin = {
    // Bounded, because the id goes into every log line and problem body for this request.
    requestId: headers.get("x-request-id")?.slice(0, MAX_REQUEST_ID_LENGTH),
    clientAddress: readClientAddress(peerAddress, headers.get("x-forwarded-for"), options.trustedProxyHops ?? 0),
    userAgent: headers.get("user-agent")?.slice(0, MAX_USER_AGENT_LENGTH),
  };
  if (headers.size === 0) return { ok: false, problem: "the check request has no headers", ...origin };

  const method = http.method || headers.get(":method") || "";
  const path = http.path || headers.get(":path") || "";
  if (!method || !path) return { ok: false, problem: "the check request has no method or path", ...origin };

  const parsedRoute = parseRouteSettings(request.attributes?.contextExtensions ?? {});
  if (!parsedRoute.ok) return { ok: false, problem: parsedRoute.problem, ...origin };

  return { ok: true, input: { method, path, headers, route: parsedRoute.route, ...origin } };
}

/**
 * Returns the client's address. With `trustedProxyHops` N > 0 it is the Nth
 * x-forwarded-for entry from the right, because entries further left were
 * written by the client or by proxies that are not trusted. With fewer
 * entries than N, or N = 0, it is Envoy's downstream peer address.
 */
export function readClientAddress(peerAddress: string | undefined, forwardedFor: string | undefined, trustedProxyHops: number): string | undefined {
  if (trustedProxyHops === 0 || forwardedFor === undefined) return peerAddress;
  const entries = forwardedFor.split(",");
  const entry = entries[entries.length - trustedProxyHops]?.trim();
  if (!entry) return peerAddress;
  return entry.slice(0, MAX_ADDRESS_LENGTH);
}

function sourceAddressOf(request: CheckRequest): string | undefined {
  const address = request.attributes?.source?.address?.address;
  return address?.case === "socketAddress" ? address.value.address || undefined : undefined;
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

/** Longest path kept in a log line or a usage event; Envoy accepts paths of up to 60 KiB by default, which a million spooled events should not each carry. */
export const MAX_RECORDED_PATH_LENGTH = 2048;

/**
 * Returns the path as logs and usage events keep it: without the query
 * string, which may carry the key, cut to MAX_RECORDED_PATH_LENGTH, and with
 * any key elsewhere in it redacted.
 */
export function recordedPath(path: string): string {
  const queryStart = path.indexOf("?");
  const withoutQuery = queryStart < 0 ? path : path.slice(0, queryStart);
  return redactKeys(withoutQuery.slice(0, MAX_RECORDED_PATH_LENGTH));
}
