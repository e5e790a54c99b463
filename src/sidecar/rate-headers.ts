import type { AdmitResult, TierOutcome } from "../ratelimit/limiter.js";
import { formatTier } from "../ratelimit/tier.js";

export type HeaderPair = [name: string, value: string];

/**
 * Rate-limit headers for the client, in two dialects:
 * - `RateLimit-Policy` and `RateLimit` from the IETF httpapi draft
 *   (draft-ietf-httpapi-ratelimit-headers-08 onwards): one list item per tier,
 *   named after the tier, with quota `q` and window `w` in seconds, and
 *   remaining `r` and reset `t` in seconds;
 * - the common `X-RateLimit-Limit/Remaining/Reset`, for the tier with the
 *   least room left, since those headers carry one tier only.
 */
export function rateLimitHeaders(rate: AdmitResult): HeaderPair[] {
  if (rate.tiers.length === 0) return [];

  const policies = rate.tiers.map(({ tier }) => `${policyName(tier)};q=${tier.limit};w=${Math.max(1, Math.ceil(tier.windowMs / 1000))}`);
  const states = rate.tiers.map((outcome) => `${policyName(outcome.tier)};r=${outcome.remaining};t=${resetSeconds(outcome)}`);
  const tightest = rate.blocking ?? tightestTier(rate.tiers);

  return [
    ["ratelimit-policy", policies.join(", ")],
    ["ratelimit", states.join(", ")],
    ["x-ratelimit-limit", String(tightest.tier.limit)],
    ["x-ratelimit-remaining", String(tightest.remaining)],
    ["x-ratelimit-reset", String(resetSeconds(tightest))],
  ];
}

/**
 * Whole seconds a client should wait before retrying: at least 1, and at most
 * the blocking tier's window.
 */
export function retryAfterSeconds(blocking: TierOutcome): number {
  const windowSeconds = Math.max(1, Math.ceil(blocking.tier.windowMs / 1000));
  return Math.min(windowSeconds, Math.max(1, Math.ceil(blocking.resetMs / 1000)));
}

function resetSeconds(outcome: TierOutcome): number {
  return outcome.exceeded ? retryAfterSeconds(outcome) : Math.max(0, Math.ceil(outcome.resetMs / 1000));
}

function policyName(tier: TierOutcome["tier"]): string {
  // A structured-field string: tier text such as "5/1s" or "100/1d:shadow" has no quote or backslash.
  return `"${formatTier(tier)}"`;
}

/** Reject tiers before shadow ones, then least remaining, then shortest window. */
function tightestTier(tiers: readonly TierOutcome[]): TierOutcome {
  const enforced = tiers.filter((outcome) => outcome.tier.mode === "reject");
  const candidates = enforced.length > 0 ? enforced : tiers;
  return candidates.reduce((best, outcome) =>
    outcome.remaining < best.remaining || (outcome.remaining === best.remaining && outcome.tier.windowMs < best.tier.windowMs) ? outcome : best,
  );
}
