import { describe, expect, it } from "vitest";
import { exceededMode, overageUnits, RateLimiter } from "../../../src/ratelimit/limiter.js";
import type { Tier } from "../../../src/ratelimit/tier.js";
import { advanceToWindowStart, clockAtWindowStart, tier } from "../fakes.js";

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Sends `count` requests of cost 1 at the same time and returns which were admitted. */
function admitMany(limiter: RateLimiter, count: number, subject: string, tiers: readonly Tier[], nowMs: number): boolean[] {
  return Array.from({ length: count }, () => limiter.admit(subject, tiers, 1, nowMs).admitted);
}

describe("RateLimiter.admit", () => {
  it("admits up to limit, then denies", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();

    const admitted = admitMany(limiter, 6, "key_a", [tier(5, SECOND)], clock.monotonicMs());

    expect(admitted).toEqual([true, true, true, true, true, false]);
  });

  it("second tier denial consumes nothing", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const loose = tier(10, SECOND);
    const tight = tier(3, MINUTE);
    const nowMs = clock.monotonicMs();

    admitMany(limiter, 3, "key_a", [loose, tight], nowMs);
    const denied = limiter.admit("key_a", [loose, tight], 1, nowMs);

    expect(denied.admitted).toBe(false);
    expect(denied.blocking?.tier).toBe(tight);
    // The loose tier's counter still contains 3, so exactly 7 more fit.
    expect(limiter.admit("key_a", [loose], 8, nowMs).admitted).toBe(false);
    expect(limiter.admit("key_a", [loose], 7, nowMs).admitted).toBe(true);
  });

  it("first tier denial consumes nothing", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tight = tier(2, SECOND);
    const loose = tier(10, MINUTE);
    const nowMs = clock.monotonicMs();

    admitMany(limiter, 2, "key_a", [tight, loose], nowMs);
    expect(limiter.admit("key_a", [tight, loose], 1, nowMs).admitted).toBe(false);

    expect(limiter.admit("key_a", [loose], 9, nowMs).admitted).toBe(false);
    expect(limiter.admit("key_a", [loose], 8, nowMs).admitted).toBe(true);
  });

  it("denied requests consume nothing", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(5, SECOND)];
    const nowMs = clock.monotonicMs();

    expect(limiter.admit("key_a", tiers, 3, nowMs).admitted).toBe(true);
    for (let attempt = 0; attempt < 10; attempt++) {
      expect(limiter.admit("key_a", tiers, 3, nowMs).admitted).toBe(false);
    }

    expect(limiter.admit("key_a", tiers, 2, nowMs).admitted).toBe(true);
  });

  it("shadow tier reports but never denies", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const shadow = tier(2, SECOND, "shadow");

    const results = Array.from({ length: 5 }, () => limiter.admit("key_a", [shadow], 1, clock.monotonicMs()));

    expect(results.map((result) => result.admitted)).toEqual([true, true, true, true, true]);
    expect(results.map((result) => result.tiers[0]?.exceeded)).toEqual([false, false, true, true, true]);
    expect(results.map((result) => result.blocking)).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it("overage tier admits past its limit and marks the requests over it", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const included = tier(2, MINUTE, "overage");

    const results = Array.from({ length: 4 }, () => limiter.admit("key_a", [included], 1, clock.monotonicMs()));

    expect(results.map((result) => result.admitted)).toEqual([true, true, true, true]);
    expect(results.map((result) => exceededMode(result, "overage"))).toEqual([false, false, true, true]);
    expect(results.map((result) => exceededMode(result, "shadow"))).toEqual([false, false, false, false]);
  });

  it("overage units count only the cost past the quota", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(3, 30 * DAY, "overage")];

    const results = [2, 2, 2, 2, 2, 1, 1].map((cost) => limiter.admit("key_a", tiers, cost, clock.monotonicMs()));

    // The window contains 2 before the second request, so 1 of its 2 units is inside the quota of 3.
    expect(results.map((result) => result.tiers[0]?.excessCost)).toEqual([0, 1, 2, 2, 2, 1, 1]);
    expect(results.map(overageUnits)).toEqual([0, 1, 2, 2, 2, 1, 1]);
    expect(results.map(overageUnits).reduce((sum, units) => sum + units)).toBe(9);
  });

  it("overage units take the largest excess over two overage tiers", () => {
    const clock = clockAtWindowStart(HOUR);
    const limiter = new RateLimiter();
    const tiers = [tier(4, MINUTE, "overage"), tier(6, HOUR, "overage")];

    const costs = [3, 3, 3];
    const first = costs.map((cost) => limiter.admit("key_a", tiers, cost, clock.monotonicMs()));
    clock.advance(MINUTE);
    const afterMinute = limiter.admit("key_a", tiers, 5, clock.monotonicMs());

    // Counts before: 0, 3, 6 in both windows. The minute tier is crossed by the second request, the hour tier by the third.
    expect(first.map((result) => result.tiers.map((outcome) => outcome.excessCost))).toEqual([
      [0, 0],
      [2, 0],
      [3, 3],
    ]);
    expect(first.map(overageUnits)).toEqual([0, 2, 3]);
    // The minute window is empty again and 5 > 4 gives 1 unit past it, but the hour window contains 9, so all 5 are past the hour quota.
    expect(afterMinute.tiers.map((outcome) => outcome.excessCost)).toEqual([1, 5]);
    expect(overageUnits(afterMinute)).toBe(5);
  });

  it("overage units ignore shadow tiers", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(1, MINUTE, "shadow"), tier(2, MINUTE, "overage")];

    const results = [3, 1].map((cost) => limiter.admit("key_a", tiers, cost, clock.monotonicMs()));

    expect(results.map((result) => result.tiers.map((outcome) => outcome.excessCost))).toEqual([
      [2, 1],
      [1, 1],
    ]);
    expect(results.map(overageUnits)).toEqual([1, 1]);
  });

  it("overage units are 0 for a denied request", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(1, MINUTE, "overage"), tier(2, MINUTE)];

    limiter.admit("key_a", tiers, 2, clock.monotonicMs());
    const denied = limiter.admit("key_a", tiers, 1, clock.monotonicMs());

    expect(denied.admitted).toBe(false);
    expect(denied.tiers[0]?.excessCost).toBe(1);
    expect(overageUnits(denied)).toBe(0);
    expect(overageUnits(undefined)).toBe(0);
  });

  it("cost 0 has no excess past a full overage tier", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(2, MINUTE, "overage")];

    limiter.admit("key_a", tiers, 5, clock.monotonicMs());
    const free = limiter.admit("key_a", tiers, 0, clock.monotonicMs());

    expect(free.tiers[0]?.exceeded).toBe(true);
    expect(free.tiers[0]?.excessCost).toBe(0);
    expect(overageUnits(free)).toBe(0);
  });

  it("reject tier denies beside exceeded overage", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(1, MINUTE, "overage"), tier(3, MINUTE)];

    const admitted = Array.from({ length: 4 }, () => limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted);

    expect(admitted).toEqual([true, true, true, false]);
    expect(limiter.admit("key_a", [tiers[0]!], 0, clock.monotonicMs()).tiers[0]?.remaining).toBe(0);
  });

  it("shadow tier beside enforced tier", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const shadow = tier(2, SECOND, "shadow");
    const enforced = tier(4, MINUTE);

    const results = Array.from({ length: 5 }, () => limiter.admit("key_a", [shadow, enforced], 1, clock.monotonicMs()));

    expect(results.map((result) => result.admitted)).toEqual([true, true, true, true, false]);
    expect(results[4]?.blocking?.tier).toBe(enforced);
  });

  it("cost 0 consumes nothing", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(5, SECOND), tier(20, MINUTE)];
    const nowMs = clock.monotonicMs();

    for (let request = 0; request < 50; request++) {
      const result = limiter.admit("key_a", tiers, 0, nowMs);
      expect(result.admitted).toBe(true);
      expect(result.tiers.map((outcome) => outcome.remaining)).toEqual([5, 20]);
    }

    expect(limiter.admit("key_a", tiers, 5, nowMs).admitted).toBe(true);
  });

  it("cost 0 admitted at limit", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(2, SECOND)];

    admitMany(limiter, 2, "key_a", tiers, clock.monotonicMs());

    expect(limiter.admit("key_a", tiers, 0, clock.monotonicMs()).admitted).toBe(true);
    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(false);
  });

  it("same-window tiers share a counter", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(5, SECOND), tier(10, SECOND, "shadow"), tier(20, SECOND)];

    admitMany(limiter, 3, "key_a", tiers, clock.monotonicMs());
    const result = limiter.admit("key_a", tiers, 0, clock.monotonicMs());

    expect(limiter.size).toBe(1);
    // Each admitted request counts once, not once per tier.
    expect(result.tiers.map((outcome) => outcome.remaining)).toEqual([2, 7, 17]);
  });

  it("subjects count separately", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(1, SECOND)];

    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(true);
    expect(limiter.admit("key_b", tiers, 1, clock.monotonicMs()).admitted).toBe(true);
    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(false);
  });

  it("budget frees as window slides", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();
    const tiers = [tier(4, SECOND)];

    admitMany(limiter, 4, "key_a", tiers, clock.monotonicMs());
    const denied = limiter.admit("key_a", tiers, 1, clock.monotonicMs());
    expect(denied.admitted).toBe(false);

    // The four requests share the first sub-window, so all of them leave the window together.
    expect(denied.blocking!.resetMs).toBe(SECOND);
    clock.advance(denied.blocking!.resetMs - 1);
    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(false);
    clock.advance(1);
    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(true);
  });

  it("remaining counts this request", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(5, SECOND)];

    const remaining = Array.from({ length: 6 }, () => limiter.admit("key_a", tiers, 1, clock.monotonicMs()).tiers[0]?.remaining);

    expect(remaining).toEqual([4, 3, 2, 1, 0, 0]);
  });

  it.each([
    ["shorter window first", [tier(2, SECOND), tier(2, MINUTE)], MINUTE],
    ["longer window first", [tier(2, MINUTE), tier(2, SECOND)], MINUTE],
    ["hour tier among three", [tier(2, SECOND), tier(2, HOUR), tier(2, MINUTE)], HOUR],
    ["longer shadow tier ignored", [tier(2, SECOND), tier(2, HOUR, "shadow")], SECOND],
  ])("blocking tier has longest wait: %s", (_case, tiers, expectedWindowMs) => {
    const clock = clockAtWindowStart(HOUR);
    const limiter = new RateLimiter();

    admitMany(limiter, 2, "key_a", tiers, clock.monotonicMs());
    const denied = limiter.admit("key_a", tiers, 1, clock.monotonicMs());

    expect(denied.admitted).toBe(false);
    expect(denied.blocking?.tier.windowMs).toBe(expectedWindowMs);
    expect(denied.blocking?.tier.mode).toBe("reject");
    const rejectWaits = denied.tiers.filter((outcome) => outcome.exceeded && outcome.tier.mode === "reject").map((outcome) => outcome.resetMs);
    expect(denied.blocking?.resetMs).toBe(Math.max(...rejectWaits));
  });

  it("cost above limit waits one window", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();

    const denied = limiter.admit("key_a", [tier(5, SECOND)], 6, clock.monotonicMs());

    expect(denied.admitted).toBe(false);
    expect(denied.blocking?.resetMs).toBe(SECOND);
  });

  it.each([
    ["one-second window", tier(3, SECOND), 3],
    ["minute window", tier(10, MINUTE), 10],
    ["sub-second window", tier(2, 250), 2],
  ])("denied client admitted within window: %s", (_case, limitTier, burst) => {
    const clock = clockAtWindowStart(limitTier.windowMs, Math.floor(limitTier.windowMs / 3));
    const limiter = new RateLimiter();

    admitMany(limiter, burst, "key_a", [limitTier], clock.monotonicMs());
    const denied = limiter.admit("key_a", [limitTier], 1, clock.monotonicMs());

    expect(denied.admitted).toBe(false);
    expect(denied.blocking!.resetMs).toBeLessThanOrEqual(limitTier.windowMs);
    clock.advance(Math.ceil(denied.blocking!.resetMs));
    expect(limiter.admit("key_a", [limitTier], 1, clock.monotonicMs()).admitted).toBe(true);
  });
});

describe("RateLimiter.sweep", () => {
  it("sweep drops idle counters, keeps live ones", () => {
    const clock = clockAtWindowStart(MINUTE);
    const limiter = new RateLimiter();
    const tiers = [tier(5, SECOND), tier(100, MINUTE)];

    limiter.admit("key_idle", tiers, 1, clock.monotonicMs());
    clock.advance(2 * SECOND);
    limiter.admit("key_live", tiers, 1, clock.monotonicMs());
    expect(limiter.size).toBe(4);

    // The idle key's one-second counter is two windows old, but its minute counter still counts.
    expect(limiter.sweep(clock.monotonicMs())).toBe(1);
    expect(limiter.size).toBe(3);

    clock.advance(2 * MINUTE);
    expect(limiter.sweep(clock.monotonicMs())).toBe(3);
    expect(limiter.size).toBe(0);
  });

  it("sweep keeps counter still counting", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();
    const tiers = [tier(2, SECOND)];

    admitMany(limiter, 2, "key_a", tiers, clock.monotonicMs());
    clock.advance(SECOND - 1);

    expect(limiter.sweep(clock.monotonicMs())).toBe(0);
    expect(limiter.admit("key_a", tiers, 1, clock.monotonicMs()).admitted).toBe(false);
  });

  it("swept key starts from zero", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();
    const tiers = [tier(2, SECOND)];

    admitMany(limiter, 2, "key_a", tiers, clock.monotonicMs());
    clock.advance(2 * SECOND);
    limiter.sweep(clock.monotonicMs());

    expect(admitMany(limiter, 3, "key_a", tiers, clock.monotonicMs())).toEqual([true, true, false]);
  });

  it("sweep drops counters of denied-only keys", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();

    limiter.admit("key_a", [tier(1, SECOND)], 5, clock.monotonicMs());

    expect(limiter.sweep(clock.monotonicMs())).toBe(1);
    expect(limiter.size).toBe(0);
  });
});

describe("RateLimiter memory", () => {
  it("counters stay keys times windows", () => {
    const clock = clockAtWindowStart(HOUR);
    const limiter = new RateLimiter();
    // Four tiers over three distinct windows.
    const tiers = [tier(5, SECOND), tier(10, SECOND, "shadow"), tier(100, MINUTE), tier(1_000, HOUR)];
    const keyCount = 50;

    for (let request = 0; request < 20_000; request++) {
      limiter.admit(`key_${request % keyCount}`, tiers, 1 + (request % 3), clock.monotonicMs());
      clock.advance(7);
    }

    expect(limiter.size).toBe(keyCount * 3);
  });

  it("counters survive window boundaries", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();
    const tiers = [tier(1_000, SECOND)];

    for (let window = 0; window < 100; window++) {
      advanceToWindowStart(clock, SECOND);
      limiter.admit("key_a", tiers, 1, clock.monotonicMs());
      clock.advance(1);
    }

    expect(limiter.size).toBe(1);
  });
});
