import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createUsageQueryClient, type UsageQueryClient } from "../../../src/server/analytics/usage-query-client.js";
import type { UsageRange } from "../../../src/server/analytics/usage-queries.js";
import { openUsageFixture, type UsageFixture } from "./usage-fixture.js";

/**
 * The worker runs only from the compiled client in dist/, because under
 * vitest the source client finds no query-worker.js beside it. `npm test`
 * builds dist/ first. Run `npm run build` before running this file alone.
 */
const DIST_CLIENT_URL = new URL("../../../dist/src/server/analytics/usage-query-client.js", import.meta.url);

type ClientModule = typeof import("../../../src/server/analytics/usage-query-client.js");

async function importBuiltClient(): Promise<ClientModule> {
  if (!existsSync(fileURLToPath(DIST_CLIENT_URL))) throw new Error(`missing ${fileURLToPath(DIST_CLIENT_URL)}: run npm run build first`);
  return (await import(DIST_CLIENT_URL.href)) as ClientModule;
}

const MORNING: UsageRange = { startMs: Date.parse("2026-11-02T08:00:00Z"), endMs: Date.parse("2026-11-02T12:00:00Z") };
const EVERYTHING: UsageRange = { startMs: 0, endMs: Number.MAX_SAFE_INTEGER };
/** Rows of the table the slow query scans: enough that the query outlasts several 1 ms timer ticks. */
const SLOW_QUERY_ROWS = 300_000;

describe("usage query client", () => {
  let usage: UsageFixture;
  const clients: UsageQueryClient[] = [];

  beforeEach(() => {
    usage = openUsageFixture();
    usage.addMinute({ minuteMs: MORNING.startMs, requests: 3 });
    usage.addMinute({ minuteMs: MORNING.startMs + 60_000, decision: "deny", reason: "rate_limited", requests: 2 });
    usage.addFirstUse("key_a", MORNING.startMs);
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    usage.close();
  });

  function databasePath(): string {
    return usage.db.name;
  }

  async function openWorkerClient(path = databasePath()): Promise<UsageQueryClient> {
    const { createUsageQueryClient: createBuiltClient } = await importBuiltClient();
    const client = createBuiltClient({ databasePath: path });
    clients.push(client);
    return client;
  }

  it("returns the same results from the worker", async () => {
    const client = await openWorkerClient();

    expect(client.inWorker).toBe(true);
    expect(await client.decisionBreakdown(MORNING, {})).toEqual(usage.queries.decisionBreakdown(MORNING, {}));
    expect(await client.requestsOverTime(MORNING, {}, "hour", "key", 1000)).toEqual(usage.queries.requestsOverTime(MORNING, {}, "hour", "key", 1000));
    expect(await client.firstAllowedTimes(["key_a", "key_b"])).toEqual(new Map([["key_a", MORNING.startMs]]));
    expect(await client.hasAllowedRequest("key_a", MORNING.startMs, MORNING.endMs)).toBe(true);
  });

  it("reads rows written after the worker started", async () => {
    const client = await openWorkerClient();
    expect(await client.decisionBreakdown(MORNING, { keyId: "key_c" })).toEqual([]);

    usage.addMinute({ minuteMs: MORNING.startMs, keyId: "key_c", requests: 4 });

    expect(await client.decisionBreakdown(MORNING, { keyId: "key_c" })).toEqual([{ decision: "allow", reason: "ok", requests: 4 }]);
  });

  it("rejects with the message of a query error", async () => {
    const client = await openWorkerClient();
    // A grouping the types forbid reaches SQLite as an unknown column.
    const bogusGrouping = "bogus" as unknown as "total";

    await expect(client.requestsOverTime(MORNING, {}, "hour", bogusGrouping, 10)).rejects.toThrow(/no such column: undefined/);
    expect(await client.decisionBreakdown(MORNING, {})).toHaveLength(2);
  });

  it("rejects when the worker cannot open the database", async () => {
    const emptyPath = join(databasePath(), "..", "empty.db");
    writeFileSync(emptyPath, "");
    const client = await openWorkerClient(emptyPath);

    await expect(client.decisionBreakdown(MORNING, {})).rejects.toThrow(/usage query worker failed: cannot open the usage database .*empty\.db: no such table: usage_minutes/);
  });

  it("rejects calls after close", async () => {
    const client = await openWorkerClient();
    await client.decisionBreakdown(MORNING, {});
    await client.close();

    await expect(client.decisionBreakdown(MORNING, {})).rejects.toThrow("the usage query client is closed");
  });

  it("rejects a running call on close", async () => {
    const client = await openWorkerClient();
    const running = client.decisionBreakdown(MORNING, {});
    await client.close();

    await expect(running).rejects.toThrow("the usage query client is closed");
  });

  it("runs in-process without a compiled worker", async () => {
    const client = createUsageQueryClient({ databasePath: databasePath() });
    clients.push(client);

    expect(client.inWorker).toBe(false);
    expect(await client.decisionBreakdown(MORNING, {})).toEqual(usage.queries.decisionBreakdown(MORNING, {}));
    await expect(client.requestsOverTime(MORNING, {}, "hour", "bogus" as unknown as "total", 10)).rejects.toThrow(/no such column/);
  });

  it("keeps the event loop free during a slow query", async () => {
    usage.db
      .prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO usage_minutes (minute_ms, api_id, key_id, owner_id, decision, reason, requests, cost, overage_requests, overage_cost, shadow_exceeded)
         SELECT i * 60000, 'api_a', 'key_' || (i % 1000), 'owner_a', 'allow', 'ok', 1, 1, 0, 0, 0 FROM n`,
      )
      .run(SLOW_QUERY_ROWS);
    const inProcess = createUsageQueryClient({ databasePath: databasePath() });
    const worker = await openWorkerClient();
    clients.push(inProcess);
    // Started before measuring, so that the ticks count only the query and not the worker's start.
    await worker.hasAllowedRequest("key_a", 0, 1);

    const inProcessRun = await countTimerTicksDuring(() => inProcess.decisionBreakdown(EVERYTHING, {}));
    const workerRun = await countTimerTicksDuring(() => worker.decisionBreakdown(EVERYTHING, {}));

    expect(workerRun.result).toEqual(inProcessRun.result);
    expect(workerRun.result[0]?.requests).toBeGreaterThanOrEqual(SLOW_QUERY_ROWS);
    // The in-process query blocks the thread, so no timer fires before it resolves. This shows that the count can fail.
    expect(inProcessRun.ticks).toBe(0);
    expect(workerRun.ticks).toBeGreaterThan(0);
  });
});

/** Runs `query` while a setTimeout(0) chain counts how often the event loop runs timers before the query resolves. */
async function countTimerTicksDuring<T>(query: () => Promise<T>): Promise<{ result: T; ticks: number }> {
  let ticks = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    ticks += 1;
    setTimeout(tick, 0);
  };
  setTimeout(tick, 0);

  const result = await query();
  running = false;
  return { result, ticks };
}
