import { describe, expect, it } from "vitest";
import {
  SUB_WINDOWS,
  addCost,
  countAt,
  createCounter,
  isIdle,
  msUntilAdmitted,
  msUntilEmpty,
  rollCounter,
  type WindowCounter,
} from "../../../src/ratelimit/sliding-window.js";
import { clockAtWindowStart } from "../fakes.js";

/** Returns whether a request of `cost` fits at `atMs`, reading a copy so that the counter itself does not roll. */
function fits(counter: WindowCounter, limit: number, cost: number, atMs: number): boolean {
  return countAt(structuredClone(counter), atMs) + cost <= limit;
}

/** Creates a counter at a window start and adds `cost` at each `[offsetMs, cost]` pair. */
function counterWith(windowMs: number, additions: readonly (readonly [offsetMs: number, cost: number])[]) {
  const clock = clockAtWindowStart(windowMs);
  const startMs = clock.monotonicMs();
  const counter = createCounter(windowMs, startMs);
  for (const [offsetMs, cost] of additions) addCost(counter, cost, startMs + offsetMs);
  return { counter, startMs };
}

/** Returns a seeded random generator (mulberry32), so that a failing case can be rerun. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe("createCounter", () => {
  it.each([
    [1_000, SUB_WINDOWS, 100],
    [60_000, SUB_WINDOWS, 6_000],
    [1_500, SUB_WINDOWS, 150],
    [5, 5, 1],
  ])("window %i ms has %i sub-windows of %d ms", (windowMs, slots, subWindowMs) => {
    const counter = createCounter(windowMs, clockAtWindowStart(windowMs).monotonicMs());

    expect(counter.counts).toHaveLength(slots);
    expect(counter.subWindowMs).toBe(subWindowMs);
    expect(counter.total).toBe(0);
  });
});

describe("countAt", () => {
  // Costs 3 at 0 ms, 2 at 250 ms and 4 at 700 ms into a 1 s window of ten 100 ms sub-windows.
  const additions = [
    [0, 3],
    [250, 2],
    [700, 4],
  ] as const;

  it.each([
    [700, 9],
    [999, 9],
    [1_000, 6],
    [1_199, 6],
    [1_200, 4],
    [1_699, 4],
    [1_700, 0],
  ])("at %i ms counts %i", (atMs, expected) => {
    const { counter, startMs } = counterWith(1_000, additions);

    expect(countAt(counter, startMs + atMs)).toBe(expected);
  });

  it("request counts 0.9 to 1 window", () => {
    const { counter, startMs } = counterWith(1_000, [[250, 1]]);

    // Sub-window 200-299 ms leaves once the window's start passes 200 ms, at 1200 ms.
    expect(fits(counter, 0, 0, startMs + 1_199)).toBe(false);
    expect(fits(counter, 0, 0, startMs + 1_200)).toBe(true);
  });

  it("counts add within a sub-window", () => {
    const { counter, startMs } = counterWith(1_000, [
      [10, 1],
      [20, 2],
      [99, 3],
    ]);

    expect(countAt(counter, startMs + 99)).toBe(6);
    expect(counter.counts.filter((count) => count > 0)).toEqual([6]);
  });
});

describe("addCost", () => {
  it("counter size fixed under load", () => {
    const clock = clockAtWindowStart(1_000);
    const counter = createCounter(1_000, clock.monotonicMs());

    for (let request = 0; request < 10_000; request++) {
      addCost(counter, 1, clock.monotonicMs());
      clock.advance(3);
    }

    expect(counter.counts).toHaveLength(SUB_WINDOWS);
    expect(counter.total).toBe(counter.counts.reduce((sum, count) => sum + count, 0));
    // One cost every 3 ms over the last ten 100 ms sub-windows.
    expect(counter.total).toBeGreaterThanOrEqual(300);
    expect(counter.total).toBeLessThanOrEqual(334);
  });
});

describe("rollCounter", () => {
  // Costs 5 at 0 ms and 4 at 600 ms into a 1 s window.
  it.each([
    ["same sub-window", 650, 9],
    ["just short of one window", 999, 9],
    ["one window", 1_000, 4],
    ["one and a half windows", 1_500, 4],
    ["just before later cost leaves", 1_599, 4],
    ["later cost leaving", 1_600, 0],
    ["a gap of two windows", 2_000, 0],
    ["a gap of five windows", 5_050, 0],
  ])("roll across %s", (_case, atMs, expectedTotal) => {
    const { counter, startMs } = counterWith(1_000, [
      [0, 5],
      [600, 4],
    ]);

    rollCounter(counter, startMs + atMs);

    expect(counter.total).toBe(expectedTotal);
    expect(counter.counts.reduce((sum, count) => sum + count, 0)).toBe(expectedTotal);
    expect(counter.head).toBe(Math.floor((startMs + atMs) / counter.subWindowMs));
  });

  it("gap leaves no stale sub-windows", () => {
    const { counter, startMs } = counterWith(
      1_000,
      Array.from({ length: 10 }, (_, i) => [i * 100, i + 1] as const),
    );

    for (const gapMs of [1_000, 1_050, 2_000, 3_700, 10_000]) {
      const copy = structuredClone(counter);
      addCost(copy, 7, startMs + 900 + gapMs);

      expect(copy.total).toBe(7);
      expect([...copy.counts].sort((a, b) => b - a)).toEqual([7, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
  });

  it("earlier time does not roll back", () => {
    const { counter, startMs } = counterWith(1_000, [[900, 2]]);

    rollCounter(counter, startMs + 100);

    expect(countAt(counter, startMs + 900)).toBe(2);
  });
});

describe("msUntilAdmitted", () => {
  it.each([
    // additions as [offset ms, cost] into a 1 s window, time of the request, limit, cost, expected wait
    ["fits now", [[0, 3]], 500, 5, 2, 0],
    ["fits exactly at limit", [[0, 4]], 500, 5, 1, 0],
    ["cost equal to limit, empty counter", [], 0, 5, 5, 0],
    ["wait for oldest sub-window", [[0, 3], [500, 2]], 600, 5, 1, 400],
    ["wait for later sub-window", [[0, 1], [500, 4]], 600, 5, 2, 900],
    ["wait until next fixed window", [[0, 2], [900, 3]], 950, 5, 3, 950],
    ["wait skips empty sub-windows", [[300, 5]], 400, 5, 1, 900],
    ["wait for all sub-windows", [[0, 1], [200, 1], [400, 1]], 500, 3, 3, 900],
  ] as const)("%s", (_case, additions, atMs, limit, cost, expected) => {
    const { counter, startMs } = counterWith(1_000, additions);

    expect(msUntilAdmitted(structuredClone(counter), limit, cost, startMs + atMs)).toBe(expected);
  });

  it.each([
    [5, 6, []],
    [5, 6, [[0, 5]]],
    [1, 2, []],
  ] as const)("limit %i with cost %i never admits", (limit, cost, additions) => {
    const { counter, startMs } = counterWith(1_000, additions);

    expect(msUntilAdmitted(counter, limit, cost, startMs)).toBe(Infinity);
  });

  it.each([
    ["wait for oldest sub-window", 1_000, [[0, 3], [500, 2]], 600, 5, 1],
    ["wait for later sub-window", 1_000, [[0, 1], [500, 4]], 600, 5, 2],
    ["wait until next fixed window", 1_000, [[0, 2], [900, 3]], 950, 5, 3],
    ["minute window", 60_000, [[1_000, 40], [31_000, 60]], 45_000, 100, 1],
    ["sub-second window", 500, [[0, 2], [260, 2]], 300, 4, 1],
    ["odd window length", 7_777, [[0, 6], [3_000, 5]], 5_000, 11, 3],
    ["window of 15 ms", 15, [[0, 1], [7, 1]], 8, 2, 1],
  ] as const)("returned wait admits for %s", (_case, windowMs, additions, atMs, limit, cost) => {
    const { counter, startMs } = counterWith(windowMs, additions);
    const nowMs = startMs + atMs;

    const waitMs = msUntilAdmitted(structuredClone(counter), limit, cost, nowMs);
    // Clock steps are whole milliseconds, so a fractional wait is reached at its ceiling. The
    // nanosecond of slack absorbs float error in sub-window arithmetic.
    const waitStepMs = Math.ceil(waitMs - 1e-6);

    expect(waitMs).toBeGreaterThan(0);
    expect(waitMs).toBeLessThanOrEqual(windowMs);
    expect(fits(counter, limit, cost, nowMs + waitStepMs - 1)).toBe(false);
    expect(fits(counter, limit, cost, nowMs + waitStepMs)).toBe(true);
  });

  it("counter near time zero", () => {
    // performance.now() starts near zero, so the oldest sub-windows have negative indices.
    const counter = createCounter(1_000, 5);
    addCost(counter, 1, 50);

    expect(msUntilAdmitted(structuredClone(counter), 1, 1, 60)).toBe(940);
    expect(fits(counter, 1, 1, 999)).toBe(false);
    expect(fits(counter, 1, 1, 1_000)).toBe(true);
  });

  it("returned wait exact for random traffic", () => {
    const random = seededRandom(20_260_101);
    const failures: string[] = [];

    for (let scenario = 0; scenario < 2_000; scenario++) {
      const windowMs = [1_000, 60_000, 1_500, 7_777, 15, 5][scenario % 6]!;
      const clock = clockAtWindowStart(windowMs, Math.floor(random() * windowMs));
      const counter = createCounter(windowMs, clock.monotonicMs());
      const limit = 1 + Math.floor(random() * 20);
      let counted = 0;
      for (let request = Math.floor(random() * 12); request > 0; request--) {
        clock.advance(Math.floor(random() * windowMs * 0.3));
        const cost = 1 + Math.floor(random() * 3);
        if (countAt(counter, clock.monotonicMs()) + cost <= limit) addCost(counter, cost, clock.monotonicMs());
        counted += cost;
      }
      clock.advance(Math.floor(random() * windowMs * 0.2));

      const cost = Math.floor(random() * (limit + 1));
      const nowMs = clock.monotonicMs();
      const waitMs = msUntilAdmitted(structuredClone(counter), limit, cost, nowMs);
      const waitStepMs = Math.ceil(waitMs - 1e-6);
      const admittedAtWait = fits(counter, limit, cost, nowMs + waitStepMs);
      const deniedBefore = waitStepMs === 0 || !fits(counter, limit, cost, nowMs + waitStepMs - 1);
      if (!admittedAtWait || !deniedBefore || waitMs > windowMs) {
        failures.push(`scenario ${scenario}: window ${windowMs} ms, limit ${limit}, cost ${cost}, offered ${counted}, wait ${waitMs}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("msUntilEmpty", () => {
  it.each([
    ["empty counter", [], 0, 0],
    ["one cost", [[0, 1]], 300, 700],
    ["newest sub-window decides", [[0, 1], [650, 1]], 700, 900],
    ["after everything left", [[0, 1]], 1_000, 0],
  ] as const)("%s", (_case, additions, atMs, expected) => {
    const { counter, startMs } = counterWith(1_000, additions);

    expect(msUntilEmpty(counter, startMs + atMs)).toBe(expected);
  });
});

describe("isIdle", () => {
  it.each([
    ["empty counter", [], 0, true],
    ["cost in window", [[0, 3]], 500, false],
    ["cost about to leave", [[0, 3]], 999, false],
    ["cost left window", [[0, 3]], 1_000, true],
    ["long gap", [[0, 3], [500, 1]], 9_000, true],
  ] as const)("%s", (_case, additions, atMs, expected) => {
    const { counter, startMs } = counterWith(1_000, additions);

    expect(isIdle(counter, startMs + atMs)).toBe(expected);
  });
});
