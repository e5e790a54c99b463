import type Database from "better-sqlite3";
import { migrate } from "../sqlite/migrations.js";

/**
 * The server's usage database, a file of its own beside the store of record
 * so that ingesting events never holds the key store's write lock.
 *
 * - `usage_events`: raw events, kept for the retention period. The primary
 *   key is the event's identity, so inserting a resent event is a no-op. The
 *   identity is the spool's random id and the sequence, not the sidecar id,
 *   because a sidecar restarted with another id (the default includes the
 *   process id) still sends the same spool.
 * - `usage_sources`: the highest sequence committed per spool, and the id of
 *   the sidecar that sent it last. An
 *   event at or below it that is not in `usage_events` was pruned, not lost,
 *   and is a duplicate.
 * - `usage_minutes`: one row per minute, API, key, owner, decision and
 *   reason; what analytics and billing read. Empty strings stand for "none"
 *   (no key was found, or the key has no owner). `overage_cost` sums the
 *   events' cost units past an overage tier's quota, not their whole cost.
 * - `key_first_use`: when each key was first allowed, kept for good.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE usage_events (
     sidecar_id TEXT NOT NULL,
     spool_id TEXT NOT NULL,
     sequence INTEGER NOT NULL,
     time_ms INTEGER NOT NULL,
     api_id TEXT NOT NULL,
     key_id TEXT NOT NULL,
     owner_id TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     scopes TEXT NOT NULL,
     decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
     reason TEXT NOT NULL,
     status INTEGER NOT NULL,
     cost INTEGER NOT NULL,
     shadow_exceeded INTEGER NOT NULL,
     overage INTEGER NOT NULL,
     client_address TEXT NOT NULL,
     user_agent TEXT NOT NULL,
     request_id TEXT NOT NULL,
     received_at_ms INTEGER NOT NULL,
     PRIMARY KEY (spool_id, sequence)
   ) WITHOUT ROWID;
   CREATE INDEX usage_events_by_time ON usage_events (time_ms);
   CREATE TABLE usage_sources (
     sidecar_id TEXT NOT NULL,
     spool_id TEXT NOT NULL,
     highest_sequence INTEGER NOT NULL,
     last_received_at_ms INTEGER NOT NULL,
     PRIMARY KEY (spool_id)
   ) WITHOUT ROWID;
   CREATE TABLE usage_minutes (
     minute_ms INTEGER NOT NULL,
     api_id TEXT NOT NULL,
     key_id TEXT NOT NULL,
     owner_id TEXT NOT NULL,
     decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
     reason TEXT NOT NULL,
     requests INTEGER NOT NULL,
     cost INTEGER NOT NULL,
     overage_requests INTEGER NOT NULL,
     overage_cost INTEGER NOT NULL,
     shadow_exceeded INTEGER NOT NULL,
     PRIMARY KEY (minute_ms, api_id, key_id, owner_id, decision, reason)
   ) WITHOUT ROWID;
   CREATE INDEX usage_minutes_by_key ON usage_minutes (key_id, minute_ms);
   CREATE INDEX usage_minutes_by_owner ON usage_minutes (owner_id, minute_ms);
   CREATE TABLE key_first_use (
     key_id TEXT PRIMARY KEY,
     api_id TEXT NOT NULL,
     owner_id TEXT NOT NULL,
     first_allowed_ms INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  // Cost units past an overage tier's quota. Events stored before this column existed read as 0.
  `ALTER TABLE usage_events ADD COLUMN overage_cost INTEGER NOT NULL DEFAULT 0;`,
];

export const MINUTE_MS = 60_000;

/** Returns the path of the usage database inside the server's data folder. */
export function usageDatabasePath(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/usage.db`;
}

/** Brings a usage database up to this build's schema. */
export function migrateUsageDatabase(db: Database.Database): void {
  migrate(db, MIGRATIONS, "usage database");
}
