import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type Database from "better-sqlite3";
import type { UsageEvent } from "../gen/tollgate/usage/v1/usage_pb.js";
import { openWritableDatabase } from "../sqlite/open-database.js";
import { MINUTE_MS, migrateUsageDatabase } from "./usage-schema.js";
import { formatUsageProblem, parseUsageBatch, type InvalidUsageField, type UsageRow } from "./usage-validation.js";

/** The sender of a batch: a sidecar and the spool file its sequences count in. */
export interface UsageSource {
  sidecarId: string;
  spoolId: string;
}

export interface IngestResult {
  /** Events stored now. */
  inserted: number;
  /** Events stored before, including those already pruned, and repeats within the batch. */
  duplicates: number;
  /** The batch's highest sequence. For an empty batch, the highest this source has ever committed, or 0. */
  highestSequence: number;
}

export interface PruneResult {
  deletedRows: number;
  /** Transactions the deletion took. */
  chunks: number;
}

export interface PruneOptions {
  /** Rows deleted per transaction. Default 2000. */
  chunkRows?: number;
  /** Stops the prune between chunks, for shutdown. */
  signal?: AbortSignal;
}

/**
 * The server's usage storage. Once `ingest` resolves, the batch is durable,
 * so the stream may acknowledge it.
 */
export interface UsageStore {
  /**
   * Stores a batch in one transaction: new events as raw rows, added to the
   * minute rollups and to each key's first allowed use. Events that this
   * source sent before are counted as duplicates and change nothing.
   * Throws InvalidUsageEventError, storing nothing, when an event is invalid.
   */
  ingest(source: UsageSource, events: readonly UsageEvent[]): Promise<IngestResult>;
  /** Deletes raw events whose time is before `beforeTimeMs`, a chunk per transaction. */
  pruneRawEvents(beforeTimeMs: number, options?: PruneOptions): Promise<PruneResult>;
  /** Deletes minute rollups whose minute starts before `beforeTimeMs`, a chunk per transaction. */
  pruneRollups(beforeTimeMs: number, options?: PruneOptions): Promise<PruneResult>;
  close(): Promise<void>;
}

/** A batch that `ingest` rejected, naming the first invalid field and its event's sequence. */
export class InvalidUsageEventError extends Error {
  readonly field: string;
  readonly sequence: bigint | undefined;

  constructor(problem: InvalidUsageField) {
    super(formatUsageProblem(problem));
    this.name = "InvalidUsageEventError";
    this.field = problem.field;
    this.sequence = problem.sequence;
  }
}

/**
 * Rows deleted per prune transaction. Deleting took about 5 to 10 µs a row
 * in a test on a 2-core VM, so a chunk blocks the event loop, and the
 * streams' commits, for roughly 10 to 20 ms.
 */
export const DEFAULT_PRUNE_CHUNK_ROWS = 2_000;

/**
 * The usage store in its own SQLite file (see usage-schema.ts for the
 * tables). It runs with synchronous=FULL, because an Ack lets the sidecar
 * delete the events from its spool, so each commit must reach the disk
 * before the Ack. WAL with synchronous=NORMAL may lose the last commits when
 * the machine, not only the process, goes down.
 */
export class SqliteUsageStore implements UsageStore {
  private readonly statements;
  private readonly commitBatch;

  private constructor(
    /** The open database, for the analytics queries that read the same file. */
    readonly db: Database.Database,
    private readonly clock: { wallMs(): number },
  ) {
    this.statements = prepareStatements(db);
    this.commitBatch = db.transaction(commitRows.bind(undefined, this.statements));
  }

  /** Opens the usage database at `path`, creating it and running migrations when needed. */
  static open(path: string, clock: { wallMs(): number }): SqliteUsageStore {
    // FULL, because an Ack lets the sidecar delete the events: they must be on disk first.
    const db = openWritableDatabase(path, { synchronous: "FULL", prepare: migrateUsageDatabase });
    return new SqliteUsageStore(db, clock);
  }

  async ingest(source: UsageSource, events: readonly UsageEvent[]): Promise<IngestResult> {
    const receivedAtMs = this.clock.wallMs();
    const parsed = parseUsageBatch(events, receivedAtMs);
    if (!parsed.ok) throw new InvalidUsageEventError(parsed.problem);
    return this.commitBatch.immediate(source, parsed.rows, receivedAtMs);
  }

  async pruneRawEvents(beforeTimeMs: number, options: PruneOptions = {}): Promise<PruneResult> {
    return this.deleteInChunks(this.statements.deleteEventChunk, beforeTimeMs, options);
  }

  async pruneRollups(beforeTimeMs: number, options: PruneOptions = {}): Promise<PruneResult> {
    return this.deleteInChunks(this.statements.deleteMinuteChunk, beforeTimeMs, options);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private async deleteInChunks(statement: Database.Statement, beforeTimeMs: number, options: PruneOptions): Promise<PruneResult> {
    const chunkRows = options.chunkRows ?? DEFAULT_PRUNE_CHUNK_ROWS;
    const result: PruneResult = { deletedRows: 0, chunks: 0 };

    while (!options.signal?.aborted && this.db.open) {
      const deleted = statement.run(beforeTimeMs, chunkRows).changes;
      if (deleted === 0) break;
      result.deletedRows += deleted;
      result.chunks += 1;
      if (deleted < chunkRows) break;
      // Lets streams commit their batches between chunks, because better-sqlite3 blocks the event loop while a statement runs.
      await yieldToEventLoop();
    }
    return result;
  }
}

/**
 * Stores the new rows of a batch, inside the batch's transaction. A
 * sidecar sends its spool in ascending sequence order and resends from its
 * oldest unacknowledged event, so every sequence up to the source's highest
 * committed one is either stored or was pruned: in both cases a duplicate.
 * The primary key catches the rest.
 *
 * NOTE: a spool that gives out a sequence again, after losing its last
 * commits to a power failure, has those new events counted as duplicates.
 */
function commitRows(statements: Statements, source: UsageSource, rows: readonly UsageRow[], receivedAtMs: number): IngestResult {
  const stored = statements.selectSource.get(source.spoolId) as { highest_sequence: number } | undefined;
  let highestSequence = stored?.highest_sequence ?? 0;
  let inserted = 0;
  const rollup = new BatchRollup();

  for (const row of rows) {
    if (row.sequence <= highestSequence) continue;
    highestSequence = row.sequence;
    if (statements.insertEvent.run(eventParameters(source, row, receivedAtMs)).changes === 0) continue;
    inserted += 1;
    rollup.add(row);
  }

  for (const minute of rollup.minutes.values()) statements.upsertMinute.run(minute);
  for (const firstUse of rollup.firstUses.values()) statements.upsertFirstUse.run(firstUse);
  statements.upsertSource.run(source.sidecarId, source.spoolId, highestSequence, receivedAtMs);

  return { inserted, duplicates: rows.length - inserted, highestSequence: rows.at(-1)?.sequence ?? highestSequence };
}

/** The rollup rows and first uses of one batch, summed in memory so each is written once per batch. */
class BatchRollup {
  readonly minutes = new Map<string, MinuteRow>();
  readonly firstUses = new Map<string, FirstUseRow>();

  add(row: UsageRow): void {
    const minuteMs = Math.floor(row.timeMs / MINUTE_MS) * MINUTE_MS;
    const id = `${minuteMs}\u0000${row.apiId}\u0000${row.keyId}\u0000${row.ownerId}\u0000${row.decision}\u0000${row.reason}`;
    let minute = this.minutes.get(id);
    if (!minute) {
      minute = { minuteMs, apiId: row.apiId, keyId: row.keyId, ownerId: row.ownerId, decision: row.decision, reason: row.reason, requests: 0, cost: 0, overageRequests: 0, overageCost: 0, shadowExceeded: 0 };
      this.minutes.set(id, minute);
    }
    minute.requests += 1;
    minute.cost += row.cost;
    if (row.overage) minute.overageRequests += 1;
    minute.overageCost += row.overageCost;
    if (row.shadowExceeded) minute.shadowExceeded += 1;

    if (row.decision !== "allow" || row.keyId === "") return;
    const firstUse = this.firstUses.get(row.keyId);
    if (!firstUse || row.timeMs < firstUse.firstAllowedMs) {
      this.firstUses.set(row.keyId, { keyId: row.keyId, apiId: row.apiId, ownerId: row.ownerId, firstAllowedMs: row.timeMs });
    }
  }
}

interface MinuteRow {
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
  shadowExceeded: number;
}

interface FirstUseRow {
  keyId: string;
  apiId: string;
  ownerId: string;
  firstAllowedMs: number;
}

function eventParameters(source: UsageSource, row: UsageRow, receivedAtMs: number): unknown[] {
  return [
    source.sidecarId,
    source.spoolId,
    row.sequence,
    row.timeMs,
    row.apiId,
    row.keyId,
    row.ownerId,
    row.method,
    row.path,
    row.scopesJson,
    row.decision,
    row.reason,
    row.status,
    row.cost,
    row.shadowExceeded ? 1 : 0,
    row.overage ? 1 : 0,
    row.clientAddress,
    row.userAgent,
    row.requestId,
    receivedAtMs,
    row.overageCost,
  ];
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  return {
    selectSource: db.prepare("SELECT highest_sequence FROM usage_sources WHERE spool_id = ?"),
    insertEvent: db.prepare(
      `INSERT INTO usage_events (sidecar_id, spool_id, sequence, time_ms, api_id, key_id, owner_id, method, path, scopes,
         decision, reason, status, cost, shadow_exceeded, overage, client_address, user_agent, request_id, received_at_ms, overage_cost)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    ),
    upsertMinute: db.prepare(
      `INSERT INTO usage_minutes (minute_ms, api_id, key_id, owner_id, decision, reason, requests, cost, overage_requests, overage_cost, shadow_exceeded)
       VALUES (@minuteMs, @apiId, @keyId, @ownerId, @decision, @reason, @requests, @cost, @overageRequests, @overageCost, @shadowExceeded)
       ON CONFLICT (minute_ms, api_id, key_id, owner_id, decision, reason) DO UPDATE SET
         requests = requests + excluded.requests,
         cost = cost + excluded.cost,
         overage_requests = overage_requests + excluded.overage_requests,
         overage_cost = overage_cost + excluded.overage_cost,
         shadow_exceeded = shadow_exceeded + excluded.shadow_exceeded`,
    ),
    // The API and owner recorded are those of the earliest allowed event, so they move with the time.
    upsertFirstUse: db.prepare(
      `INSERT INTO key_first_use (key_id, api_id, owner_id, first_allowed_ms) VALUES (@keyId, @apiId, @ownerId, @firstAllowedMs)
       ON CONFLICT (key_id) DO UPDATE SET api_id = excluded.api_id, owner_id = excluded.owner_id, first_allowed_ms = excluded.first_allowed_ms
       WHERE excluded.first_allowed_ms < key_first_use.first_allowed_ms`,
    ),
    upsertSource: db.prepare(
      `INSERT INTO usage_sources (sidecar_id, spool_id, highest_sequence, last_received_at_ms) VALUES (?, ?, ?, ?)
       ON CONFLICT (spool_id) DO UPDATE SET
         sidecar_id = excluded.sidecar_id,
         highest_sequence = max(highest_sequence, excluded.highest_sequence),
         last_received_at_ms = excluded.last_received_at_ms`,
    ),
    // Row values select by the primary key, because a WITHOUT ROWID table has no rowid to limit a DELETE by.
    deleteEventChunk: db.prepare(
      `DELETE FROM usage_events WHERE (spool_id, sequence) IN
         (SELECT spool_id, sequence FROM usage_events WHERE time_ms < ? LIMIT ?)`,
    ),
    deleteMinuteChunk: db.prepare(
      `DELETE FROM usage_minutes WHERE (minute_ms, api_id, key_id, owner_id, decision, reason) IN
         (SELECT minute_ms, api_id, key_id, owner_id, decision, reason FROM usage_minutes WHERE minute_ms < ? LIMIT ?)`,
    ),
  };
}
