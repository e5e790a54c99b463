export interface BackoffOptions {
  /** Delay before the first retry, before jitter. Default 100 ms. */
  initialDelayMs?: number;
  /** Maximum delay, before jitter. Default 10000 ms. */
  maxDelayMs?: number;
}

export const DEFAULT_INITIAL_DELAY_MS = 100;
export const DEFAULT_MAX_DELAY_MS = 10_000;

/**
 * Returns the delay before retry number `attempt` (1 for the first). The
 * initial delay doubles per attempt up to the maximum. A random factor from
 * 0.5 to 1 then scales it, so that sidecars cut off together do not
 * reconnect together. `random` returns a number in [0, 1).
 */
export function backoffDelayMs(attempt: number, random: () => number, options: BackoffOptions = {}): number {
  const initialDelayMs = options.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  // The exponent is capped so that the power stays finite however long the outage.
  const ceilingMs = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(ceilingMs * (0.5 + random() / 2));
}
