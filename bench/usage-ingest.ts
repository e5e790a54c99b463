import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { createClient, type Client } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import Database from "better-sqlite3";
import { loadServerConfig } from "../src/config/server-config.js";
import { EventBatchSchema, ReportResponseSchema, UsageService, type EventBatch, type ReportRequest, type ReportRequestSchema } from "../src/gen/tollgate/usage/v1/usage_pb.js";
import { createLogger } from "../src/log/logger.js";
import { startDualProtocolServer, type RequestHandler } from "../src/server/http-server.js";
import { startServer } from "../src/server/server.js";
import { frameSpooledEvent } from "../src/usage/event-encoding.js";
import { usageDatabasePath } from "../src/usage/usage-schema.js";

export const INGEST_CASES = ["server", "floor"] as const;
export type IngestCase = (typeof INGEST_CASES)[number];

/** One measurement of events streamed over UsageService.Report. */
export interface IngestRun {
  case: IngestCase;
  round: number;
  /** Events acknowledged while measured, after the warm-up stream. */
  events: number;
  /** From the first measured batch sent to the last ack received. */
  elapsedMs: number;
  eventsPerSecond: number;
  /** For the server: events in usage_events afterwards, warm-up included; for the floor, which stores nothing, undefined. */
  storedEvents: number | undefined;
  problems: string[];
}

export interface IngestRunOptions {
  /** Events as the spool stores them (see encodeUsageRecord), cycled through. */
  encodedEvents: readonly Uint8Array[];
  /** Events per batch, as the sidecar's usage client sends by default. */
  batchEvents: number;
  /** Batches sent and not yet acknowledged, as the sidecar's usage client allows by default. */
  maxBatchesInFlight: number;
  warmupMs: number;
  durationMs: number;
}

/**
 * Measures one case with a stream client in this process: `server` runs
 * the real server in this process (startServer, with a fresh data folder
 * under `dir`, synchronous=FULL commits) and checks afterwards that its
 * usage.db contains exactly the events sent; `floor` runs a connect-node
 * UsageService on the same HTTP stack that acks every batch at once and
 * stores nothing. Both servers share this process's thread with the
 * client, so the ratio compares like with like.
 */
export async function measureIngestCase(ingestCase: IngestCase, round: number, dir: string, options: IngestRunOptions): Promise<IngestRun> {
  const dataDir = join(dir, `ingest-${round}`);
  const server = ingestCase === "server" ? await startRealServer(dataDir) : await startFloorServer();
  const sessions = new Http2SessionManager(server.baseUrl);
  try {
    const client = createClient(UsageService, createGrpcTransport({ baseUrl: server.baseUrl, sessionManager: sessions }));
    const stream = new BatchStream(client, server.token, options);
    const warmup = await stream.run(options.warmupMs);
    const measured = await stream.run(options.durationMs);
    const problems = [...warmup.problems, ...measured.problems];

    let storedEvents: number | undefined;
    if (ingestCase === "server") {
      storedEvents = countStoredEvents(dataDir, stream.sidecarId);
      const sent = warmup.events + measured.events;
      if (storedEvents !== sent) problems.push(`usage.db contains ${storedEvents} events from the stream, but ${sent} were sent and acknowledged`);
    }
    const eventsPerSecond = (measured.events / measured.elapsedMs) * 1000;
    return { case: ingestCase, round, events: measured.events, elapsedMs: measured.elapsedMs, eventsPerSecond, storedEvents, problems };
  } finally {
    sessions.abort();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface IngestServer {
  baseUrl: string;
  /** A sidecar token the server accepts; the floor accepts any. */
  token: string;
  close(): Promise<void>;
}

async function startRealServer(dataDir: string): Promise<IngestServer> {
  mkdirSync(dataDir, { recursive: true });
  const loaded = loadServerConfig({ data: dataDir, listen: "127.0.0.1:0", logLevel: "silent" }, { TOLLGATE_ADMIN_TOKEN: `bench-admin-${randomBytes(16).toString("hex")}` });
  if (!loaded.ok) throw new Error(`invalid server configuration: ${loaded.problems.join("; ")}`);
  const server = await startServer(loaded.config, { logger: createLogger("silent") });
  try {
    const { secret } = await server.store.createToken(null, { name: "bench ingest", kind: "sidecar" });
    return { baseUrl: `http://127.0.0.1:${server.port}`, token: secret, close: () => server.close() };
  } catch (error) {
    await server.close();
    throw error;
  }
}

/** Serves UsageService.Report on the server's HTTP stack, acking each batch with its last sequence as soon as it is decoded. */
async function startFloorServer(): Promise<IngestServer> {
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(UsageService, {
        async *report(requests: AsyncIterable<ReportRequest>) {
          for await (const request of requests) {
            if (request.message.case !== "batch") continue;
            const sequence = request.message.value.events.at(-1)?.sequence ?? 0n;
            yield create(ReportResponseSchema, { message: { case: "ack", value: { sequence } } });
          }
        },
      }),
  });
  const http = await startDualProtocolServer("127.0.0.1", 0, handler as RequestHandler, createLogger("silent"));
  return { baseUrl: `http://127.0.0.1:${http.port}`, token: "floor", close: () => http.close(1_000) };
}

function countStoredEvents(dataDir: string, sidecarId: string): number {
  const db = new Database(usageDatabasePath(dataDir), { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT count(*) FROM usage_events WHERE sidecar_id = ?").pluck().get(sidecarId) as number;
  } finally {
    db.close();
  }
}

interface StreamResult {
  events: number;
  elapsedMs: number;
  problems: string[];
}

type ReportRequestInit = MessageInitShape<typeof ReportRequestSchema>;

/** Batches of one stream that await an ack, and a way to wait for the next ack. */
class AckWindow {
  /** The last sequence of each batch sent and not yet acknowledged, oldest first. */
  readonly awaiting: number[] = [];
  private wake: () => void = () => {};

  nextAck(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** Takes the oldest batch off the window; returns a problem when `sequence` is not its last sequence. */
  acknowledge(sequence: number): string | undefined {
    const expected = this.awaiting.shift();
    this.wake();
    return sequence === expected ? undefined : `ack for sequence ${sequence}, expected ${expected}`;
  }
}

/**
 * One sidecar's view of the usage stream: Hello, then batches with rising
 * sequences, at most `maxBatchesInFlight` awaiting an ack. Sequences go on
 * rising across runs, as they would across a sidecar's reconnects.
 */
class BatchStream {
  readonly sidecarId = `bench-ingest-${randomBytes(4).toString("hex")}`;
  private readonly spoolId = randomUUID();
  private lastSequence = 0;

  constructor(
    private readonly client: Client<typeof UsageService>,
    private readonly token: string,
    private readonly options: IngestRunOptions,
  ) {}

  /** Sends batches for `durationMs`, then waits for every ack and ends the stream. */
  async run(durationMs: number): Promise<StreamResult> {
    const window = new AckWindow();
    const timing = { batches: 0, startedMs: performance.now() };
    const problems: string[] = [];

    const responses = this.client.report(this.requests(window, timing, durationMs), { headers: { authorization: `Bearer ${this.token}` } });
    for await (const response of responses) {
      const problem = window.acknowledge(Number(response.message.value?.sequence ?? 0n));
      if (problem !== undefined) problems.push(problem);
    }
    if (window.awaiting.length > 0) problems.push(`the stream ended with ${window.awaiting.length} batches unacknowledged`);
    return { events: timing.batches * this.options.batchEvents, elapsedMs: performance.now() - timing.startedMs, problems };
  }

  private async *requests(window: AckWindow, timing: { batches: number; startedMs: number }, durationMs: number): AsyncGenerator<ReportRequestInit> {
    yield { message: { case: "hello", value: { sidecarId: this.sidecarId, spoolId: this.spoolId } } };
    // The transport reads the next message only once the stream is open, so the clock starts with the first batch.
    timing.startedMs = performance.now();
    const stopAtMs = timing.startedMs + durationMs;
    while (performance.now() < stopAtMs) {
      if (window.awaiting.length >= this.options.maxBatchesInFlight) {
        await window.nextAck();
        continue;
      }
      const batch = this.nextBatch();
      window.awaiting.push(this.lastSequence);
      timing.batches += 1;
      yield { message: { case: "batch", value: batch } };
    }
    while (window.awaiting.length > 0) await window.nextAck();
  }

  /** Frames spooled bytes into a batch without decoding them, as the sidecar's usage client does. */
  private nextBatch(): EventBatch {
    const { encodedEvents, batchEvents } = this.options;
    const batch = create(EventBatchSchema);
    batch.$unknown = [];
    for (let i = 0; i < batchEvents; i++) {
      this.lastSequence += 1;
      const data = frameSpooledEvent(this.lastSequence, encodedEvents[this.lastSequence % encodedEvents.length]!);
      batch.$unknown.push({ no: 1, wireType: WireType.LengthDelimited, data });
    }
    return batch;
  }
}
