/**
 * Sliding-window counter math. A window of `windowMs` is split into
 * SUB_WINDOWS equal sub-windows, each holding the cost admitted in it, so a
 * counter is a fixed-size ring whatever the traffic: the O(1) memory that
 * lets a sidecar hold every key's counters.
 *
 * A sub-window stops counting as soon as the sliding window's start passes
 * its own start. An admitted request therefore counts for between 0.9 and 1.0
 * windows, which guarantees that a denied client is admitted again within one
 * window. The price is that a true sliding window of `windowMs` can see the
 * limit exceeded by what one sub-window admitted.
 *
 * Pure functions on a mutable record; times are monotonic milliseconds.
 */
export const SUB_WINDOWS = 10;

export interface WindowCounter {
  windowMs: number;
  subWindowMs: number;
  /** Absolute index of the newest sub-window: floor(time / subWindowMs). */
  head: number;
  /** Cost per sub-window, a ring indexed by absolute index modulo its length. */
  counts: number[];
  /** Sum of `counts`. */
  total: number;
}

export function createCounter(windowMs: number, nowMs: number): WindowCounter {
  const slots = Math.min(SUB_WINDOWS, windowMs);
  const subWindowMs = windowMs / slots;
  return { windowMs, subWindowMs, head: Math.floor(nowMs / subWindowMs), counts: new Array<number>(slots).fill(0), total: 0 };
}

/** Moves the counter to the sub-window that contains `nowMs`, dropping what left the window. */
export function rollCounter(counter: WindowCounter, nowMs: number): void {
  const index = Math.floor(nowMs / counter.subWindowMs);
  if (index <= counter.head) return;
  const slots = counter.counts.length;
  if (index - counter.head >= slots) {
    counter.counts.fill(0);
    counter.total = 0;
  } else {
    for (let expired = counter.head + 1; expired <= index; expired++) {
      const slot = expired % slots;
      counter.total -= counter.counts[slot]!;
      counter.counts[slot] = 0;
    }
  }
  counter.head = index;
}

/** Returns the cost counted in the sliding window ending at `nowMs`, rolling first. */
export function countAt(counter: WindowCounter, nowMs: number): number {
  rollCounter(counter, nowMs);
  return counter.total;
}

/** Adds `cost` to the sub-window that contains `nowMs`. */
export function addCost(counter: WindowCounter, cost: number, nowMs: number): void {
  rollCounter(counter, nowMs);
  counter.counts[counter.head % counter.counts.length]! += cost;
  counter.total += cost;
}

/**
 * Returns how long until a request of `cost` fits under `limit`, if nothing else is
 * counted meanwhile: zero when it fits now, at most one window otherwise, and
 * Infinity when it never can (cost above the limit).
 */
export function msUntilAdmitted(counter: WindowCounter, limit: number, cost: number, nowMs: number): number {
  if (cost > limit) return Infinity;
  let remainingCount = countAt(counter, nowMs);
  if (remainingCount + cost <= limit) return 0;

  const slots = counter.counts.length;
  for (let index = counter.head - slots + 1; index <= counter.head; index++) {
    remainingCount -= counter.counts[mod(index, slots)]!;
    // Rounded up to whole milliseconds, because windows that are not a multiple of 10 ms have
    // sub-windows with fractional bounds. The nanosecond of slack absorbs float error in them.
    if (remainingCount + cost <= limit) return Math.ceil(leavesWindowAtMs(counter, index) - nowMs - 1e-6);
  }
  return counter.windowMs;
}

/** Returns how long until everything counted now has left the window: zero for an empty counter. */
export function msUntilEmpty(counter: WindowCounter, nowMs: number): number {
  rollCounter(counter, nowMs);
  const slots = counter.counts.length;
  for (let index = counter.head; index > counter.head - slots; index--) {
    if (counter.counts[mod(index, slots)]! > 0) return leavesWindowAtMs(counter, index) - nowMs;
  }
  return 0;
}

/** Returns whether nothing in the counter still counts at `nowMs`. */
export function isIdle(counter: WindowCounter, nowMs: number): boolean {
  return countAt(counter, nowMs) === 0;
}

/** When the sub-window with absolute `index` stops counting: once the window's start reaches its start. */
function leavesWindowAtMs(counter: WindowCounter, index: number): number {
  return (index + counter.counts.length) * counter.subWindowMs;
}

function mod(value: number, divisor: number): number {
  return ((value % divisor) + divisor) % divisor;
}
