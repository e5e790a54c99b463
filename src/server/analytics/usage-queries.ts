import type Database from "better-sqlite3";
import { bucketStartSql, DAY_MS, MINUTE_MS, type BucketUnit } from "./time-buckets.js";
import { usageCondition, type UsageFilter, type UsageRange } from "./usage-filter.js";

export type { UsageFilter, UsageRange } from "./usage-filter.js";

/** Grouping of a time series: one series per key, owner or API, or `total` for one series of everything. */
export type SeriesGrouping = "total" | "key" | "owner" | "api";

/** Requests in one bucket. `cost` counts allowed requests only, since a denied request consumes nothing. */
export interface UsagePoint {
  bucketStartMs: number;
  requests: number;
  allowed: number;
  denied: number;
  cost: number;
}

/** One series of a time series; `group` is the key, owner or API id, or "" for the total and for "none". */
export interface UsageSeries {
  group: string;
  points: UsagePoint[];
}

export interface DecisionReasonCount {
  decision: "allow" | "deny";
  reason: string;
  requests: number;
}

/** Ranking of top keys: all requests, or cost units of allowed requests. */
export type TopKeysOrder = "requests" | "cost";

/** A key's totals over a range; `ownerId` is as the usage recorded it. */
export interface KeyUsageTotals {
  keyId: string;
  apiId: string;
  ownerId: string;
  requests: number;
  allowed: number;
  denied: number;
  cost: number;
}

/** Keys with allowed requests in one week, and those requests. */
export interface WeekActivity {
  weekStartMs: number;
  activeKeys: number;
  requests: number;
}

export interface OwnerReasonCount {
  ownerId: string;
  decision: "allow" | "deny";
  reason: string;
  requests: number;
}

/**
 * Span of raw events the error cascades read: the last 24 hours of the
 * requested range. Raw events are one row per request, so a range of days
 * could hold millions of them, and the scan occupies the query worker (or, where
 * the queries run in-process, blocks the event loop) until it ends.
 */
export const MAX_CASCADE_SCAN_MS = DAY_MS;

/** Returns the part of `range` that the error cascades read: at most its last MAX_CASCADE_SCAN_MS. */
export function cascadeScanRange(range: UsageRange): UsageRange {
  return { startMs: Math.max(range.startMs, range.endMs - MAX_CASCADE_SCAN_MS), endMs: range.endMs };
}

export type CascadeSubjectKind = "key" | "client_address";

/** One key or client address denied for several different reasons within one minute. */
export interface ErrorCascade {
  kind: CascadeSubjectKind;
  /** The key id or the client address. */
  subject: string;
  minuteStartMs: number;
  /** Every denial reason of the subject in that minute, ordered by reason. */
  reasons: { reason: string; requests: number }[];
  deniedRequests: number;
}

/** Billable totals of one owner and API: allowed requests only. */
export interface BillableTotals {
  ownerId: string;
  apiId: string;
  requests: number;
  costUnits: number;
  overageRequests: number;
  overageCostUnits: number;
}

/**
 * Read-only queries on the usage database (see usage/usage-schema.ts). Every
 * range query reads `usage_minutes`, where a minute counts when its start
 * lies in the range. The error cascades are the exception: they need each
 * event's client address, so they read the raw `usage_events` of at most the
 * last MAX_CASCADE_SCAN_MS of the range.
 *
 * better-sqlite3 runs each query on the calling thread, so the server calls
 * these methods through usage-query-client.ts, which runs them in a worker
 * thread with its own read-only connection and keeps the event loop free.
 *
 * NOTE: the worker runs one query at a time, so a long query delays the
 * analytics calls queued behind it. Where the compiled worker is missing
 * (under vitest), the queries run on the event loop and block it. The API's
 * limits bound the rows a rollup query reads (366 days of minutes), and the
 * cascade window bounds the raw events read, but neither bounds the time: it
 * grows with the traffic in that window.
 */
export class UsageQueries {
  private readonly allowedInWindow: Database.Statement<[string, number, number]>;

  constructor(private readonly db: Database.Database) {
    // Prepared once, because retention runs it for every key of every cohort.
    this.allowedInWindow = db.prepare(`SELECT 1 FROM usage_minutes WHERE key_id = ? AND minute_ms >= ? AND minute_ms < ? AND decision = 'allow' LIMIT 1`);
  }

  /**
   * Sums requests per bucket and group, returning at most `maxPoints`
   * points. `truncated` is true when more matched, so that a caller can
   * reject the request instead of showing part of a chart.
   */
  requestsOverTime(range: UsageRange, filter: UsageFilter, unit: BucketUnit, grouping: SeriesGrouping, maxPoints: number): { series: UsageSeries[]; truncated: boolean } {
    const where = usageCondition("minute_ms", range, filter);
    const rows = this.db
      .prepare(
        `SELECT ${GROUP_COLUMNS[grouping]} AS grp, ${bucketStartSql("minute_ms", unit)} AS bucket_ms,
           SUM(requests) AS requests,
           SUM(CASE WHEN decision = 'allow' THEN requests ELSE 0 END) AS allowed,
           SUM(CASE WHEN decision = 'deny' THEN requests ELSE 0 END) AS denied,
           SUM(CASE WHEN decision = 'allow' THEN cost ELSE 0 END) AS cost
         FROM usage_minutes WHERE ${where.sql}
         GROUP BY grp, bucket_ms ORDER BY grp, bucket_ms LIMIT @limit`,
      )
      .all({ ...where.parameters, limit: maxPoints + 1 }) as ({ grp: string; bucket_ms: number } & Omit<UsagePoint, "bucketStartMs">)[];

    const series: UsageSeries[] = [];
    for (const row of rows.slice(0, maxPoints)) {
      let current = series.at(-1);
      if (current?.group !== row.grp) {
        current = { group: row.grp, points: [] };
        series.push(current);
      }
      current.points.push({ bucketStartMs: row.bucket_ms, requests: row.requests, allowed: row.allowed, denied: row.denied, cost: row.cost });
    }
    return { series, truncated: rows.length > maxPoints };
  }

  /** Counts requests per decision and reason, most requests first. */
  decisionBreakdown(range: UsageRange, filter: UsageFilter): DecisionReasonCount[] {
    const where = usageCondition("minute_ms", range, filter);
    return this.db
      .prepare(
        `SELECT decision, reason, SUM(requests) AS requests FROM usage_minutes WHERE ${where.sql}
         GROUP BY decision, reason ORDER BY requests DESC, decision, reason`,
      )
      .all(where.parameters) as DecisionReasonCount[];
  }

  /** Lists the `limit` keys with the most requests or cost; requests without a key are left out. */
  topKeys(range: UsageRange, filter: UsageFilter, order: TopKeysOrder, limit: number): KeyUsageTotals[] {
    const where = usageCondition("minute_ms", range, filter);
    return this.db
      .prepare(
        `SELECT key_id AS keyId, MAX(api_id) AS apiId, MAX(owner_id) AS ownerId,
           SUM(requests) AS requests,
           SUM(CASE WHEN decision = 'allow' THEN requests ELSE 0 END) AS allowed,
           SUM(CASE WHEN decision = 'deny' THEN requests ELSE 0 END) AS denied,
           SUM(CASE WHEN decision = 'allow' THEN cost ELSE 0 END) AS cost
         FROM usage_minutes WHERE ${where.sql} AND key_id != ''
         GROUP BY key_id ORDER BY ${order === "cost" ? "cost" : "requests"} DESC, key_id LIMIT @limit`,
      )
      .all({ ...where.parameters, limit }) as KeyUsageTotals[];
  }

  /** Returns the time of each key's first allowed request, for the keys that have made one. */
  firstAllowedTimes(keyIds: readonly string[]): Map<string, number> {
    const rows = this.db
      .prepare(`SELECT key_id, first_allowed_ms FROM key_first_use WHERE key_id IN (SELECT value FROM json_each(?))`)
      .all(JSON.stringify(keyIds)) as { key_id: string; first_allowed_ms: number }[];
    return new Map(rows.map((row) => [row.key_id, row.first_allowed_ms]));
  }

  /** Counts active keys (with an allowed request) and allowed requests per week, for the weeks that have any. */
  weeklyActivity(range: UsageRange, filter: UsageFilter): WeekActivity[] {
    const where = usageCondition("minute_ms", range, filter);
    return this.db
      .prepare(
        `SELECT ${bucketStartSql("minute_ms", "week")} AS weekStartMs, COUNT(DISTINCT key_id) AS activeKeys, SUM(requests) AS requests
         FROM usage_minutes WHERE ${where.sql} AND decision = 'allow' AND key_id != ''
         GROUP BY weekStartMs ORDER BY weekStartMs`,
      )
      .all(where.parameters) as WeekActivity[];
  }

  /** Returns whether the key made an allowed request in [startMs, endMs). */
  hasAllowedRequest(keyId: string, startMs: number, endMs: number): boolean {
    return this.allowedInWindow.get(keyId, startMs, endMs) !== undefined;
  }

  /** Counts requests per owner, decision and reason, ordered by owner. */
  reasonsByOwner(range: UsageRange, filter: UsageFilter): OwnerReasonCount[] {
    const where = usageCondition("minute_ms", range, filter);
    return this.db
      .prepare(
        `SELECT owner_id AS ownerId, decision, reason, SUM(requests) AS requests FROM usage_minutes WHERE ${where.sql}
         GROUP BY owner_id, decision, reason ORDER BY owner_id, decision, reason`,
      )
      .all(where.parameters) as OwnerReasonCount[];
  }

  /**
   * Finds keys and client addresses denied for at least `minReasons`
   * different reasons within one minute, oldest first, at most `limit` of
   * them. Only the raw events of `cascadeScanRange(range)` are read.
   * `truncated` is true when more matched.
   */
  errorCascades(range: UsageRange, filter: UsageFilter, minReasons: number, limit: number): { cascades: ErrorCascade[]; truncated: boolean } {
    const where = usageCondition("time_ms", cascadeScanRange(range), filter);
    const rows = this.db
      .prepare(errorCascadesSql(where.sql))
      .all({ ...where.parameters, minReasons, limit: limit + 1 }) as { kind: CascadeSubjectKind; subject: string; minute_ms: number; reason: string; requests: number }[];

    const cascades: ErrorCascade[] = [];
    for (const row of rows) {
      let current = cascades.at(-1);
      if (current?.kind !== row.kind || current.subject !== row.subject || current.minuteStartMs !== row.minute_ms) {
        current = { kind: row.kind, subject: row.subject, minuteStartMs: row.minute_ms, reasons: [], deniedRequests: 0 };
        cascades.push(current);
      }
      current.reasons.push({ reason: row.reason, requests: row.requests });
      current.deniedRequests += row.requests;
    }
    return { cascades: cascades.slice(0, limit), truncated: cascades.length > limit };
  }

  /** Sums allowed requests, cost and overage per owner and API, ordered by owner, then API. */
  billableUsage(range: UsageRange, filter: UsageFilter): BillableTotals[] {
    const where = usageCondition("minute_ms", range, filter);
    return this.db
      .prepare(
        `SELECT owner_id AS ownerId, api_id AS apiId, SUM(requests) AS requests, SUM(cost) AS costUnits,
           SUM(overage_requests) AS overageRequests, SUM(overage_cost) AS overageCostUnits
         FROM usage_minutes WHERE ${where.sql} AND decision = 'allow'
         GROUP BY owner_id, api_id ORDER BY owner_id, api_id`,
      )
      .all(where.parameters) as BillableTotals[];
  }
}

/** Column of each grouping; fixed strings, so they are safe to place in SQL. */
const GROUP_COLUMNS: Readonly<Record<SeriesGrouping, string>> = {
  total: "''",
  key: "key_id",
  owner: "owner_id",
  api: "api_id",
};

/**
 * Returns the SQL of the error cascades for a WHERE clause on `usage_events`.
 * INDEXED BY makes SQLite read the time range through usage_events_by_time
 * (and fail to prepare if that index is gone) instead of scanning the table.
 */
export function errorCascadesSql(whereSql: string): string {
  return `WITH denials AS (
     SELECT 'key' AS kind, key_id AS subject, time_ms - (time_ms % ${MINUTE_MS}) AS minute_ms, reason, COUNT(*) AS requests
     FROM usage_events INDEXED BY usage_events_by_time WHERE ${whereSql} AND decision = 'deny' AND key_id != ''
     GROUP BY subject, minute_ms, reason
     UNION ALL
     SELECT 'client_address', client_address, time_ms - (time_ms % ${MINUTE_MS}), reason, COUNT(*)
     FROM usage_events INDEXED BY usage_events_by_time WHERE ${whereSql} AND decision = 'deny' AND client_address != ''
     GROUP BY client_address, time_ms - (time_ms % ${MINUTE_MS}), reason
   ),
   cascades AS (
     SELECT kind, subject, minute_ms FROM denials
     GROUP BY kind, subject, minute_ms HAVING COUNT(*) >= @minReasons
     ORDER BY minute_ms, kind, subject LIMIT @limit
   )
   SELECT d.kind, d.subject, d.minute_ms, d.reason, d.requests
   FROM denials d JOIN cascades c ON c.kind = d.kind AND c.subject = d.subject AND c.minute_ms = d.minute_ms
   ORDER BY d.minute_ms, d.kind, d.subject, d.reason`;
}
