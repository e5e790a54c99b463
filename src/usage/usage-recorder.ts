import type { Clock } from "../clock.js";
import type { Logger } from "../log/logger.js";
import type { UsageDropCause, UsageMetrics } from "../metrics/sidecar-metrics.js";
import type { AppendResult } from "./spool.js";
import { encodeUsageRecord } from "./event-encoding.js";
import type { UsageRecord } from "./usage-event.js";

/** The part of the spool the recorder writes to. */
export interface UsageSink {
  appendEncoded(events: readonly Uint8Array[]): AppendResult;
}

export interface UsageRecorderOptions {
  spool: UsageSink;
  /** How long a recorded event may wait in memory before it is written to the spool, in milliseconds. */
  flushIntervalMs: number;
  /**
   * Events kept in memory while spool writes fail; beyond it the oldest are
   * dropped. Kept events are held encoded, a few hundred bytes each, so the
   * default of 100,000 is tens of megabytes by estimate.
   */
  maxBufferedEvents?: number;
  /** Events written per transaction, so that a large backlog does not hold up Checks for long. Default 10,000. */
  maxFlushEvents?: number;
  /** Maximum wait between retries while spool writes fail, in milliseconds. Default 1000. */
  maxRetryDelayMs?: number;
  clock: Clock;
  logger: Logger;
  metrics: Pick<UsageMetrics, "eventsDropped" | "flushDuration">;
  /** Called after a flush stored events in the spool, so the stream client can send them. */
  onAppended?: () => void;
}

export interface FlushResult {
  /** Events the spool stored. */
  stored: number;
  /** Events the spool dropped at its bound, or that the memory bound dropped after a failed write. */
  dropped: number;
  /** Events still in memory: a write failed, or more than `maxFlushEvents` were waiting. */
  remaining: number;
}

const DEFAULT_MAX_BUFFERED_EVENTS = 100_000;
const DEFAULT_MAX_FLUSH_EVENTS = 10_000;
const DEFAULT_MAX_RETRY_DELAY_MS = 1_000;
/** Drops are logged at most this often, each line with the count since the last one, so a long outage does not flood the log. */
const DROP_LOG_INTERVAL_MS = 1_000;

/**
 * Collects usage events from the Check path and writes them to the spool in
 * batches. `record` only pushes to an array and, for the first event after a
 * flush, starts a timer, so a Check never waits for SQLite. A kill -9 loses
 * at most the events of the last flush interval, plus any held in memory
 * while spool writes were failing.
 */
export class UsageRecorder {
  /** Events recorded since the last flush, as the Check path built them. */
  private recorded: UsageRecord[] = [];
  /** Encoded events waiting for the spool, oldest first: a failed write or a backlog larger than one transaction. */
  private pending: Uint8Array[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failedWrites = 0;
  private readonly maxBufferedEvents: number;
  private readonly maxFlushEvents: number;
  private readonly drops: DropLog;

  constructor(private readonly options: UsageRecorderOptions) {
    this.maxBufferedEvents = options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED_EVENTS;
    this.maxFlushEvents = options.maxFlushEvents ?? DEFAULT_MAX_FLUSH_EVENTS;
    this.drops = new DropLog(options.clock, options.logger);
  }

  /** Events in memory, not yet in the spool. */
  get bufferedCount(): number {
    return this.recorded.length + this.pending.length;
  }

  /** Buffers one event; called on the Check path. After `close` it does nothing, because Checks have stopped by then. */
  record(record: UsageRecord): void {
    if (this.closed) return;
    this.recorded.push(record);
    if (this.timer === undefined) this.schedule(this.options.flushIntervalMs);
  }

  /** Writes buffered events to the spool now, at most `maxFlushEvents` of them, and schedules the rest. */
  flush(): FlushResult {
    this.cancelTimer();
    this.encodeRecorded();
    if (this.pending.length === 0) return { stored: 0, dropped: 0, remaining: 0 };

    const batch = this.pending.length > this.maxFlushEvents ? this.pending.slice(0, this.maxFlushEvents) : this.pending;
    const startedMs = performance.now();
    let result: AppendResult;
    try {
      result = this.options.spool.appendEncoded(batch);
    } catch (error) {
      return this.handleWriteFailure(error);
    }
    this.options.metrics.flushDuration.observe((performance.now() - startedMs) / 1000);

    this.pending = batch === this.pending ? [] : this.pending.slice(batch.length);
    if (this.failedWrites > 0) {
      this.options.logger.info({ failedWrites: this.failedWrites, buffered: this.bufferedCount }, "usage spool writes recovered");
      this.failedWrites = 0;
    }
    if (result.dropped > 0) this.countDrops("spool_full", result.dropped);
    if (result.sequences.length > 0) this.options.onAppended?.();
    // The rest of a large backlog goes in the next turn of the event loop, so Checks run in between.
    if (this.pending.length > 0 && !this.closed) this.schedule(0);
    return { stored: result.sequences.length, dropped: result.dropped, remaining: this.pending.length };
  }

  /**
   * Stops the timer and writes everything buffered, in as many transactions
   * as it takes. Returns what was stored; events of a failed write stay in
   * memory and are lost when the process exits.
   */
  close(): FlushResult {
    this.closed = true;
    const total: FlushResult = { stored: 0, dropped: 0, remaining: 0 };
    for (;;) {
      const result = this.flush();
      total.stored += result.stored;
      total.dropped += result.dropped;
      total.remaining = result.remaining;
      if (result.remaining === 0 || this.failedWrites > 0) break;
    }
    this.cancelTimer();
    this.drops.logPending();
    return total;
  }

  /** Keeps the events of a failed write for the next try, dropping the oldest beyond the memory bound, and retries with backoff. */
  private handleWriteFailure(error: unknown): FlushResult {
    const { logger, flushIntervalMs } = this.options;
    this.failedWrites += 1;
    // Logged once per run of failures, not on every retry.
    if (this.failedWrites === 1) logger.error({ err: error, buffered: this.pending.length }, "writing usage events to the spool failed; keeping them in memory and retrying");

    let dropped = 0;
    const excess = this.pending.length - this.maxBufferedEvents;
    if (excess > 0) {
      this.pending.splice(0, excess);
      dropped = excess;
      this.countDrops("write_failed", excess);
    }
    if (!this.closed) {
      const retryDelayMs = Math.min(flushIntervalMs * 2 ** Math.min(this.failedWrites, 20), this.options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS);
      this.schedule(retryDelayMs);
    }
    return { stored: 0, dropped, remaining: this.pending.length };
  }

  /** Moves recorded events into `pending` as bytes. */
  private encodeRecorded(): void {
    if (this.recorded.length === 0) return;
    for (const record of this.recorded) this.pending.push(encodeUsageRecord(record));
    this.recorded = [];
  }

  private countDrops(cause: UsageDropCause, count: number): void {
    this.options.metrics.eventsDropped.labels(cause).inc(count);
    this.drops.add(cause, count);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delayMs);
    // The sidecar's servers keep the process alive; close() writes whatever is left.
    this.timer.unref();
  }

  private cancelTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Logs dropped events as one warning line per interval with the counts by
 * cause. Drops that come within an interval of the last line are logged
 * when the interval ends, so the log adds up to the metric without waiting
 * for the next drop.
 */
class DropLog {
  private readonly counts: Record<UsageDropCause, number> = { spool_full: 0, write_failed: 0 };
  private lastLoggedMs = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  add(cause: UsageDropCause, count: number): void {
    this.counts[cause] += count;
    const sinceLastMs = this.clock.monotonicMs() - this.lastLoggedMs;
    if (sinceLastMs >= DROP_LOG_INTERVAL_MS) this.logPending();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.logPending(), DROP_LOG_INTERVAL_MS - sinceLastMs);
      this.timer.unref();
    }
  }

  logPending(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const { spool_full: spoolFull, write_failed: writeFailed } = this.counts;
    if (spoolFull + writeFailed === 0) return;
    this.logger.warn({ droppedSpoolFull: spoolFull, droppedWriteFailed: writeFailed }, "usage events dropped");
    this.counts.spool_full = 0;
    this.counts.write_failed = 0;
    this.lastLoggedMs = this.clock.monotonicMs();
  }
}
