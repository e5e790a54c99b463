import type { Registry } from "prom-client";
import type { Clock } from "../clock.js";
import { usageSpoolPath, type ReplicationSettings, type UsageSettings } from "../config/sidecar-config.js";
import type { KeyStore } from "../keys/key-store.js";
import type { Logger } from "../log/logger.js";
import { createUsageMetrics } from "../metrics/sidecar-metrics.js";
import type { CheckOutcome } from "../sidecar/check-service.js";
import { UsageSpool } from "./spool.js";
import { startUsageClient } from "./usage-client.js";
import { buildUsageRecord } from "./usage-event.js";
import { UsageRecorder } from "./usage-recorder.js";

/** The usage pipeline of a replicating sidecar: Check outcomes to the recorder, the recorder to the spool, the spool to the server. */
export interface UsageMetering {
  recordOutcome(outcome: CheckOutcome): void;
  /** Flushes the recorder, drains the spool to the server within `drainTimeoutMs`, and closes the spool. */
  close(drainTimeoutMs: number): Promise<void>;
}

/**
 * Opens the spool in the data folder and starts the recorder and the stream
 * client. Throws when the spool cannot be opened, naming the file.
 */
export function startUsageMetering(
  config: { dataDir: string; server: ReplicationSettings; usage: UsageSettings },
  context: { logger: Logger; clock: Clock; registry: Registry; apiIds: ApiIdCache },
): UsageMetering {
  const { logger, clock } = context;
  const { serverUrl, token, sidecarId } = config.server;
  const settings = config.usage;
  const path = usageSpoolPath(config.dataDir);
  let spool: UsageSpool;
  try {
    spool = UsageSpool.open(path, { maxEvents: settings.spoolMaxEvents, fullPolicy: settings.spoolFullPolicy });
  } catch (error) {
    throw new Error(`opening the usage spool ${path} failed: ${(error as Error).message}; move the file away or start with --no-usage`, { cause: error });
  }

  // The gauges run at scrape time, after the recorder exists.
  const metrics = createUsageMetrics(context.registry, { spoolEvents: () => spool.count, bufferedEvents: () => recorder.bufferedCount });
  const client = startUsageClient({ serverUrl, token, sidecarId, spool, logger, metrics });
  const recorder = new UsageRecorder({ spool, flushIntervalMs: settings.flushIntervalMs, clock, logger, metrics, onAppended: () => client.notify() });
  logger.info({ spool: path, spoolId: spool.spoolId, spooled: spool.count, maxEvents: settings.spoolMaxEvents, fullPolicy: settings.spoolFullPolicy }, "usage metering on");

  const resolveApiId = (nameOrId: string) => context.apiIds.resolve(nameOrId);
  return {
    recordOutcome: (outcome) => recorder.record(buildUsageRecord(outcome, { nowWallMs: clock.wallMs(), resolveApiId })),
    async close(drainTimeoutMs) {
      const flushed = recorder.close();
      logger.info({ ...flushed }, "usage events flushed to the spool");
      await client.close(drainTimeoutMs);
      spool.close();
      logger.info({ spool: path }, "usage spool closed");
    },
  };
}

/** Maximum API names cached; routes name a handful of APIs, so reaching it means the cache is simply started again. */
const MAX_CACHED_API_IDS = 1_000;

/**
 * API ids by the name or id a route gave, read from the replica, for usage
 * events of requests without a verified key. Cleared on every replication
 * commit, since an API may have been created or renamed.
 */
export class ApiIdCache {
  private readonly ids = new Map<string, string | undefined>();

  constructor(
    private readonly replica: KeyStore,
    private readonly logger: Logger,
  ) {}

  resolve(nameOrId: string): string | undefined {
    if (this.ids.has(nameOrId)) return this.ids.get(nameOrId);
    let id: string | undefined;
    try {
      id = this.replica.findApi(nameOrId)?.id;
    } catch (error) {
      // The event then has no API id; the Check itself does not depend on it.
      this.logger.warn({ err: error, api: nameOrId }, "reading an API from the replica failed");
      return undefined;
    }
    if (this.ids.size >= MAX_CACHED_API_IDS) this.ids.clear();
    this.ids.set(nameOrId, id);
    return id;
  }

  clear(): void {
    this.ids.clear();
  }
}
