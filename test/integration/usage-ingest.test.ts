import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  Decision,
  ReportRequestSchema,
  UsageEventSchema,
  UsageService,
  type ReportRequest,
  type ReportResponse,
  type UsageEvent,
} from "../../src/gen/tollgate/usage/v1/usage_pb.js";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import { createManualClock } from "../../src/clock.js";
import { createLogger } from "../../src/log/logger.js";
import { startDualProtocolServer, type DualProtocolServer, type RequestHandler } from "../../src/server/http-server.js";
import { SqliteServerStore } from "../../src/server/store/sqlite-server-store.js";
import { createUsageIngestMetrics } from "../../src/usage/ingest-metrics.js";
import { MAX_MESSAGE_BYTES, registerUsageIngestService } from "../../src/usage/ingest-service.js";
import { SqliteUsageStore } from "../../src/usage/usage-store.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { makeTempDir } from "../helpers/sidecar-harness.js";

/**
 * The request side of a bidi stream, fed by the test: `push` sends a
 * message, `end` half-closes the stream.
 */
class RequestQueue implements AsyncIterable<ReportRequest> {
  private readonly items: ReportRequest[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  push(request: ReportRequest): void {
    this.items.push(request);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ReportRequest> {
    for (;;) {
      const item = this.items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

const hello = (sidecarId = "pod-1", spoolId = "spool-a") => create(ReportRequestSchema, { message: { case: "hello", value: { sidecarId, spoolId } } });
const batch = (events: UsageEvent[]) => create(ReportRequestSchema, { message: { case: "batch", value: { events } } });

describe("UsageService.Report", () => {
  let harness: ServerHarness;
  let sidecarToken: string;

  beforeEach(async () => {
    harness = await startServerHarness();
    sidecarToken = (await harness.server.store.createToken(null, { name: "sidecar", kind: "sidecar" })).secret;
  });
  afterEach(async () => {
    await harness.close();
  });

  function usageEvents(first: number, last: number): UsageEvent[] {
    const events: UsageEvent[] = [];
    for (let sequence = first; sequence <= last; sequence++) {
      events.push(
        create(UsageEventSchema, {
          sequence: BigInt(sequence),
          timeMs: BigInt(harness.clock.wallMs()),
          apiId: "api_shop",
          keyId: "key_a",
          decision: Decision.ALLOW,
          reason: "ok",
          status: 200,
          cost: 2n,
        }),
      );
    }
    return events;
  }

  /** Opens a Report stream over gRPC (HTTP/2) with `token`, or with no token for null. */
  function openStream(token: string | null) {
    const requests = new RequestQueue();
    const responses = harness.grpcClient(UsageService, token).report(requests, { timeoutMs: 10_000 })[Symbol.asyncIterator]();
    return { requests, responses };
  }

  async function expectAck(responses: AsyncIterator<ReportResponse>, sequence: bigint) {
    const next = await responses.next();
    expect(next.done).toBe(false);
    expect(next.value).toMatchObject({ message: { case: "ack", value: { sequence } } });
  }

  /** Reads the error that ends a stream, then ends the request side as a sidecar would. */
  async function failureOf(stream: ReturnType<typeof openStream>): Promise<ConnectError> {
    const failure = await stream.responses.next().then(
      () => undefined,
      (error: unknown) => error,
    );
    stream.requests.end();
    expect(failure).toBeInstanceOf(ConnectError);
    return failure as ConnectError;
  }

  const requestTotal = () => (harness.server.usage.db.prepare("SELECT coalesce(sum(requests), 0) AS n FROM usage_minutes").get() as { n: number }).n;
  const rawCount = () => (harness.server.usage.db.prepare("SELECT count(*) AS n FROM usage_events").get() as { n: number }).n;
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(await harness.server.registry.metrics())?.[1]);

  it("acknowledges each batch a sidecar token sends", async () => {
    const { requests, responses } = openStream(sidecarToken);
    requests.push(hello());
    requests.push(batch(usageEvents(1, 3)));
    requests.push(batch(usageEvents(4, 5)));

    await expectAck(responses, 3n);
    await expectAck(responses, 5n);
    requests.end();

    expect(await responses.next()).toMatchObject({ done: true });
    expect(rawCount()).toBe(5);
    expect(requestTotal()).toBe(5);
    expect(await metric("tollgate_server_usage_events_ingested_total")).toBe(5);
    expect(harness.logText()).toMatch(/"sidecarId":"pod-1","spoolId":"spool-a","msg":"usage stream opened"/);
    expect(harness.logText()).toMatch(/"batches":2,"inserted":5,"duplicates":0,"highestSequence":5,"reason":"client closed the stream","msg":"usage stream closed"/);
    expect(harness.logText()).not.toContain(sidecarToken);
  });

  it("accepts a batch larger than 1 MiB", async () => {
    const events = usageEvents(1, 500).map((event) => ({ ...event, path: `/${"p".repeat(2047)}`, userAgent: "u".repeat(256), requestId: "r".repeat(200) }));
    const { requests, responses } = openStream(sidecarToken);
    requests.push(hello());
    requests.push(batch(events));

    await expectAck(responses, 500n);
    requests.end();
    expect(rawCount()).toBe(500);
  });

  it("accepts an admin token too", async () => {
    const { requests, responses } = openStream(ADMIN_TOKEN);
    requests.push(hello());
    requests.push(batch(usageEvents(1, 1)));

    await expectAck(responses, 1n);
    requests.end();
  });

  it.each([
    ["no token", null],
    ["a wrong token", "tgsidecar_not-a-real-token"],
  ])("rejects %s", async (_name, token) => {
    const stream = openStream(token);
    const { requests, responses } = stream;
    requests.push(hello());
    requests.push(batch(usageEvents(1, 1)));

    expect((await failureOf(stream)).code).toBe(Code.Unauthenticated);
    expect(rawCount()).toBe(0);
  });

  it("rejects a batch before the hello", async () => {
    const stream = openStream(sidecarToken);
    const { requests, responses } = stream;
    requests.push(batch(usageEvents(1, 1)));

    const failure = await failureOf(stream);

    expect(failure.code).toBe(Code.InvalidArgument);
    expect(failure.rawMessage).toBe("message: the first message of a usage stream must be a hello");
    expect(rawCount()).toBe(0);
  });

  it.each([
    ["an empty sidecar id", "", "spool-a", "hello.sidecar_id"],
    ["a sidecar id with spaces", "pod 1", "spool-a", "hello.sidecar_id"],
    ["a spool id of 129 characters", "pod-1", "s".repeat(129), "hello.spool_id"],
  ])("rejects a hello with %s", async (_name, sidecarId, spoolId, field) => {
    const stream = openStream(sidecarToken);
    const { requests, responses } = stream;
    requests.push(hello(sidecarId, spoolId));

    const failure = await failureOf(stream);

    expect(failure.code).toBe(Code.InvalidArgument);
    expect(failure.rawMessage).toMatch(new RegExp(`^${field}: must be 1 to 128 letters`));
  });

  it("rejects a second hello", async () => {
    const stream = openStream(sidecarToken);
    const { requests, responses } = stream;
    requests.push(hello());
    requests.push(hello());

    const failure = await failureOf(stream);

    expect(failure.code).toBe(Code.InvalidArgument);
    expect(failure.rawMessage).toBe("message: only batches may follow the hello");
  });

  it("rejects an invalid event naming the field and sequence", async () => {
    const stream = openStream(sidecarToken);
    const { requests, responses } = stream;
    const events = usageEvents(1, 3);
    events[2]!.reason = "";
    requests.push(hello());
    requests.push(batch(events));

    const failure = await failureOf(stream);

    expect(failure.code).toBe(Code.InvalidArgument);
    expect(failure.rawMessage).toMatch(/^reason \(event sequence 3\): must be/);
    expect(rawCount()).toBe(0);
    expect(harness.logText()).toMatch(/"field":"reason","sequence":"3".*"msg":"usage batch rejected"/);
  });

  it("does not count a batch resent on a new stream", async () => {
    const first = openStream(sidecarToken);
    first.requests.push(hello());
    first.requests.push(batch(usageEvents(1, 4)));
    await expectAck(first.responses, 4n);
    first.requests.end();
    await first.responses.next();

    const second = openStream(sidecarToken);
    second.requests.push(hello());
    second.requests.push(batch(usageEvents(1, 4)));
    second.requests.push(batch(usageEvents(3, 6)));
    await expectAck(second.responses, 4n);
    await expectAck(second.responses, 6n);
    second.requests.end();

    expect(rawCount()).toBe(6);
    expect(requestTotal()).toBe(6);
    expect(await metric("tollgate_server_usage_events_ingested_total")).toBe(6);
    expect(await metric("tollgate_server_usage_events_duplicate_total")).toBe(6);
  });

  it("ends a stream whose token is revoked at its next batch", async () => {
    const [tokenRecord] = (await harness.server.store.listTokens()).filter((token) => token.kind === "sidecar");
    const stream = openStream(sidecarToken);
    const { requests, responses } = stream;
    requests.push(hello());
    requests.push(batch(usageEvents(1, 1)));
    await expectAck(responses, 1n);

    await harness.server.store.revokeToken({ id: "test", name: "test" }, tokenRecord!.id);
    requests.push(batch(usageEvents(2, 2)));

    expect((await failureOf(stream)).code).toBe(Code.Unauthenticated);
    expect(rawCount()).toBe(1);
  });

  it("counts open streams", async () => {
    const streamGauge = () => metric("tollgate_server_usage_streams");
    const { requests, responses } = openStream(sidecarToken);
    requests.push(hello());
    requests.push(batch(usageEvents(1, 1)));
    await expectAck(responses, 1n);

    expect(await streamGauge()).toBe(1);
    expect(await harness.server.registry.metrics()).toMatch(/^tollgate_server_usage_ingest_batch_seconds_count 1$/m);
    requests.end();
    expect(await responses.next()).toMatchObject({ done: true });
    expect(await streamGauge()).toBe(0);
  });

  it("ends open streams cleanly when the server shuts down", async () => {
    const { requests, responses } = openStream(sidecarToken);
    requests.push(hello());
    requests.push(batch(usageEvents(1, 2)));
    await expectAck(responses, 2n);

    const closing = harness.server.close();
    const ended = await responses.next().catch((error: unknown) => error);
    requests.end();
    await closing;

    expect(ended).toMatchObject({ done: true });
    expect(harness.logText()).toMatch(/"reason":"server shutting down","msg":"usage stream closed"/);
    expect(harness.logText().indexOf('"msg":"usage stream closed"')).toBeLessThan(harness.logText().indexOf('"msg":"server stopped"'));
  });
});

/**
 * UsageService.Report on a server of its own, without authentication, so
 * the test can set the hello timeout and the stream cap.
 */
describe("UsageService.Report limits", () => {
  let dataDir: string;
  let usage: SqliteUsageStore;
  let store: SqliteServerStore;
  let http: DualProtocolServer;
  let registry: Registry;
  let logText: string;
  const shutdown = new AbortController();

  async function start(limits: { helloTimeoutMs?: number; maxStreams?: number }) {
    dataDir = makeTempDir("usage-limits");
    const clock = createManualClock(Date.now());
    usage = SqliteUsageStore.open(join(dataDir, "usage.db"), clock);
    store = SqliteServerStore.open(join(dataDir, "store.db"), clock);
    registry = new Registry();
    logText = "";
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logText += chunk.toString();
        done();
      },
    });
    const logger = createLogger("debug", sink);
    const metrics = createUsageIngestMetrics(registry);
    const handler = connectNodeAdapter({
      routes: (router) => registerUsageIngestService(router, { usage, store, logger, metrics, shutdown: shutdown.signal, ...limits }),
    });
    http = await startDualProtocolServer("127.0.0.1", 0, handler as RequestHandler, logger);
  }

  afterEach(async () => {
    await http.close(0);
    await usage.close();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function openStream() {
    const requests = new RequestQueue();
    const client = createClient(UsageService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${http.port}` }));
    const responses = client.report(requests, { timeoutMs: 10_000 })[Symbol.asyncIterator]();
    return { requests, responses };
  }

  async function failureOf(stream: ReturnType<typeof openStream>): Promise<ConnectError> {
    const failure = await stream.responses.next().then(
      () => undefined,
      (error: unknown) => error,
    );
    stream.requests.end();
    expect(failure).toBeInstanceOf(ConnectError);
    return failure as ConnectError;
  }

  const streamGauge = async () => Number(/^tollgate_server_usage_streams (\d+)$/m.exec(await registry.metrics())?.[1]);

  async function waitForGauge(value: number) {
    for (let attempt = 0; attempt < 100 && (await streamGauge()) !== value; attempt++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await streamGauge()).toBe(value);
  }

  it("ends a stream without a hello after the timeout", async () => {
    await start({ helloTimeoutMs: 200 });
    const stream = openStream();

    const failure = await failureOf(stream);

    expect(failure.code).toBe(Code.DeadlineExceeded);
    expect(failure.rawMessage).toBe("no hello within 200 ms of opening the usage stream");
    expect(logText).toMatch(/"timeoutMs":200,"msg":"usage stream closed: timed out waiting for the hello"/);
    await waitForGauge(0);
  });

  it("counts a stream before its hello", async () => {
    await start({ helloTimeoutMs: 10_000 });
    const stream = openStream();

    await waitForGauge(1);

    stream.requests.end();
    await stream.responses.next();
    await waitForGauge(0);
  });

  it("rejects streams beyond the maximum", async () => {
    await start({ maxStreams: 2 });
    const open = [openStream(), openStream()];
    for (const stream of open) stream.requests.push(hello());
    await waitForGauge(2);

    const failure = await failureOf(openStream());

    expect(failure.code).toBe(Code.ResourceExhausted);
    expect(failure.rawMessage).toBe("too many usage streams open (maximum 2): retry later");
    expect(logText).toMatch(/"maxStreams":2,"msg":"usage stream rejected: too many open streams"/);

    open[0]!.requests.end();
    await open[0]!.responses.next();
    await waitForGauge(1);
    const replacement = openStream();
    replacement.requests.push(hello("pod-3"));
    await waitForGauge(2);
    for (const stream of [open[1]!, replacement]) {
      stream.requests.end();
      await stream.responses.next();
    }
  });

  it("rejects a message over 4 MiB by its header", async () => {
    await start({});
    const stream = openStream();
    stream.requests.push(hello());
    const events = Array.from({ length: 1100 }, (_, index) =>
      create(UsageEventSchema, { sequence: BigInt(index + 1), timeMs: 1n, apiId: "api_shop", keyId: "key_a", decision: Decision.ALLOW, reason: "ok", path: `/${"p".repeat(4095)}` }),
    );
    stream.requests.push(batch(events));

    const failure = await failureOf(stream);

    expect(MAX_MESSAGE_BYTES).toBe(4 * 1024 * 1024);
    expect(failure.code).toBe(Code.ResourceExhausted);
    expect(failure.rawMessage).toMatch(/message size \d+ is larger than configured readMaxBytes 4194304/);
  });
});
