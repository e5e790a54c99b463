import type { Clock } from "../clock.js";
import type { CheckRequest, CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { KeySource } from "../keys/key-source.js";
import type { Logger } from "../log/logger.js";
import type { SidecarMetrics } from "../metrics/sidecar-metrics.js";
import { exceededMode, type RateLimiter } from "../ratelimit/limiter.js";
import { parseCheckRequest, recordedPath, type CheckInput, type ParsedCheck, type RequestOrigin } from "./check-request.js";
import { buildCheckResponse, internalErrorResponse, invalidRequestResponse } from "./check-response.js";
import { extractCredential } from "./credential.js";
import { decide, type Decision } from "./decide.js";
import { REASONS, type Reason } from "./reasons.js";

export interface CheckServiceOptions {
  keys: KeySource;
  limiter: RateLimiter;
  clock: Clock;
  logger: Logger;
  metrics: SidecarMetrics;
  /** Query parameter that may carry the key; undefined (the default) disables it. */
  keyQueryParameter?: string;
  /** x-forwarded-for entries written by trusted proxies, for the client address; default 0. */
  trustedProxyHops?: number;
  /**
   * Receives every Check's outcome, invalid requests and internal errors
   * included, after the response is built. It runs on the Check path, so it
   * must only hand the outcome on, as the usage recorder does by buffering
   * it. A throw is logged and does not change the response.
   */
  onOutcome?: (outcome: CheckOutcome) => void;
}

/** The result of one Check, for usage metering. */
export interface CheckOutcome {
  reason: Reason;
  /** The decision, unless the request was invalid or the Check failed. */
  decision?: Decision;
  /** The parsed request, unless it was invalid or the Check failed. */
  input?: CheckInput;
  /** Request id, client address and user agent, also for invalid requests. */
  origin: RequestOrigin;
}

const UNDECODABLE_REQUEST: ParsedCheck = { ok: false, problem: "the check request is not a valid protobuf message" };

/** Envoy's Check, independent of the gRPC stack that carries it; null stands for bytes that did not decode. */
export type CheckHandler = (request: CheckRequest | null) => CheckResponse;

/**
 * Composes request parsing, the decision and response shaping, and records
 * one log line and one metric sample per Check. It never throws: whatever
 * goes wrong becomes a denial, because a gRPC error would hand the request
 * to Envoy's failure mode instead.
 */
export function createCheckHandler(options: CheckServiceOptions): CheckHandler {
  const { keys, limiter, clock, logger, metrics, onOutcome } = options;
  const requestOptions = { trustedProxyHops: options.trustedProxyHops ?? 0 };
  const decisionContext = {
    get ready() {
      return keys.ready;
    },
    findGrant: (hash: string) => keys.findGrant(hash),
    limiter,
    clock,
  };

  return (request) => {
    const startedNs = process.hrtime.bigint();
    let outcome: CheckOutcome & { response: CheckResponse };
    // Kept outside the try, so that an internal error's event still names the client.
    let origin: RequestOrigin = {};

    try {
      const parsed = request === null ? UNDECODABLE_REQUEST : parseCheckRequest(request, requestOptions);
      if (!parsed.ok) {
        origin = parsed;
        outcome = { reason: "invalid_request", response: invalidRequestResponse(parsed.problem, parsed.requestId), origin };
      } else {
        const { input } = parsed;
        origin = input;
        const credential = extractCredential(input.headers, input.path, { queryParameter: options.keyQueryParameter });
        const decision = decide(credential, input.route, decisionContext);
        const response = buildCheckResponse(decision, {
          headerNames: input.headers.keys(),
          credentialSources: credential.kind === "present" ? credential.sources : [],
          queryParameter: options.keyQueryParameter,
          requestId: input.requestId,
        });
        outcome = { reason: decision.reason, response, decision, input, origin };
      }
    } catch (error) {
      logger.error({ err: error }, "check failed");
      outcome = { reason: "internal_error", response: internalErrorResponse(), origin };
    }

    const allowed = outcome.reason === "ok";
    const seconds = Number(process.hrtime.bigint() - startedNs) / 1e9;
    metrics.decisions.labels(allowed ? "allow" : "deny", outcome.reason).inc();
    metrics.checkDuration.labels(allowed ? "allow" : "deny").observe(seconds);

    if (logger.isLevelEnabled("debug")) {
      const grant = outcome.decision?.grant;
      logger.debug(
        {
          decision: allowed ? "allow" : "deny",
          reason: outcome.reason,
          status: REASONS[outcome.reason].status,
          keyId: grant?.id,
          shadowExceeded: exceededMode(outcome.decision?.rate, "shadow") || undefined,
          overage: exceededMode(outcome.decision?.rate, "overage") || undefined,
          api: grant?.apiName,
          requestId: outcome.origin.requestId,
          method: outcome.input?.method,
          path: outcome.input && recordedPath(outcome.input.path),
          durationMs: seconds * 1000,
        },
        "check",
      );
    }

    if (onOutcome) {
      try {
        onOutcome(outcome);
      } catch (error) {
        logger.error({ err: error }, "recording the check's usage failed");
      }
    }
    return outcome.response;
  };
}
