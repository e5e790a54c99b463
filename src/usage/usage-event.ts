import { create } from "@bufbuild/protobuf";
import { Decision as EventDecision, UsageEventSchema, type UsageEvent } from "../gen/tollgate/usage/v1/usage_pb.js";
import { redactKeys } from "../keys/key-format.js";
import { exceededMode, overageUnits } from "../ratelimit/limiter.js";
import type { CheckOutcome } from "../sidecar/check-service.js";
import { recordedPath } from "../sidecar/check-request.js";
import { REASONS } from "../sidecar/reasons.js";
import { MAX_SCOPE_LENGTH, MAX_SCOPES, TRUNCATED_FIELD_LENGTHS } from "./usage-validation.js";

/**
 * One Check's usage event before the spool gives it a sequence. It is a plain
 * object, so the Check path records it without any protobuf work; the spool
 * encodes it. It never contains the key itself.
 */
export interface UsageRecord {
  /** When the Check was decided, in milliseconds since the Unix epoch. */
  timeMs: number;
  /** The key's API, else the API the route named when the replica has it, else "". */
  apiId: string;
  /** "" when no key was found. */
  keyId: string;
  /** "" when no key was found or the key has no owner. */
  ownerId: string;
  method: string;
  /** Without the query string, which may carry the key. */
  path: string;
  /** Scopes the route required. */
  scopes: readonly string[];
  allowed: boolean;
  reason: string;
  /** The HTTP status of the response: 200 for allowed requests. */
  status: number;
  /** Cost units the request took from its tiers: the route's cost when allowed, 0 for every denial. */
  cost: number;
  shadowExceeded: boolean;
  overage: boolean;
  /** Cost units past an overage tier's quota, at most `cost`: 0 for every denial. */
  overageCost: number;
  /** "" when Envoy sent no address. */
  clientAddress: string;
  userAgent: string;
  requestId: string;
}

export interface UsageRecordContext {
  /** The time to stamp on the event, from the sidecar's clock. */
  nowWallMs: number;
  /** Returns the id of an API given its name or id, or undefined when the replica does not have it. */
  resolveApiId(nameOrId: string): string | undefined;
}


/**
 * Builds the usage event of one Check. A denial takes nothing from the
 * rate-limit tiers (every tier is checked before any counter moves), so its
 * cost is 0.
 */
export function buildUsageRecord(outcome: CheckOutcome, context: UsageRecordContext): UsageRecord {
  const { decision, input, origin } = outcome;
  const grant = decision?.grant;
  const routeApi = input?.route.api;
  const allowed = outcome.reason === "ok";

  return {
    timeMs: Math.floor(context.nowWallMs),
    apiId: grant?.apiId ?? (routeApi === undefined ? "" : (context.resolveApiId(routeApi) ?? "")),
    keyId: grant?.id ?? "",
    ownerId: grant?.ownerId ?? "",
    // Keys found where no credential is read are redacted: the client chose these strings, and an event must never carry a key.
    method: input ? redactKeys(input.method.slice(0, TRUNCATED_FIELD_LENGTHS.method)) : "",
    path: input ? recordedPath(input.path) : "",
    // Bounded as the server bounds them, since a batch the server rejects would be resent forever.
    scopes: (input?.route.scopes ?? []).slice(0, MAX_SCOPES).map((scope) => scope.slice(0, MAX_SCOPE_LENGTH)),
    allowed,
    reason: outcome.reason,
    status: REASONS[outcome.reason].status,
    cost: allowed && input ? input.route.cost : 0,
    shadowExceeded: exceededMode(decision?.rate, "shadow"),
    overage: exceededMode(decision?.rate, "overage"),
    overageCost: allowed ? overageUnits(decision?.rate) : 0,
    clientAddress: origin.clientAddress ?? "",
    userAgent: redactKeys(origin.userAgent ?? ""),
    requestId: origin.requestId ?? "",
  };
}

/**
 * Converts a record into the wire message; `sequence` is the record's place
 * in the spool, 0 before it has one. The spool uses the faster
 * `encodeUsageRecord`, whose output must equal this message's encoding.
 */
export function toUsageEvent(record: UsageRecord, sequence = 0): UsageEvent {
  return create(UsageEventSchema, {
    sequence: BigInt(sequence),
    timeMs: BigInt(record.timeMs),
    apiId: record.apiId,
    keyId: record.keyId,
    ownerId: record.ownerId,
    method: record.method,
    path: record.path,
    scopes: [...record.scopes],
    decision: record.allowed ? EventDecision.ALLOW : EventDecision.DENY,
    reason: record.reason,
    status: record.status,
    cost: BigInt(record.cost),
    shadowExceeded: record.shadowExceeded,
    overage: record.overage,
    clientAddress: record.clientAddress,
    userAgent: record.userAgent,
    requestId: record.requestId,
    overageCost: BigInt(record.overageCost),
  });
}
