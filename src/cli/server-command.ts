import type { Command } from "commander";
import { loadServerConfig, type ServerConfig, type ServerFlags } from "../config/server-config.js";
import type { TollgateServer } from "../server/server.js";
import { UsageError } from "./errors.js";
import { addDataOption } from "./options.js";
import { untilSignal } from "./sidecar-command.js";
import type { CommandContext } from "./store-commands.js";

export function addServerOptions(command: Command): Command {
  return addDataOption(command)
    .option("--listen <host:port>", "admin API, replication and /metrics address; default $TOLLGATE_SERVER_LISTEN, else 127.0.0.1:8080")
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent; default info")
    .option("--shutdown-grace-ms <ms>", "how long shutdown waits for open calls; default 5000")
    .option("--usage-retention <duration>", "how long raw usage events are kept, such as 7d or 36h; default $TOLLGATE_USAGE_RETENTION, else 7d")
    .option("--usage-rollup-retention <duration>", "how long per-minute usage rollups are kept, at least 91d; default $TOLLGATE_USAGE_ROLLUP_RETENTION, else 400d");
}

export function addServerCommand(program: Command, context: CommandContext): void {
  const command = program
    .command("server")
    .description("run the store of record: the admin API, replication to sidecars and their usage ingest (admin token from $TOLLGATE_ADMIN_TOKEN, else generated once)");
  addServerOptions(command).action(async (options: ServerFlags) => {
    await runServerUntilSignal(serverConfigFrom(options, context), context);
  });
}

export function serverConfigFrom(options: ServerFlags, context: CommandContext): ServerConfig {
  const loaded = loadServerConfig(options, context.env);
  if (!loaded.ok) throw new UsageError(`invalid configuration: ${loaded.problems.join("; ")}`);
  return loaded.config;
}

/** Starts the server, runs `onStarted`, and resolves after SIGTERM or SIGINT has drained it. */
export async function runServerUntilSignal(config: ServerConfig, context: CommandContext, onStarted?: (server: TollgateServer) => Promise<void> | void): Promise<void> {
  const [{ createLogger }, { startServer }] = await Promise.all([import("../log/logger.js"), import("../server/server.js")]);
  const logger = createLogger(config.logLevel);
  let server: TollgateServer;
  try {
    server = await startServer(config, { logger, clock: context.clock });
  } catch (error) {
    throw new Error(`failed to start the server: ${(error as Error).message}`, { cause: error });
  }
  const stopped = untilSignal(logger, () => server.close());
  context.output.err(`tollgate server: listening on port ${server.port}`);
  if (server.generatedAdminToken) {
    context.output.out(`Admin token, shown only now; store it safely (or set TOLLGATE_ADMIN_TOKEN before the first start):\n\n  ${server.generatedAdminToken}\n`);
  }
  await onStarted?.(server);
  await stopped;
  logger.flush();
}
