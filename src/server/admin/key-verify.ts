import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Clock } from "../../clock.js";
import type { VerifyKeyRequest, VerifyKeyResponseSchema } from "../../gen/tollgate/admin/v1/services_pb.js";
import { hashKey, parseKey } from "../../keys/key-format.js";
import type { KeyGrant } from "../../keys/records.js";
import type { Logger } from "../../log/logger.js";
import { RateLimiter } from "../../ratelimit/limiter.js";
import type { Credential } from "../../sidecar/credential.js";
import { decide } from "../../sidecar/decide.js";
import { retryAfterSeconds } from "../../sidecar/rate-headers.js";
import { REASONS } from "../../sidecar/reasons.js";
import type { RouteSettings } from "../../sidecar/route.js";
import type { ServerStore } from "../store/server-store.js";
import { keyToMessage } from "./convert.js";
import { throwIfInvalid } from "./errors.js";
import { checkCost, checkScopes, FieldProblems, MAX_LABEL_LENGTH } from "./validate.js";

/** How often idle rate-limit counters are dropped, at most; the same period as the sidecar's default. */
const SWEEP_INTERVAL_MS = 10_000;

export type VerifyKeyHandler = (request: VerifyKeyRequest) => Promise<MessageInitShape<typeof VerifyKeyResponseSchema>>;

/**
 * Creates VerifyKey: the sidecar's decision for callers that are not behind
 * Envoy, from the same `decide` function, so reasons and their order match.
 * The rate-limit counters live in this server process and are separate from
 * every sidecar's. Later calls sweep the idle ones, so no timer needs stopping.
 */
export function createKeyVerifier(store: ServerStore, clock: Clock, logger: Logger): VerifyKeyHandler {
  const limiter = new RateLimiter();
  let lastSweepMs = clock.monotonicMs();

  return async (request) => {
    const problems = new FieldProblems();
    const scopes = checkScopes(problems, "scopes", request.scopes);
    const cost = checkCost(problems, "cost", request.cost);
    if ([...request.api].length > MAX_LABEL_LENGTH) problems.add("api", `at most ${MAX_LABEL_LENGTH} characters`);
    throwIfInvalid(problems);

    const credential: Credential = request.key === "" ? { kind: "none" } : { kind: "present", key: request.key, sources: [] };
    const route: RouteSettings = { api: request.api || undefined, scopes, cost };
    // The store is asynchronous and decide() is not, so the one lookup it may need is done first.
    let grant: KeyGrant | undefined;
    if (credential.kind === "present" && parseKey(credential.key).ok) grant = await store.findGrant(hashKey(credential.key));

    const nowMs = clock.monotonicMs();
    if (nowMs - lastSweepMs >= SWEEP_INTERVAL_MS) {
      limiter.sweep(nowMs);
      lastSweepMs = nowMs;
    }
    const decision = decide(credential, route, { ready: true, findGrant: () => grant, limiter, clock });

    logger.debug({ reason: decision.reason, keyId: decision.grant?.id, api: decision.grant?.apiName }, "verify key");
    const blocking = decision.rate?.blocking;
    return {
      allowed: decision.allowed,
      reason: decision.reason,
      httpStatus: REASONS[decision.reason].status,
      key: decision.grant && keyToMessage(decision.grant, clock.wallMs()),
      retryAfterSeconds: decision.reason === "rate_limited" && blocking ? retryAfterSeconds(blocking) : 0,
    };
  };
}
