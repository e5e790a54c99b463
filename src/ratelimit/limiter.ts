import type { Tier } from "./tier.js";
import { addCost, countAt, createCounter, isIdle, msUntilAdmitted, msUntilEmpty, type WindowCounter } from "./sliding-window.js";

/** State of one tier when a request was decided. */
export interface TierOutcome {
  tier: Tier;
  /** Units left in the sliding window, this request included when admitted (0 when exceeded). */
  remaining: number;
  /** Whether this request went over the tier. Overage and shadow tiers may exceed and still admit. */
  exceeded: boolean;
  /**
   * Cost units of this request past the tier's limit: min(cost, counted before
   * + cost - limit) when exceeded, else 0. A request that crosses the limit
   * has only its part past it here.
   */
  excessCost: number;
  /**
   * Milliseconds until the tier admits this request again when it exceeded,
   * else until everything counted has left the window. At most one window.
   */
  resetMs: number;
}

export interface AdmitResult {
  admitted: boolean;
  tiers: TierOutcome[];
  /** The reject tier that denied the request, with the longest wait when several did. */
  blocking?: TierOutcome;
}

/** Returns whether a request, admitted or denied, went over a tier of `mode`: overage to bill, or a shadow limit to report. */
export function exceededMode(rate: AdmitResult | undefined, mode: Tier["mode"]): boolean {
  return rate?.tiers.some((outcome) => outcome.exceeded && outcome.tier.mode === mode) ?? false;
}

/**
 * Returns the cost units of an admitted request past its overage tiers'
 * limits, which are billed as overage. It takes the maximum over the exceeded
 * overage tiers, because a unit past two quotas is billed once. It returns 0
 * for a denied request, which consumes nothing, and when no overage tier was
 * exceeded.
 */
export function overageUnits(rate: AdmitResult | undefined): number {
  if (!rate?.admitted) return 0;
  let units = 0;
  for (const outcome of rate.tiers) {
    if (outcome.tier.mode === "overage") units = Math.max(units, outcome.excessCost);
  }
  return units;
}

/**
 * Per-key rate limiting over sliding windows. Every tier is checked before any
 * counter moves, so a denied request consumes nothing. Tiers with the same
 * window share one counter, because they count the same admitted requests.
 *
 * Only verified keys reach `admit`, so the number of counters is bounded by
 * the number of keys in the store, and `sweep` drops the idle ones.
 */
export class RateLimiter {
  private readonly counters = new Map<string, WindowCounter>();

  admit(subject: string, tiers: readonly Tier[], cost: number, nowMs: number): AdmitResult {
    const counters = tiers.map((tier) => this.counterFor(subject, tier.windowMs, nowMs));
    // Read before consume moves the counters, which tiers with the same window share.
    const countsBefore = counters.map((counter) => countAt(counter, nowMs));
    const waitsMs = tiers.map((tier, i) => msUntilAdmitted(counters[i]!, tier.limit, cost, nowMs));

    let blockingIndex = -1;
    tiers.forEach((tier, i) => {
      if (tier.mode === "reject" && waitsMs[i]! > 0 && (blockingIndex < 0 || waitsMs[i]! > waitsMs[blockingIndex]!)) blockingIndex = i;
    });
    const admitted = blockingIndex < 0;
    if (admitted && cost > 0) this.consume(subject, tiers, cost, nowMs);

    const outcomes = tiers.map((tier, i): TierOutcome => {
      const exceeded = waitsMs[i]! > 0;
      return {
        tier,
        exceeded,
        // An exceeded tier had countsBefore + cost > limit, so this is never negative.
        excessCost: exceeded ? Math.min(cost, countsBefore[i]! + cost - tier.limit) : 0,
        remaining: exceeded ? 0 : Math.max(0, tier.limit - countAt(counters[i]!, nowMs)),
        resetMs: !admitted && exceeded ? Math.min(waitsMs[i]!, tier.windowMs) : msUntilEmpty(counters[i]!, nowMs),
      };
    });
    return admitted ? { admitted, tiers: outcomes } : { admitted, tiers: outcomes, blocking: outcomes[blockingIndex] };
  }

  /** Drops counters that no longer hold anything; returns how many. */
  sweep(nowMs: number): number {
    let dropped = 0;
    for (const [id, counter] of this.counters) {
      if (isIdle(counter, nowMs)) {
        this.counters.delete(id);
        dropped++;
      }
    }
    return dropped;
  }

  /** Number of live counters, for the memory-bound metric and tests. */
  get size(): number {
    return this.counters.size;
  }

  private consume(subject: string, tiers: readonly Tier[], cost: number, nowMs: number): void {
    const counted = new Set<number>();
    for (const { windowMs } of tiers) {
      if (counted.has(windowMs)) continue;
      counted.add(windowMs);
      addCost(this.counterFor(subject, windowMs, nowMs), cost, nowMs);
    }
  }

  private counterFor(subject: string, windowMs: number, nowMs: number): WindowCounter {
    const id = `${subject}\u0000${windowMs}`;
    let counter = this.counters.get(id);
    if (!counter) {
      counter = createCounter(windowMs, nowMs);
      this.counters.set(id, counter);
    }
    return counter;
  }
}

