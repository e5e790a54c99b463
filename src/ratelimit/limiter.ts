import type { Tier } from "./tier.js";
import { createCounter, estimateCount, isIdle, msUntilAdmitted, type WindowCounter } from "./sliding-window.js";

/** How one tier stood when a request was decided. */
export interface TierOutcome {
  tier: Tier;
  /** Units left in the sliding window after this request (0 when exceeded). */
  remaining: number;
  /** Whether this request went over the tier. Shadow tiers may exceed and still admit. */
  exceeded: boolean;
  /** Milliseconds until the window frees enough for another request like this one. */
  resetMs: number;
}

export interface AdmitResult {
  admitted: boolean;
  tiers: TierOutcome[];
  /** The reject tier that denied the request, with the longest wait when several did. */
  blocking?: TierOutcome;
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
    const outcomes: TierOutcome[] = [];
    let blocking: TierOutcome | undefined;

    for (const tier of tiers) {
      const counter = this.counterFor(subject, tier.windowMs, nowMs);
      const waitMs = msUntilAdmitted(counter, tier.limit, cost, nowMs);
      const exceeded = waitMs > 0;
      const outcome: TierOutcome = {
        tier,
        exceeded,
        remaining: exceeded ? 0 : remainingAfter(counter, tier.limit, cost, nowMs),
        resetMs: exceeded ? Math.min(waitMs, 2 * tier.windowMs) : untilWindowEndMs(counter, nowMs),
      };
      outcomes.push(outcome);
      if (exceeded && tier.mode === "reject" && (!blocking || outcome.resetMs > blocking.resetMs)) blocking = outcome;
    }

    if (blocking) return { admitted: false, tiers: outcomes, blocking };
    if (cost > 0) this.consume(subject, tiers, cost, nowMs);
    return { admitted: true, tiers: outcomes };
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
      this.counterFor(subject, windowMs, nowMs).current += cost;
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

function remainingAfter(counter: WindowCounter, limit: number, cost: number, nowMs: number): number {
  return Math.max(0, Math.floor(limit - estimateCount(counter, nowMs) - cost));
}

function untilWindowEndMs(counter: WindowCounter, nowMs: number): number {
  return (counter.index + 1) * counter.windowMs - nowMs;
}
