import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { systemClock } from "../../src/clock.js";
import { storePath } from "../../src/config/sidecar-config.js";
import { KeyService, PlanService, TokenService } from "../../src/gen/tollgate/admin/v1/services_pb.js";
import type { Tier } from "../../src/ratelimit/tier.js";
import { buildEnvoyCheckRequest, createCheckClient, type CheckClient } from "../../src/sidecar/check-client.js";
import type { Actor } from "../../src/server/store/records.js";
import { SqliteServerStore } from "../../src/server/store/sqlite-server-store.js";
import { startTollgate, type CliProcess } from "./cli-process.js";
import { ADMIN_TOKEN } from "./server-harness.js";
import { clientHeadersOf, httpStatusOf, makeTempDir, reasonOf } from "./sidecar-harness.js";

const ACTOR: Actor = { id: "test", name: "test" };

export interface SeededKey {
  id: string;
  secret: string;
}

export interface Seed {
  apiId: string;
  keys: SeededKey[];
  sidecarToken: string;
}

export interface ServerChild {
  process: CliProcess;
  port: number;
  baseUrl: string;
}

export interface SidecarChild {
  process: CliProcess;
  checks: CheckClient;
  httpPort: number;
  dataDir: string;
}

export interface SidecarOptions {
  logLevel?: string;
  /** Data folder; default a folder named after the sidecar under the fleet's root. */
  dataDir?: string;
  extraArgs?: string[];
}

/**
 * Servers and sidecars run as real `tollgate` processes, under one temp
 * folder. `close` kills whatever is still running and removes the folder.
 */
export interface Fleet {
  root: string;
  startServer(dataDir: string, port?: number): Promise<ServerChild>;
  startSidecar(name: string, serverUrl: string, token: string, options?: SidecarOptions): Promise<SidecarChild>;
  close(): Promise<void>;
}

export function createFleet(label: string): Fleet {
  const root = makeTempDir(label);
  const processes: CliProcess[] = [];
  const checkClients: CheckClient[] = [];

  return {
    root,
    async startServer(dataDir, port = 0) {
      const child = startTollgate(["server", "--data", dataDir, "--listen", `127.0.0.1:${port}`, "--shutdown-grace-ms", "200"], { TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
      processes.push(child);
      const [, boundPort] = await child.waitFor(/listening on port (\d+)/);
      return { process: child, port: Number(boundPort), baseUrl: `http://127.0.0.1:${boundPort}` };
    },
    async startSidecar(name, serverUrl, token, options = {}) {
      const dataDir = options.dataDir ?? join(root, name);
      const args = ["sidecar", "--data", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server", serverUrl, "--sidecar-id", name];
      args.push("--log-level", options.logLevel ?? "info", ...(options.extraArgs ?? []));
      const child = startTollgate(args, { TOLLGATE_SIDECAR_TOKEN: token });
      processes.push(child);
      const [, grpcPort, httpPort] = await child.waitFor(/ext_authz on port (\d+), metrics on http port (\d+)/);
      const checks = createCheckClient(`127.0.0.1:${grpcPort}`);
      checkClients.push(checks);
      return { process: child, checks, httpPort: Number(httpPort), dataDir };
    },
    async close() {
      for (const client of checkClients.splice(0)) client.close();
      await Promise.all(processes.splice(0).map((child) => child.stop("SIGKILL")));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Writes an API "shop" with a default plan (generous unless `tiers` says
 * otherwise), `keyCount` keys and a sidecar token into a server data folder
 * before the server starts, so a large seed does not go through the admin API
 * one key at a time.
 */
export async function seedServerData(dataDir: string, keyCount: number, tiers: Tier[] = [{ limit: 1000, windowMs: 1_000, mode: "reject" }]): Promise<Seed> {
  const store = SqliteServerStore.open(storePath(dataDir), systemClock);
  try {
    const org = await store.defaultOrg(ACTOR);
    const api = await store.createApi(ACTOR, { name: "shop", keyPrefix: "shop", orgId: org.id });
    await store.setPlan(ACTOR, { apiId: api.id, name: "free", tiers, makeDefault: true });
    const keys: SeededKey[] = [];
    for (let i = 0; i < keyCount; i++) {
      const { key, secret } = await store.createKey(ACTOR, { apiId: api.id, name: `key ${i}`, ownerId: `owner-${i % 2}` });
      keys.push({ id: key.id, secret });
    }
    const { secret: sidecarToken } = await store.createToken(null, { name: "sidecars", kind: "sidecar" });
    return { apiId: api.id, keys, sidecarToken };
  } finally {
    await store.close();
  }
}

export interface Answer {
  status: number;
  reason: string;
  headers: Record<string, string>;
}

/** Returns the sidecar's decision (HTTP status, reason, client headers) for a GET with `secret` as the bearer key. */
export async function decide(sidecar: SidecarChild, secret: string, path = "/v1/orders"): Promise<Answer> {
  const response = await sidecar.checks.check(buildEnvoyCheckRequest({ method: "GET", path, headers: { authorization: `Bearer ${secret}` } }));
  return { status: httpStatusOf(response), reason: reasonOf(response), headers: clientHeadersOf(response) };
}

/** Repeats `decide` until its reason is `reason`, for up to `withinMs`; returns how long that took. */
export async function decideUntil(sidecar: SidecarChild, secret: string, reason: string, withinMs: number): Promise<number> {
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

/** Reads the value of a metric without labels from the sidecar's /metrics. */
export async function metricValue(sidecar: SidecarChild, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${sidecar.httpPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!match) throw new Error(`metric ${name} not found`);
  return Number(match[1]);
}

export function adminClients(baseUrl: string) {
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [authorize] });
  return { keys: createClient(KeyService, transport), plans: createClient(PlanService, transport), tokens: createClient(TokenService, transport) };
}

/** A port that was free a moment ago, for a server that must start after its sidecars know its address. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Retries `assertion` every 20 ms until it passes or `withinMs` is over, then throws its last error. */
export async function eventually(assertion: () => Promise<void>, withinMs: number): Promise<void> {
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
