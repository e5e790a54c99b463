import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeUsageRecord } from "../src/usage/event-encoding.js";
import type { UsageRecord } from "../src/usage/usage-event.js";
import { encodeCheckRequests } from "./check-requests.js";
import { loadBenchSettings, type BenchSettings } from "./settings.js";
import { runCheckRounds, type CheckRun } from "./usage-checks.js";
import { buildSampleRecords } from "./usage-events.js";
import { INGEST_CASES, measureIngestCase, type IngestRun } from "./usage-ingest.js";
import { formatUsageReport } from "./usage-report.js";
import { measureSpoolCase, SPOOL_CASES, type SpoolRun } from "./usage-spool.js";
import { startUsageStack } from "./usage-stack.js";
import { summarizeUsage } from "./usage-summary.js";

/**
 * `npm run bench:usage`: what usage metering costs. It measures Check on a
 * sidecar with usage on against one with --no-usage, and with the server
 * stopped against running. Then it measures events per second through the
 * server's ingest stream and through the sidecar's recorder and spool, each
 * against a floor measured in the same round. Temporary files go under
 * .tmp/bench, which git ignores, and are removed at exit.
 */
const loaded = loadBenchSettings(process.env);
if (!loaded.ok) {
  for (const problem of loaded.problems) console.error(`bench: ${problem}`);
  process.exit(2);
}
const { settings } = loaded;
const startedMs = performance.now();

/** Keys on the server; Checks cycle through them. */
const KEY_COUNT = 1_000;
/** The sidecar usage client's defaults: events per batch and batches awaiting an ack. */
const INGEST_BATCH_EVENTS = 500;
const INGEST_BATCHES_IN_FLIGHT = 4;
/**
 * Events per spool flush: what the recorder's 10 ms flush timer collects at
 * 1,000 and at 10,000 Checks/s. Each flush is one transaction, so the
 * spool's fixed cost per flush weighs more in small batches.
 */
const SPOOL_BATCH_SIZES = [10, 100];

const benchDir = fileURLToPath(new URL("../../.tmp/bench/", import.meta.url));
mkdirSync(benchDir, { recursive: true });
const runDir = mkdtempSync(join(benchDir, "usage-"));
// Signals end the run through process.exit, so this handler still removes the files. Child processes are killed by their own exit handler.
process.on("exit", () => rmSync(runDir, { recursive: true, force: true }));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(128 + constants.signals[signal]));

console.log(`Seeding ${KEY_COUNT.toLocaleString("en-US")} keys and starting a server and two sidecars under ${runDir}`);
const checks = await measureChecks(runDir, settings);
const records = buildSampleRecords(KEY_COUNT, KEY_COUNT, Date.now());
const ingestRuns = await measureIngest(records.map(encodeUsageRecord), runDir, settings);
const spoolRuns = measureSpool(records, runDir, settings);

const summary = summarizeUsage(checks.runs, ingestRuns, spoolRuns);
const totalSeconds = (performance.now() - startedMs) / 1000;
console.log(
  `\n${formatUsageReport(summary, { settings, keyCount: KEY_COUNT, ingestBatchEvents: INGEST_BATCH_EVENTS, ingestBatchesInFlight: INGEST_BATCHES_IN_FLIGHT, totalSeconds })}`,
);

const problems = [
  ...checks.problems,
  ...checks.runs.flatMap((run) => checkRunProblems(run)),
  ...ingestRuns.flatMap((run) => run.problems.map((problem) => `ingest ${run.case} round ${run.round}: ${problem}`)),
  ...spoolRuns.flatMap((run) => run.problems.map((problem) => `spool ${run.case} round ${run.round}: ${problem}`)),
];
const resultsPath = join(benchDir, "usage-latest.json");
const results = {
  finishedAt: new Date().toISOString(),
  node: process.version,
  settings,
  keyCount: KEY_COUNT,
  ingestBatchEvents: INGEST_BATCH_EVENTS,
  ingestBatchesInFlight: INGEST_BATCHES_IN_FLIGHT,
  spoolBatchSizes: SPOOL_BATCH_SIZES,
  totalSeconds,
  summary,
  usageOnChecks: checks.usageOnChecks,
  storedEvents: checks.storedEvents,
  checkRuns: checks.runs,
  ingestRuns,
  spoolRuns,
  problems,
};
writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nResults: ${resultsPath}`);

// A failed call, a wrong status or a count that does not add up means a broken setup, so the figures are not comparable.
for (const problem of problems) console.error(`WARNING: ${problem}`);
if (problems.length > 0) process.exitCode = 1;

async function measureChecks(dir: string, settings: BenchSettings) {
  const { stack, keys } = await startUsageStack(dir, KEY_COUNT);
  try {
    return await runCheckRounds(stack, encodeCheckRequests(keys), settings, (run) =>
      console.log(
        `round ${run.round}  checks ${run.case.padEnd(4)}  ${run.checksPerSecond.toFixed(0).padStart(6)} checks/s  ` +
          `p50 ${run.p50Us.toFixed(0)} µs  p99 ${run.p99Us.toFixed(0)} µs  p99.9 ${run.p999Us.toFixed(0)} µs  sidecar ${run.sidecarCpuUsPerCheck.toFixed(1)} µs/check`,
      ),
    );
  } finally {
    await stack.stop();
  }
}

async function measureIngest(encodedEvents: Uint8Array[], dir: string, settings: BenchSettings): Promise<IngestRun[]> {
  const runs: IngestRun[] = [];
  const options = {
    encodedEvents,
    batchEvents: INGEST_BATCH_EVENTS,
    maxBatchesInFlight: INGEST_BATCHES_IN_FLIGHT,
    warmupMs: settings.warmupSeconds * 1000,
    durationMs: settings.measureSeconds * 1000,
  };
  for (let round = 1; round <= settings.rounds; round++) {
    for (const ingestCase of alternate(INGEST_CASES, round)) {
      const run = await measureIngestCase(ingestCase, round, dir, options);
      runs.push(run);
      console.log(`round ${run.round}  ingest ${run.case.padEnd(6)}  ${run.eventsPerSecond.toFixed(0).padStart(7)} events/s`);
    }
  }
  return runs;
}

function measureSpool(records: readonly UsageRecord[], dir: string, settings: BenchSettings): SpoolRun[] {
  const runs: SpoolRun[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    for (const batchEvents of SPOOL_BATCH_SIZES) {
      const options = { records, batchEvents, warmupMs: settings.warmupSeconds * 1000, durationMs: settings.measureSeconds * 1000 };
      for (const spoolCase of alternate(SPOOL_CASES, round)) {
        const run = measureSpoolCase(spoolCase, round, dir, options);
        runs.push(run);
        console.log(`round ${run.round}  spool ${run.case.padEnd(5)}  ${String(batchEvents).padStart(3)} per flush  ${run.eventsPerSecond.toFixed(0).padStart(7)} events/s`);
      }
    }
  }
  return runs;
}

/** Returns the cases in order for odd rounds and reversed for even ones, so that neither always goes first. */
function alternate<T>(cases: readonly T[], round: number): readonly T[] {
  return round % 2 === 1 ? cases : [...cases].reverse();
}

function checkRunProblems(run: CheckRun): string[] {
  const where = `checks ${run.case} round ${run.round}`;
  const problems: string[] = [];
  if (run.wrongAnswers > 0) problems.push(`${where}: ${run.wrongAnswers} calls got another status than 200`);
  if (Object.keys(run.errors).length > 0) problems.push(`${where}: failed calls ${JSON.stringify(run.errors)}`);
  return problems;
}
