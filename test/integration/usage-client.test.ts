import { rmSync } from "node:fs";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { usageSpoolPath } from "../../src/config/sidecar-config.js";
import { ReportResponseSchema, UsageService, type Hello, type UsageEvent } from "../../src/gen/tollgate/usage/v1/usage_pb.js";
import { createLogger } from "../../src/log/logger.js";
import { createUsageMetrics, type UsageMetrics } from "../../src/metrics/sidecar-metrics.js";
import { UsageSpool } from "../../src/usage/spool.js";
import { startUsageClient, type UsageClient, type UsageClientOptions } from "../../src/usage/usage-client.js";
import { records } from "../unit/usage/usage-fakes.js";
import { makeTempDir, reasonOf, startSidecarHarness } from "../helpers/sidecar-harness.js";

const TOKEN = "tgsidecar_usage-test-token";
const WAIT = { timeout: 5_000, interval: 10 };

/** How the fake server treats the batches it receives. */
interface FakeBehaviour {
  /** Receive and store batches but send no acks. */
  holdAcks: boolean;
  /** Store this many events of the next batch, then end the stream with an error, once. */
  failMidBatchAfter?: number;
  /** Sees every batch stored. */
  onBatch?: (events: UsageEvent[]) => void;
}

/**
 * A UsageService on 127.0.0.1 that stores every event by sequence (so resent
 * ones count once) and acks each batch after storing it. It follows the real
 * server's contract as the client observes it, not the real ingest.
 */
async function startFakeServer(port = 0) {
  const behaviour: FakeBehaviour = { holdAcks: false };
  const received: UsageEvent[] = [];
  const stored = new Map<bigint, UsageEvent>();
  const hellos: Hello[] = [];
  const authorizations: (string | null)[] = [];
  const sessions = new Set<ServerHttp2Session>();

  const report: ServiceImpl<typeof UsageService>["report"] = async function* (requests, context) {
    authorizations.push(context.requestHeader.get("authorization"));
    if (context.requestHeader.get("authorization") !== `Bearer ${TOKEN}`) throw new ConnectError("bad token", Code.Unauthenticated);
    for await (const request of requests) {
      if (request.message.case === "hello") {
        hellos.push(request.message.value);
        continue;
      }
      if (request.message.case !== "batch") continue;
      const events = request.message.value.events;
      if (behaviour.failMidBatchAfter !== undefined) {
        const storedPart = events.slice(0, behaviour.failMidBatchAfter);
        behaviour.failMidBatchAfter = undefined;
        store(storedPart);
        throw new ConnectError("crashed in the middle of a batch", Code.Unavailable);
      }
      store(events);
      behaviour.onBatch?.(events);
      if (!behaviour.holdAcks) yield create(ReportResponseSchema, { message: { case: "ack", value: { sequence: events[events.length - 1]!.sequence } } });
    }
  };

  function store(events: UsageEvent[]) {
    for (const event of events) {
      received.push(event);
      stored.set(event.sequence, event);
    }
  }

  const handler = connectNodeAdapter({ routes: (router) => router.service(UsageService, { report }) });
  const server: Http2Server = createServer(handler);
  server.on("session", (session) => sessions.add(session));
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const boundPort = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${boundPort}`,
    port: boundPort,
    behaviour,
    received,
    hellos,
    authorizations,
    /** Sequences stored, each once, ascending. */
    storedSequences: () => [...stored.keys()].map(Number).sort((a, b) => a - b),
    storedRequestIds: () => [...stored.entries()].sort(([a], [b]) => Number(a - b)).map(([, event]) => event.requestId),
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

type FakeServer = Awaited<ReturnType<typeof startFakeServer>>;

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function names(prefix: string, count: number): string[] {
  return range(1, count).map((i) => `${prefix}-${i}`);
}

describe("usage client", () => {
  let dataDir: string;
  let spool: UsageSpool;
  let registry: Registry;
  let metrics: UsageMetrics;
  let log: string;
  const servers: FakeServer[] = [];
  const clients: UsageClient[] = [];

  function start(serverUrl: string, options: Partial<UsageClientOptions> = {}): UsageClient {
    const logger = createLogger("debug", new Writable({ write: (chunk, _encoding, done) => ((log += chunk.toString()), done()) }));
    const client = startUsageClient({
      serverUrl,
      token: TOKEN,
      sidecarId: "edge-1",
      spool,
      logger,
      metrics,
      initialReconnectDelayMs: 10,
      maxReconnectDelayMs: 40,
      ...options,
    });
    clients.push(client);
    return client;
  }

  async function fakeServer(port?: number): Promise<FakeServer> {
    const server = await startFakeServer(port);
    servers.push(server);
    return server;
  }

  /** Appends events named `prefix-1` … and wakes the client, as the recorder does after a flush. */
  function append(client: UsageClient, prefix: string, count: number): void {
    spool.append(records(...names(prefix, count)));
    client.notify();
  }

  async function counter(name: string): Promise<number> {
    const match = new RegExp(`^${name} (\\d+)$`, "m").exec(await registry.metrics());
    return match ? Number(match[1]) : NaN;
  }

  function openSpool(): void {
    spool = UsageSpool.open(usageSpoolPath(dataDir), { maxEvents: 100_000, fullPolicy: "drop-oldest" });
  }

  beforeEach(() => {
    dataDir = makeTempDir("usage-client");
    openSpool();
    registry = new Registry();
    metrics = createUsageMetrics(registry, { spoolEvents: () => spool.count, bufferedEvents: () => 0 });
    log = "";
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close(0);
    for (const server of servers.splice(0)) await server.close();
    spool.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("delivers events in order and deletes acknowledged ones", async () => {
    const server = await fakeServer();
    const client = start(server.url, { maxBatchEvents: 7 });

    append(client, "a", 30);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);
    append(client, "b", 5);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    expect(server.received.map((event) => Number(event.sequence))).toEqual(range(1, 35));
    expect(server.received.map((event) => event.requestId)).toEqual([...names("a", 30), ...names("b", 5)]);
    expect(server.hellos).toEqual([expect.objectContaining({ sidecarId: "edge-1", spoolId: spool.spoolId })]);
    expect(server.authorizations).toEqual([`Bearer ${TOKEN}`]);
    expect(client.connected).toBe(true);
    expect(await counter("tollgate_usage_events_sent_total")).toBe(35);
    expect(await counter("tollgate_usage_events_acknowledged_total")).toBe(35);
    expect(await counter("tollgate_usage_stream_connected")).toBe(1);
    expect(log).not.toContain(TOKEN);
  });

  it("splits batches that would pass 1 MiB", async () => {
    const server = await fakeServer();
    const batchSizes: number[] = [];
    server.behaviour.onBatch = (events) => batchSizes.push(events.length);
    const client = start(server.url);

    // 300 kB paths: the event builder cuts paths, but the spool takes whatever bytes it is given.
    spool.append(names("big", 7).map((requestId) => ({ ...records(requestId)[0]!, path: `/${"p".repeat(300_000)}` })));
    client.notify();
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    expect(batchSizes).toEqual([3, 3, 1]);
    expect(server.storedSequences()).toEqual(range(1, 7));
  });

  it("connected before any event", async () => {
    const server = await fakeServer();
    const client = start(server.url);

    await vi.waitFor(() => expect(server.hellos).toHaveLength(1), WAIT);
    await vi.waitFor(() => expect(client.connected).toBe(true), WAIT);

    expect(await counter("tollgate_usage_stream_connected")).toBe(1);
    expect(log).toMatch(/"msg":"usage stream connected"/);
  });

  it("keeps unacknowledged events in the spool", async () => {
    const server = await fakeServer();
    server.behaviour.holdAcks = true;
    const client = start(server.url, { maxBatchEvents: 5, maxBatchesInFlight: 2 });

    append(client, "a", 20);
    await vi.waitFor(() => expect(server.received).toHaveLength(10), WAIT);
    // With two batches in flight and no ack, the client sends nothing more.
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(server.received).toHaveLength(10);
    expect(spool.count).toBe(20);
  });

  it("waits for notify instead of polling", async () => {
    const server = await fakeServer();
    const client = start(server.url);
    append(client, "a", 1);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    // Added without notify: the client does not see it.
    spool.append(records("quiet"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.received).toHaveLength(1);

    client.notify();
    await vi.waitFor(() => expect(server.received).toHaveLength(2), WAIT);
  });

  it("delivers everything spooled while the server was down", async () => {
    const placeholder = await startFakeServer();
    const port = placeholder.port;
    await placeholder.close();
    const client = start(`http://127.0.0.1:${port}`);

    append(client, "down", 50);
    await vi.waitFor(async () => expect(await counter("tollgate_usage_stream_errors_total")).toBeGreaterThanOrEqual(2), WAIT);
    append(client, "still-down", 25);
    expect(spool.count).toBe(75);
    expect(client.connected).toBe(false);

    const server = await fakeServer(port);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    expect(server.storedSequences()).toEqual(range(1, 75));
    expect(server.storedRequestIds()).toEqual([...names("down", 50), ...names("still-down", 25)]);
    expect(log).toMatch(/"msg":"usage stream connection failed"/);
  });

  it("resends unacknowledged events after a client restart", async () => {
    const server = await fakeServer();
    server.behaviour.holdAcks = true;
    const first = start(server.url, { maxBatchEvents: 10 });
    append(first, "a", 25);
    await vi.waitFor(() => expect(server.received).toHaveLength(25), WAIT);

    const drain = await first.close(50);
    clients.splice(clients.indexOf(first), 1);
    spool.close();
    openSpool();
    server.behaviour.holdAcks = false;
    start(server.url, { maxBatchEvents: 10 });
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    expect(drain).toEqual({ drained: false, sent: 0, acknowledged: 0, leftInSpool: 25 });
    expect(server.received.map((event) => Number(event.sequence))).toEqual([...range(1, 25), ...range(1, 25)]);
    expect(server.hellos.map((hello) => hello.spoolId)).toEqual([spool.spoolId, spool.spoolId]);
    expect(server.storedSequences()).toEqual(range(1, 25));
  });

  it("resends from the broken batch when the stream drops mid-batch", async () => {
    const server = await fakeServer();
    const client = start(server.url, { maxBatchEvents: 10, maxBatchesInFlight: 1 });
    append(client, "a", 10);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    server.behaviour.failMidBatchAfter = 4;
    append(client, "b", 30);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    const sequences = server.received.map((event) => Number(event.sequence));
    // 11-14 arrived before the failure, then the whole batch from 11 came again.
    expect(sequences).toEqual([...range(1, 10), ...range(11, 14), ...range(11, 40)]);
    expect(server.storedSequences()).toEqual(range(1, 40));
    expect(server.hellos).toHaveLength(2);
    expect(await counter("tollgate_usage_stream_errors_total")).toBe(1);
    expect(log).toMatch(/"code":"Unavailable".*"msg":"usage stream lost"/);
  });

  it("reconnects when an ack does not come", async () => {
    const server = await fakeServer();
    server.behaviour.holdAcks = true;
    const client = start(server.url, { ackTimeoutMs: 50 });
    append(client, "a", 3);
    await vi.waitFor(() => expect(server.hellos.length).toBeGreaterThanOrEqual(2), WAIT);

    server.behaviour.holdAcks = false;
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    expect(log).toMatch(/"error":"a sent batch was not acknowledged within the ack timeout","msg":"usage stream reset"/);
    expect(server.storedSequences()).toEqual([1, 2, 3]);
  });

  it("reports a rejected token", async () => {
    const server = await fakeServer();
    start(server.url, { token: "tgsidecar_wrong-token" });

    await vi.waitFor(() => expect(log).toMatch(/"code":"Unauthenticated".*"msg":"usage stream rejected by the server: check the sidecar token/), WAIT);
    expect(log).not.toContain("tgsidecar_wrong-token");
  });

  it("drains what is left on close", async () => {
    const server = await fakeServer();
    const client = start(server.url, { maxBatchEvents: 4 });
    append(client, "a", 3);
    await vi.waitFor(() => expect(spool.count).toBe(0), WAIT);

    spool.append(records(...names("late", 10)));
    const result = await client.close(5_000);
    clients.splice(0);

    expect(result).toEqual({ drained: true, sent: 10, acknowledged: 10, leftInSpool: 0 });
    expect(server.storedSequences()).toEqual(range(1, 13));
    expect(log).toMatch(/"drained":true,"sent":10,"acknowledged":10,"leftInSpool":0,"msg":"usage drain finished"/);
  });

  it("drain times out without acks", async () => {
    const server = await fakeServer();
    server.behaviour.holdAcks = true;
    const client = start(server.url);
    await vi.waitFor(() => expect(client.connected).toBe(true), WAIT);
    spool.append(records(...names("a", 5)));

    const startedMs = Date.now();
    const result = await client.close(200);
    clients.splice(0);

    expect(result).toEqual({ drained: false, sent: 5, acknowledged: 0, leftInSpool: 5 });
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(190);
    expect(server.received).toHaveLength(5);
    expect(log).toMatch(/"timedOut":true,"msg":"usage drain incomplete; unacknowledged events stay in the spool for the next start"/);
  });

  it("drain stops early when the server is unreachable", async () => {
    const placeholder = await startFakeServer();
    await placeholder.close();
    const client = start(placeholder.url, { initialReconnectDelayMs: 5_000, maxReconnectDelayMs: 5_000 });
    append(client, "a", 5);
    await vi.waitFor(async () => expect(await counter("tollgate_usage_stream_errors_total")).toBe(1), WAIT);

    const startedMs = Date.now();
    const result = await client.close(10_000);
    clients.splice(0);

    expect(result).toEqual({ drained: false, sent: 0, acknowledged: 0, leftInSpool: 5 });
    // One more attempt, cut short of the 5 s reconnect delay, then no waiting for the timeout.
    expect(Date.now() - startedMs).toBeLessThan(2_000);
    expect(await counter("tollgate_usage_stream_errors_total")).toBe(2);
    expect(log).toMatch(/"timedOut":false,"msg":"usage drain incomplete/);
  });

  it("drain of an empty spool returns at once", async () => {
    const placeholder = await startFakeServer();
    await placeholder.close();
    const client = start(placeholder.url);

    const result = await client.close(5_000);
    clients.splice(0);

    expect(result).toEqual({ drained: true, sent: 0, acknowledged: 0, leftInSpool: 0 });
  });
});

describe("sidecar usage metering", () => {
  it("sends an event per Check and drains on close", async () => {
    const server = await startFakeServer();
    const sidecar = await startSidecarHarness(
      { server: server.url, token: TOKEN, sidecarId: "edge-7", usageFlushInterval: "5ms", trustedProxyHops: "1" },
      { createStore: false },
    );
    let closed = false;
    try {
      // The fake server does not replicate keys, so the sidecar stays not ready and denies every Check.
      const response = await sidecar.check({ path: "/v1/orders?api_key=tg_secret&page=2", headers: { "x-forwarded-for": "198.51.100.4", "user-agent": "test-agent" }, contextExtensions: { "tollgate.api": "shop" } });
      expect(reasonOf(response)).toBe("not_ready");
      await vi.waitFor(() => expect(server.received).toHaveLength(1), WAIT);

      expect(server.received[0]).toMatchObject({
        sequence: 1n,
        path: "/v1/orders",
        method: "GET",
        reason: "not_ready",
        status: 503,
        clientAddress: "198.51.100.4",
        userAgent: "test-agent",
        keyId: "",
        apiId: "",
      });
      expect(server.hellos[0]).toMatchObject({ sidecarId: "edge-7" });
      // The server stores the event before it sends the ack, so the client's count may follow a moment later.
      await vi.waitFor(async () => expect(await sidecar.sidecar.metrics.registry.metrics()).toMatch(/^tollgate_usage_events_acknowledged_total 1$/m), WAIT);
      const metricsText = await sidecar.sidecar.metrics.registry.metrics();
      expect(metricsText).toMatch(/^tollgate_usage_stream_connected 1$/m);
      expect(metricsText).toMatch(/^tollgate_usage_spool_events 0$/m);
      expect(metricsText).toMatch(/^tollgate_usage_events_dropped_total\{cause="spool_full"\} 0$/m);

      await sidecar.check({ path: "/v1/last" });
      closed = true;
      await sidecar.close();

      expect(server.received.map((event) => event.path)).toEqual(["/v1/orders", "/v1/last"]);
      const messages = sidecar.logLines.map((line) => line.msg);
      expect(messages).toEqual(expect.arrayContaining(["checks stopped", "usage events flushed to the spool", "usage drain finished", "usage spool closed"]));
      expect(messages.indexOf("checks stopped")).toBeLessThan(messages.indexOf("usage drain finished"));
      expect(sidecar.logText()).not.toContain("tg_secret");
    } finally {
      if (!closed) await sidecar.close();
      await server.close();
    }
  });
});
