import { create } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { HeaderValueOptionSchema, type HeaderValueOption } from "../gen/envoy/config/core/v3/base_pb.js";
import { CheckResponseSchema, type CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { StatusCode } from "../gen/envoy/type/v3/http_status_pb.js";
import { exceededMode } from "../ratelimit/limiter.js";
import type { CredentialSource } from "./credential.js";
import type { Decision } from "./decide.js";
import { rateLimitHeaders, retryAfterSeconds, type HeaderPair } from "./rate-headers.js";
import { REASONS, type Reason } from "./reasons.js";

/** Headers Tollgate sets on the upstream request; a client's own `x-tollgate-*` headers never pass. */
export const UPSTREAM_HEADER_PREFIX = "x-tollgate-";

export interface AnswerContext {
  /** Every request header name, lower-cased, to strip spoofed `x-tollgate-*` ones. */
  headerNames: Iterable<string>;
  credentialSources: readonly CredentialSource[];
  /** The query parameter that carried the key, to remove before the request goes upstream. */
  queryParameter?: string;
  requestId?: string;
}

// google.rpc.Code values: Envoy reads only zero versus non-zero, the HTTP status comes from denied_response.
const RPC_OK = 0;
const RPC_CODE_BY_STATUS: Record<number, number> = { 400: 3, 401: 16, 403: 7, 429: 8, 503: 14 };

/**
 * Turns a decision into the CheckResponse Envoy applies. Every header option sets `append`
 * explicitly, because Envoy's default for an unset value has changed between
 * versions (1.37.0 appended where earlier versions overwrote).
 */
export function buildCheckResponse(decision: Decision, context: AnswerContext): CheckResponse {
  return decision.allowed ? allowResponse(decision, context) : denyResponse(decision, context.requestId);
}

/** Builds the denial for a request that could not be read at all. */
export function invalidRequestResponse(problem: string, requestId?: string): CheckResponse {
  return denyResponse({ allowed: false, reason: "invalid_request", detail: problem }, requestId);
}

/** Builds the denial for a request the sidecar failed to decide. The cause goes to the log, not the client. */
export function internalErrorResponse(requestId?: string): CheckResponse {
  return denyResponse({ allowed: false, reason: "internal_error", detail: "the sidecar failed to decide; retry shortly" }, requestId);
}

function allowResponse(decision: Extract<Decision, { allowed: true }>, context: AnswerContext): CheckResponse {
  const { grant } = decision;
  const upstream: HeaderPair[] = [
    ["x-tollgate-key-id", grant.id],
    ["x-tollgate-api", grant.apiName],
  ];
  if (grant.ownerId) upstream.push(["x-tollgate-owner-id", grant.ownerId]);
  if (grant.planName) upstream.push(["x-tollgate-plan", grant.planName]);
  if (exceededMode(decision.rate, "overage")) upstream.push(["x-tollgate-overage", "true"]);

  const ours = new Set(upstream.map(([name]) => name));
  const spoofed = [...context.headerNames].filter((name) => name.startsWith(UPSTREAM_HEADER_PREFIX) && !ours.has(name));
  const credentialHeaders = context.credentialSources.filter((source) => source !== "query");
  const usedQuery = context.credentialSources.includes("query") && context.queryParameter !== undefined;

  return create(CheckResponseSchema, {
    status: { code: RPC_OK },
    httpResponse: {
      case: "okResponse",
      value: {
        headers: upstream.map(overwrite),
        headersToRemove: [...credentialHeaders, ...spoofed],
        queryParametersToRemove: usedQuery ? [context.queryParameter!] : [],
        responseHeadersToAdd: rateLimitHeaders(decision.rate).map(overwrite),
      },
    },
    dynamicMetadata: metadataOf(decision),
  });
}

function denyResponse(decision: Extract<Decision, { allowed: false }>, requestId: string | undefined): CheckResponse {
  const { reason } = decision;
  const status = REASONS[reason].status;
  const headers: HeaderPair[] = [
    ["content-type", "application/problem+json"],
    ["cache-control", "no-store"],
  ];
  let retryAfter: number | undefined;

  if (status === 401) headers.push(["www-authenticate", wwwAuthenticate(reason)]);
  if (decision.rate?.blocking) {
    retryAfter = retryAfterSeconds(decision.rate.blocking);
    headers.push(["retry-after", String(retryAfter)], ...rateLimitHeaders(decision.rate));
  }
  if (status === 503) {
    retryAfter = 1;
    headers.push(["retry-after", String(retryAfter)]);
  }

  const body: Record<string, unknown> = {
    type: `urn:tollgate:problem:${reason}`,
    title: REASONS[reason].title,
    status,
    detail: decision.detail,
    reason,
  };
  if (retryAfter !== undefined) body.retry_after = retryAfter;
  if (requestId) body.request_id = requestId;

  return create(CheckResponseSchema, {
    status: { code: RPC_CODE_BY_STATUS[status] ?? 7, message: reason },
    httpResponse: {
      case: "deniedResponse",
      value: { status: { code: status as StatusCode }, headers: headers.map(overwrite), body: JSON.stringify(body) },
    },
    dynamicMetadata: metadataOf(decision),
  });
}

/** Dynamic metadata for Envoy's access log, under envoy.filters.http.ext_authz. */
function metadataOf(decision: Decision): JsonObject {
  const metadata: JsonObject = { decision: decision.allowed ? "allow" : "deny", reason: decision.reason };
  const grant = decision.grant;
  if (grant) {
    metadata.key_id = grant.id;
    metadata.api = grant.apiName;
    if (grant.planName) metadata.plan = grant.planName;
    if (grant.ownerId) metadata.owner_id = grant.ownerId;
  }
  if (exceededMode(decision.rate, "shadow")) metadata.shadow_exceeded = true;
  if (exceededMode(decision.rate, "overage")) metadata.overage = true;
  return metadata;
}

/** RFC 6750: no error code when no credential was sent, invalid_token otherwise. */
function wwwAuthenticate(reason: Reason): string {
  if (reason === "missing_key") return 'Bearer realm="tollgate"';
  return `Bearer realm="tollgate", error="invalid_token", error_description="${reason}"`;
}

function overwrite([name, value]: HeaderPair): HeaderValueOption {
  return create(HeaderValueOptionSchema, { header: { key: name, value }, append: false });
}
