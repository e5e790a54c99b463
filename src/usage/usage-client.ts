import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { EventBatchSchema, UsageService, type EventBatch, type ReportRequestSchema } from "../gen/tollgate/usage/v1/usage_pb.js";
import type { Logger } from "../log/logger.js";
import type { UsageMetrics } from "../metrics/sidecar-metrics.js";
import { backoffDelayMs } from "../sidecar/backoff.js";
import { frameSpooledEvent } from "./event-encoding.js";
import type { SpooledEvent, UsageSpool } from "./spool.js";

export interface UsageClientOptions {
  /** The server's base URL, such as http://127.0.0.1:8080. */
  serverUrl: string;
  /** A sidecar token for the server, sent only in the Authorization header and never logged. */
  token: string;
  /** Names this sidecar to the server; with the spool id and a sequence it identifies an event. */
  sidecarId: string;
  /** The spool to send from. The client deletes what the server acknowledges but does not close it. */
  spool: Pick<UsageSpool, "spoolId" | "count" | "readAfter" | "deleteThrough">;
  logger: Logger;
  metrics: Pick<UsageMetrics, "eventsSent" | "eventsAcknowledged" | "streamConnected" | "streamErrors">;
  /** Events per batch. Default 500. */
  maxBatchEvents?: number;
  /** Batches sent and not yet acknowledged, per stream. Default 4. */
  maxBatchesInFlight?: number;
  /** Reconnect when a sent batch has waited this long for an ack, in milliseconds. Default 30000. */
  ackTimeoutMs?: number;
  /** First reconnect delay, before jitter. Default 100 ms. */
  initialReconnectDelayMs?: number;
  /** Maximum reconnect delay, before jitter. Default 10000 ms. */
  maxReconnectDelayMs?: number;
  /** Source of jitter in [0, 1); Math.random by default. */
  random?: () => number;
}

export interface UsageClient {
  /** True while a stream is open. */
  readonly connected: boolean;
  /** Wakes the client after events were added to the spool. */
  notify(): void;
  /**
   * Sends what is left in the spool and waits for the server's acks for up
   * to `drainTimeoutMs`, then ends the stream and stops. It stops sooner
   * when a stream fails without an ack (the server is unreachable or rejects
   * the stream). Events not acknowledged stay in the spool for the next
   * start. Flush the recorder first, so that its last events are in the spool.
   */
  close(drainTimeoutMs: number): Promise<DrainResult>;
}

export interface DrainResult {
  /** Whether the server acknowledged every event in the spool before the timeout. */
  drained: boolean;
  /** Events sent while draining, resent ones included. */
  sent: number;
  /** Events acknowledged while draining. */
  acknowledged: number;
  /** Events left in the spool. */
  leftInSpool: number;
}

type ReportRequestInit = MessageInitShape<typeof ReportRequestSchema>;

const DEFAULT_MAX_BATCH_EVENTS = 500;
/**
 * Encoded bytes per batch, well under the server's message limit: 500 events
 * with long paths, user agents and many route scopes can exceed it, and a
 * batch the server cannot read would be resent forever.
 */
const MAX_BATCH_BYTES = 1024 * 1024;
const DEFAULT_MAX_BATCHES_IN_FLIGHT = 4;
const DEFAULT_ACK_TIMEOUT_MS = 30_000;
/** HTTP/2 PING interval, so that a connection that died without a reset is noticed while a stream is idle. */
const PING_INTERVAL_MS = 30_000;

/**
 * Starts streaming the spool to the server's UsageService.Report: Hello,
 * then batches in sequence order with up to `maxBatchesInFlight` awaiting an
 * ack, deleting from the spool through each acked sequence. An empty spool
 * is not polled: the client waits for `notify`. After any error or end of
 * stream it reconnects with exponential backoff and jitter and sends every
 * unacknowledged event again, which the server ignores when it already has
 * it.
 */
export function startUsageClient(options: UsageClientOptions): UsageClient {
  const client = new UsageStreamLoop(options);
  client.run();
  return client;
}

/** A batch sent on the current stream and not yet acknowledged. */
interface InFlightBatch {
  lastSequence: number;
}

/** Progress of one stream. */
interface StreamState {
  /** The highest sequence sent on this stream; a new stream starts again from the oldest event in the spool. */
  sentThrough: number;
  inFlight: InFlightBatch[];
  connected: boolean;
  /** The server acknowledged something on this stream. */
  acknowledged: boolean;
  /** The request side ended because a drain sent and saw acknowledged everything. */
  drained: boolean;
}

class UsageStreamLoop implements UsageClient {
  private readonly sessions: Http2SessionManager;
  private readonly client: Client<typeof UsageService>;
  /** Aborted when the drain timeout ends everything. */
  private readonly stopping = new AbortController();
  /** Aborted when a drain starts, to cut a reconnect delay short once. */
  private readonly drainStarted = new AbortController();
  private readonly wakeup = new Wakeup();
  private draining = false;
  private stopped: Promise<boolean> = Promise.resolve(true);
  private currentStream: StreamState | undefined;
  private readonly drainCounts = { sent: 0, acknowledged: 0 };

  constructor(private readonly options: UsageClientOptions) {
    this.sessions = new Http2SessionManager(options.serverUrl, { pingIntervalMs: PING_INTERVAL_MS });
    this.client = createClient(UsageService, createGrpcTransport({ baseUrl: options.serverUrl, sessionManager: this.sessions }));
    options.metrics.streamConnected.set(0);
  }

  get connected(): boolean {
    return this.currentStream?.connected ?? false;
  }

  run(): void {
    this.stopped = this.loop().catch((error: unknown) => {
      this.options.logger.error({ err: error }, "usage client stopped after an unexpected error");
      return false;
    });
  }

  notify(): void {
    this.wakeup.wake();
  }

  async close(drainTimeoutMs: number): Promise<DrainResult> {
    const { logger, spool } = this.options;
    this.draining = true;
    this.drainStarted.abort();
    this.wakeup.wake();
    logger.info({ events: spool.count, timeoutMs: drainTimeoutMs }, "usage drain started");

    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.stopping.abort();
    }, drainTimeoutMs);
    const drained = await this.stopped;
    clearTimeout(timer);
    this.stopping.abort();
    this.sessions.abort();

    const result: DrainResult = { drained, ...this.drainCounts, leftInSpool: spool.count };
    if (drained) logger.info(result, "usage drain finished");
    else logger.warn({ ...result, timedOut }, "usage drain incomplete; unacknowledged events stay in the spool for the next start");
    return result;
  }

  /** Streams until the spool is drained after `close`, or until the drain timeout; returns whether it drained. */
  private async loop(): Promise<boolean> {
    const { logger, serverUrl } = this.options;
    let failures = 0;
    while (!this.stopping.signal.aborted) {
      if (this.draining && this.options.spool.count === 0) return true;
      const state = await this.streamOnce();
      if (state.drained) return true;
      if (this.stopping.signal.aborted) break;
      // A drain retries only a stream that was making progress. A server that is unreachable or rejects the stream would only use up the drain timeout, and the events are sent after the next start anyway.
      if (this.draining && !state.acknowledged) break;

      // A stream that got an ack was healthy, so backoff starts again from the first step.
      failures = state.acknowledged ? 1 : failures + 1;
      const delayMs = backoffDelayMs(failures, this.options.random ?? Math.random, {
        initialDelayMs: this.options.initialReconnectDelayMs,
        maxDelayMs: this.options.maxReconnectDelayMs,
      });
      logger.info({ server: serverUrl, attempt: failures, delayMs }, "usage stream reconnecting");
      // The start of a drain cuts one delay short, so shutdown does not spend its time waiting; later delays back off again.
      await sleep(delayMs, this.draining ? this.stopping.signal : this.drainStarted.signal);
    }
    return this.options.spool.count === 0;
  }

  /** Runs one stream until it ends. Errors are logged and counted here instead of thrown, so the loop always goes on. */
  private async streamOnce(): Promise<StreamState> {
    const state: StreamState = { sentThrough: 0, inFlight: [], connected: false, acknowledged: false, drained: false };
    this.currentStream = state;
    const call = new AbortController();
    const abortCall = () => call.abort();
    const wake = () => this.wakeup.wake();
    this.stopping.signal.addEventListener("abort", abortCall, { once: true });
    call.signal.addEventListener("abort", wake, { once: true });
    const ackTimer = new AckTimer(this.options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS, () => call.abort(new AckTimeoutError()));

    try {
      const responses = this.client.report(this.requests(state, call.signal, ackTimer), {
        signal: call.signal,
        headers: { authorization: `Bearer ${this.options.token}` },
      });
      for await (const response of responses) {
        if (response.message.case === "ack") this.applyAck(state, Number(response.message.value.sequence), ackTimer);
      }
      if (!state.drained && !this.stopping.signal.aborted) {
        this.options.metrics.streamErrors.inc();
        this.options.logger.warn({ server: this.options.serverUrl }, "usage stream ended by the server");
      }
    } catch (error) {
      if (!this.stopping.signal.aborted) this.reportFailure(call.signal.reason instanceof AckTimeoutError ? call.signal.reason : error, state.connected);
    } finally {
      ackTimer.stop();
      call.abort();
      this.stopping.signal.removeEventListener("abort", abortCall);
      this.options.metrics.streamConnected.set(0);
      this.currentStream = undefined;
    }
    return state;
  }

  /**
   * Yields Hello, then batches read from the spool after what this stream
   * has sent, while fewer than `maxBatchesInFlight` await an ack. It waits
   * for a wakeup (new events, an ack, a drain, the call's end) instead of
   * polling. While draining it ends the request side once every event has
   * been acknowledged.
   */
  private async *requests(state: StreamState, signal: AbortSignal, ackTimer: AckTimer): AsyncGenerator<ReportRequestInit> {
    const { spool, metrics, sidecarId } = this.options;
    const maxBatchEvents = this.options.maxBatchEvents ?? DEFAULT_MAX_BATCH_EVENTS;
    const maxBatchesInFlight = this.options.maxBatchesInFlight ?? DEFAULT_MAX_BATCHES_IN_FLIGHT;

    yield { message: { case: "hello", value: { sidecarId, spoolId: spool.spoolId } } };
    // The transport requests the next message only once the connection is open and Hello is written. The server sends nothing before the first ack, so this is the first sign of a working stream.
    this.markConnected(state);
    while (!signal.aborted) {
      if (state.inFlight.length < maxBatchesInFlight) {
        const events = withinBytes(spool.readAfter(state.sentThrough, maxBatchEvents), MAX_BATCH_BYTES);
        if (events.length > 0) {
          state.sentThrough = events[events.length - 1]!.sequence;
          state.inFlight.push({ lastSequence: state.sentThrough });
          ackTimer.startIfStopped();
          metrics.eventsSent.inc(events.length);
          if (this.draining) this.drainCounts.sent += events.length;
          yield { message: { case: "batch", value: batchOf(events) } };
          continue;
        }
        if (this.draining && state.inFlight.length === 0) {
          state.drained = true;
          return;
        }
      }
      await this.wakeup.wait();
    }
  }

  /** Deletes what the server acknowledged and frees the batches it covers. An ack beyond what was sent breaks the protocol and ends the stream. */
  private applyAck(state: StreamState, sequence: number, ackTimer: AckTimer): void {
    if (sequence > state.sentThrough) throw new ProtocolError(`the server acknowledged sequence ${sequence}, but only ${state.sentThrough} was sent`);
    const deleted = this.options.spool.deleteThrough(sequence);
    this.options.metrics.eventsAcknowledged.inc(deleted);
    if (this.draining) this.drainCounts.acknowledged += deleted;
    state.acknowledged = true;

    while (state.inFlight.length > 0 && state.inFlight[0]!.lastSequence <= sequence) state.inFlight.shift();
    if (state.inFlight.length === 0) ackTimer.stop();
    else ackTimer.restart();
    this.wakeup.wake();
  }

  private markConnected(state: StreamState): void {
    if (state.connected) return;
    state.connected = true;
    this.options.metrics.streamConnected.set(1);
    this.options.logger.info({ server: this.options.serverUrl, sidecarId: this.options.sidecarId, spoolId: this.options.spool.spoolId, spooled: this.options.spool.count }, "usage stream connected");
  }

  private reportFailure(error: unknown, wasConnected: boolean): void {
    const { logger, metrics, serverUrl } = this.options;
    metrics.streamErrors.inc();
    if (error instanceof ConnectError) {
      // Transport and server errors are expected while the server is away, so the message is logged without a stack per retry.
      const fields = { server: serverUrl, code: Code[error.code], error: error.message, connected: wasConnected };
      if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
        logger.error(fields, "usage stream rejected by the server: check the sidecar token (--token or TOLLGATE_SIDECAR_TOKEN)");
      } else if (error.code === Code.Unimplemented) {
        logger.error(fields, "the server does not accept usage events; upgrade it or start the sidecar with --no-usage");
      } else if (error.code === Code.InvalidArgument) {
        // The batch is sent again after reconnecting, so later events wait behind it until the server accepts it (a fixed clock, an upgrade).
        logger.error(fields, "usage batch rejected by the server");
      } else {
        logger.warn(fields, wasConnected ? "usage stream lost" : "usage stream connection failed");
      }
    } else if (error instanceof AckTimeoutError || error instanceof ProtocolError) {
      logger.warn({ server: serverUrl, error: error.message }, "usage stream reset");
    } else {
      logger.error({ server: serverUrl, err: error, connected: wasConnected }, "usage stream failed to read or write the spool");
    }
  }
}

/**
 * Builds an EventBatch from spooled bytes without decoding them. Each event
 * goes in as an unknown field with number 1, the number of `repeated
 * UsageEvent events`. protobuf-es writes unknown fields out byte for byte, so
 * the receiver decodes them as ordinary events. Decoding and encoding again
 * instead measured several times the CPU of the event's Check.
 */
function batchOf(events: readonly SpooledEvent[]): EventBatch {
  const batch = create(EventBatchSchema);
  batch.$unknown = events.map(({ sequence, bytes }) => ({ no: 1, wireType: WireType.LengthDelimited, data: frameSpooledEvent(sequence, bytes) }));
  return batch;
}

/** Returns the longest first part of `events` that fits in `maxBytes`, and at least one event. */
function withinBytes(events: SpooledEvent[], maxBytes: number): SpooledEvent[] {
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    bytes += events[i]!.bytes.length;
    if (bytes > maxBytes && i > 0) return events.slice(0, i);
  }
  return events;
}

/** An ack for more than the stream sent. */
class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

class AckTimeoutError extends Error {
  override readonly name = "AckTimeoutError";
  constructor() {
    super("a sent batch was not acknowledged within the ack timeout");
  }
}

/** Calls `onTimeout` once when a batch has waited `timeoutMs` for an ack; runs only while batches are in flight. */
class AckTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly onTimeout: () => void,
  ) {}

  startIfStopped(): void {
    if (this.timer === undefined) this.timer = setTimeout(this.onTimeout, this.timeoutMs);
  }

  restart(): void {
    this.stop();
    this.startIfStopped();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A promise that `wake` resolves; each `wait` after a `wake` gets a new one. */
class Wakeup {
  private pending: { promise: Promise<void>; resolve: () => void } | undefined;

  wait(): Promise<void> {
    if (!this.pending) {
      let resolve!: () => void;
      const promise = new Promise<void>((done) => (resolve = done));
      this.pending = { promise, resolve };
    }
    return this.pending.promise;
  }

  wake(): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.resolve();
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
