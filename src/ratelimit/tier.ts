/**
 * A rate-limit tier: at most `limit` cost units per sliding `windowMs`.
 * When a tier is exceeded, its mode decides:
 * - `reject` denies with 429;
 * - `overage` allows, and marks the request as billable overage for the
 *   upstream and in usage, as for a plan with an included quota;
 * - `shadow` only reports it in headers, logs and usage, to try a limit out.
 */
export interface Tier {
  limit: number;
  windowMs: number;
  mode: TierMode;
}

export const TIER_MODES = ["reject", "overage", "shadow"] as const;
export type TierMode = (typeof TIER_MODES)[number];

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const TIER_PATTERN = /^(\d+)\/(\d+)(ms|s|m|h|d)(?::([a-z]+))?$/;
/** Maximum window: 366 days, so yearly quotas fit and arithmetic stays exact. */
export const MAX_WINDOW_MS = 366 * UNIT_MS.d;

export type ParsedTier = { ok: true; tier: Tier } | { ok: false; problem: string };

/** Parses `LIMIT/WINDOW[:MODE]`, for example `5/1s`, `10000/30d:overage`, `1000/1d:shadow`. */
export function parseTier(text: string): ParsedTier {
  const match = TIER_PATTERN.exec(text.trim());
  if (!match) {
    return { ok: false, problem: `invalid tier "${text}": expected LIMIT/WINDOW[:MODE], such as 5/1s or 1000/1d:shadow` };
  }
  const [, limitText, amountText, unit, modeText] = match;
  const limit = Number(limitText);
  const windowMs = Number(amountText) * UNIT_MS[unit as keyof typeof UNIT_MS];
  const mode = modeText ?? "reject";

  if (limit < 1) return { ok: false, problem: `invalid tier "${text}": the limit must be at least 1` };
  if (!Number.isSafeInteger(limit)) return { ok: false, problem: `invalid tier "${text}": the limit must be at most ${Number.MAX_SAFE_INTEGER}` };
  if (windowMs < 1 || windowMs > MAX_WINDOW_MS) return { ok: false, problem: `invalid tier "${text}": the window must be from 1ms to 366d` };
  if (!(TIER_MODES as readonly string[]).includes(mode)) {
    return { ok: false, problem: `invalid tier "${text}": unknown mode "${mode}" (use ${TIER_MODES.join(", ")})` };
  }
  return { ok: true, tier: { limit, windowMs, mode: mode as TierMode } };
}

/** Formats a tier the way parseTier reads it, with the largest exact unit. */
export function formatTier(tier: Tier): string {
  const suffix = tier.mode === "reject" ? "" : `:${tier.mode}`;
  return `${tier.limit}/${formatWindow(tier.windowMs)}${suffix}`;
}

export function formatWindow(windowMs: number): string {
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (windowMs % UNIT_MS[unit] === 0) return `${windowMs / UNIT_MS[unit]}${unit}`;
  }
  return `${windowMs}ms`;
}

/** Parses a duration such as `30d` or `90s` into milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}
