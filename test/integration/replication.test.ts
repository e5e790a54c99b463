import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { storePath } from "../../src/config/sidecar-config.js";
import { TierMode, TokenKind } from "../../src/gen/tollgate/admin/v1/resources_pb.js";
import { KeyService, PlanService, TokenService } from "../../src/gen/tollgate/admin/v1/services_pb.js";
import { KeyStore } from "../../src/keys/key-store.js";
import { buildEnvoyCheckRequest, createCheckClient, type CheckClient } from "../../src/sidecar/check-client.js";
import type { Actor } from "../../src/server/store/records.js";
import { SqliteServerStore } from "../../src/server/store/sqlite-server-store.js";
import { startTollgate, type CliProcess } from "../helpers/cli-process.js";
import { ADMIN_TOKEN } from "../helpers/server-harness.js";
import { clientHeadersOf, httpStatusOf, makeTempDir, reasonOf } from "../helpers/sidecar-harness.js";

const ACTOR: Actor = { id: "test", name: "test" };

interface SeededKey {
  id: string;
  secret: string;
}

interface Seed {
  apiId: string;
  keys: SeededKey[];
  sidecarToken: string;
}

interface ServerChild {
  process: CliProcess;
  port: number;
  baseUrl: string;
}

interface SidecarChild {
  process: CliProcess;
  checks: CheckClient;
  httpPort: number;
  dataDir: string;
}

let root: string;
const processes: CliProcess[] = [];
const checkClients: CheckClient[] = [];

beforeEach(() => {
  root = makeTempDir("replication");
});

afterEach(async () => {
  for (const client of checkClients.splice(0)) client.close();
  await Promise.all(processes.splice(0).map((child) => child.stop("SIGKILL")));
  rmSync(root, { recursive: true, force: true });
});

/**
 * Writes an API "shop" with a generous default plan, `keyCount` keys and a
 * sidecar token into a server data folder, before the server starts, so a
 * large seed does not go through the admin API one key at a time.
 */
async function seedServerData(dataDir: string, keyCount: number): Promise<Seed> {
  const store = SqliteServerStore.open(storePath(dataDir), systemClock);
  try {
    const org = await store.defaultOrg(ACTOR);
    const api = await store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    await store.setPlan(ACTOR, { apiId: api.id, name: "free", tiers: [{ limit: 1000, windowMs: 1_000, mode: "reject" }], makeDefault: true });
    const keys: SeededKey[] = [];
    for (let i = 0; i < keyCount; i++) {
      const { key, secret } = await store.createKey(ACTOR, { apiId: api.id, name: `key ${i}` });
      keys.push({ id: key.id, secret });
    }
    const { secret: sidecarToken } = await store.createToken(null, { name: "sidecars", kind: "sidecar" });
    return { apiId: api.id, keys, sidecarToken };
  } finally {
    await store.close();
  }
}

async function startServerChild(dataDir: string, port = 0): Promise<ServerChild> {
  const child = startTollgate(["server", "--data", dataDir, "--listen", `127.0.0.1:${port}`, "--shutdown-grace-ms", "200"], { TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
  processes.push(child);
  const [, boundPort] = await child.waitFor(/listening on port (\d+)/);
  return { process: child, port: Number(boundPort), baseUrl: `http://127.0.0.1:${boundPort}` };
}

function startSidecarChild(name: string, serverUrl: string, token: string, logLevel = "info"): Promise<SidecarChild> {
  const dataDir = join(root, name);
  return startSidecarChildIn(dataDir, serverUrl, token, logLevel, name);
}

async function startSidecarChildIn(dataDir: string, serverUrl: string, token: string, logLevel: string, name: string): Promise<SidecarChild> {
  const args = ["sidecar", "--data", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server", serverUrl, "--sidecar-id", name, "--log-level", logLevel];
  const child = startTollgate(args, { TOLLGATE_SIDECAR_TOKEN: token });
  processes.push(child);
  const [, grpcPort, httpPort] = await child.waitFor(/ext_authz on port (\d+), metrics on http port (\d+)/);
  const checks = createCheckClient(`127.0.0.1:${grpcPort}`);
  checkClients.push(checks);
  return { process: child, checks, httpPort: Number(httpPort), dataDir };
}

/** Returns the sidecar's decision (HTTP status, reason, client headers) for a GET with `secret` as the bearer key. */
async function decide(sidecar: SidecarChild, secret: string): Promise<{ status: number; reason: string; headers: Record<string, string> }> {
  const response = await sidecar.checks.check(buildEnvoyCheckRequest({ method: "GET", path: "/v1/orders", headers: { authorization: `Bearer ${secret}` } }));
  return { status: httpStatusOf(response), reason: reasonOf(response), headers: clientHeadersOf(response) };
}

/** Repeats `decide` until its reason is `reason`, for up to `withinMs`; returns how long that took. */
async function decideUntil(sidecar: SidecarChild, secret: string, reason: string, withinMs: number): Promise<number> {
  const startedMs = performance.now();
  for (;;) {
    const decision = await decide(sidecar, secret);
    if (decision.reason === reason) return performance.now() - startedMs;
    if (performance.now() - startedMs > withinMs) {
      throw new Error(`the sidecar still decides ${decision.status} ${decision.reason} after ${withinMs} ms; its log: ${sidecar.process.output().stderr.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function readyzStatus(sidecar: SidecarChild): Promise<number> {
  return (await fetch(`http://127.0.0.1:${sidecar.httpPort}/readyz`)).status;
}

/** Reads the value of a metric without labels from the sidecar's /metrics. */
async function metricValue(sidecar: SidecarChild, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${sidecar.httpPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!match) throw new Error(`metric ${name} not found`);
  return Number(match[1]);
}

function adminClients(baseUrl: string) {
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [authorize] });
  return { keys: createClient(KeyService, transport), plans: createClient(PlanService, transport), tokens: createClient(TokenService, transport) };
}

/** A port that was free a moment ago, for a server that must start after its sidecars know its address. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function eventually(assertion: () => Promise<void>, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

describe("replication between processes", () => {
  it("keeps a new sidecar not ready until its first sync", async () => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 3);
    const port = await freePort();
    const sidecar = await startSidecarChild("sidecar-a", `http://127.0.0.1:${port}`, seed.sidecarToken);

    expect(await decide(sidecar, seed.keys[0]!.secret)).toMatchObject({ status: 503, reason: "not_ready" });
    expect(await readyzStatus(sidecar)).toBe(503);
    await sidecar.process.waitFor(/replication connection failed/);

    await startServerChild(serverData, port);
    await decideUntil(sidecar, seed.keys[0]!.secret, "ok", 10_000);

    expect(await readyzStatus(sidecar)).toBe(200);
    expect(await decide(sidecar, "shop_1111111111111111111111111111")).toMatchObject({ status: 401 });
    expect(sidecar.process.output().stderr).toMatch(/"msg":"replica synced"/);
  });

  it("enforces a revocation on both sidecars within 1 s", async () => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 3);
    const server = await startServerChild(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => startSidecarChild(name, server.baseUrl, seed.sidecarToken)));
    const [revoked, kept] = seed.keys;
    for (const sidecar of sidecars) await decideUntil(sidecar, revoked!.secret, "ok", 10_000);

    await adminClients(server.baseUrl).keys.revokeKey({ id: revoked!.id });
    const delaysMs = await Promise.all(sidecars.map((sidecar) => decideUntil(sidecar, revoked!.secret, "revoked_key", 1_000)));

    for (const delayMs of delaysMs) expect(delayMs).toBeLessThan(1_000);
    for (const sidecar of sidecars) {
      expect(await decide(sidecar, revoked!.secret)).toMatchObject({ status: 401, reason: "revoked_key" });
      expect(await decide(sidecar, kept!.secret)).toMatchObject({ status: 200, reason: "ok" });
    }
  });

  it("survives a server crash and restart", { timeout: 45_000 }, async () => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 4);
    let server = await startServerChild(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => startSidecarChild(name, server.baseUrl, seed.sidecarToken)));
    const [allowed, revokedBefore, revokedAfter] = seed.keys;
    await adminClients(server.baseUrl).keys.revokeKey({ id: revokedBefore!.id });
    for (const sidecar of sidecars) await decideUntil(sidecar, revokedBefore!.secret, "revoked_key", 10_000);

    await server.process.stop("SIGKILL");

    for (const sidecar of sidecars) {
      await eventually(async () => expect(await metricValue(sidecar, "tollgate_replica_connected")).toBe(0), 5_000);
      expect(await decide(sidecar, allowed!.secret)).toMatchObject({ status: 200, reason: "ok" });
      expect(await decide(sidecar, revokedBefore!.secret)).toMatchObject({ status: 401, reason: "revoked_key" });
      expect(await readyzStatus(sidecar)).toBe(200);
      await sidecar.process.waitFor(/"msg":"replication (stream lost|connection failed)"/);
    }

    server = await startServerChild(serverData, server.port);
    await adminClients(server.baseUrl).keys.revokeKey({ id: revokedAfter!.id });

    // Sidecars retry with backoff of at most 10 s, so they reconnect within about that.
    for (const sidecar of sidecars) {
      await decideUntil(sidecar, revokedAfter!.secret, "revoked_key", 15_000);
      expect(await decide(sidecar, allowed!.secret)).toMatchObject({ status: 200, reason: "ok" });
      await eventually(async () => expect(await metricValue(sidecar, "tollgate_replica_connected")).toBe(1), 5_000);
      expect(await metricValue(sidecar, "tollgate_replica_sync_errors_total")).toBeGreaterThan(0);
    }
  });

  it("resumes a snapshot cut by SIGKILL and ends complete", { timeout: 60_000 }, async () => {
    const serverData = join(root, "server");
    const keyCount = 6_000;
    const seed = await seedServerData(serverData, keyCount);
    const server = await startServerChild(serverData);

    const first = await startSidecarChild("sidecar-a", server.baseUrl, seed.sidecarToken, "debug");
    await first.process.waitFor(/"msg":"replication batch applied"/, 15_000);
    await first.process.stop("SIGKILL");
    const cut = KeyStore.openExisting(storePath(first.dataDir), systemClock)!;
    const cutState = { serving: cut.isServing(), version: cut.currentVersion() };
    cut.close();
    expect(cutState.serving).toBe(false);
    expect(cutState.version).toBeGreaterThan(0);

    const restarted = await startSidecarChildIn(first.dataDir, server.baseUrl, seed.sidecarToken, "info", "sidecar-a");
    await decideUntil(restarted, seed.keys.at(-1)!.secret, "ok", 20_000);

    const replica = KeyStore.openExisting(storePath(first.dataDir), systemClock)!;
    try {
      expect(replica.isServing()).toBe(true);
      expect(replica.listKeys()).toHaveLength(keyCount);
    } finally {
      replica.close();
    }
    expect(await decide(restarted, seed.keys[0]!.secret)).toMatchObject({ status: 200, reason: "ok" });
    expect(restarted.process.output().stderr).toMatch(/"snapshot":true,"msg":"replica synced"/);
    expect(await metricValue(restarted, "tollgate_replica_version")).toBe(await metricValue(restarted, "tollgate_replica_server_version"));
  });

  it("applies a plan change on the sidecars", async () => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 1);
    const server = await startServerChild(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => startSidecarChild(name, server.baseUrl, seed.sidecarToken)));
    const key = seed.keys[0]!;
    for (const sidecar of sidecars) await decideUntil(sidecar, key.secret, "ok", 10_000);

    await adminClients(server.baseUrl).plans.setPlan({ apiId: seed.apiId, name: "free", tiers: [{ limit: 2n, windowMs: 60_000n, mode: TierMode.REJECT }] });

    for (const sidecar of sidecars) {
      await decideUntil(sidecar, key.secret, "rate_limited", 1_000);
      const decision = await decide(sidecar, key.secret);
      expect(decision).toMatchObject({ status: 429, reason: "rate_limited" });
      expect(decision.headers["x-ratelimit-limit"]).toBe("2");
    }
  });

  it("accepts a rotated key's old secret during the grace period", async () => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 2);
    const server = await startServerChild(serverData);
    const sidecar = await startSidecarChild("sidecar-a", server.baseUrl, seed.sidecarToken);
    const [graced, cut] = seed.keys;
    await decideUntil(sidecar, graced!.secret, "ok", 10_000);
    const admin = adminClients(server.baseUrl);

    const rotatedWithGrace = await admin.keys.rotateKey({ id: graced!.id, gracePeriod: durationFromMs(60_000) });
    const rotatedAtOnce = await admin.keys.rotateKey({ id: cut!.id, gracePeriod: durationFromMs(0) });
    await decideUntil(sidecar, rotatedAtOnce.secret, "ok", 1_000);
    await decideUntil(sidecar, rotatedWithGrace.secret, "ok", 1_000);

    expect(await decide(sidecar, graced!.secret)).toMatchObject({ status: 200, reason: "ok" });
    expect(await decide(sidecar, cut!.secret)).toMatchObject({ status: 401, reason: "unknown_key" });
  });

  it.each([
    ["a wrong token", async () => "tgsidecar_0000000000000000000000000000"],
    [
      "a revoked token",
      async (baseUrl: string) => {
        const admin = adminClients(baseUrl);
        const { token, secret } = await admin.tokens.createToken({ name: "short-lived", kind: TokenKind.SIDECAR });
        await admin.tokens.revokeToken({ id: token!.id });
        return secret;
      },
    ],
  ])("keeps a sidecar with %s not ready", async (_name, tokenFor) => {
    const serverData = join(root, "server");
    const seed = await seedServerData(serverData, 1);
    const server = await startServerChild(serverData);
    const token = await tokenFor(server.baseUrl);
    const sidecar = await startSidecarChild("sidecar-a", server.baseUrl, token);

    await sidecar.process.waitFor(/"msg":"replication rejected by the server: check the sidecar token/);
    await sidecar.process.waitFor(/"attempt":2/);

    expect(await decide(sidecar, seed.keys[0]!.secret)).toMatchObject({ status: 503, reason: "not_ready" });
    expect(await readyzStatus(sidecar)).toBe(503);
    expect(sidecar.process.child.exitCode).toBeNull();
    expect(sidecar.process.output().stderr).toMatch(/"code":"Unauthenticated"/);
    expect(sidecar.process.output().stderr).not.toContain(token);
    expect(await metricValue(sidecar, "tollgate_replica_sync_errors_total")).toBeGreaterThanOrEqual(2);
  });
});
