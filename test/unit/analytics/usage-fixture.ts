import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { UsageQueries } from "../../../src/server/analytics/usage-queries.js";
import { inProcessUsageQueries, type AsyncUsageQueries } from "../../../src/server/analytics/usage-query-protocol.js";
import { migrateUsageDatabase } from "../../../src/usage/usage-schema.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";

/** One row of `usage_minutes`; omitted fields take the defaults of `addMinute`. */
export interface MinuteRow {
  minuteMs: number;
  apiId: string;
  keyId: string;
  ownerId: string;
  decision: "allow" | "deny";
  reason: string;
  requests: number;
  cost: number;
  overageRequests: number;
  overageCost: number;
}

/** One raw event; only the columns the analytics read matter, the rest get fixed values. */
export interface EventRow {
  timeMs: number;
  apiId: string;
  keyId: string;
  ownerId: string;
  decision: "allow" | "deny";
  reason: string;
  status: number;
  clientAddress: string;
}

export interface UsageFixture {
  db: Database.Database;
  queries: UsageQueries;
  /** `queries` behind the async interface that the analytics helpers take. */
  asyncQueries: AsyncUsageQueries;
  /** Inserts a rollup row: by default one allowed request of cost 1 by key_a of owner_a on api_a. */
  addMinute(row: Partial<MinuteRow> & { minuteMs: number }): void;
  /** Inserts raw events, each with the next sequence of one test spool. */
  addEvent(row: Partial<EventRow> & { timeMs: number }, count?: number): void;
  addFirstUse(keyId: string, firstAllowedMs: number): void;
  close(): void;
}

/**
 * Opens a real usage database in a temp folder with the server's schema, and
 * fills it by plain INSERTs, so that query tests control every row.
 */
export function openUsageFixture(): UsageFixture {
  const dir = makeTempDir("analytics");
  const db = new Database(join(dir, "usage.db"));
  migrateUsageDatabase(db);
  let sequence = 0;

  const insertMinute = db.prepare(
    `INSERT INTO usage_minutes (minute_ms, api_id, key_id, owner_id, decision, reason, requests, cost, overage_requests, overage_cost, shadow_exceeded)
     VALUES (@minuteMs, @apiId, @keyId, @ownerId, @decision, @reason, @requests, @cost, @overageRequests, @overageCost, 0)`,
  );
  const insertEvent = db.prepare(
    `INSERT INTO usage_events (sidecar_id, spool_id, sequence, time_ms, api_id, key_id, owner_id, method, path, scopes,
       decision, reason, status, cost, shadow_exceeded, overage, client_address, user_agent, request_id, received_at_ms)
     VALUES ('sidecar-test', 'spool-test', @sequence, @timeMs, @apiId, @keyId, @ownerId, 'GET', '/v1/items', '[]',
       @decision, @reason, @status, 0, 0, 0, @clientAddress, 'test-agent', '', @timeMs)`,
  );
  const insertFirstUse = db.prepare(`INSERT INTO key_first_use (key_id, api_id, owner_id, first_allowed_ms) VALUES (?, 'api_a', 'owner_a', ?)`);

  const queries = new UsageQueries(db);
  return {
    db,
    queries,
    asyncQueries: inProcessUsageQueries(queries),
    addMinute(row) {
      const decision = row.decision ?? "allow";
      insertMinute.run({
        apiId: "api_a",
        keyId: "key_a",
        ownerId: "owner_a",
        decision,
        reason: decision === "allow" ? "ok" : "unknown_key",
        requests: 1,
        cost: decision === "allow" ? (row.requests ?? 1) : 0,
        overageRequests: 0,
        overageCost: 0,
        ...row,
      });
    },
    addEvent(row, count = 1) {
      for (let i = 0; i < count; i += 1) {
        sequence += 1;
        insertEvent.run({ apiId: "api_a", keyId: "", ownerId: "", decision: "deny", reason: "unknown_key", status: 401, clientAddress: "192.0.2.1", ...row, sequence });
      }
    },
    addFirstUse(keyId, firstAllowedMs) {
      insertFirstUse.run(keyId, firstAllowedMs);
    },
    close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
