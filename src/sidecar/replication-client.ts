import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Clock } from "../clock.js";
import { ReplicationService, type Batch, type Heartbeat } from "../gen/tollgate/replication/v1/replication_pb.js";
import type { KeyStore } from "../keys/key-store.js";
import { countRows, decodeBatch, type ReplicationBatch } from "../keys/replica-messages.js";
import type { Logger } from "../log/logger.js";
import type { ReplicaMetrics } from "../metrics/sidecar-metrics.js";
import { backoffDelayMs } from "./backoff.js";
import { ReplicaWriter } from "./replica-writer.js";

export interface ReplicationClientOptions {
  /** The server's base URL, such as http://127.0.0.1:8080. */
  serverUrl: string;
  /** A sidecar token for the server, sent only in the Authorization header and never logged. */
  token: string;
  /** Names this sidecar in the server's logs. */
  sidecarId: string;
  /** The replica, opened and marked with `markReplica()`. The client writes to it but does not close it. */
  replica: KeyStore;
  clock: Clock;
  logger: Logger;
  metrics: ReplicaMetrics;
  /**
   * Called after each batch commits, so that readers can drop what they
   * cached. `complete` is set when the replica is a consistent copy of the
   * server at `version`, which makes a new replica servable.
   */
  onCommitted?: (commit: { version: number; complete: boolean }) => void;
  /** First reconnect delay, before jitter. Default 100 ms. */
  initialReconnectDelayMs?: number;
  /** Maximum reconnect delay, before jitter. Default 10000 ms. */
  maxReconnectDelayMs?: number;
  /**
   * Reconnect when the stream has been silent this long. The server sends a
   * heartbeat every 5 s by default, so 30 s is several missed heartbeats.
   * Default 30000 ms.
   */
  idleTimeoutMs?: number;
  /** Source of jitter in [0, 1); Math.random by default. */
  random?: () => number;
}

export interface ReplicationClient {
  /** When the last batch or heartbeat arrived, in the clock's monotonic milliseconds; undefined before the first. */
  readonly lastContactMonotonicMs: number | undefined;
  /** Ends the stream, stops reconnecting, and rolls back an unfinished staged snapshot. */
  close(): Promise<void>;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * Starts keeping `replica` in step with the server. The client subscribes
 * after the replica's version, or after 0 for a fresh snapshot while the
 * replica has never been complete, and applies every batch in a transaction.
 * After any error or end of stream it reconnects with exponential backoff and
 * jitter, resuming from the last applied version. The sidecar serves from the
 * replica the whole time.
 */
export function startReplicationClient(options: ReplicationClientOptions): ReplicationClient {
  const client = new ReplicationStreamLoop(options);
  void client.run();
  return client;
}

/** Progress of the current stream. */
interface StreamProgress {
  /** A first message arrived. */
  connected: boolean;
  /** A batch completed a sync. */
  synced: boolean;
}

class ReplicationStreamLoop implements ReplicationClient {
  lastContactMonotonicMs: number | undefined;
  private readonly closing = new AbortController();
  private readonly sessions: Http2SessionManager;
  private readonly client: Client<typeof ReplicationService>;
  private readonly writer: ReplicaWriter;
  private stopped: Promise<void> = Promise.resolve();
  /**
   * The highest server version seen on the current stream. A batch's version
   * is only a lower bound of the server's while a catch-up is still running,
   * and a new stream may reach a server whose store was replaced, so this
   * starts again from 0 on every stream.
   */
  private knownServerVersion = 0;

  constructor(private readonly options: ReplicationClientOptions) {
    this.sessions = new Http2SessionManager(options.serverUrl);
    this.client = createClient(ReplicationService, createGrpcTransport({ baseUrl: options.serverUrl, sessionManager: this.sessions }));
    this.writer = new ReplicaWriter(options.replica);
    options.metrics.version.set(options.replica.currentVersion());
    options.metrics.connected.set(0);
  }

  run(): Promise<void> {
    this.stopped = this.loop();
    return this.stopped;
  }

  async close(): Promise<void> {
    this.closing.abort();
    await this.stopped;
    this.sessions.abort();
  }

  private async loop(): Promise<void> {
    const { logger } = this.options;
    let failures = 0;
    while (!this.closing.signal.aborted) {
      const synced = await this.streamOnce();
      if (this.closing.signal.aborted) break;

      // A stream that got as far as a complete batch was healthy, so backoff starts again from the first step.
      failures = synced ? 1 : failures + 1;
      const delayMs = backoffDelayMs(failures, this.options.random ?? Math.random, {
        initialDelayMs: this.options.initialReconnectDelayMs,
        maxDelayMs: this.options.maxReconnectDelayMs,
      });
      logger.info({ server: this.options.serverUrl, attempt: failures, delayMs }, "replication reconnecting");
      await sleep(delayMs, this.closing.signal);
    }
  }

  /**
   * Opens one stream and applies what it brings until it ends. Returns
   * whether the stream completed a sync. Errors are logged and counted here
   * instead of thrown, so the reconnect loop always goes on.
   */
  private async streamOnce(): Promise<boolean> {
    const call = new AbortController();
    const abortCall = () => call.abort();
    this.closing.signal.addEventListener("abort", abortCall, { once: true });
    const idle = new IdleTimer(this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, () => call.abort(new IdleTimeoutError()));
    const progress: StreamProgress = { connected: false, synced: false };

    try {
      await this.consumeStream(call.signal, idle, progress);
    } catch (error) {
      if (!this.closing.signal.aborted) this.reportFailure(call.signal.reason instanceof IdleTimeoutError ? call.signal.reason : error, progress.connected);
    } finally {
      idle.stop();
      this.closing.signal.removeEventListener("abort", abortCall);
      this.options.metrics.connected.set(0);
      this.abandonStagedSnapshot();
    }
    return progress.synced;
  }

  /** Subscribes after the replica's resume version and applies each batch; throws on any failure. */
  private async consumeStream(signal: AbortSignal, idle: IdleTimer, progress: StreamProgress): Promise<void> {
    const { logger, metrics, serverUrl, sidecarId } = this.options;
    const afterVersion = this.writer.resumeVersion();
    this.writer.beginStream(afterVersion);
    this.knownServerVersion = 0;
    let snapshot = false;

    const stream = this.client.subscribe({ afterVersion: BigInt(afterVersion), sidecarId }, { signal, headers: { authorization: `Bearer ${this.options.token}` } });
    for await (const response of stream) {
      idle.restart();
      this.recordContact();
      if (!progress.connected) {
        progress.connected = true;
        metrics.connected.set(1);
        logger.info({ server: serverUrl, sidecarId, afterVersion }, "replication stream connected");
      }
      if (response.event.case === "heartbeat") this.recordHeartbeat(response.event.value);
      if (response.event.case !== "batch") continue;

      const batch = this.applyBatch(response.event.value);
      snapshot ||= batch.reset;
      if (batch.complete && !progress.synced) logger.info({ version: batch.version, snapshot }, "replica synced");
      progress.synced ||= batch.complete;
      // Batches that arrived together would otherwise be applied back to back, with Checks waiting behind all of them.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!this.closing.signal.aborted) logger.warn({ server: serverUrl }, "replication stream ended by the server");
  }

  private abandonStagedSnapshot(): void {
    try {
      this.writer.abandon();
    } catch (error) {
      this.options.logger.error({ err: error }, "rolling back a staged snapshot failed");
    }
  }

  /** Applies one batch and returns it decoded; throws to end the stream when the batch cannot be applied. */
  private applyBatch(message: Batch): ReplicationBatch {
    const { logger, metrics } = this.options;
    const decoded = decodeBatch(message);
    if (!decoded.ok) throw new BatchRejectedError(decoded.problem);
    const applied = this.writer.apply(decoded.batch);
    if (!applied.ok) throw new BatchRejectedError(applied.problem);

    const { batch } = decoded;
    metrics.version.set(batch.version);
    this.raiseServerVersion(batch.version);
    logger.debug({ version: batch.version, rows: countRows(batch), reset: batch.reset, complete: batch.complete }, "replication batch applied");
    if (applied.committed) this.options.onCommitted?.({ version: batch.version, complete: applied.complete });
    return batch;
  }

  /** A heartbeat carries the server's current version, which is exact. */
  private recordHeartbeat(heartbeat: Heartbeat): void {
    this.knownServerVersion = Number(heartbeat.version);
    this.options.metrics.serverVersion.set(this.knownServerVersion);
  }

  private raiseServerVersion(version: number): void {
    if (version <= this.knownServerVersion) return;
    this.knownServerVersion = version;
    this.options.metrics.serverVersion.set(version);
  }

  private recordContact(): void {
    this.lastContactMonotonicMs = this.options.clock.monotonicMs();
    this.options.metrics.lastSyncTimestampSeconds.set(this.options.clock.wallMs() / 1000);
  }

  private reportFailure(error: unknown, wasConnected: boolean): void {
    const { logger, metrics, serverUrl } = this.options;
    metrics.syncErrors.inc();
    if (error instanceof ConnectError) {
      // Transport and server errors are expected while the server is away, so the message is logged without a stack per retry.
      const fields = { server: serverUrl, code: Code[error.code], error: error.message, connected: wasConnected };
      if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
        logger.error(fields, "replication rejected by the server: check the sidecar token (--token or TOLLGATE_SIDECAR_TOKEN)");
      } else {
        logger.warn(fields, wasConnected ? "replication stream lost" : "replication connection failed");
      }
    } else if (error instanceof IdleTimeoutError) {
      logger.warn({ server: serverUrl, error: error.message }, "replication stream silent; reconnecting");
    } else if (error instanceof BatchRejectedError) {
      // The same batch comes again after reconnecting, so this repeats until the server or the sidecar is upgraded or fixed.
      logger.error({ server: serverUrl, error: error.message }, "replication batch rejected");
    } else {
      logger.error({ server: serverUrl, err: error, connected: wasConnected }, "replication failed to read or write the replica");
    }
  }
}

/** A batch that breaks the stream's rules or cannot be decoded. The stream ends and the sidecar reconnects. */
class BatchRejectedError extends Error {
  override readonly name = "BatchRejectedError";
}

class IdleTimeoutError extends Error {
  override readonly name = "IdleTimeoutError";
  constructor() {
    super("no batch or heartbeat from the server within the idle timeout");
  }
}

/** Calls `onIdle` once when `restart` has not been called for `timeoutMs`. */
class IdleTimer {
  private timer: NodeJS.Timeout;

  constructor(
    private readonly timeoutMs: number,
    private readonly onIdle: () => void,
  ) {
    this.timer = setTimeout(onIdle, timeoutMs);
  }

  restart(): void {
    this.timer.refresh();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
