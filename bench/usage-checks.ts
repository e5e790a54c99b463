import { openCheckChannels, type CheckChannel } from "./check-channels.js";
import { runLoad, type LoadResult } from "./load.js";
import type { BenchSettings } from "./settings.js";
import { summarizeLatencies, type LatencySummary } from "./stats.js";
import type { SidecarProcess, UsageStack } from "./usage-stack.js";

/**
 * The three Check measurements. `on` and `off` run with the server up,
 * against the sidecar with usage metering and the one started with
 * --no-usage. `down` runs against the usage-on sidecar while the server is
 * stopped, so events pile up in its spool.
 */
export const CHECK_CASES = ["on", "off", "down"] as const;
export type CheckCase = (typeof CHECK_CASES)[number];

export interface CheckRun extends LatencySummary {
  case: CheckCase;
  round: number;
  /** Measured calls, after the warm-up. */
  calls: number;
  checksPerSecond: number;
  /** Sidecar CPU time per measured call. */
  sidecarCpuUsPerCheck: number;
  /** Server CPU use during the measured calls, as a percentage of one core; undefined while the server is stopped. */
  serverCpuPercent: number | undefined;
  /** Events per batch the server committed during the measured calls; undefined while it is stopped or when it committed none. */
  serverEventsPerBatch: number | undefined;
  /** Events in the usage-on sidecar's spool after the measured calls, not yet acknowledged. */
  spoolEventsAfter: number | undefined;
  /** Calls, warm-up included, that returned another status than 200. */
  wrongAnswers: number;
  /** Calls, warm-up included, that failed, by gRPC status code name. */
  errors: Record<string, number>;
}

export interface CheckRoundsResult {
  runs: CheckRun[];
  /** Checks sent to the usage-on sidecar, warm-up included: the events it must have recorded. */
  usageOnChecks: number;
  /** Events from the usage-on sidecar in the server's usage_events at the end. */
  storedEvents: number;
  problems: string[];
}

/** Max calls per second of a load phase: a safety bound, as in measure.ts. */
const CALLS_PER_SECOND_CAP = 100_000;
/** Time the server gets to commit the usage-on sidecar's backlog, reconnect backoff included (at most 10 s by default). */
const COMMIT_TIMEOUT_MS = 60_000;
/**
 * Warm-up of both sidecars before round 1: this many Checks each, or the
 * per-measurement warm-up times FIRST_WARMUP_FACTOR, whichever ends first.
 * The sidecars live through every round, so the first measurements would
 * otherwise run on code still being JIT-compiled. In a trial on a busy
 * 2-core VM, a sidecar's CPU per Check kept falling over its first 10,000
 * or so Checks, from about 1.7 ms to 0.5 ms.
 */
const FIRST_WARMUP_CHECKS = 10_000;
const FIRST_WARMUP_FACTOR = 6;

/** Drives Check for `seconds`, or until `maxCalls` calls have started. */
type LoadFor = (seconds: number, maxCalls?: number) => Promise<LoadResult>;

/**
 * Runs the Check measurements round after round. Odd rounds measure on,
 * off, then down, and even rounds down, off, then on, so that a slow
 * stretch of the machine does not always hit the same case. Before each
 * measurement with the server up, the server has committed every event the
 * usage-on sidecar recorded so far. No backlog from an earlier measurement
 * then competes for the CPU.
 */
export async function runCheckRounds(stack: UsageStack, requests: readonly Buffer[], settings: BenchSettings, log: (run: CheckRun) => void): Promise<CheckRoundsResult> {
  const runs: CheckRun[] = [];
  const problems: string[] = [];
  let usageOnChecks = 0;
  let storedEvents = 0;

  const settle = async () => {
    if (!stack.serverRunning) await stack.startServer();
    storedEvents = await stack.waitForCommitted(usageOnChecks, COMMIT_TIMEOUT_MS);
    if (storedEvents !== usageOnChecks) problems.push(`the server stored ${storedEvents} events from the usage-on sidecar, but it returned ${usageOnChecks} Check responses`);
  };

  // Both at once, so the warm-up takes half the time; JIT compilation goes by each process's own calls.
  const firstWarmups = await Promise.all(
    [stack.usageOn, stack.usageOff].map((sidecar) => withLoad(sidecar, requests, settings, (load) => load(settings.warmupSeconds * FIRST_WARMUP_FACTOR, FIRST_WARMUP_CHECKS))),
  );
  usageOnChecks += firstWarmups[0]!.calls;
  for (const [index, warmup] of firstWarmups.entries()) {
    const wrongAnswers = countWrongAnswers(warmup);
    if (wrongAnswers > 0 || warmup.errors.size > 0) {
      const id = index === 0 ? stack.usageOn.id : stack.usageOff.id;
      problems.push(`first warm-up of ${id}: ${wrongAnswers} calls got another status than 200, failed calls ${JSON.stringify(Object.fromEntries(warmup.errors))}`);
    }
  }
  await settle();

  for (let round = 1; round <= settings.rounds; round++) {
    const order: CheckCase[] = round % 2 === 1 ? ["on", "off", "down"] : ["down", "off", "on"];
    for (const checkCase of order) {
      if (checkCase === "down") await stack.stopServer();
      const sidecar = checkCase === "off" ? stack.usageOff : stack.usageOn;
      const { run, sentChecks } = await measureSidecar(checkCase, round, sidecar, stack, requests, settings);
      if (checkCase !== "off") usageOnChecks += sentChecks;
      runs.push(run);
      log(run);
      if (checkCase !== "off") await settle();
    }
  }
  return { runs, usageOnChecks, storedEvents, problems };
}

/** Opens the connections, warms up, then measures; the returned count includes the warm-up calls. */
async function measureSidecar(
  checkCase: CheckCase,
  round: number,
  sidecar: SidecarProcess,
  stack: UsageStack,
  requests: readonly Buffer[],
  settings: BenchSettings,
): Promise<{ run: CheckRun; sentChecks: number }> {
  return withLoad(sidecar, requests, settings, async (load) => {
    const warmup = settings.warmupSeconds > 0 ? await load(settings.warmupSeconds) : undefined;
    const serverUp = stack.serverRunning;
    const sidecarCpuBefore = await sidecar.cpuUs();
    const serverBefore = serverUp ? await stack.serverStats() : undefined;
    const result = await load(settings.measureSeconds);
    const sidecarCpuUs = (await sidecar.cpuUs()) - sidecarCpuBefore;
    const serverAfter = serverBefore ? await stack.serverStats() : undefined;
    const serverCpuUs = serverBefore && serverAfter ? serverAfter.cpuUs - serverBefore.cpuUs : undefined;
    const serverBatches = serverBefore && serverAfter ? serverAfter.ingestBatches - serverBefore.ingestBatches : 0;
    const spoolEventsAfter = checkCase === "off" ? undefined : await sidecar.spoolEvents();

    const loads = warmup ? [warmup, result] : [result];
    const run: CheckRun = {
      case: checkCase,
      round,
      calls: result.calls,
      checksPerSecond: (result.calls / result.elapsedMs) * 1000,
      ...summarizeLatencies(result.latenciesUs),
      sidecarCpuUsPerCheck: sidecarCpuUs / result.calls,
      serverCpuPercent: serverCpuUs === undefined ? undefined : (serverCpuUs / 1000 / result.elapsedMs) * 100,
      serverEventsPerBatch: serverBatches > 0 ? (serverAfter!.eventsIngested - serverBefore!.eventsIngested) / serverBatches : undefined,
      spoolEventsAfter,
      wrongAnswers: loads.reduce((sum, one) => sum + countWrongAnswers(one), 0),
      errors: sumErrors(loads),
    };
    return { run, sentChecks: loads.reduce((sum, one) => sum + one.calls, 0) };
  });
}

/** Opens the connections to `sidecar`, runs `body` with a function that drives Check for some seconds, and closes them. */
async function withLoad<T>(sidecar: SidecarProcess, requests: readonly Buffer[], settings: BenchSettings, body: (load: LoadFor) => Promise<T>): Promise<T> {
  let channels: CheckChannel[] = [];
  try {
    channels = await openCheckChannels(sidecar.grpcPort, settings.connections);
    const load: LoadFor = (seconds, maxCalls = Math.ceil(seconds * CALLS_PER_SECOND_CAP)) =>
      runLoad({ channels, requests, inFlight: settings.inFlight, durationMs: seconds * 1000, maxCalls, callTimeoutMs: settings.callTimeoutMs });
    return await body(load);
  } finally {
    for (const channel of channels) channel.close();
  }
}

function countWrongAnswers(result: LoadResult): number {
  let wrong = 0;
  for (const [status, count] of result.statuses) if (status !== 200) wrong += count;
  return wrong;
}

function sumErrors(results: readonly LoadResult[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const result of results) {
    for (const [name, count] of result.errors) total[name] = (total[name] ?? 0) + count;
  }
  return total;
}
