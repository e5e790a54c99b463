import { fixed, table } from "./report.js";
import type { BenchSettings } from "./settings.js";
import type { CheckCase } from "./usage-checks.js";
import type { CheckFigureSet, UsageSummary } from "./usage-summary.js";

export interface UsageReportContext {
  settings: BenchSettings;
  keyCount: number;
  ingestBatchEvents: number;
  ingestBatchesInFlight: number;
  totalSeconds: number;
}

const CASE_LABELS: Record<CheckCase, string> = {
  on: "usage on, server up",
  off: "usage off (--no-usage)",
  down: "usage on, server down",
};

/** Formats the summary as plain-text tables for the terminal. */
export function formatUsageReport(summary: UsageSummary, context: UsageReportContext): string {
  const { settings } = context;
  const checkRows = (Object.keys(CASE_LABELS) as CheckCase[]).flatMap((checkCase) => {
    const figures = summary.checks[checkCase];
    if (!figures) return [];
    return [[CASE_LABELS[checkCase], fixed(figures.checksPerSecond, 0), fixed(figures.p50Us, 0), fixed(figures.p99Us, 0), fixed(figures.p999Us, 0), fixed(figures.sidecarCpuUsPerCheck, 1), percent(figures.serverCpuPercent), fixed(figures.serverEventsPerBatch, 1)]];
  });

  return [
    `Check on two sidecar processes replicating from a tollgate server process, all on 127.0.0.1: ${settings.connections} grpc-js connections, ` +
      `${settings.inFlight} calls in flight, ${settings.measureSeconds} s measured after ${settings.warmupSeconds} s warm-up, median of ${settings.rounds} rounds, ` +
      `${context.keyCount.toLocaleString("en-US")} keys on a plan that never limits them.`,
    table(["case", "checks/s", "p50 µs", "p99 µs", "p99.9 µs", "sidecar CPU µs/check", "server CPU", "events/batch"], checkRows, 1),
    "Server CPU is % of one core; events/batch is what the server committed per transaction during the measured calls.",
    "",
    "Ratios (median of per-round ratios)",
    table(
      ["ratio", "checks/s", "p50", "p99", "p99.9", "CPU/check"],
      [
        ["usage on / usage off", ...ratioCells(summary.onToOff)],
        ["server down / server up", ...ratioCells(summary.downToUp)],
      ],
      1,
    ),
    "",
    "Usage events per second (median; ratio = median of per-round ratios)",
    table(
      ["path", "events/s", "floor events/s", "ratio"],
      [
        [
          `ingest: UsageService.Report into startServer in this process, batches of ${context.ingestBatchEvents}, ${context.ingestBatchesInFlight} awaiting an ack`,
          fixed(summary.ingest.eventsPerSecond, 0),
          fixed(summary.ingest.floorEventsPerSecond, 0),
          fixed(summary.ingest.toFloor, 2),
        ],
        ...summary.spool.map((spool) => [
          `spool: UsageRecorder + UsageSpool, one flush per ${spool.batchEvents} events`,
          fixed(spool.eventsPerSecond, 0),
          fixed(spool.floorEventsPerSecond, 0),
          fixed(spool.toFloor, 2),
        ]),
      ],
      1,
    ),
    "Ingest floor: the same client and HTTP stack, with a Report handler that acks each batch without storing it. " +
      "Spool floor: the same encoded events inserted into a one-table WAL file, one transaction per batch.",
    `The run took ${context.totalSeconds.toFixed(0)} s.`,
  ].join("\n");
}

function ratioCells(figures: CheckFigureSet): string[] {
  return [figures.checksPerSecond, figures.p50Us, figures.p99Us, figures.p999Us, figures.sidecarCpuUsPerCheck].map((value) => fixed(value, 2));
}

function percent(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(0)}%` : "-";
}
