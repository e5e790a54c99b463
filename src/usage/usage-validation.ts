import { Decision, type UsageEvent } from "../gen/tollgate/usage/v1/usage_pb.js";
import { REASON_CODES, REASONS, type Reason } from "../sidecar/reasons.js";
import { MAX_COST } from "../sidecar/route.js";

/**
 * A usage event checked and converted for storage. Numbers are safe
 * integers, the decision is the text stored in SQLite, and the free-text
 * fields copied from the HTTP request are truncated to their bounds.
 */
export interface UsageRow {
  sequence: number;
  timeMs: number;
  apiId: string;
  keyId: string;
  ownerId: string;
  method: string;
  path: string;
  /** The route's required scopes as a JSON array. */
  scopesJson: string;
  decision: "allow" | "deny";
  reason: string;
  status: number;
  cost: number;
  shadowExceeded: boolean;
  overage: boolean;
  /** Cost units past an overage tier's quota, at most `cost`; what billing counts as overage. */
  overageCost: number;
  clientAddress: string;
  userAgent: string;
  requestId: string;
}

/** The first invalid field of a batch, with the proto field name and the event's sequence. */
export interface InvalidUsageField {
  field: string;
  /** Undefined when the problem is the batch itself, such as too many events. */
  sequence: bigint | undefined;
  message: string;
}

export type ParsedUsageBatch = { ok: true; rows: UsageRow[] } | { ok: false; problem: InvalidUsageField };

/** Maximum events in one batch, so that one transaction holds the write lock briefly. */
export const MAX_BATCH_EVENTS = 10_000;
/** Maximum length of api_id, key_id and owner_id: the store of record allows ids and owner ids of up to 200 characters. */
export const MAX_ID_LENGTH = 200;
/** Maximum number of scopes on one event, and of characters in each. */
export const MAX_SCOPES = 100;
export const MAX_SCOPE_LENGTH = 200;
/** Earliest accepted time_ms (2020-01-01T00:00:00Z). Catches seconds sent as milliseconds, which land in January 1970. */
export const MIN_EVENT_TIME_MS = Date.UTC(2020, 0, 1);
/** How far ahead of the server's clock an event's time may be, to allow for sidecar clock skew. */
export const MAX_CLOCK_SKEW_MS = 86_400_000;

/**
 * Bounds of the fields that a sidecar copies from the HTTP request. A client
 * of the API chooses these values, so they are truncated rather than
 * rejected: rejecting would let one request with a long path stop a
 * sidecar's usage stream, because the sidecar resends the same batch.
 */
export const TRUNCATED_FIELD_LENGTHS = {
  method: 64,
  path: 2048,
  client_address: 64,
  user_agent: 256,
  request_id: 200,
} as const;

/** Longest reason text repeated in a problem message, since the sender chooses the text. */
const MAX_ECHOED_REASON_LENGTH = 64;
const DECISION_TEXT = new Map<Decision, UsageRow["decision"]>([
  [Decision.ALLOW, "allow"],
  [Decision.DENY, "deny"],
]);

/**
 * Checks a batch and converts it to rows, or returns the first problem.
 * Sequences must be positive and never go down within the batch; a repeated
 * sequence is allowed and is stored once. `nowMs` bounds event times, so a
 * sidecar with a clock far in the future cannot fill rollups ahead of time.
 */
export function parseUsageBatch(events: readonly UsageEvent[], nowMs: number): ParsedUsageBatch {
  if (events.length > MAX_BATCH_EVENTS) {
    return invalid("events", undefined, `a batch has ${events.length} events, more than the maximum ${MAX_BATCH_EVENTS}`);
  }

  const rows: UsageRow[] = [];
  let previousSequence = 0n;
  for (const event of events) {
    const parsed = parseUsageEvent(event, nowMs);
    if (!parsed.ok) return parsed;

    if (event.sequence < previousSequence) {
      return invalid("sequence", event.sequence, `comes after sequence ${previousSequence}, but events must be in ascending sequence order`);
    }
    previousSequence = event.sequence;
    rows.push(parsed.row);
  }
  return { ok: true, rows };
}

function parseUsageEvent(event: UsageEvent, nowMs: number): { ok: true; row: UsageRow } | { ok: false; problem: InvalidUsageField } {
  const { sequence } = event;
  if (sequence < 1n || sequence > BigInt(Number.MAX_SAFE_INTEGER)) {
    return invalid("sequence", sequence, `must be from 1 to ${Number.MAX_SAFE_INTEGER}`);
  }

  const latestTimeMs = nowMs + MAX_CLOCK_SKEW_MS;
  if (event.timeMs < BigInt(MIN_EVENT_TIME_MS) || event.timeMs > BigInt(latestTimeMs)) {
    return invalid("time_ms", sequence, `${event.timeMs} is outside ${MIN_EVENT_TIME_MS} (2020-01-01) to ${latestTimeMs} (one day after the server's clock)`);
  }

  for (const [field, value] of [["api_id", event.apiId], ["key_id", event.keyId], ["owner_id", event.ownerId]] as const) {
    // Counted in code points, as the admin API counts them: a UTF-16 count would reject an owner id of 101 emoji that the API accepted.
    const characters = value.length > MAX_ID_LENGTH ? [...value].length : value.length;
    if (characters > MAX_ID_LENGTH) return invalid(field, sequence, `is ${characters} characters, more than the maximum ${MAX_ID_LENGTH}`);
  }

  const decision = DECISION_TEXT.get(event.decision);
  if (decision === undefined) return invalid("decision", sequence, `must be DECISION_ALLOW or DECISION_DENY, not ${event.decision}`);
  const outcome = checkOutcomeConsistency(event, decision);
  if (outcome !== undefined) return outcome;
  if (event.cost > BigInt(MAX_COST)) return invalid("cost", sequence, `${event.cost} is more than the maximum ${MAX_COST}`);
  // The sidecar bills only the units past the quota, so a request cannot have more of them than it cost.
  if (event.overageCost > event.cost) return invalid("overage_cost", sequence, `${event.overageCost} is more than the event's cost ${event.cost}`);
  if (event.overageCost > 0n && !event.overage) return invalid("overage_cost", sequence, `is ${event.overageCost}, but overage is false, and only a request that exceeded an overage tier has overage cost`);

  return {
    ok: true,
    row: {
      sequence: Number(sequence),
      timeMs: Number(event.timeMs),
      apiId: event.apiId,
      keyId: event.keyId,
      ownerId: event.ownerId,
      method: event.method.slice(0, TRUNCATED_FIELD_LENGTHS.method),
      path: event.path.slice(0, TRUNCATED_FIELD_LENGTHS.path),
      // Route scopes come from Envoy's config, not from the sidecar's checks, so they are bounded like the request's fields.
      scopesJson: JSON.stringify(event.scopes.slice(0, MAX_SCOPES).map((scope) => scope.slice(0, MAX_SCOPE_LENGTH))),
      decision,
      reason: event.reason,
      status: event.status,
      cost: Number(event.cost),
      shadowExceeded: event.shadowExceeded,
      overage: event.overage,
      overageCost: Number(event.overageCost),
      clientAddress: event.clientAddress.slice(0, TRUNCATED_FIELD_LENGTHS.client_address),
      userAgent: event.userAgent.slice(0, TRUNCATED_FIELD_LENGTHS.user_agent),
      requestId: event.requestId.slice(0, TRUNCATED_FIELD_LENGTHS.request_id),
    },
  };
}

/**
 * Checks that decision, reason, status and cost describe one outcome the
 * sidecar can produce, so a sidecar token cannot store, for example, an
 * allowed request marked rate limited, or bill a denial.
 * NOTE: a reason added to the sidecar is rejected here until the server is
 * upgraded too, and the sidecar then resends the rejected batch.
 */
function checkOutcomeConsistency(event: UsageEvent, decision: UsageRow["decision"]): { ok: false; problem: InvalidUsageField } | undefined {
  const { sequence, reason } = event;
  if (!Object.hasOwn(REASONS, reason)) {
    const shown = reason.length > MAX_ECHOED_REASON_LENGTH ? `${reason.slice(0, MAX_ECHOED_REASON_LENGTH)}…` : reason;
    return invalid("reason", sequence, `must be one of the sidecar's decision reasons (${REASON_CODES.join(", ")}), not "${shown}"`);
  }

  const expectedDecision = reason === "ok" ? "allow" : "deny";
  if (decision !== expectedDecision) {
    const expectedText = expectedDecision === "allow" ? "DECISION_ALLOW" : "DECISION_DENY";
    return invalid("decision", sequence, `must be ${expectedText} for reason "${reason}"`);
  }

  const expectedStatus = REASONS[reason as Reason].status;
  if (event.status !== expectedStatus) return invalid("status", sequence, `${event.status} does not match reason "${reason}", which has status ${expectedStatus}`);

  // The sidecar takes nothing from the rate-limit tiers for a denial, so a denial bills nothing.
  if (decision === "deny" && event.cost !== 0n) return invalid("cost", sequence, `is ${event.cost}, but a denied request costs 0`);
  if (decision === "deny" && event.overageCost !== 0n) return invalid("overage_cost", sequence, `is ${event.overageCost}, but a denied request has no overage cost`);
  return undefined;
}

/** Formats a problem field first, as in "time_ms (event sequence 7): …". */
export function formatUsageProblem(problem: InvalidUsageField): string {
  const where = problem.sequence === undefined ? "" : ` (event sequence ${problem.sequence})`;
  return `${problem.field}${where}: ${problem.message}`;
}

function invalid(field: string, sequence: bigint | undefined, message: string): { ok: false; problem: InvalidUsageField } {
  return { ok: false, problem: { field, sequence, message } };
}
