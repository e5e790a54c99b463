import { openCheckChannels, type CheckChannel } from "./check-channels.js";
import { runLoad, type LoadResult } from "./load.js";
import { startServerProcess, type ServerStats } from "./server-process.js";
import type { BenchSettings } from "./settings.js";
import type { StackName } from "./stacks.js";
import { summarizeLatencies, type LatencySummary } from "./stats.js";
import type { Workload, WorkloadName } from "./workloads.js";

/** The figures of one server run. */
export interface Measurement extends LatencySummary {
  stack: StackName;
  workload: WorkloadName;
  round: number;
  calls: number;
  checksPerSecond: number;
  /** Server RSS right after the measured calls, and its peak over the run. */
  rssMiB: number;
  peakRssMiB: number;
  /** Server CPU time per measured call. */
  serverCpuUsPerCheck: number;
  /** CPU use during the measured calls, as a percentage of one core. */
  serverCpuPercent: number;
  clientCpuPercent: number;
  /** Measured calls by the HTTP status Envoy would act on. */
  statuses: Record<string, number>;
  /** Measured calls that failed, by gRPC status code name. */
  errors: Record<string, number>;
  /** Measured calls that returned another status than the workload expects. */
  wrongAnswers: number;
  /** Measured calls that took longer than Envoy's default timeout, which Envoy would have failed. */
  overEnvoyTimeout: number;
}

/** Max calls per second of a load phase: a safety bound, far above what one Node process serves. */
const CALLS_PER_SECOND_CAP = 100_000;
const PRIME_TIMEOUT_MS = 60_000;
const MIB = 1024 * 1024;

/**
 * Measures one stack with one workload in a fresh server process: open the
 * connections, use up the limits when the workload requires it, warm up,
 * then measure. The server is stopped on every path out.
 */
export async function measure(stack: StackName, workload: Workload, round: number, dataDir: string, settings: BenchSettings): Promise<Measurement> {
  const server = await startServerProcess({ stack, handler: workload.handler, dataDir });
  let channels: CheckChannel[] = [];
  try {
    channels = await openCheckChannels(server.port, settings.connections);
    const load = (seconds: number, maxCalls = Math.ceil(seconds * CALLS_PER_SECOND_CAP)) =>
      runLoad({ channels, requests: workload.requests, inFlight: settings.inFlight, durationMs: seconds * 1000, maxCalls, callTimeoutMs: settings.callTimeoutMs });

    if (workload.prime) await load(PRIME_TIMEOUT_MS / 1000, workload.requests.length);
    if (settings.warmupSeconds > 0) await load(settings.warmupSeconds);

    const before = await server.stats();
    const clientCpuBefore = process.cpuUsage();
    const result = await load(settings.measureSeconds);
    const clientCpu = process.cpuUsage(clientCpuBefore);
    const after = await server.stats();

    const clientCpuUs = clientCpu.user + clientCpu.system;
    return { stack, workload: workload.name, round, ...figuresOf(result, before, after, clientCpuUs, workload, settings) };
  } finally {
    for (const channel of channels) channel.close();
    await server.stop();
  }
}

function figuresOf(result: LoadResult, before: ServerStats, after: ServerStats, clientCpuUs: number, workload: Workload, settings: BenchSettings) {
  const serverCpuUs = after.cpuUs - before.cpuUs;
  return {
    calls: result.calls,
    checksPerSecond: (result.calls / result.elapsedMs) * 1000,
    ...summarizeLatencies(result.latenciesUs),
    rssMiB: after.rssBytes / MIB,
    peakRssMiB: after.maxRssBytes / MIB,
    serverCpuUsPerCheck: serverCpuUs / result.calls,
    serverCpuPercent: (serverCpuUs / 1000 / result.elapsedMs) * 100,
    clientCpuPercent: (clientCpuUs / 1000 / result.elapsedMs) * 100,
    statuses: Object.fromEntries(result.statuses),
    errors: Object.fromEntries(result.errors),
    wrongAnswers: countWrongAnswers(result, workload.expectedStatus),
    overEnvoyTimeout: countAbove(result.latenciesUs, settings.envoyTimeoutMs * 1000),
  };
}

function countWrongAnswers(result: LoadResult, expectedStatus: number): number {
  let wrong = 0;
  for (const [status, count] of result.statuses) if (status !== expectedStatus) wrong += count;
  return wrong;
}

function countAbove(values: Float64Array, limit: number): number {
  let count = 0;
  for (const value of values) if (value > limit) count++;
  return count;
}
