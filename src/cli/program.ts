import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { systemClock, type Clock } from "../clock.js";
import { StoreError } from "../keys/store-error.js";
import { addCheckCommand } from "./check-command.js";
import { addDevCommand } from "./dev-command.js";
import { UsageError } from "./errors.js";
import type { Environment } from "./options.js";
import { processOutput, type Output } from "./output.js";
import { addServerCommand } from "./server-command.js";
import { addSidecarCommand } from "./sidecar-command.js";
import { addApiCommands, addKeyCommands, addPlanCommands, addServerRecordCommands, type CommandContext } from "./store-commands.js";
import { addUsageCommands } from "./usage-command.js";

export interface RunOptions {
  output?: Output;
  env?: Environment;
  clock?: Clock;
}

/** Exit codes: 0 success, 1 a failure such as a denied check or an unknown id, 2 a usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Runs the `tollgate` command line; resolves to the exit code instead of exiting. */
export async function runCli(argv: string[], options: RunOptions = {}): Promise<number> {
  const output = options.output ?? processOutput;
  const context: CommandContext = { output, env: options.env ?? {}, clock: options.clock ?? systemClock, exitCode: EXIT.ok };
  const program = createProgram(context);

  try {
    await program.parseAsync(argv, { from: "user" });
    return context.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (error instanceof UsageError) {
      output.err(`tollgate: ${error.message}`);
      return EXIT.usage;
    }
    if (error instanceof StoreError) {
      output.err(`tollgate: ${error.message}`);
      return error.code === "invalid_argument" ? EXIT.usage : EXIT.failure;
    }
    output.err(`tollgate: ${(error as Error).message ?? String(error)}`);
    return EXIT.failure;
  }
}

function createProgram(context: CommandContext): Command {
  const program = new Command("tollgate")
    .description("API keys, rate limits and usage for HTTP APIs behind Envoy")
    .version(packageVersion(), "-V, --version", "print the version")
    .configureOutput({
      writeOut: (text) => context.output.out(text),
      writeErr: (text) => context.output.err(text),
      outputError: (text, write) => write(`tollgate: ${text.replace(/^error: /, "")}`),
    })
    .option("--server <url>", "manage records on this server's admin API instead of the local store; default $TOLLGATE_SERVER")
    .option("--token <token>", "admin token for --server; default $TOLLGATE_ADMIN_TOKEN")
    .exitOverride();

  addApiCommands(program, context);
  addPlanCommands(program, context);
  addKeyCommands(program, context);
  addServerRecordCommands(program, context);
  addUsageCommands(program, context);
  addServerCommand(program, context);
  addSidecarCommand(program, context);
  addCheckCommand(program, context);
  addDevCommand(program, context);

  // Subcommands inherit output and error handling, so each one prints --help and reports a usage error in one line.
  for (const command of allCommands(program)) command.exitOverride().configureOutput(program.configureOutput());
  return program;
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((child) => [child, ...allCommands(child)]);
}

/** Reads the version from the project's package.json: two folders up from src/cli, three from the built dist/src/cli. */
function packageVersion(): string {
  for (const relative of ["../../package.json", "../../../package.json"]) {
    try {
      return (JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      // Not at this depth; try the next.
    }
  }
  return "unknown";
}
