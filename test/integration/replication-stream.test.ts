import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createManualClock } from "../../src/clock.js";
import { storePath } from "../../src/config/sidecar-config.js";
import {
  BatchSchema,
  ReplicationService,
  SubscribeResponseSchema,
  type Batch,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../src/gen/tollgate/replication/v1/replication_pb.js";
import { KeyStore, type ChangeSet } from "../../src/keys/key-store.js";
import { hashKey } from "../../src/keys/key-format.js";
import { countRows, decodeBatch, encodeBatch, type ReplicationBatch } from "../../src/keys/replica-messages.js";
import { createLogger } from "../../src/log/logger.js";
import { readChangeBatches } from "../../src/server/replication/change-batches.js";
import { registerReplicationService } from "../../src/server/replication/replication-service.js";
import type { Actor } from "../../src/server/store/records.js";
import { SqliteServerStore } from "../../src/server/store/sqlite-server-store.js";
import { createReplicaMetrics } from "../../src/metrics/sidecar-metrics.js";
import { ReplicaWriter } from "../../src/sidecar/replica-writer.js";
import { startReplicationClient } from "../../src/sidecar/replication-client.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { httpStatusOf, makeTempDir, reasonOf, startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

const ACTOR: Actor = { id: "test", name: "test" };
const TIERS = [{ limit: 5, windowMs: 1_000, mode: "reject" as const }];

/** Creates a server store in a temp folder with one API, one plan and `keyCount` keys. */
async function seededStore(keyCount: number) {
  const dataDir = makeTempDir("replication-store");
  const clock = createManualClock(Date.now());
  const store = SqliteServerStore.open(storePath(dataDir), clock);
  const org = await store.defaultOrg(ACTOR);
  const api = await store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
  const plan = await store.setPlan(ACTOR, { apiId: api.id, name: "free", tiers: TIERS, makeDefault: true });
  const keys = [];
  for (let i = 0; i < keyCount; i++) keys.push(await store.createKey(ACTOR, { apiId: api.id, name: `key ${i}` }));
  return {
    store,
    api,
    plan,
    keys,
    async close() {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function versionsOf(changes: ChangeSet): number[] {
  return [...changes.apis, ...changes.plans, ...changes.keys].map((row) => row.version);
}

describe("change batches", () => {
  let seeded: Awaited<ReturnType<typeof seededStore>>;
  beforeEach(async () => {
    seeded = await seededStore(25);
  });
  afterEach(async () => {
    await seeded.close();
  });

  it("splits a snapshot into consistent prefixes", async () => {
    const batches = await collect(readChangeBatches(seeded.store, 0, { reset: true, maxRows: 10 }));

    expect(batches.map((batch) => batch.reset)).toEqual([true, false, false]);
    expect(batches.map((batch) => batch.complete)).toEqual([false, false, true]);
    let previousVersion = 0;
    for (const batch of batches) {
      for (const version of versionsOf(batch)) {
        expect(version).toBeGreaterThan(previousVersion);
        expect(version).toBeLessThanOrEqual(batch.version);
      }
      expect(batch.keys.length).toBeLessThanOrEqual(10);
      previousVersion = batch.version;
    }
    expect(batches.at(-1)!.version).toBe(await seeded.store.currentVersion());
    expect(batches.flatMap((batch) => batch.keys.map((key) => key.id)).sort()).toEqual(seeded.keys.map(({ key }) => key.id).sort());
    expect(batches.flatMap((batch) => batch.apis)).toHaveLength(1);
    expect(batches.flatMap((batch) => batch.plans)).toHaveLength(1);
  });

  it("ends an exact multiple of the batch size with an empty complete batch", async () => {
    // One API row and one plan row, so a batch size of 1 cuts every read.
    const batches = await collect(readChangeBatches(seeded.store, 0, { reset: true, maxRows: 1 }));

    const last = batches.at(-1)!;
    expect(last.complete).toBe(true);
    expect(countRows(last)).toBe(0);
    expect(batches.slice(0, -1).every((batch) => !batch.complete)).toBe(true);
    expect(batches.flatMap((batch) => batch.keys)).toHaveLength(25);
  });

  it("sends one empty complete batch for an empty store", async () => {
    const dataDir = makeTempDir("replication-empty");
    const store = SqliteServerStore.open(storePath(dataDir), createManualClock());
    try {
      const batches = await collect(readChangeBatches(store, 0, { reset: true }));
      expect(batches).toHaveLength(1);
      expect(batches[0]).toMatchObject({ reset: true, complete: true, version: 0, apis: [], plans: [], keys: [] });
    } finally {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("resumes with only the rows changed after a version", async () => {
    const resumeAfter = await seeded.store.currentVersion();
    const early = seeded.keys[0]!.key;
    await seeded.store.revokeKey(ACTOR, early.id);
    await seeded.store.setPlan(ACTOR, { apiId: seeded.api.id, name: "free", tiers: [{ limit: 9, windowMs: 1_000, mode: "reject" }], makeDefault: false });

    const batches = await collect(readChangeBatches(seeded.store, resumeAfter, { reset: false }));

    expect(batches).toHaveLength(1);
    expect(batches[0]!.reset).toBe(false);
    expect(batches[0]!.complete).toBe(true);
    expect(batches[0]!.keys.map((key) => key.id)).toEqual([early.id]);
    expect(batches[0]!.keys[0]!.revokedAtMs).not.toBeNull();
    expect(batches[0]!.plans.map((plan) => plan.tiers[0]!.limit)).toEqual([9]);
    expect(batches[0]!.apis).toEqual([]);
  });

  it("carries a rotated key's previous secret", async () => {
    const { key, secret } = seeded.keys[3]!;
    const rotated = await seeded.store.rotateKey(ACTOR, key.id, 60_000);
    const batches = await collect(readChangeBatches(seeded.store, rotated.key.version - 1, { reset: false }));

    const replicated = batches[0]!.keys[0]!;
    expect(replicated.hash).toBe(hashKey(rotated.secret));
    expect(replicated.previousSecrets.map((previous) => previous.hash)).toEqual([hashKey(secret)]);
  });
});

describe("replica messages", () => {
  it("round-trips a snapshot through the wire format", async () => {
    const seeded = await seededStore(3);
    try {
      await seeded.store.updateKey(ACTOR, seeded.keys[0]!.key.id, { tierOverride: [{ limit: 1, windowMs: 60_000, mode: "shadow" }], scopes: ["read"], expiresAtMs: Date.now() + 60_000 });
      await seeded.store.rotateKey(ACTOR, seeded.keys[1]!.key.id, 30_000);
      await seeded.store.revokeKey(ACTOR, seeded.keys[2]!.key.id);
      const [batch] = await collect(readChangeBatches(seeded.store, 0, { reset: true }));

      const decoded = decodeBatch(encodeBatch(batch!));

      expect(decoded.ok).toBe(true);
      if (!decoded.ok) return;
      const withoutServerOnlyFields = (changes: ReplicationBatch) => ({
        ...changes,
        apis: changes.apis.map((api) => ({ ...api, orgId: null })),
        keys: changes.keys.map((key) => ({ ...key, metadata: null, updatedAtMs: key.createdAtMs })),
      });
      expect(decoded.batch).toEqual(withoutServerOnlyFields(batch!));
    } finally {
      await seeded.close();
    }
  });

  it.each([
    ["an unknown tier mode", (batch: Batch) => (batch.plans[0]!.tiers[0]!.mode = "throttle"), /unknown tier mode "throttle"/],
    ["a version past 2^53", (batch: Batch) => (batch.version = 2n ** 60n), /outside the range of exact integers/],
  ])("rejects a batch with %s", async (_name, corrupt, problem) => {
    const seeded = await seededStore(1);
    try {
      const [batch] = await collect(readChangeBatches(seeded.store, 0, { reset: true }));
      const message = encodeBatch(batch!);
      corrupt(message);
      const decoded = decodeBatch(message);
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.problem).toMatch(problem);
    } finally {
      await seeded.close();
    }
  });
});

describe("replica writer", () => {
  let seeded: Awaited<ReturnType<typeof seededStore>>;
  let replicaDir: string;
  let replica: KeyStore;
  let reader: KeyStore;

  beforeEach(async () => {
    seeded = await seededStore(30);
    replicaDir = makeTempDir("replica");
    replica = KeyStore.open(storePath(replicaDir), createManualClock());
    replica.markReplica();
    reader = KeyStore.openExisting(storePath(replicaDir), createManualClock())!;
  });
  afterEach(async () => {
    reader.close();
    replica.close();
    rmSync(replicaDir, { recursive: true, force: true });
    await seeded.close();
  });

  async function snapshot(maxRows: number) {
    return collect(readChangeBatches(seeded.store, 0, { reset: true, maxRows }));
  }

  it("makes a new replica servable only with the complete batch", async () => {
    const writer = new ReplicaWriter(replica);
    writer.beginStream(writer.resumeVersion());
    const batches = await snapshot(10);

    for (const batch of batches.slice(0, -1)) {
      expect(writer.apply(batch)).toEqual({ ok: true, committed: true, complete: false });
      expect(reader.isServing()).toBe(false);
    }
    expect(writer.apply(batches.at(-1)!)).toEqual({ ok: true, committed: true, complete: true });

    expect(reader.isServing()).toBe(true);
    expect(reader.currentVersion()).toBe(await seeded.store.currentVersion());
    expect(reader.findGrant(hashKey(seeded.keys[29]!.secret))?.id).toBe(seeded.keys[29]!.key.id);
  });

  it("subscribes a never-completed replica from version 0", async () => {
    const writer = new ReplicaWriter(replica);
    writer.beginStream(0);
    writer.apply((await snapshot(10))[0]!);

    expect(replica.currentVersion()).toBeGreaterThan(0);
    expect(writer.resumeVersion()).toBe(0);
  });

  it("keeps serving the old replica while a new snapshot is staged", async () => {
    const writer = new ReplicaWriter(replica);
    writer.beginStream(0);
    for (const batch of await snapshot(1000)) writer.apply(batch);
    const oldKey = seeded.keys[0]!;
    const versionBefore = reader.currentVersion();

    // The server's store was replaced: a snapshot from a different store, without oldKey.
    const other = await seededStore(12);
    try {
      const batches = await collect(readChangeBatches(other.store, 0, { reset: true, maxRows: 5 }));
      writer.beginStream(0);
      for (const batch of batches.slice(0, -1)) {
        expect(writer.apply(batch)).toMatchObject({ ok: true, committed: false });
        expect(reader.findGrant(hashKey(oldKey.secret))?.id).toBe(oldKey.key.id);
        expect(reader.currentVersion()).toBe(versionBefore);
      }
      expect(writer.apply(batches.at(-1)!)).toEqual({ ok: true, committed: true, complete: true });

      expect(reader.findGrant(hashKey(oldKey.secret))).toBeUndefined();
      expect(reader.findGrant(hashKey(other.keys[11]!.secret))?.id).toBe(other.keys[11]!.key.id);
      expect(reader.isServing()).toBe(true);
    } finally {
      await other.close();
    }
  });

  it("rolls back a staged snapshot that did not finish", async () => {
    const writer = new ReplicaWriter(replica);
    writer.beginStream(0);
    for (const batch of await snapshot(1000)) writer.apply(batch);
    const versionBefore = replica.currentVersion();

    const partial = (await snapshot(5))[0]!;
    writer.beginStream(0);
    writer.apply(partial);
    writer.abandon();

    expect(replica.currentVersion()).toBe(versionBefore);
    expect(replica.isServing()).toBe(true);
    expect(reader.findGrant(hashKey(seeded.keys[29]!.secret))?.id).toBe(seeded.keys[29]!.key.id);
  });

  it.each([
    ["a first batch without reset after version 0", 0, { reset: false, version: 5 }, /did not have reset set/],
    ["a batch older than the replica", 40, { reset: false, version: 39 }, /older than the version 40/],
  ])("rejects %s", (_name, afterVersion, fields, problem) => {
    const writer = new ReplicaWriter(replica);
    writer.beginStream(afterVersion);
    const result = writer.apply({ apis: [], plans: [], keys: [], complete: true, ...fields });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problem).toMatch(problem);
  });
});

describe("ReplicationService.Subscribe", () => {
  let harness: ServerHarness;
  let sidecarToken: string;

  beforeEach(async () => {
    harness = await startServerHarness();
    sidecarToken = (await harness.server.store.createToken(null, { name: "sidecar", kind: "sidecar" })).secret;
  });
  afterEach(async () => {
    await harness.close();
  });

  /** Reads responses from a stream until `done` returns true for the list so far, then cancels the stream. */
  async function readUntil(afterVersion: bigint, token: string, done: (responses: SubscribeResponse[]) => boolean, onFirst?: () => Promise<void>) {
    const client = harness.grpcClient(ReplicationService, token);
    const abort = new AbortController();
    const responses: SubscribeResponse[] = [];
    try {
      for await (const response of client.subscribe({ afterVersion, sidecarId: "test" }, { signal: abort.signal, timeoutMs: 10_000 })) {
        responses.push(response);
        if (responses.length === 1) await onFirst?.();
        if (done(responses)) break;
      }
    } finally {
      abort.abort();
    }
    return responses;
  }

  const batchesOf = (responses: SubscribeResponse[]) => responses.flatMap((response) => (response.event.case === "batch" ? [response.event.value] : []));

  it("sends a snapshot, then each change as it commits", async () => {
    const org = await harness.server.store.defaultOrg(ACTOR);
    const api = await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    const { key } = await harness.server.store.createKey(ACTOR, { apiId: api.id });

    const responses = await readUntil(0n, sidecarToken, (all) => batchesOf(all).length === 2, async () => {
      await harness.server.store.revokeKey(ACTOR, key.id);
    });

    const [snapshot, change] = batchesOf(responses);
    expect(snapshot).toMatchObject({ reset: true, complete: true });
    expect(snapshot!.keys.map((replicated) => replicated.id)).toEqual([key.id]);
    expect(change).toMatchObject({ reset: false, complete: true });
    expect(change!.keys[0]!.revokeTimeMs).toBeGreaterThan(0n);
    expect(change!.version).toBe(BigInt(await harness.server.store.currentVersion()));
  });

  it("sends a snapshot to a replica ahead of the server", async () => {
    const org = await harness.server.store.defaultOrg(ACTOR);
    await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });

    const responses = await readUntil(1_000n, sidecarToken, (all) => batchesOf(all).some((batch) => batch.complete));

    expect(batchesOf(responses)[0]).toMatchObject({ reset: true, complete: true });
    expect(batchesOf(responses)[0]!.apis).toHaveLength(1);
  });

  it("resumes after a version without reset", async () => {
    const org = await harness.server.store.defaultOrg(ACTOR);
    const api = await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    const after = await harness.server.store.currentVersion();
    const { key } = await harness.server.store.createKey(ACTOR, { apiId: api.id });

    const responses = await readUntil(BigInt(after), sidecarToken, (all) => batchesOf(all).some((batch) => batch.complete));

    expect(batchesOf(responses)[0]).toMatchObject({ reset: false, complete: true });
    expect(batchesOf(responses)[0]!.apis).toEqual([]);
    expect(batchesOf(responses)[0]!.keys.map((replicated) => replicated.id)).toEqual([key.id]);
  });

  it("accepts an admin token too", async () => {
    const responses = await readUntil(0n, ADMIN_TOKEN, (all) => all.length === 1);
    expect(batchesOf(responses)[0]).toMatchObject({ reset: true, complete: true });
  });

  it.each([
    ["a wrong token", "tgsidecar_not-a-real-token", Code.Unauthenticated],
    ["no token", null, Code.Unauthenticated],
  ])("rejects %s", async (_name, token, code) => {
    const client = harness.grpcClient(ReplicationService, token);
    const failure = await collect(client.subscribe({ afterVersion: 0n, sidecarId: "test" }, { timeoutMs: 5_000 })).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConnectError);
    expect((failure as ConnectError).code).toBe(code);
  });

  it("ends a stream whose token is revoked", async () => {
    const org = await harness.server.store.defaultOrg(ACTOR);
    const api = await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    const [tokenRecord] = (await harness.server.store.listTokens()).filter((token) => token.kind === "sidecar");
    const client = harness.grpcClient(ReplicationService, sidecarToken);
    const received: SubscribeResponse[] = [];

    const failure = await (async () => {
      for await (const response of client.subscribe({ afterVersion: 0n, sidecarId: "test" }, { timeoutMs: 10_000 })) {
        received.push(response);
        await harness.server.store.revokeToken(ACTOR, tokenRecord!.id);
        // A key change wakes the stream at once instead of at the next heartbeat.
        await harness.server.store.createKey(ACTOR, { apiId: api.id });
      }
    })().catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(ConnectError);
    expect((failure as ConnectError).code).toBe(Code.Unauthenticated);
    expect(received).toHaveLength(1);
    expect(harness.logText()).toMatch(/"reason":"token revoked","msg":"replication stream closed"/);
  });

  it("counts connected sidecars, batches and rows", async () => {
    const org = await harness.server.store.defaultOrg(ACTOR);
    await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    let whileOpen = "";
    await readUntil(0n, sidecarToken, () => true, async () => {
      whileOpen = await harness.server.registry.metrics();
    });
    const gaugeOf = (text: string) => Number(/^tollgate_server_replication_connected_sidecars (\d+)/m.exec(text)?.[1]);

    expect(gaugeOf(whileOpen)).toBe(1);
    expect(whileOpen).toMatch(/^tollgate_server_replication_batches_sent_total 1$/m);
    expect(whileOpen).toMatch(/^tollgate_server_replication_rows_sent_total\{kind="api"\} 1$/m);
    expect(whileOpen).toMatch(/^tollgate_server_replication_subscriptions_total\{mode="snapshot"\} 1$/m);
    const deadline = Date.now() + 5_000;
    while (gaugeOf(await harness.server.registry.metrics()) !== 0) {
      if (Date.now() > deadline) throw new Error("the stream was never counted as closed");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  it("ends open streams when the server shuts down", async () => {
    const client = harness.grpcClient(ReplicationService, sidecarToken);
    const stream = client.subscribe({ afterVersion: 0n, sidecarId: "test" }, { timeoutMs: 10_000 });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();

    const closing = harness.server.close();
    const ended = await iterator.next().catch((error: unknown) => error);
    await closing;

    expect(ended).toMatchObject({ done: true });
    expect(harness.logText()).toMatch(/"reason":"server shutting down".*"msg":"replication stream closed"|"msg":"replication stream closed".*"reason":"server shutting down"/);
  });
});

describe("heartbeats", () => {
  it("sends the current version when the stream is quiet", async () => {
    const seeded = await seededStore(2);
    const { secret: token } = await seeded.store.createToken(null, { name: "sidecar", kind: "sidecar" });
    const shutdown = new AbortController();
    const logger = createLogger("silent", new Writable({ write: (_chunk, _encoding, done) => done() }));
    const handler = connectNodeAdapter({
      routes: (router) =>
        registerReplicationService(router, { store: seeded.store, clock: createManualClock(), logger, registry: new Registry(), shutdown: shutdown.signal, heartbeatIntervalMs: 50 }),
    });
    const server: Http2Server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const sessions = new Http2SessionManager(baseUrl);

    try {
      const client = createClient(ReplicationService, createGrpcTransport({ baseUrl, sessionManager: sessions }));
      const abort = new AbortController();
      const kinds: (string | undefined)[] = [];
      let heartbeatVersion = 0n;
      const options = { signal: abort.signal, timeoutMs: 5_000, headers: { authorization: `Bearer ${token}` } };
      for await (const response of client.subscribe({ afterVersion: 0n, sidecarId: "test" }, options)) {
        kinds.push(response.event.case);
        if (response.event.case === "heartbeat") {
          heartbeatVersion = response.event.value.version;
          if (kinds.filter((kind) => kind === "heartbeat").length === 2) break;
        }
      }
      abort.abort();

      expect(kinds).toEqual(["batch", "heartbeat", "heartbeat"]);
      expect(heartbeatVersion).toBe(BigInt(await seeded.store.currentVersion()));
    } finally {
      shutdown.abort();
      sessions.abort();
      await new Promise((resolve) => server.close(resolve));
      await seeded.close();
    }
  });
});

describe("replicating sidecar in process", () => {
  let harness: ServerHarness;
  let sidecar: SidecarHarness | undefined;

  beforeEach(async () => {
    harness = await startServerHarness();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await harness.close();
  });

  it("turns ready with the first sync and enforces a revocation", async () => {
    const { secret: token } = await harness.server.store.createToken(null, { name: "sidecar", kind: "sidecar" });
    const org = await harness.server.store.defaultOrg(ACTOR);
    const api = await harness.server.store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    const { key, secret } = await harness.server.store.createKey(ACTOR, { apiId: api.id });

    sidecar = await startSidecarHarness({ server: harness.baseUrl, token, sidecarId: "in-process" }, { createStore: false });
    await eventually(async () => expect(httpStatusOf(await sidecar!.check({ key: secret }))).toBe(200));

    await harness.server.store.revokeKey(ACTOR, key.id);
    await eventually(async () => expect(reasonOf(await sidecar!.check({ key: secret }))).toBe("revoked_key"));

    const metrics = await sidecar.sidecar.metrics.registry.metrics();
    const serverVersion = await harness.server.store.currentVersion();
    expect(metrics).toMatch(new RegExp(`^tollgate_replica_version ${serverVersion}$`, "m"));
    expect(metrics).toMatch(/^tollgate_replica_connected 1$/m);
    expect(metrics).toMatch(/^tollgate_replica_sync_errors_total 0$/m);
    expect(sidecar.logText()).not.toContain(token);
  });
});

describe("replication client", () => {
  /** Serves `subscribe` on 127.0.0.1 port 0 and records every request it gets. */
  async function startFakeServer(subscribe: ServiceImpl<typeof ReplicationService>["subscribe"]) {
    const requests: SubscribeRequest[] = [];
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(ReplicationService, {
          subscribe: (request, context) => {
            requests.push(request);
            return subscribe(request, context);
          },
        }),
    });
    const server: Http2Server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const sessions = new Set<ServerHttp2Session>();
    server.on("session", (session) => sessions.add(session));
    return {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      requests,
      close: () =>
        new Promise<void>((resolve) => {
          for (const session of sessions) session.destroy();
          server.close(() => resolve());
        }),
    };
  }

  /** Starts a client on a fresh replica with short timings, logging into memory. */
  function startClient(serverUrl: string) {
    const dataDir = makeTempDir("replication-client");
    const replica = KeyStore.open(storePath(dataDir), createManualClock());
    replica.markReplica();
    let log = "";
    const logger = createLogger("debug", new Writable({ write: (chunk, _encoding, done) => ((log += chunk.toString()), done()) }));
    const registry = new Registry();
    const metrics = createReplicaMetrics(registry, { stalenessSeconds: () => 0 });
    const client = startReplicationClient({
      serverUrl,
      token: "tgsidecar_fake-token",
      sidecarId: "test",
      replica,
      clock: createManualClock(),
      logger,
      metrics,
      initialReconnectDelayMs: 10,
      maxReconnectDelayMs: 20,
      idleTimeoutMs: 100,
    });
    return {
      replica,
      registry,
      logText: () => log,
      async close() {
        await client.close();
        replica.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }

  it("reconnects when the stream goes silent", async () => {
    const server = await startFakeServer(async function* (_request, context) {
      await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
    });
    const client = startClient(server.url);
    try {
      await eventually(async () => expect(server.requests.length).toBeGreaterThanOrEqual(2));
      expect(client.logText()).toMatch(/"msg":"replication stream silent; reconnecting"/);
      expect(await client.registry.metrics()).toMatch(/^tollgate_replica_sync_errors_total [1-9]/m);
      expect(client.logText()).not.toContain("tgsidecar_fake-token");
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("rejects a snapshot without reset and stays unsynced", async () => {
    const server = await startFakeServer(async function* () {
      yield create(SubscribeResponseSchema, { event: { case: "batch", value: create(BatchSchema, { version: 3n, reset: false, complete: true }) } });
    });
    const client = startClient(server.url);
    try {
      await eventually(async () => expect(client.logText()).toMatch(/"error":"the first batch of a snapshot did not have reset set","msg":"replication batch rejected"/));
      expect(client.replica.isServing()).toBe(false);
      expect(client.replica.currentVersion()).toBe(0);
      await eventually(async () => expect(server.requests.length).toBeGreaterThanOrEqual(2));
      expect(server.requests.map((request) => request.afterVersion)).toEqual(server.requests.map(() => 0n));
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("resumes from the applied version after the stream ends", async () => {
    const server = await startFakeServer(async function* (request) {
      if (request.afterVersion === 0n) {
        yield create(SubscribeResponseSchema, { event: { case: "batch", value: create(BatchSchema, { version: 7n, reset: true, complete: true }) } });
      }
    });
    const client = startClient(server.url);
    try {
      await eventually(async () => expect(server.requests.length).toBeGreaterThanOrEqual(2));
      expect(server.requests[0]!.afterVersion).toBe(0n);
      expect(server.requests[1]!.afterVersion).toBe(7n);
      expect(client.replica.isServing()).toBe(true);
      expect(client.logText()).toMatch(/"msg":"replication stream ended by the server"/);
    } finally {
      await client.close();
      await server.close();
    }
  });
});

/** Retries `assertion` every 10 ms until it passes or 5 s have gone by. */
async function eventually(assertion: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}
