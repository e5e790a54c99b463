import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createManualClock, type ManualClock } from "../../../src/clock.js";
import { Decision, UsageEventSchema } from "../../../src/gen/tollgate/usage/v1/usage_pb.js";
import { createLogger } from "../../../src/log/logger.js";
import { createUsageIngestMetrics } from "../../../src/usage/ingest-metrics.js";
import { startUsagePruner, type UsagePruner } from "../../../src/usage/usage-pruner.js";
import { usageDatabasePath } from "../../../src/usage/usage-schema.js";
import { SqliteUsageStore, type UsageStore } from "../../../src/usage/usage-store.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";

const NOW_MS = Date.UTC(2026, 0, 1, 10);
const HOUR = 3_600_000;
const DAY = 86_400_000;
const SOURCE = { sidecarId: "pod-1", spoolId: "spool-a" };

function usageEvent(sequence: number, timeMs: number) {
  return create(UsageEventSchema, { sequence: BigInt(sequence), timeMs: BigInt(timeMs), keyId: "key_a", decision: Decision.ALLOW, reason: "ok", status: 200, cost: 1n });
}

describe("usage pruner", () => {
  let dataDir: string;
  let clock: ManualClock;
  let usage: SqliteUsageStore;
  let registry: Registry;
  let logText: string;
  let pruner: UsagePruner | undefined;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    dataDir = makeTempDir("usage-pruner");
    clock = createManualClock(NOW_MS);
    usage = SqliteUsageStore.open(usageDatabasePath(dataDir), clock);
    registry = new Registry();
    logText = "";
  });
  afterEach(async () => {
    await pruner?.close();
    pruner = undefined;
    await usage.close();
    rmSync(dataDir, { recursive: true, force: true });
    vi.useRealTimers();
  });

  function start(intervalMs = HOUR, store: UsageStore = usage) {
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logText += chunk.toString();
        done();
      },
    });
    pruner = startUsagePruner({
      usage: store,
      clock,
      logger: createLogger("debug", sink),
      metrics: createUsageIngestMetrics(registry),
      rawRetentionMs: 7 * DAY,
      rollupRetentionMs: 91 * DAY,
      intervalMs,
    });
    return pruner;
  }

  const rawSequences = () => usage.db.prepare("SELECT sequence FROM usage_events ORDER BY sequence").pluck().all();
  const rollupMinutes = () => usage.db.prepare("SELECT minute_ms FROM usage_minutes ORDER BY minute_ms").pluck().all();

  it("prunes both retentions at start", async () => {
    await usage.ingest(SOURCE, [usageEvent(1, NOW_MS - 92 * DAY), usageEvent(2, NOW_MS - 8 * DAY), usageEvent(3, NOW_MS - DAY)]);

    await start().pruneNow();

    expect(rawSequences()).toEqual([3]);
    expect(rollupMinutes()).toEqual([NOW_MS - 8 * DAY, NOW_MS - DAY]);
    expect(await registry.getSingleMetricAsString("tollgate_server_usage_events_pruned_total")).toMatch(/^tollgate_server_usage_events_pruned_total 2$/m);
    expect(logText).toMatch(/"rawEvents":2,"rollupRows":1,.*"msg":"usage pruned"/);
  });

  it("starts a prune at start and joins it instead of overlapping", async () => {
    const cutoffs: number[] = [];
    const recording: UsageStore = {
      ingest: (source, events) => usage.ingest(source, events),
      pruneRawEvents: (beforeTimeMs, options) => {
        cutoffs.push(beforeTimeMs);
        return usage.pruneRawEvents(beforeTimeMs, options);
      },
      pruneRollups: (beforeTimeMs, options) => usage.pruneRollups(beforeTimeMs, options),
      close: () => usage.close(),
    };

    const running = start(HOUR, recording);
    expect(cutoffs).toEqual([NOW_MS - 7 * DAY]);
    await Promise.all([running.pruneNow(), running.pruneNow()]);

    expect(cutoffs).toHaveLength(1);
  });

  it("prunes again every interval with the clock's time", async () => {
    await usage.ingest(SOURCE, [usageEvent(1, NOW_MS - 6 * DAY)]);
    const running = start(HOUR);
    await running.pruneNow();
    expect(rawSequences()).toEqual([1]);

    clock.advance(2 * DAY);
    vi.advanceTimersByTime(HOUR);
    await running.pruneNow();

    expect(rawSequences()).toEqual([]);
    expect(await registry.getSingleMetricAsString("tollgate_server_usage_events_pruned_total")).toMatch(/ 1$/m);
  });

  it("logs a failed prune and prunes again next time", async () => {
    await usage.ingest(SOURCE, [usageEvent(1, NOW_MS - 8 * DAY)]);
    let failuresLeft = 1;
    const flakyDisk: UsageStore = {
      ingest: (source, events) => usage.ingest(source, events),
      pruneRawEvents: (beforeTimeMs, options) => (failuresLeft-- > 0 ? Promise.reject(new Error("disk I/O error")) : usage.pruneRawEvents(beforeTimeMs, options)),
      pruneRollups: (beforeTimeMs, options) => usage.pruneRollups(beforeTimeMs, options),
      close: () => usage.close(),
    };

    const running = start(HOUR, flakyDisk);
    await running.pruneNow();
    expect(logText).toMatch(/"level":"error".*"message":"disk I\/O error".*"msg":"usage prune failed, retrying at the next interval"/);
    expect(rawSequences()).toEqual([1]);

    vi.advanceTimersByTime(HOUR);
    await running.pruneNow();
    expect(rawSequences()).toEqual([]);
  });

  it("stops pruning after close", async () => {
    const running = start();
    await running.pruneNow();
    await running.close();
    await usage.ingest(SOURCE, [usageEvent(1, NOW_MS - 8 * DAY)]);

    vi.advanceTimersByTime(HOUR);
    await running.pruneNow();

    expect(rawSequences()).toEqual([1]);
  });
});
