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
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";

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
