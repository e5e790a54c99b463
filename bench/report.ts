import type { BenchSettings } from "./settings.js";
import type { BenchSummary, FigureSet } from "./summary.js";

export interface ReportContext {
  settings: BenchSettings;
  seedSeconds: number;
  totalSeconds: number;
}

/** Formats the summary as plain-text tables for the terminal. */
export function formatReport(summary: BenchSummary, context: ReportContext): string {
  const { settings } = context;
  const lines = [
    `Check over loopback with grpc-js clients: ${settings.connections} connections, ${settings.inFlight} calls in flight, ` +
      `${settings.measureSeconds} s measured after ${settings.warmupSeconds} s warm-up, median of ${settings.rounds} rounds.`,
    `Store: ${(settings.validKeys + settings.limitedKeys).toLocaleString("en-US")} keys ` +
      `(${settings.validKeys.toLocaleString("en-US")} valid, ${settings.limitedKeys.toLocaleString("en-US")} over their limit), ` +
      `created in ${context.seedSeconds.toFixed(1)} s. Seeding and measuring took ${context.totalSeconds.toFixed(0)} s.`,
    "",
    "Medians (spread = (max - min) / median of checks/s over rounds; CPU % of one core)",
    table(
      ["stack", "workload", "checks/s", "spread", "p50 µs", "p99 µs", "p99.9 µs", "RSS MiB", "peak MiB", "CPU µs/check", "server CPU", "client CPU", `> ${settings.envoyTimeoutMs} ms`],
      summary.cases.map((c) => [
        c.stack,
        c.workload,
        fixed(c.median.checksPerSecond, 0),
        `${fixed(c.throughputSpreadPercent, 1)}%`,
        fixed(c.median.p50Us, 0),
        fixed(c.median.p99Us, 0),
        fixed(c.median.p999Us, 0),
        fixed(c.median.rssMiB, 1),
        fixed(c.median.peakRssMiB, 1),
        fixed(c.median.serverCpuUsPerCheck, 1),
        `${fixed(c.serverCpuPercent, 0)}%`,
        `${fixed(c.clientCpuPercent, 0)}%`,
        `${fixed(c.overEnvoyTimeoutPercent, 2)}%`,
      ]),
      2,
    ),
    "Where client CPU is near 100%, the load generator limits checks/s; CPU µs/check still compares the servers.",
    "",
    "Ratios to the floor of the same stack (median of per-round ratios)",
    table(
      ["stack", "workload", ...RATIO_HEADERS],
      summary.cases.filter((c) => c.workload !== "floor").map((c) => [c.stack, c.workload, ...ratioCells(c.toFloor)]),
      2,
    ),
    "",
    "connect / grpc-js in the same round (median of per-round ratios): checks/s above 1 favours connect, the rest below 1",
    table(
      ["workload", ...RATIO_HEADERS],
      summary.comparisons.map((c) => [c.workload, ...ratioCells(c.connectToGrpcJs)]),
      1,
    ),
  ];

  const problems = summary.cases.filter((c) => c.wrongAnswers > 0 || Object.keys(c.errors).length > 0);
  if (problems.length > 0) lines.push("");
  for (const c of problems) {
    lines.push(`WARNING: ${c.stack} ${c.workload}: ${c.wrongAnswers} calls got another answer than expected; failed calls: ${JSON.stringify(c.errors)}`);
  }
  return lines.join("\n");
}

const RATIO_HEADERS = ["checks/s", "p50", "p99", "p99.9", "RSS", "peak RSS", "CPU/check"];

function ratioCells(figures: FigureSet): string[] {
  return [figures.checksPerSecond, figures.p50Us, figures.p99Us, figures.p999Us, figures.rssMiB, figures.peakRssMiB, figures.serverCpuUsPerCheck].map(
    (value) => fixed(value, 2),
  );
}

/** Formats a number with `digits` decimals, or "-" when it is not finite. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/** Left-aligns the first `textColumns` columns and right-aligns the numbers after them. */
export function table(headers: string[], rows: string[][], textColumns: number): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => row[column]!.length)));
  const format = (cells: string[]) =>
    cells.map((cell, column) => (column < textColumns ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join("  ");
  return [format(headers), ...rows.map(format)].join("\n");
}
