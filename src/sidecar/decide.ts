import type { Clock } from "../clock.js";
import { hashKey, parseKey } from "../keys/key-format.js";
import type { KeyGrant } from "../keys/records.js";
import type { AdmitResult, RateLimiter } from "../ratelimit/limiter.js";
import type { Credential } from "./credential.js";
import type { DenialReason } from "./reasons.js";
import type { RouteSettings } from "./route.js";

export interface DecisionContext {
  ready: boolean;
  findGrant(hash: string): KeyGrant | undefined;
  limiter: RateLimiter;
  clock: Clock;
}

export type Decision =
  | { allowed: true; reason: "ok"; grant: KeyGrant; rate: AdmitResult }
  | { allowed: false; reason: DenialReason; detail: string; grant?: KeyGrant; rate?: AdmitResult };

/**
 * Decides one request. The order is part of the contract: a client always
 * learns the first thing wrong with its key, and no counter moves for a key
 * that failed any earlier step.
 */
export function decide(credential: Credential, route: RouteSettings, context: DecisionContext): Decision {
  if (!context.ready) return deny("not_ready", "the key store has not been loaded yet");
  if (credential.kind === "none") return deny("missing_key", "send the API key as 'Authorization: Bearer <key>' or in the x-api-key header");
  if (credential.kind === "ambiguous") return deny("ambiguous_key", "the request carries more than one different API key");

  const parsed = parseKey(credential.key);
  if (!parsed.ok) return deny("malformed_key", `the API key is not a valid key (${parsed.problem})`);

  const grant = context.findGrant(hashKey(credential.key));
  if (!grant || (route.api !== undefined && route.api !== grant.apiName && route.api !== grant.apiId)) {
    return deny("unknown_key", "the API key is not known for this API");
  }

  const nowWallMs = context.clock.wallMs();
  if (grant.revokedAtMs !== null) return deny("revoked_key", "the API key has been revoked", grant);
  if (grant.expiresAtMs !== null && grant.expiresAtMs <= nowWallMs) return deny("expired_key", "the API key has expired", grant);
  if (!grant.enabled) return deny("disabled_key", "the API key is disabled", grant);

  const missing = route.scopes.filter((scope) => !grant.scopes.includes(scope));
  if (missing.length > 0) return deny("insufficient_scope", `the API key lacks the scope ${missing.join(", ")}`, grant);

  const rate = context.limiter.admit(grant.id, grant.tiers, route.cost, context.clock.monotonicMs());
  if (!rate.admitted) return { allowed: false, reason: "rate_limited", detail: "the API key has used up its rate limit", grant, rate };
  return { allowed: true, reason: "ok", grant, rate };
}

function deny(reason: DenialReason, detail: string, grant?: KeyGrant): Decision {
  return { allowed: false, reason, detail, grant };
}
