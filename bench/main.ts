import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { measure, type Measurement } from "./measure.js";
import { formatReport } from "./report.js";
import { seedKeyStore } from "./seed.js";
import { loadBenchSettings, type BenchSettings } from "./settings.js";
import { STACKS } from "./stacks.js";
import { summarize } from "./summary.js";
import { buildWorkloads, type Workload } from "./workloads.js";

/**
 * `npm run bench`: seeds a key store, then measures Check on each candidate
 * gRPC stack with each workload, round after round, and prints medians and
 * ratios. The store and the results stay under .tmp/bench, which git ignores.
 */
const loaded = loadBenchSettings(process.env);
if (!loaded.ok) {
  for (const problem of loaded.problems) console.error(`bench: ${problem}`);
  process.exit(2);
}
const { settings } = loaded;
const startedMs = performance.now();

const benchDir = fileURLToPath(new URL("../../.tmp/bench/", import.meta.url));
mkdirSync(benchDir, { recursive: true });
const dataDir = mkdtempSync(join(benchDir, "store-"));
// Signals end the run through process.exit, so this handler still removes the store. Server children exit when their stdin closes.
process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(128 + constants.signals[signal]));

console.log(`Seeding ${(settings.validKeys + settings.limitedKeys).toLocaleString("en-US")} keys into ${dataDir}`);
const keys = seedKeyStore(dataDir, settings);
const measurements = await runRounds(buildWorkloads(keys), dataDir, settings);

const summary = summarize(measurements);
const totalSeconds = (performance.now() - startedMs) / 1000;
console.log(`\n${formatReport(summary, { settings, seedSeconds: keys.insertMs / 1000, totalSeconds })}`);

const resultsPath = join(benchDir, "latest.json");
const results = { finishedAt: new Date().toISOString(), node: process.version, settings, seedMs: keys.insertMs, totalSeconds, summary, measurements };
writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nResults: ${resultsPath}`);

// A wrong status or a failed call means a broken setup (a limit not used up, say), so the figures are not comparable.
if (measurements.some((m) => m.wrongAnswers > 0 || Object.keys(m.errors).length > 0)) process.exitCode = 1;

async function runRounds(workloads: readonly Workload[], dataDir: string, settings: BenchSettings): Promise<Measurement[]> {
  const measurements: Measurement[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    // Alternating which stack goes first keeps a slow stretch of the machine from always hitting the same one.
    const stacks = round % 2 === 1 ? STACKS : [...STACKS].reverse();
    for (const workload of workloads) {
      for (const stack of stacks) {
        const result = await measure(stack, workload, round, dataDir, settings);
        measurements.push(result);
        console.log(
          `round ${round}  ${stack.padEnd(7)}  ${workload.name.padEnd(7)}  ${result.checksPerSecond.toFixed(0).padStart(6)} checks/s  ` +
            `p50 ${result.p50Us.toFixed(0)} µs  p99 ${result.p99Us.toFixed(0)} µs  p99.9 ${result.p999Us.toFixed(0)} µs`,
        );
      }
    }
  }
  return measurements;
}
