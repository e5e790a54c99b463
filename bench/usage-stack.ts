import { randomBytes } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { systemClock } from "../src/clock.js";
import { storePath } from "../src/config/sidecar-config.js";
import type { Tier } from "../src/ratelimit/tier.js";
import type { Actor } from "../src/server/store/records.js";
import { SqliteServerStore } from "../src/server/store/sqlite-server-store.js";
import { usageDatabasePath } from "../src/usage/usage-schema.js";
import { startTollgateProcess, type TollgateProcess } from "./propagation-processes.js";
import { BENCH_API, BENCH_PREFIX } from "./seed.js";

/** Sidecar ids, which name each sidecar's events in the server's usage.db. */
export const USAGE_ON_ID = "bench-usage-on";
export const USAGE_OFF_ID = "bench-usage-off";

/** One tier of a million per second, which no run comes near, so every Check with a seeded key is allowed. */
const UNREACHED_TIERS: Tier[] = [{ limit: 1_000_000, windowMs: 1_000, mode: "reject" }];
const ACTOR: Actor = { id: "bench", name: "bench" };
const READY_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 100;

/** A `tollgate sidecar` child process replicating from the bench's server. */
export interface SidecarProcess {
  id: string;
  grpcPort: number;
  httpPort: number;
  /** User plus system CPU time of the process so far, in microseconds, from its /metrics. */
  cpuUs(): Promise<number>;
  /** Events the sidecar's spool contains that the server has not acknowledged, from its /metrics. */
  spoolEvents(): Promise<number>;
  stderrTail(): string;
}

export interface ServerStats {
  /** User plus system CPU time, in microseconds. */
  cpuUs: number;
  /** Usage batches committed, each one transaction. */
  ingestBatches: number;
  eventsIngested: number;
}

/**
 * A `tollgate server` child and two sidecars replicating from it: `usageOn`
 * with usage metering at its defaults, `usageOff` started with --no-usage.
 * The server can be stopped and started again on the same port, so the
 * sidecars reconnect to it without a restart.
 */
export interface UsageStack {
  usageOn: SidecarProcess;
  usageOff: SidecarProcess;
  serverRunning: boolean;
  /** The server's counters since it last started, from its /metrics; fails while it is stopped. */
  serverStats(): Promise<ServerStats>;
  /** Sends SIGTERM to the server and waits for it to exit. */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  /**
   * Waits until the server has committed every sequence up to `sentEvents`
   * from the usage-on sidecar, then returns how many of its events
   * usage_events contains. Throws after `timeoutMs`.
   */
  waitForCommitted(sentEvents: number, timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

/** Seeds a server store in `dir`/server with `keyCount` keys on a plan that does not limit them, and starts the processes. */
export async function startUsageStack(dir: string, keyCount: number): Promise<{ stack: UsageStack; keys: string[] }> {
  const serverDir = join(dir, "server");
  const seed = await seedServer(serverDir, keyCount);
  const adminToken = `bench-admin-${randomBytes(16).toString("hex")}`;
  const processes: TollgateProcess[] = [];
  const stopAll = () => Promise.all(processes.map((child) => child.stop()));

  try {
    let server = await startServer(serverDir, adminToken, 0);
    processes.push(server.process);
    const serverUrl = `http://127.0.0.1:${server.port}`;
    const startSidecar = async (id: string, extraArgs: string[]) => {
      const child = await startTollgateProcess(
        ["sidecar", "--data", join(dir, id), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server", serverUrl, "--sidecar-id", id, "--log-level", "warn", ...extraArgs],
        { TOLLGATE_SIDECAR_TOKEN: seed.sidecarToken },
        /ext_authz on port (\d+), metrics on http port (\d+)/,
      );
      processes.push(child);
      return sidecarProcess(id, child);
    };
    const usageOn = await startSidecar(USAGE_ON_ID, []);
    const usageOff = await startSidecar(USAGE_OFF_ID, ["--no-usage"]);
    await Promise.all([waitUntilReady(usageOn, true), waitUntilReady(usageOff, false)]);

    const stack: UsageStack = {
      usageOn,
      usageOff,
      serverRunning: true,
      serverStats: () => readServerStats(`http://127.0.0.1:${server.port}/metrics`),
      async stopServer() {
        await server.process.stop();
        stack.serverRunning = false;
      },
      async startServer() {
        server = await startServer(serverDir, adminToken, server.port);
        processes.push(server.process);
        stack.serverRunning = true;
      },
      waitForCommitted: (sentEvents, timeoutMs) => waitForCommitted(serverDir, sentEvents, timeoutMs, usageOn),
      stop: async () => {
        await stopAll();
      },
    };
    return { stack, keys: seed.keys };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Writes the API, the plan, the keys and a sidecar token into the server's store before it starts. */
async function seedServer(dir: string, keyCount: number): Promise<{ keys: string[]; sidecarToken: string }> {
  const store = SqliteServerStore.open(storePath(dir), systemClock);
  try {
    const org = await store.defaultOrg(ACTOR);
    const api = await store.createApi(ACTOR, { name: BENCH_API, keyPrefix: BENCH_PREFIX, orgId: org.id });
    await store.setPlan(ACTOR, { apiId: api.id, name: "unlimited", tiers: UNREACHED_TIERS, makeDefault: true });
    const keys: string[] = [];
    for (let i = 0; i < keyCount; i++) keys.push((await store.createKey(ACTOR, { apiId: api.id })).secret);
    const { secret: sidecarToken } = await store.createToken(null, { name: "bench sidecar", kind: "sidecar" });
    return { keys, sidecarToken };
  } finally {
    await store.close();
  }
}

async function startServer(dir: string, adminToken: string, port: number): Promise<{ process: TollgateProcess; port: number }> {
  const child = await startTollgateProcess(
    ["server", "--data", dir, "--listen", `127.0.0.1:${port}`, "--log-level", "warn"],
    { TOLLGATE_ADMIN_TOKEN: adminToken },
    /listening on port (\d+)/,
  );
  return { process: child, port: Number(child.ready[0]) };
}

function sidecarProcess(id: string, child: TollgateProcess): SidecarProcess {
  const grpcPort = Number(child.ready[0]);
  const httpPort = Number(child.ready[1]);
  const metricsUrl = `http://127.0.0.1:${httpPort}/metrics`;
  return {
    id,
    grpcPort,
    httpPort,
    cpuUs: () => readCpuUs(metricsUrl, "tollgate_process_cpu_seconds_total"),
    spoolEvents: async () => requireSample(await scrapeMetrics(metricsUrl), "tollgate_usage_spool_events"),
    stderrTail: () => child.stderrTail(),
  };
}

/** Waits until the sidecar's replica is synced (/readyz returns 200) and, with usage on, its usage stream is connected. */
async function waitUntilReady(sidecar: SidecarProcess, usageOn: boolean): Promise<void> {
  const baseUrl = `http://127.0.0.1:${sidecar.httpPort}`;
  const deadlineMs = performance.now() + READY_TIMEOUT_MS;
  for (;;) {
    const ready = (await fetch(`${baseUrl}/readyz`)).status === 200;
    const connected = !usageOn || requireSample(await scrapeMetrics(`${baseUrl}/metrics`), "tollgate_usage_stream_connected") === 1;
    if (ready && connected) return;
    if (performance.now() > deadlineMs) {
      throw new Error(`sidecar ${sidecar.id} was not ready within ${READY_TIMEOUT_MS} ms (ready ${ready}, usage stream connected ${connected}); stderr: ${sidecar.stderrTail()}`);
    }
    await pause(POLL_INTERVAL_MS);
  }
}

async function waitForCommitted(serverDir: string, sentEvents: number, timeoutMs: number, sidecar: SidecarProcess): Promise<number> {
  const db = new Database(usageDatabasePath(serverDir), { readonly: true, fileMustExist: true });
  try {
    // The spool's sequences start at 1 and have no gaps unless it dropped events, so the highest one reached means everything before it was sent.
    const highest = db.prepare("SELECT max(highest_sequence) FROM usage_sources WHERE sidecar_id = ?").pluck();
    const deadlineMs = performance.now() + timeoutMs;
    let committed = 0;
    while ((committed = (highest.get(USAGE_ON_ID) as number | null) ?? 0) < sentEvents) {
      if (performance.now() > deadlineMs) {
        throw new Error(`the server committed usage events up to sequence ${committed} of ${sentEvents} within ${timeoutMs} ms; sidecar stderr: ${sidecar.stderrTail()}`);
      }
      await pause(POLL_INTERVAL_MS);
    }
    return db.prepare("SELECT count(*) FROM usage_events WHERE sidecar_id = ?").pluck().get(USAGE_ON_ID) as number;
  } finally {
    db.close();
  }
}

async function readCpuUs(metricsUrl: string, name: string): Promise<number> {
  return requireSample(await scrapeMetrics(metricsUrl), name) * 1_000_000;
}

async function readServerStats(metricsUrl: string): Promise<ServerStats> {
  const samples = await scrapeMetrics(metricsUrl);
  return {
    cpuUs: requireSample(samples, "tollgate_server_process_cpu_seconds_total") * 1_000_000,
    ingestBatches: requireSample(samples, "tollgate_server_usage_ingest_batch_seconds_count"),
    eventsIngested: requireSample(samples, "tollgate_server_usage_events_ingested_total"),
  };
}

/** Reads the samples without labels from a Prometheus text exposition page. */
async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url} returned HTTP ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$/.exec(line);
    if (match) samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

function requireSample(samples: Map<string, number>, name: string): number {
  const value = samples.get(name);
  if (value === undefined) throw new Error(`metric ${name} is missing`);
  return value;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
