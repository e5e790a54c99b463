import { median } from "./stats.js";
import { CHECK_CASES, type CheckCase, type CheckRun } from "./usage-checks.js";
import type { IngestRun } from "./usage-ingest.js";
import type { SpoolRun } from "./usage-spool.js";

/** The Check figures that are compared, each a median over rounds. */
export const CHECK_FIGURES = ["checksPerSecond", "p50Us", "p99Us", "p999Us", "sidecarCpuUsPerCheck"] as const;
export type CheckFigure = (typeof CHECK_FIGURES)[number];
export type CheckFigureSet = Record<CheckFigure, number>;

/** Events per second of a case and its floor, and the median of their per-round ratios. */
export interface ThroughputSummary {
  eventsPerSecond: number;
  floorEventsPerSecond: number;
  toFloor: number;
}

export interface UsageSummary {
  /** Medians per case; absent for a case that was not measured. */
  checks: Partial<Record<CheckCase, CheckFigureSet & { serverCpuPercent: number; serverEventsPerBatch: number }>>;
  /** Per round, the usage-on figure divided by the usage-off one; then the median. */
  onToOff: CheckFigureSet;
  /** Per round, the server-down figure divided by the server-up one, both usage on; then the median. */
  downToUp: CheckFigureSet;
  ingest: ThroughputSummary;
  /** One entry per spool batch size. */
  spool: (ThroughputSummary & { batchEvents: number })[];
}

/**
 * Reduces the runs to medians. Ratios are taken within a round before the
 * median, so that drift between rounds on a shared machine cancels out of
 * each ratio.
 */
export function summarizeUsage(checkRuns: readonly CheckRun[], ingestRuns: readonly IngestRun[], spoolRuns: readonly SpoolRun[]): UsageSummary {
  const checks: UsageSummary["checks"] = {};
  for (const checkCase of CHECK_CASES) {
    const runs = checkRuns.filter((run) => run.case === checkCase);
    if (runs.length === 0) continue;
    checks[checkCase] = {
      ...mapFigures((figure) => median(runs.map((run) => run[figure]))),
      serverCpuPercent: median(definedValues(runs.map((run) => run.serverCpuPercent))),
      serverEventsPerBatch: median(definedValues(runs.map((run) => run.serverEventsPerBatch))),
    };
  }

  return {
    checks,
    onToOff: checkRatios(checkRuns, "on", "off"),
    downToUp: checkRatios(checkRuns, "down", "on"),
    ingest: throughput(ingestRuns, (run) => run.case === "server"),
    spool: [...new Set(spoolRuns.map((run) => run.batchEvents))].map((batchEvents) => ({
      batchEvents,
      ...throughput(
        spoolRuns.filter((run) => run.batchEvents === batchEvents),
        (run) => run.case === "spool",
      ),
    })),
  };
}

function checkRatios(runs: readonly CheckRun[], numerator: CheckCase, denominator: CheckCase): CheckFigureSet {
  const pairs = runs
    .filter((run) => run.case === numerator)
    .map((run) => ({ run, reference: runs.find((other) => other.case === denominator && other.round === run.round) }));
  return mapFigures((figure) => median(pairs.map(({ run, reference }) => ratio(run[figure], reference?.[figure]))));
}

function throughput<T extends { round: number; eventsPerSecond: number }>(runs: readonly T[], isMeasured: (run: T) => boolean): ThroughputSummary {
  const measured = runs.filter(isMeasured);
  const floors = runs.filter((run) => !isMeasured(run));
  return {
    eventsPerSecond: median(measured.map((run) => run.eventsPerSecond)),
    floorEventsPerSecond: median(floors.map((run) => run.eventsPerSecond)),
    toFloor: median(measured.map((run) => ratio(run.eventsPerSecond, floors.find((floor) => floor.round === run.round)?.eventsPerSecond))),
  };
}

function mapFigures(compute: (figure: CheckFigure) => number): CheckFigureSet {
  return Object.fromEntries(CHECK_FIGURES.map((figure) => [figure, compute(figure)])) as CheckFigureSet;
}

function definedValues(values: readonly (number | undefined)[]): number[] {
  return values.filter((value): value is number => value !== undefined);
}

function ratio(value: number, reference: number | undefined): number {
  return reference === undefined || reference === 0 ? NaN : value / reference;
}
