/**
 * The closed set of decision reasons. Each code is used unchanged as the
 * problem+json `reason`, the log field and the metric label, so a denial seen
 * by a client can be found in logs and dashboards by the same word.
 */
export const REASONS = {
  ok: { status: 200, title: "OK" },
  invalid_request: { status: 400, title: "Invalid check request" },
  missing_key: { status: 401, title: "API key missing" },
  ambiguous_key: { status: 401, title: "More than one API key" },
  malformed_key: { status: 401, title: "API key malformed" },
  unknown_key: { status: 401, title: "API key unknown" },
  revoked_key: { status: 401, title: "API key revoked" },
  expired_key: { status: 401, title: "API key expired" },
  disabled_key: { status: 403, title: "API key disabled" },
  insufficient_scope: { status: 403, title: "Insufficient scope" },
  rate_limited: { status: 429, title: "Rate limit exceeded" },
  not_ready: { status: 503, title: "Key store not ready" },
  internal_error: { status: 503, title: "Internal error" },
} as const satisfies Record<string, { status: number; title: string }>;

export type Reason = keyof typeof REASONS;
export type DenialReason = Exclude<Reason, "ok">;

export const REASON_CODES = Object.keys(REASONS) as Reason[];
