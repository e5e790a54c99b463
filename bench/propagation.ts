import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { systemClock } from "../src/clock.js";
import { storePath } from "../src/config/sidecar-config.js";
import { TierMode } from "../src/gen/tollgate/admin/v1/resources_pb.js";
import { KeyService, PlanService } from "../src/gen/tollgate/admin/v1/services_pb.js";
import { buildEnvoyCheckRequest, createCheckClient, type CheckClient } from "../src/sidecar/check-client.js";
import type { Actor } from "../src/server/store/records.js";
import { SqliteServerStore } from "../src/server/store/sqlite-server-store.js";
import { startTollgateProcess, type TollgateProcess } from "./propagation-processes.js";
import { percentile } from "./stats.js";

/**
 * `npm run bench:propagation`: how long a change made through the server's
 * admin API takes to change a sidecar's decisions. Runs `tollgate server`
 * and `tollgate sidecar --server` as child processes on 127.0.0.1, makes
 * BENCH_PROPAGATION_CHANGES revocations and as many plan changes one at a
 * time, and after each polls the sidecar's Check in a tight loop until the
 * decision reflects it. The time runs from sending the admin request, so it
 * includes the admin call, the commit, the push over the replication stream,
 * the replica write and one Check round trip.
 */
const changes = readChangeCount(process.env.BENCH_PROPAGATION_CHANGES);
/** Maximum wait for one change before the run is declared broken. */
const CHANGE_TIMEOUT_MS = 5_000;
/** Plan changes made and not measured first, so that both processes have compiled the hot paths. */
const WARMUP_CHANGES = 20;
const ACTOR: Actor = { id: "bench", name: "bench" };
const API_NAME = "bench";
const PLAN_NAME = "bench";
/** A limit no run reaches, so the polled Checks never hit it; each plan change adds one to tell versions apart. */
const BASE_LIMIT = 1_000_000;

const benchDir = fileURLToPath(new URL("../../.tmp/bench/", import.meta.url));
mkdirSync(benchDir, { recursive: true });
const dataDir = mkdtempSync(join(benchDir, "propagation-"));
process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(128 + constants.signals[signal]));

const serverDir = join(dataDir, "server");
const seed = await seedServer(serverDir, changes + 1);
const adminToken = `bench-admin-${randomBytes(16).toString("hex")}`;
const processes: TollgateProcess[] = [];

try {
  const server = await startTollgateProcess(["server", "--data", serverDir, "--listen", "127.0.0.1:0", "--log-level", "warn"], { TOLLGATE_ADMIN_TOKEN: adminToken }, /listening on port (\d+)/);
  processes.push(server);
  const serverUrl = `http://127.0.0.1:${server.ready[0]}`;
  const sidecar = await startTollgateProcess(
    ["sidecar", "--data", join(dataDir, "sidecar"), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server", serverUrl, "--log-level", "warn"],
    { TOLLGATE_SIDECAR_TOKEN: seed.sidecarToken },
    /ext_authz on port (\d+), metrics on http port (\d+)/,
  );
  processes.push(sidecar);

  const checks = createCheckClient(`127.0.0.1:${sidecar.ready[0]}`);
  const admin = adminClients(serverUrl, adminToken);
  const spareKey = seed.keys.at(-1)!;
  await waitFor(checks, spareKey, (decision) => decision.reason === "ok", 15_000);

  console.log(`Propagation from the admin API to a sidecar's Check, ${changes} changes of each kind, server and sidecar as child processes on 127.0.0.1`);
  await measurePlanChanges(admin, checks, seed.apiId, spareKey, WARMUP_CHANGES, 0);
  const revocations = await measureRevocations(admin, checks, seed.keys.slice(0, changes));
  const planChanges = await measurePlanChanges(admin, checks, seed.apiId, spareKey, changes, WARMUP_CHANGES);
  checks.close();

  const results = { finishedAt: new Date().toISOString(), node: process.version, changes, revocations: summarize(revocations), planChanges: summarize(planChanges) };
  console.log(formatLine("revocation", results.revocations));
  console.log(formatLine("plan change", results.planChanges));
  const resultsPath = join(benchDir, "propagation-latest.json");
  writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nResults: ${resultsPath}`);
} finally {
  await Promise.all(processes.map((child) => child.stop()));
}

interface SeededKey {
  id: string;
  secret: string;
}

interface Decision {
  reason: string;
  limit: string | undefined;
}

interface Sample {
  /** From sending the admin request to the first Check that reflects the change. */
  propagationMs: number;
  /** From sending the admin request to its response. */
  adminCallMs: number;
}

interface Summary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  adminCallP50Ms: number;
}

type AdminClients = ReturnType<typeof adminClients>;

/** Writes the API, a plan, `keyCount` keys and a sidecar token into the server's store before it starts. */
async function seedServer(dir: string, keyCount: number): Promise<{ apiId: string; keys: SeededKey[]; sidecarToken: string }> {
  const store = SqliteServerStore.open(storePath(dir), systemClock);
  try {
    const org = await store.defaultOrg(ACTOR);
    const api = await store.createApi(ACTOR, { name: API_NAME, keyPrefix: "tg", orgId: org.id });
    await store.setPlan(ACTOR, { apiId: api.id, name: PLAN_NAME, tiers: [{ limit: BASE_LIMIT, windowMs: 1_000, mode: "reject" }], makeDefault: true });
    const keys: SeededKey[] = [];
    for (let i = 0; i < keyCount; i++) {
      const { key, secret } = await store.createKey(ACTOR, { apiId: api.id });
      keys.push({ id: key.id, secret });
    }
    const { secret: sidecarToken } = await store.createToken(null, { name: "bench sidecar", kind: "sidecar" });
    return { apiId: api.id, keys, sidecarToken };
  } finally {
    await store.close();
  }
}

async function measureRevocations(admin: AdminClients, checks: CheckClient, keys: SeededKey[]): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const key of keys) {
    const startedMs = performance.now();
    await admin.keys.revokeKey({ id: key.id });
    const adminCallMs = performance.now() - startedMs;
    await waitFor(checks, key, (decision) => decision.reason === "revoked_key", CHANGE_TIMEOUT_MS);
    samples.push({ propagationMs: performance.now() - startedMs, adminCallMs });
  }
  return samples;
}

/** Raises the plan's limit by one per change and waits until the sidecar's X-RateLimit-Limit shows it. */
async function measurePlanChanges(admin: AdminClients, checks: CheckClient, apiId: string, key: SeededKey, count: number, offset: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let i = 1; i <= count; i++) {
    const limit = BASE_LIMIT + offset + i;
    const startedMs = performance.now();
    await admin.plans.setPlan({ apiId, name: PLAN_NAME, tiers: [{ limit: BigInt(limit), windowMs: 1_000n, mode: TierMode.REJECT }] });
    const adminCallMs = performance.now() - startedMs;
    await waitFor(checks, key, (decision) => decision.limit === String(limit), CHANGE_TIMEOUT_MS);
    samples.push({ propagationMs: performance.now() - startedMs, adminCallMs });
  }
  return samples;
}

/** Sends Checks with `key` back to back until `reflects` holds, or throws after `timeoutMs`. */
async function waitFor(checks: CheckClient, key: SeededKey, reflects: (decision: Decision) => boolean, timeoutMs: number): Promise<void> {
  const startedMs = performance.now();
  for (;;) {
    const response = await checks.check(buildEnvoyCheckRequest({ method: "GET", path: "/v1/bench", headers: { authorization: `Bearer ${key.secret}` } }));
    const reason = String(response.dynamicMetadata?.reason);
    const headers = response.httpResponse.case === "okResponse" ? response.httpResponse.value.responseHeadersToAdd : [];
    const limit = headers.find((option) => option.header?.key === "x-ratelimit-limit")?.header?.value;
    if (reflects({ reason, limit })) return;
    if (performance.now() - startedMs > timeoutMs) {
      throw new Error(`the sidecar did not reflect a change to key ${key.id} within ${timeoutMs} ms (last reason ${reason}, limit ${limit}); sidecar log: ${processes[1]?.stderrTail()}`);
    }
  }
}

function adminClients(baseUrl: string, token: string) {
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  // HTTP/1.1, because unary calls over the server's HTTP/2 path took about 44 ms against 3 ms on a development VM (small writes held back by Nagle's algorithm until the peer's delayed ACK), which would hide the replication time.
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [authorize] });
  return { keys: createClient(KeyService, transport), plans: createClient(PlanService, transport) };
}

function summarize(samples: Sample[]): Summary {
  const propagation = samples.map((sample) => sample.propagationMs).sort((a, b) => a - b);
  const adminCalls = samples.map((sample) => sample.adminCallMs).sort((a, b) => a - b);
  return { p50Ms: percentile(propagation, 50), p99Ms: percentile(propagation, 99), maxMs: propagation.at(-1) ?? NaN, adminCallP50Ms: percentile(adminCalls, 50) };
}

function formatLine(label: string, summary: Summary): string {
  const ms = (value: number) => `${value.toFixed(2)} ms`;
  return `${label.padEnd(12)} p50 ${ms(summary.p50Ms)}  p99 ${ms(summary.p99Ms)}  max ${ms(summary.maxMs)}  (admin call alone: p50 ${ms(summary.adminCallP50Ms)})`;
}

function readChangeCount(text: string | undefined): number {
  if (text === undefined || text === "") return 200;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 5_000) {
    console.error(`bench: BENCH_PROPAGATION_CHANGES="${text}" must be a whole number from 1 to 5000`);
    process.exit(2);
  }
  return value;
}
