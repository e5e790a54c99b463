import { runCli } from "./program.js";

// The one place that reads the process: arguments, environment and exit code.
const exitCode = await runCli(process.argv.slice(2), { env: process.env });
process.exitCode = exitCode;
