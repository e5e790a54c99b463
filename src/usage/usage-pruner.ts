import type { Clock } from "../clock.js";
import type { Logger } from "../log/logger.js";
import type { UsageIngestMetrics } from "./ingest-metrics.js";
import type { UsageStore } from "./usage-store.js";

export interface UsagePrunerOptions {
  usage: UsageStore;
  clock: Clock;
  logger: Logger;
  metrics: Pick<UsageIngestMetrics, "eventsPruned">;
  /** How long raw events are kept, by event time, in milliseconds. */
  rawRetentionMs: number;
  /** How long minute rollups are kept, by minute, in milliseconds. */
  rollupRetentionMs: number;
  /** Time between prunes. Default one hour. */
  intervalMs?: number;
}

export interface UsagePruner {
  /** Prunes now, or returns the prune already running. Never rejects: failures are logged. */
  pruneNow(): Promise<void>;
  /** Stops the timer and any prune between two chunks, and waits for it to stop. */
  close(): Promise<void>;
}

export const DEFAULT_PRUNE_INTERVAL_MS = 3_600_000;

/**
 * Deletes raw events and minute rollups past their retention: once at
 * start, then every interval. A prune deletes in chunks, so ingest keeps
 * committing while a large backlog is deleted.
 */
export function startUsagePruner(options: UsagePrunerOptions): UsagePruner {
  const stop = new AbortController();
  let running: Promise<void> | undefined;

  const pruneNow = (): Promise<void> => {
    if (stop.signal.aborted) return Promise.resolve();
    running ??= pruneOnce(options, stop.signal).finally(() => {
      running = undefined;
    });
    return running;
  };

  const timer = setInterval(() => void pruneNow(), options.intervalMs ?? DEFAULT_PRUNE_INTERVAL_MS);
  timer.unref();
  void pruneNow();

  return {
    pruneNow,
    async close() {
      clearInterval(timer);
      stop.abort();
      await running;
    },
  };
}

async function pruneOnce(options: UsagePrunerOptions, signal: AbortSignal): Promise<void> {
  const { usage, clock, logger, metrics } = options;
  const nowMs = clock.wallMs();
  const startedMs = performance.now();
  try {
    const raw = await usage.pruneRawEvents(nowMs - options.rawRetentionMs, { signal });
    metrics.eventsPruned.inc(raw.deletedRows);
    const rollups = await usage.pruneRollups(nowMs - options.rollupRetentionMs, { signal });

    const fields = { rawEvents: raw.deletedRows, rollupRows: rollups.deletedRows, chunks: raw.chunks + rollups.chunks, durationMs: Math.round(performance.now() - startedMs) };
    if (raw.deletedRows + rollups.deletedRows > 0) logger.info(fields, "usage pruned");
    else logger.debug(fields, "usage pruned");
  } catch (error) {
    logger.error({ err: error }, "usage prune failed, retrying at the next interval");
  }
}
