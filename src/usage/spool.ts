import { randomUUID } from "node:crypto";
import type Database from "better-sqlite3";
import type { SpoolFullPolicy } from "../config/sidecar-config.js";
import { migrate } from "../sqlite/migrations.js";
import { openWritableDatabase } from "../sqlite/open-database.js";
import { encodeUsageRecord } from "./event-encoding.js";
import type { UsageRecord } from "./usage-event.js";

/**
 * The spool's schema. Each event is stored as its encoded protobuf message
 * without the sequence, which is the row's key. That is the most compact
 * form (field numbers and varints, no names), and it is sent without being
 * decoded. Later builds read it under protobuf's field compatibility rules.
 * `spool_meta` contains the spool id and the last sequence given out, so
 * that sequences keep rising after every event was acknowledged and deleted.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE spool_meta (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     spool_id TEXT NOT NULL,
     last_sequence INTEGER NOT NULL
   );
   CREATE TABLE spool_events (
     sequence INTEGER PRIMARY KEY,
     event BLOB NOT NULL
   );`,
];

export interface UsageSpoolOptions {
  /** Events kept before `fullPolicy` drops some. */
  maxEvents: number;
  /** drop-oldest deletes the oldest events in the spool to make room; drop-newest drops the events being appended. */
  fullPolicy: SpoolFullPolicy;
}

/** An event as stored in the spool. */
export interface SpooledEvent {
  sequence: number;
  /** The event encoded as a UsageEvent without its sequence (see `encodeUsageRecord`). */
  bytes: Uint8Array;
}

export interface AppendResult {
  /** Sequences given to the appended events, ascending; drop-newest gives none to the events it drops. */
  sequences: number[];
  /** Events dropped to stay within the bound: old ones for drop-oldest, appended ones for drop-newest. */
  dropped: number;
}

/**
 * A durable queue of usage events in a SQLite file of its own. Commits go to
 * the write-ahead log with synchronous=NORMAL: a committed append survives
 * the process being killed (kill -9), because the log is written before
 * the commit returns, but a power loss or OS crash can lose the last commits,
 * since they are not fsynced one by one. One process owns the file.
 */
export class UsageSpool {
  private readonly statements;
  private eventCount: number;

  private constructor(
    private readonly db: Database.Database,
    /** Random id made with the file. The server distinguishes spools by it, because sequences restart when a spool is lost. */
    readonly spoolId: string,
    private readonly options: UsageSpoolOptions,
  ) {
    this.statements = {
      lastSequence: db.prepare("SELECT last_sequence FROM spool_meta WHERE id = 1").pluck(),
      setLastSequence: db.prepare("UPDATE spool_meta SET last_sequence = ? WHERE id = 1"),
      insert: db.prepare("INSERT INTO spool_events (sequence, event) VALUES (?, ?)"),
      readAfter: db.prepare("SELECT sequence, event FROM spool_events WHERE sequence > ? ORDER BY sequence LIMIT ?").raw(),
      deleteThrough: db.prepare("DELETE FROM spool_events WHERE sequence <= ?"),
      deleteOldest: db.prepare("DELETE FROM spool_events WHERE sequence IN (SELECT sequence FROM spool_events ORDER BY sequence LIMIT ?)"),
      count: db.prepare("SELECT count(*) FROM spool_events").pluck(),
    };
    this.eventCount = this.statements.count.get() as number;
  }

  /** Opens the spool at `path`, creating the file, its schema and its spool id when needed. */
  static open(path: string, options: UsageSpoolOptions): UsageSpool {
    let spoolId = "";
    const db = openWritableDatabase(path, {
      synchronous: "NORMAL",
      prepare: (opened) => {
        migrate(opened, MIGRATIONS, "usage spool");
        opened.prepare("INSERT OR IGNORE INTO spool_meta (id, spool_id, last_sequence) VALUES (1, ?, 0)").run(randomUUID());
        spoolId = opened.prepare("SELECT spool_id FROM spool_meta WHERE id = 1").pluck().get() as string;
      },
    });
    return new UsageSpool(db, spoolId, options);
  }

  /** Unacknowledged events in the spool, sent or not. */
  get count(): number {
    return this.eventCount;
  }

  /** The last sequence given out; 0 for a new spool. */
  get lastSequence(): number {
    return this.statements.lastSequence.get() as number;
  }

  /**
   * Appends events in one transaction, giving each the next sequence, and
   * applies the full policy when the spool would hold more than `maxEvents`.
   * Throws when SQLite cannot write (a full disk, say); nothing is then stored.
   */
  append(records: readonly UsageRecord[]): AppendResult {
    return this.appendEncoded(records.map(encodeUsageRecord));
  }

  /** Appends events already encoded by `encodeUsageRecord`, like `append`; the recorder encodes before it writes. */
  appendEncoded(events: readonly Uint8Array[]): AppendResult {
    const { count, ...result } = this.db.transaction(() => this.insertWithinBound(events))();
    // Taken over only after the commit, because a failed commit rolls every row back.
    this.eventCount = count;
    return result;
  }

  /** Returns up to `limit` events after `afterSequence`, in sequence order. */
  readAfter(afterSequence: number, limit: number): SpooledEvent[] {
    const rows = this.statements.readAfter.all(afterSequence, limit) as [number, Buffer][];
    return rows.map(([sequence, bytes]) => ({ sequence, bytes }));
  }

  /** Deletes every event up to and including `sequence`, once the server has acknowledged them; returns how many. */
  deleteThrough(sequence: number): number {
    const deleted = this.statements.deleteThrough.run(sequence).changes;
    this.eventCount -= deleted;
    return deleted;
  }

  close(): void {
    this.db.close();
  }

  private insertWithinBound(events: readonly Uint8Array[]): AppendResult & { count: number } {
    const { maxEvents, fullPolicy } = this.options;
    const room = Math.max(0, maxEvents - this.eventCount);
    const storedEvents = fullPolicy === "drop-newest" && events.length > room ? events.slice(0, room) : events;
    let dropped = events.length - storedEvents.length;

    let sequence = this.statements.lastSequence.get() as number;
    const sequences: number[] = [];
    for (const event of storedEvents) {
      sequence += 1;
      this.statements.insert.run(sequence, event);
      sequences.push(sequence);
    }
    this.statements.setLastSequence.run(sequence);
    let count = this.eventCount + storedEvents.length;

    if (count > maxEvents) {
      const deleted = this.statements.deleteOldest.run(count - maxEvents).changes;
      count -= deleted;
      dropped += deleted;
    }
    return { sequences, dropped, count };
  }
}
