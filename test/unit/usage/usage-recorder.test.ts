import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createManualClock, type ManualClock } from "../../../src/clock.js";
import { usageSpoolPath } from "../../../src/config/sidecar-config.js";
import { createLogger } from "../../../src/log/logger.js";
import { createUsageMetrics, type UsageMetrics } from "../../../src/metrics/sidecar-metrics.js";
import { decodeSpooledEvent } from "../../../src/usage/event-encoding.js";
import { UsageSpool, type UsageSpoolOptions } from "../../../src/usage/spool.js";
import { UsageRecorder, type UsageRecorderOptions, type UsageSink } from "../../../src/usage/usage-recorder.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";
import { usageRecord } from "./usage-fakes.js";

/** A spool wrapper that counts appends and can be made to fail like a full disk. */
class FlakySink implements UsageSink {
  appends: number[] = [];
  failing = false;

  constructor(private readonly spool: UsageSpool) {}

  appendEncoded(events: readonly Uint8Array[]) {
    if (this.failing) throw new Error("SQLITE_FULL: database or disk is full");
    this.appends.push(events.length);
    return this.spool.appendEncoded(events);
  }
}

describe("usage recorder", () => {
  let dataDir: string;
  let spool: UsageSpool;
  let sink: FlakySink;
  let clock: ManualClock;
  let registry: Registry;
  let metrics: UsageMetrics;
  let log: string;
  let recorder: UsageRecorder | undefined;

  function openSpool(options: Partial<UsageSpoolOptions> = {}) {
    spool = UsageSpool.open(usageSpoolPath(dataDir), { maxEvents: 1_000, fullPolicy: "drop-oldest", ...options });
    sink = new FlakySink(spool);
  }

  function startRecorder(options: Partial<UsageRecorderOptions> = {}): UsageRecorder {
    const logger = createLogger("debug", new Writable({ write: (chunk, _encoding, done) => ((log += chunk.toString()), done()) }));
    recorder = new UsageRecorder({ spool: sink, flushIntervalMs: 60_000, clock, logger, metrics, ...options });
    return recorder;
  }

  function logLines(message: string): Record<string, unknown>[] {
    return log
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === message);
  }

  async function droppedTotal(cause: string): Promise<number> {
    const values = (await metrics.eventsDropped.get()).values;
    return values.find((value) => value.labels.cause === cause)?.value ?? NaN;
  }

  /** Request ids in the spool, oldest first. */
  function spooled(): string[] {
    return spool.readAfter(0, 10_000).map(({ sequence, bytes }) => decodeSpooledEvent(sequence, bytes).requestId);
  }

  beforeEach(() => {
    dataDir = makeTempDir("recorder");
    clock = createManualClock();
    registry = new Registry();
    metrics = createUsageMetrics(registry, { spoolEvents: () => spool.count, bufferedEvents: () => recorder?.bufferedCount ?? 0 });
    log = "";
    openSpool();
  });

  afterEach(() => {
    recorder?.close();
    recorder = undefined;
    spool.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("record only buffers", () => {
    const recorder = startRecorder();

    recorder.record(usageRecord("a"));
    recorder.record(usageRecord("b"));

    expect(recorder.bufferedCount).toBe(2);
    expect(spool.count).toBe(0);
  });

  it("flush writes the buffer in one append", () => {
    const appended = vi.fn();
    const recorder = startRecorder({ onAppended: appended });
    for (const name of ["a", "b", "c"]) recorder.record(usageRecord(name));

    const result = recorder.flush();

    expect(result).toEqual({ stored: 3, dropped: 0, remaining: 0 });
    expect(sink.appends).toEqual([3]);
    expect(spooled()).toEqual(["a", "b", "c"]);
    expect(recorder.bufferedCount).toBe(0);
    expect(appended).toHaveBeenCalledTimes(1);
  });

  it("empty flush writes nothing", () => {
    const appended = vi.fn();
    const recorder = startRecorder({ onAppended: appended });

    expect(recorder.flush()).toEqual({ stored: 0, dropped: 0, remaining: 0 });
    expect(sink.appends).toEqual([]);
    expect(appended).not.toHaveBeenCalled();
  });

  it("timer flushes after the interval", async () => {
    const appended = vi.fn();
    const recorder = startRecorder({ flushIntervalMs: 5, onAppended: appended });

    recorder.record(usageRecord("a"));
    recorder.record(usageRecord("b"));

    await vi.waitFor(() => expect(spool.count).toBe(2), { timeout: 2_000, interval: 5 });
    expect(sink.appends).toEqual([2]);
    expect(appended).toHaveBeenCalledTimes(1);
    expect(recorder.bufferedCount).toBe(0);
  });

  it("flush duration observed", async () => {
    const recorder = startRecorder();
    recorder.record(usageRecord("a"));

    recorder.flush();

    expect(await registry.metrics()).toMatch(/^tollgate_usage_flush_duration_seconds_count 1$/m);
  });

  it("large backlog written in chunks", () => {
    const recorder = startRecorder({ maxFlushEvents: 2 });
    for (const name of ["a", "b", "c", "d", "e"]) recorder.record(usageRecord(name));

    const first = recorder.flush();

    expect(first).toEqual({ stored: 2, dropped: 0, remaining: 3 });
    recorder.flush();
    recorder.flush();
    expect(sink.appends).toEqual([2, 2, 1]);
    expect(spooled()).toEqual(["a", "b", "c", "d", "e"]);
  });

  it("failed write keeps events for the next flush", async () => {
    const recorder = startRecorder();
    recorder.record(usageRecord("a"));
    sink.failing = true;

    const failed = recorder.flush();
    recorder.record(usageRecord("b"));
    recorder.flush();

    expect(failed).toEqual({ stored: 0, dropped: 0, remaining: 1 });
    expect(recorder.bufferedCount).toBe(2);
    expect(logLines("writing usage events to the spool failed; keeping them in memory and retrying")).toHaveLength(1);

    sink.failing = false;
    const recovered = recorder.flush();

    expect(recovered).toEqual({ stored: 2, dropped: 0, remaining: 0 });
    expect(spooled()).toEqual(["a", "b"]);
    expect(logLines("usage spool writes recovered")).toHaveLength(1);
    expect(await droppedTotal("write_failed")).toBe(0);
  });

  it("failed writes drop the oldest past the memory bound", async () => {
    const recorder = startRecorder({ maxBufferedEvents: 3 });
    sink.failing = true;
    for (const name of ["a", "b", "c", "d", "e"]) recorder.record(usageRecord(name));

    const failed = recorder.flush();

    expect(failed).toEqual({ stored: 0, dropped: 2, remaining: 3 });
    expect(await droppedTotal("write_failed")).toBe(2);
    expect(logLines("usage events dropped")).toEqual([expect.objectContaining({ level: "warn", droppedWriteFailed: 2, droppedSpoolFull: 0 })]);

    sink.failing = false;
    recorder.flush();
    expect(spooled()).toEqual(["c", "d", "e"]);
  });

  it("failed write retried by the timer", async () => {
    const recorder = startRecorder({ flushIntervalMs: 1, maxRetryDelayMs: 5 });
    sink.failing = true;
    recorder.record(usageRecord("a"));
    await vi.waitFor(() => expect(logLines("writing usage events to the spool failed; keeping them in memory and retrying")).toHaveLength(1), { timeout: 2_000, interval: 2 });

    sink.failing = false;

    await vi.waitFor(() => expect(spooled()).toEqual(["a"]), { timeout: 2_000, interval: 2 });
  });

  it("spool-full drops counted and logged once per flush", async () => {
    spool.close();
    openSpool({ maxEvents: 2, fullPolicy: "drop-oldest" });
    const recorder = startRecorder();
    for (const name of ["a", "b", "c", "d", "e"]) recorder.record(usageRecord(name));

    const result = recorder.flush();

    expect(result).toEqual({ stored: 5, dropped: 3, remaining: 0 });
    expect(await droppedTotal("spool_full")).toBe(3);
    expect(logLines("usage events dropped")).toEqual([expect.objectContaining({ level: "warn", droppedSpoolFull: 3, droppedWriteFailed: 0 })]);
    expect(spooled()).toEqual(["d", "e"]);
  });

  it("repeated drops logged at most once a second", async () => {
    spool.close();
    openSpool({ maxEvents: 1, fullPolicy: "drop-newest" });
    const recorder = startRecorder();
    recorder.record(usageRecord("kept"));
    recorder.flush();

    for (let flush = 0; flush < 3; flush++) {
      recorder.record(usageRecord(`dropped-${flush}`));
      recorder.flush();
      clock.advance(100);
    }
    clock.advance(1_000);
    recorder.record(usageRecord("dropped-late"));
    recorder.flush();

    expect(await droppedTotal("spool_full")).toBe(4);
    expect(logLines("usage events dropped").map((line) => line.droppedSpoolFull)).toEqual([1, 3]);
    expect(spooled()).toEqual(["kept"]);
  });

  it("drops within the interval logged when it ends", async () => {
    spool.close();
    openSpool({ maxEvents: 1, fullPolicy: "drop-newest" });
    const recorder = startRecorder();
    recorder.record(usageRecord("kept"));
    recorder.flush();
    recorder.record(usageRecord("dropped-first"));
    recorder.flush();

    clock.advance(990);
    recorder.record(usageRecord("dropped-second"));
    recorder.flush();
    expect(logLines("usage events dropped").map((line) => line.droppedSpoolFull)).toEqual([1]);

    // The rest of the interval is 10 ms of the timer's real time; no further drop comes.
    await vi.waitFor(() => expect(logLines("usage events dropped").map((line) => line.droppedSpoolFull)).toEqual([1, 1]), { timeout: 2_000 });
  });

  it("close writes everything and stops recording", () => {
    const recorder = startRecorder({ maxFlushEvents: 2 });
    for (const name of ["a", "b", "c"]) recorder.record(usageRecord(name));

    const result = recorder.close();
    recorder.record(usageRecord("late"));

    expect(result).toEqual({ stored: 3, dropped: 0, remaining: 0 });
    expect(spooled()).toEqual(["a", "b", "c"]);
    expect(recorder.bufferedCount).toBe(0);
  });

  it("close reports what a failed write left", () => {
    const recorder = startRecorder();
    recorder.record(usageRecord("a"));
    sink.failing = true;

    expect(recorder.close()).toEqual({ stored: 0, dropped: 0, remaining: 1 });
  });

  it("buffered gauge counts unwritten events", async () => {
    const recorder = startRecorder();
    recorder.record(usageRecord("a"));
    recorder.record(usageRecord("b"));

    expect(await registry.metrics()).toMatch(/^tollgate_usage_buffered_events 2$/m);
    recorder.flush();
    expect(await registry.metrics()).toMatch(/^tollgate_usage_buffered_events 0$/m);
    expect(await registry.metrics()).toMatch(/^tollgate_usage_spool_events 2$/m);
  });
});
