import { REASONS } from "../../sidecar/reasons.js";
import type { OwnerReasonCount } from "./usage-queries.js";

/** One owner's denials by HTTP status; each rate is the count divided by all requests. */
export interface OwnerErrorRates {
  ownerId: string;
  requests: number;
  unauthorizedRequests: number;
  forbiddenRequests: number;
  rateLimitedRequests: number;
  unauthorizedRate: number;
  forbiddenRate: number;
  rateLimitedRate: number;
}

/** Returns the HTTP status the sidecar sends with `reason`, or undefined for a reason this build does not know. */
export function statusOfReason(reason: string): number | undefined {
  return Object.hasOwn(REASONS, reason) ? REASONS[reason as keyof typeof REASONS].status : undefined;
}

/**
 * Turns request counts per owner and reason into 401, 403 and 429 rates per
 * owner. The rollups keep the reason, not the status, so the status comes
 * from the sidecar's reason table. A reason missing from that table counts
 * as a request but under no status.
 */
export function errorRatesByOwner(counts: readonly OwnerReasonCount[]): OwnerErrorRates[] {
  const owners = new Map<string, OwnerErrorRates>();
  for (const count of counts) {
    let owner = owners.get(count.ownerId);
    if (owner === undefined) {
      owner = { ownerId: count.ownerId, requests: 0, unauthorizedRequests: 0, forbiddenRequests: 0, rateLimitedRequests: 0, unauthorizedRate: 0, forbiddenRate: 0, rateLimitedRate: 0 };
      owners.set(count.ownerId, owner);
    }
    owner.requests += count.requests;
    if (count.decision !== "deny") continue;

    const status = statusOfReason(count.reason);
    if (status === 401) owner.unauthorizedRequests += count.requests;
    if (status === 403) owner.forbiddenRequests += count.requests;
    if (status === 429) owner.rateLimitedRequests += count.requests;
  }

  // Owner ids are distinct map keys, so no two compare equal.
  const rates = [...owners.values()].sort((a, b) => (a.ownerId < b.ownerId ? -1 : 1));
  for (const owner of rates) {
    if (owner.requests === 0) continue;
    owner.unauthorizedRate = owner.unauthorizedRequests / owner.requests;
    owner.forbiddenRate = owner.forbiddenRequests / owner.requests;
    owner.rateLimitedRate = owner.rateLimitedRequests / owner.requests;
  }
  return rates;
}
