import type { Measurement } from "./measure.js";
import { STACKS, type StackName } from "./stacks.js";
import { median } from "./stats.js";
import { WORKLOAD_NAMES, type WorkloadName } from "./workloads.js";

/** The figures that are compared, each a median over rounds. */
export const FIGURES = ["checksPerSecond", "p50Us", "p99Us", "p999Us", "rssMiB", "peakRssMiB", "serverCpuUsPerCheck"] as const;
export type Figure = (typeof FIGURES)[number];
export type FigureSet = Record<Figure, number>;

export interface CaseSummary {
  stack: StackName;
  workload: WorkloadName;
  rounds: number;
  median: FigureSet;
  /** Per round, the figure divided by the same stack's floor in that round; then the median. */
  toFloor: FigureSet;
  /** (max - min) / median of checks/s over rounds, in percent. */
  throughputSpreadPercent: number;
  serverCpuPercent: number;
  clientCpuPercent: number;
  /** Share of calls slower than Envoy's default timeout, in percent. */
  overEnvoyTimeoutPercent: number;
  /** Calls over all rounds that returned another status than expected. */
  wrongAnswers: number;
  /** Calls over all rounds that failed, by gRPC status code name. */
  errors: Record<string, number>;
}

export interface StackComparison {
  workload: WorkloadName;
  /** Per round, connect's figure divided by grpc-js's; then the median. */
  connectToGrpcJs: FigureSet;
}

export interface BenchSummary {
  cases: CaseSummary[];
  comparisons: StackComparison[];
}

/**
 * Reduces the measurements to medians. Ratios are taken within a round
 * before the median, so that drift between rounds on a shared machine
 * cancels out of each ratio.
 */
export function summarize(measurements: readonly Measurement[]): BenchSummary {
  const find = (stack: StackName, workload: WorkloadName, round: number) =>
    measurements.find((m) => m.stack === stack && m.workload === workload && m.round === round);

  const cases: CaseSummary[] = [];
  for (const stack of STACKS) {
    for (const workload of WORKLOAD_NAMES) {
      const runs = measurements.filter((m) => m.stack === stack && m.workload === workload);
      if (runs.length === 0) continue;
      const floors = runs.map((run) => find(stack, "floor", run.round));
      const throughputs = runs.map((run) => run.checksPerSecond);
      cases.push({
        stack,
        workload,
        rounds: runs.length,
        median: mapFigures((figure) => median(runs.map((run) => run[figure]))),
        toFloor: mapFigures((figure) => median(runs.map((run, i) => ratio(run[figure], floors[i]?.[figure])))),
        throughputSpreadPercent: ((Math.max(...throughputs) - Math.min(...throughputs)) / median(throughputs)) * 100,
        serverCpuPercent: median(runs.map((run) => run.serverCpuPercent)),
        clientCpuPercent: median(runs.map((run) => run.clientCpuPercent)),
        overEnvoyTimeoutPercent: median(runs.map((run) => (run.overEnvoyTimeout / run.calls) * 100)),
        wrongAnswers: runs.reduce((sum, run) => sum + run.wrongAnswers, 0),
        errors: sumCounts(runs.map((run) => run.errors)),
      });
    }
  }

  const comparisons: StackComparison[] = [];
  for (const workload of WORKLOAD_NAMES) {
    const pairs = measurements
      .filter((m) => m.stack === "connect" && m.workload === workload)
      .map((connect) => ({ connect, grpcJs: find("grpc-js", workload, connect.round) }));
    if (pairs.length === 0) continue;
    comparisons.push({
      workload,
      connectToGrpcJs: mapFigures((figure) => median(pairs.map(({ connect, grpcJs }) => ratio(connect[figure], grpcJs?.[figure])))),
    });
  }
  return { cases, comparisons };
}

function mapFigures(compute: (figure: Figure) => number): FigureSet {
  return Object.fromEntries(FIGURES.map((figure) => [figure, compute(figure)])) as FigureSet;
}

function ratio(value: number, reference: number | undefined): number {
  return reference === undefined || reference === 0 ? NaN : value / reference;
}

function sumCounts(counts: readonly Record<string, number>[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const entry of counts) {
    for (const [name, count] of Object.entries(entry)) total[name] = (total[name] ?? 0) + count;
  }
  return total;
}
