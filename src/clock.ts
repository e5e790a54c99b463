/**
 * Time source for the rest of the code. Wall time dates keys (creation,
 * expiry); monotonic time drives rate-limit windows, which must not jump when
 * the system clock is set.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  wallMs(): number;
  /** Milliseconds from an arbitrary origin, never going backwards. */
  monotonicMs(): number;
}

export const systemClock: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock that moves only when `advance` is called, for tests. */
export interface ManualClock extends Clock {
  advance(ms: number): void;
}

export function createManualClock(startWallMs = Date.UTC(2026, 0, 1)): ManualClock {
  let offsetMs = 0;
  return {
    wallMs: () => startWallMs + offsetMs,
    // Starts well past zero, so window arithmetic never works near the origin.
    monotonicMs: () => 1_000_000 + offsetMs,
    advance(ms: number) {
      if (ms < 0) throw new RangeError(`a clock cannot go back (advance by ${ms} ms)`);
      offsetMs += ms;
    },
  };
}
