import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Registry } from "prom-client";
import { systemClock } from "../src/clock.js";
import { createLogger } from "../src/log/logger.js";
import { createUsageMetrics } from "../src/metrics/sidecar-metrics.js";
import { encodeUsageRecord } from "../src/usage/event-encoding.js";
import { UsageSpool } from "../src/usage/spool.js";
import type { UsageRecord } from "../src/usage/usage-event.js";
import { UsageRecorder } from "../src/usage/usage-recorder.js";

export const SPOOL_CASES = ["spool", "floor"] as const;
export type SpoolCase = (typeof SPOOL_CASES)[number];

/** Events written in one measurement of the sidecar's spool path or of its floor. */
export interface SpoolRun {
  case: SpoolCase;
  round: number;
  batchEvents: number;
  /** Events written while measured, after the warm-up. */
  events: number;
  elapsedMs: number;
  eventsPerSecond: number;
  /** Problems found in the run: events not stored or dropped, or a row count that differs from the events written. */
  problems: string[];
}

export interface SpoolRunOptions {
  /** Records cycled through; the floor writes their encoded bytes. */
  records: readonly UsageRecord[];
  /** Events per transaction. */
  batchEvents: number;
  warmupMs: number;
  durationMs: number;
}

/**
 * No event is ever dropped at the spool's bound during a run, because a
 * run writes a few million events at most and the cap is far above that.
 */
const SPOOL_MAX_EVENTS = 100_000_000;

/**
 * Measures one case in a fresh SQLite file under `dir`, removed afterwards.
 * `spool` records events into a UsageRecorder over a UsageSpool and calls
 * flush() after every `batchEvents`, as the sidecar's flush timer does.
 * `floor` inserts the same events, already encoded, into a one-table WAL
 * file with the spool's synchronous=NORMAL, one transaction per batch.
 */
export function measureSpoolCase(spoolCase: SpoolCase, round: number, dir: string, options: SpoolRunOptions): SpoolRun {
  const path = join(dir, `${spoolCase}-${options.batchEvents}-${round}.db`);
  try {
    const writer = spoolCase === "spool" ? openSpoolWriter(path, options) : openFloorWriter(path, options);
    try {
      writeFor(writer, options.warmupMs);
      const { batches, elapsedMs } = writeFor(writer, options.durationMs);
      const events = batches * options.batchEvents;
      const problems = writer.finish(writer.batchesWritten * options.batchEvents);
      return { case: spoolCase, round, batchEvents: options.batchEvents, events, elapsedMs, eventsPerSecond: (events / elapsedMs) * 1000, problems };
    } finally {
      writer.close();
    }
  } finally {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
  }
}

interface BatchWriter {
  /** Writes the next batch; returns a problem when the batch was not stored whole. */
  writeBatch(): string | undefined;
  batchesWritten: number;
  /** Returns problems found after the last batch, such as a row count that differs from `expectedEvents`. */
  finish(expectedEvents: number): string[];
  close(): void;
}

/** Writes batches back to back for `durationMs`, blocking the event loop, because nothing else runs in this phase. */
function writeFor(writer: BatchWriter, durationMs: number): { batches: number; elapsedMs: number } {
  const startedMs = performance.now();
  const stopAtMs = startedMs + durationMs;
  let batches = 0;
  while (performance.now() < stopAtMs) {
    const problem = writer.writeBatch();
    if (problem !== undefined) throw new Error(problem);
    batches += 1;
  }
  return { batches, elapsedMs: performance.now() - startedMs };
}

function openSpoolWriter(path: string, options: SpoolRunOptions): BatchWriter {
  const { records, batchEvents } = options;
  const spool = UsageSpool.open(path, { maxEvents: SPOOL_MAX_EVENTS, fullPolicy: "drop-oldest" });
  const metrics = createUsageMetrics(new Registry(), { spoolEvents: () => spool.count, bufferedEvents: () => 0 });
  const recorder = new UsageRecorder({ spool, flushIntervalMs: 10, clock: systemClock, logger: createLogger("silent"), metrics });
  let next = 0;

  const writer: BatchWriter = {
    batchesWritten: 0,
    writeBatch() {
      for (let i = 0; i < batchEvents; i++) recorder.record(records[next++ % records.length]!);
      const result = recorder.flush();
      writer.batchesWritten += 1;
      if (result.stored !== batchEvents || result.dropped > 0 || result.remaining > 0) {
        return `spool flush stored ${result.stored} of ${batchEvents} events (dropped ${result.dropped}, remaining ${result.remaining})`;
      }
      return undefined;
    },
    finish(expectedEvents) {
      const closed = recorder.close();
      const problems: string[] = [];
      if (closed.stored + closed.remaining + closed.dropped > 0) problems.push(`the recorder still held ${closed.stored + closed.remaining + closed.dropped} events at close`);
      if (spool.count !== expectedEvents) problems.push(`the spool holds ${spool.count} events, expected ${expectedEvents}`);
      return problems;
    },
    close: () => spool.close(),
  };
  return writer;
}

function openFloorWriter(path: string, options: SpoolRunOptions): BatchWriter {
  const { batchEvents } = options;
  const encoded = options.records.map(encodeUsageRecord);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec("CREATE TABLE events (sequence INTEGER PRIMARY KEY, event BLOB NOT NULL)");
  const insert = db.prepare("INSERT INTO events (event) VALUES (?)");
  const insertBatch = db.transaction((batch: readonly Uint8Array[]) => {
    for (const event of batch) insert.run(event);
  });
  const batch: Uint8Array[] = new Array(batchEvents);
  let next = 0;

  const writer: BatchWriter = {
    batchesWritten: 0,
    writeBatch() {
      for (let i = 0; i < batchEvents; i++) batch[i] = encoded[next++ % encoded.length]!;
      insertBatch(batch);
      writer.batchesWritten += 1;
      return undefined;
    },
    finish(expectedEvents) {
      const rows = db.prepare("SELECT count(*) FROM events").pluck().get() as number;
      return rows === expectedEvents ? [] : [`the floor table holds ${rows} rows, expected ${expectedEvents}`];
    },
    close: () => db.close(),
  };
  return writer;
}
