/**
 * Sliding-window counter math: the estimate over the last `windowMs` is the
 * count of the current fixed window plus the previous window's count weighted
 * by how much of it still overlaps the sliding window. Three numbers per
 * counter, whatever the traffic: the O(1) memory that lets a sidecar hold
 * every key's counters.
 *
 * Pure functions on a mutable record; times are monotonic milliseconds.
 */
export interface WindowCounter {
  windowMs: number;
  /** Index of the fixed window that `current` counts: floor(time / windowMs). */
  index: number;
  current: number;
  previous: number;
}

export function createCounter(windowMs: number, nowMs: number): WindowCounter {
  return { windowMs, index: Math.floor(nowMs / windowMs), current: 0, previous: 0 };
}

/** Moves the counter to the fixed window that contains `nowMs`. */
export function rollCounter(counter: WindowCounter, nowMs: number): void {
  const index = Math.floor(nowMs / counter.windowMs);
  if (index === counter.index) return;
  counter.previous = index === counter.index + 1 ? counter.current : 0;
  counter.current = 0;
  counter.index = index;
}

/** The weighted count over the sliding window ending at `nowMs`. Rolls first. */
export function estimateCount(counter: WindowCounter, nowMs: number): number {
  rollCounter(counter, nowMs);
  const elapsedMs = nowMs - counter.index * counter.windowMs;
  return counter.previous * (1 - elapsedMs / counter.windowMs) + counter.current;
}

/**
 * How long until a request of `cost` fits under `limit`, if nothing else is
 * counted meanwhile. Zero when it fits now; Infinity when it never can
 * (cost above the limit).
 */
export function msUntilAdmitted(counter: WindowCounter, limit: number, cost: number, nowMs: number): number {
  if (cost > limit) return Infinity;
  const { windowMs } = counter;
  const estimate = estimateCount(counter, nowMs);
  if (estimate + cost <= limit) return 0;

  const elapsedMs = nowMs - counter.index * windowMs;
  const untilNextWindowMs = windowMs - elapsedMs;

  // Within this window only the previous window's share shrinks.
  const roomNow = limit - cost - counter.current;
  if (roomNow >= 0 && counter.previous > 0) {
    const waitMs = windowMs * (1 - roomNow / counter.previous) - elapsedMs;
    if (waitMs < untilNextWindowMs) return Math.max(0, waitMs);
  }

  // In the next window the current count becomes the shrinking previous one.
  const roomNext = limit - cost;
  const intoNextMs = counter.current > 0 ? Math.max(0, windowMs * (1 - roomNext / counter.current)) : 0;
  return untilNextWindowMs + intoNextMs;
}

/** Whether the counter has counted nothing that still matters at `nowMs`. */
export function isIdle(counter: WindowCounter, nowMs: number): boolean {
  return Math.floor(nowMs / counter.windowMs) >= counter.index + 2 || (counter.current === 0 && counter.previous === 0);
}
