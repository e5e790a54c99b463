import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { usageDatabasePath } from "../../src/usage/usage-schema.js";
import { createFleet, decide, eventually, seedServerData, type Fleet, type Seed, type ServerChild, type SidecarChild } from "../helpers/fleet.js";

/**
 * Usage metering end to end, with the server and sidecars as real
 * processes: every Check a sidecar answers must reach the server's rollups
 * exactly once, whichever process stops or restarts in between.
 */

let fleet: Fleet;

beforeEach(() => {
  fleet = createFleet("usage-process");
});

afterEach(async () => {
  await fleet.close();
});

/** A junk key fails the format check; a well-formed unknown one fails the lookup; the seeded key is allowed until its tier is full. */
const UNKNOWN_KEY = "shop_1111111111111111111111111111";
const MALFORMED_KEY = "not-a-key";

/** Answers counted by reason on the client side: what the server's rollups must add up to. */
class Tally {
  readonly byReason = new Map<string, number>();
  /** performance.now() of every answer, to tell which came shortly before a kill. */
  readonly answeredAtMs: number[] = [];
  failures = 0;

  add(reason: string): void {
    this.byReason.set(reason, (this.byReason.get(reason) ?? 0) + 1);
    this.answeredAtMs.push(performance.now());
  }

  get total(): number {
    return this.answeredAtMs.length;
  }

  answeredSince(atMs: number): number {
    return this.answeredAtMs.filter((answeredMs) => answeredMs >= atMs).length;
  }
}

/**
 * Sends Checks from `workers` concurrent loops, cycling through an allowed
 * key, an unknown key and a malformed one, until `stop` is called. A Check
 * that fails (the sidecar is gone) is not an answer and is not counted.
 */
function startTraffic(sidecar: () => SidecarChild, seed: Seed, tally: Tally, workers = 4): { stop(): Promise<void> } {
  let running = true;
  const secrets = [seed.keys[0]!.secret, seed.keys[1]!.secret, UNKNOWN_KEY, MALFORMED_KEY];
  const loops = Array.from({ length: workers }, async (_, worker) => {
    for (let i = worker; running; i++) {
      try {
        tally.add((await decide(sidecar(), secrets[i % secrets.length]!)).reason);
      } catch {
        tally.failures++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

interface StoredUsage {
  byReason: Map<string, number>;
  total: number;
  rawEvents: number;
}

/** Reads what the server has committed, straight from its usage database. */
function storedUsage(serverData: string): StoredUsage {
  const db = new Database(usageDatabasePath(serverData), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT reason, SUM(requests) AS requests FROM usage_minutes GROUP BY reason").all() as { reason: string; requests: number }[];
    const rawEvents = (db.prepare("SELECT COUNT(*) AS count FROM usage_events").get() as { count: number }).count;
    const byReason = new Map(rows.map((row) => [row.reason, row.requests]));
    return { byReason, total: rows.reduce((sum, row) => sum + row.requests, 0), rawEvents };
  } finally {
    db.close();
  }
}

async function expectStoredToEqual(serverData: string, tally: Tally, withinMs = 20_000): Promise<void> {
  await eventually(async () => {
    const stored = storedUsage(serverData);
    expect(stored.total).toBe(tally.total);
    expect(stored.byReason).toEqual(tally.byReason);
    expect(stored.rawEvents).toBe(tally.total);
  }, withinMs);
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a server and a replicating sidecar and waits, without a Check, until
 * the sidecar is ready and its usage stream is up: a Check made while waiting
 * would be an event too.
 */
async function startStack(): Promise<{ seed: Seed; serverData: string; server: ServerChild; sidecar: SidecarChild }> {
  const serverData = join(fleet.root, "server");
  const seed = await seedServerData(serverData, 2, [{ limit: 10, windowMs: 1_000, mode: "reject" }]);
  const server = await fleet.startServer(serverData);
  const sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken);
  await sidecar.process.waitFor(/"msg":"usage stream connected"/);
  await eventually(async () => expect((await fetch(`http://127.0.0.1:${sidecar.httpPort}/readyz`)).status).toBe(200), 10_000);
  return { seed, serverData, server, sidecar };
}

describe("usage metering between processes", () => {
  it("counts once across server restart", async () => {
    let { seed, serverData, server, sidecar } = await startStack();
    const tally = new Tally();
    const traffic = startTraffic(() => sidecar, seed, tally);

    await pause(300);
    expect(await server.process.stop("SIGTERM")).toBe(0);
    await pause(1_500);
    server = await fleet.startServer(serverData, server.port);
    await pause(300);
    await traffic.stop();

    expect(tally.failures).toBe(0);
    expect(tally.byReason.get("rate_limited")).toBeGreaterThan(0);
    await expectStoredToEqual(serverData, tally);
  }, 90_000);

  it("counts once across sidecar SIGTERM mid-backlog", async () => {
    let { seed, serverData, server, sidecar } = await startStack();
    const tally = new Tally();

    // A backlog builds up in the spool while the server is away.
    expect(await server.process.stop("SIGTERM")).toBe(0);
    let traffic = startTraffic(() => sidecar, seed, tally);
    await pause(1_500);
    await traffic.stop();
    server = await fleet.startServer(serverData, server.port);

    // Stop the sidecar while its stream is sending that backlog, with Checks still arriving.
    traffic = startTraffic(() => sidecar, seed, tally);
    await sidecar.process.waitFor(/"msg":"usage stream connected"[\s\S]*"msg":"usage stream connected"/, 15_000);
    expect(await sidecar.process.stop("SIGTERM")).toBe(0);
    await traffic.stop();

    sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken, { dataDir: sidecar.dataDir });
    traffic = startTraffic(() => sidecar, seed, tally);
    await pause(300);
    await traffic.stop();

    await expectStoredToEqual(serverData, tally);
  }, 90_000);

  it("loses nothing to kill -9 after flushing", async () => {
    let { seed, serverData, server, sidecar } = await startStack();
    const tally = new Tally();
    // The server is away, so every event is still in the spool when the sidecar dies.
    expect(await server.process.stop("SIGTERM")).toBe(0);
    const traffic = startTraffic(() => sidecar, seed, tally);
    await pause(500);
    await traffic.stop();
    // Ten times the default flush interval of 10 ms.
    await pause(100);

    await sidecar.process.stop("SIGKILL");
    server = await fleet.startServer(serverData, server.port);
    sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken, { dataDir: sidecar.dataDir });

    await expectStoredToEqual(serverData, tally);
  }, 90_000);

  it("bounds kill -9 loss under traffic", async () => {
    let { seed, serverData, server, sidecar } = await startStack();
    const tally = new Tally();
    const traffic = startTraffic(() => sidecar, seed, tally);
    await pause(700);

    const killedAtMs = performance.now();
    await sidecar.process.stop("SIGKILL");
    await traffic.stop();
    const answeredJustBefore = tally.answeredSince(killedAtMs - 100);
    sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken, { dataDir: sidecar.dataDir });

    // Wait for the restarted sidecar to send what its spool kept, then compare.
    let stored = storedUsage(serverData);
    await eventually(async () => {
      const before = stored.total;
      await pause(300);
      stored = storedUsage(serverData);
      expect(stored.total).toBe(before);
    }, 20_000);
    const missing = tally.total - stored.total;
    expect(missing).toBeGreaterThanOrEqual(0);
    expect(missing).toBeLessThanOrEqual(answeredJustBefore);
    expect(stored.rawEvents).toBe(stored.total);
    expect(server.process.child.exitCode).toBeNull();
  }, 90_000);
});
