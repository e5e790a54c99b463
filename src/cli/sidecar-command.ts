import type { Command } from "commander";
import { loadSidecarConfig, type SidecarConfig, type SidecarFlags } from "../config/sidecar-config.js";
import type { Logger } from "../log/logger.js";
import type { Sidecar } from "../sidecar/sidecar.js";
import { UsageError } from "./errors.js";
import { addDataOption } from "./options.js";
import type { CommandContext } from "./store-commands.js";

/** The sidecar's command-line options, as commander parses them: the config loader's flags. */
export type SidecarFlagsOptions = SidecarFlags;

/** Help for `--data` and the default log level, which `tollgate dev` sets differently. */
export interface SidecarOptionDefaults {
  data: string;
  logLevel: string;
}

const SIDECAR_DEFAULTS: SidecarOptionDefaults = { data: "folder of the key store or replica and the usage spool", logLevel: "info" };

export function addSidecarOptions(command: Command, defaults: SidecarOptionDefaults = SIDECAR_DEFAULTS): Command {
  return addDataOption(command, defaults.data)
    .option("--listen <host:port>", "ext_authz and grpc.health.v1 address; default $TOLLGATE_LISTEN, else 127.0.0.1:9191")
    .option("--http <host:port>", "/metrics, /healthz and /readyz address; default $TOLLGATE_HTTP, else 127.0.0.1:9192")
    .option("--log-level <level>", `fatal, error, warn, info, debug (one line per decision), trace or silent; default $TOLLGATE_LOG_LEVEL, else ${defaults.logLevel}`)
    .option("--key-query-param <name>", "also accept the key in this query parameter, removed before the request goes upstream; off by default")
    .option("--shutdown-grace-ms <ms>", "how long shutdown waits for in-flight checks; default 5000")
    .option("--trusted-proxy-hops <n>", "take the client address from the Nth x-forwarded-for entry from the right; default $TOLLGATE_TRUSTED_PROXY_HOPS, else 0 (Envoy's peer address)")
    .option("--no-usage", "do not record usage events or send them to the server (TOLLGATE_USAGE=off); on by default with --server")
    .option("--usage-spool-max-events <n>", "usage events the spool keeps while the server is away; default 1000000")
    .option("--usage-spool-full <policy>", "when the spool is full: drop-oldest (default) or drop-newest")
    .option("--usage-flush-interval <duration>", "how often usage events are written to the spool, such as 10ms or 1s; default 10ms")
    .option("--usage-drain-timeout <duration>", "how long shutdown waits for the server to acknowledge spooled usage events; default 10s");
}

/** Options that make the sidecar replicate keys from a server; only `tollgate sidecar` has them, not `tollgate dev`. */
export function addReplicationOptions(command: Command): Command {
  return command
    .option("--server <url>", "replicate keys from this Tollgate server, such as http://127.0.0.1:8080; default $TOLLGATE_SERVER, else serve the local store")
    .option("--token <token>", "sidecar token for --server; prefer $TOLLGATE_SIDECAR_TOKEN, which other users cannot see in the process list")
    .option("--sidecar-id <id>", "name of this sidecar in the server's logs; default $TOLLGATE_SIDECAR_ID, else hostname-pid");
}

export function addSidecarCommand(program: Command, context: CommandContext): void {
  const command = program
    .command("sidecar")
    .description("serve Envoy's ext_authz Check from the local key store, or from a replica of a server's keys with --server");
  addReplicationOptions(addSidecarOptions(command)).action(async (_options: SidecarFlagsOptions, self: Command) => {
    // The program's own --server and --token (for the admin API) take these flags wherever they appear, so read both levels.
    await runSidecarUntilSignal(sidecarConfigFrom(self.optsWithGlobals<SidecarFlagsOptions>(), context), context);
  });
}

export function sidecarConfigFrom(options: SidecarFlagsOptions, context: CommandContext): SidecarConfig {
  const loaded = loadSidecarConfig(options, context.env);
  if (!loaded.ok) throw new UsageError(`invalid configuration: ${loaded.problems.join("; ")}`);
  return loaded.config;
}

/**
 * Runs a sidecar until SIGTERM or SIGINT, then drains it and resolves.
 * `onStarted` runs once the ports are bound, with the sidecar.
 */
export async function runSidecarUntilSignal(config: SidecarConfig, context: CommandContext, onStarted?: (sidecar: Sidecar) => void): Promise<void> {
  const [{ createLogger }, { startSidecar }] = await Promise.all([import("../log/logger.js"), import("../sidecar/sidecar.js")]);
  const logger = createLogger(config.logLevel);
  let sidecar: Sidecar;
  try {
    sidecar = await startSidecar(config, { logger, clock: context.clock });
  } catch (error) {
    throw new Error(`failed to start the sidecar: ${(error as Error).message}`, { cause: error });
  }
  // Handlers go in before the ready line, so a supervisor that signals as soon as it reads the line is heard.
  const stopped = untilSignal(logger, () => sidecar.close());
  context.output.err(`tollgate sidecar: ext_authz on port ${sidecar.grpcPort}, metrics on http port ${sidecar.httpPort}`);
  onStarted?.(sidecar);
  await stopped;
  logger.flush();
}

/**
 * Resolves once SIGTERM or SIGINT has arrived and `close` has finished.
 * Signals that arrive while closing are logged and ignored, so a repeated
 * SIGTERM cannot cut the drain short.
 */
export function untilSignal(logger: Logger, close: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    let closing = false;
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal, closing }, "signal received");
      if (closing) return;
      closing = true;
      close()
        .catch((error: unknown) => logger.error({ err: error }, "shutdown failed"))
        .finally(() => {
          process.off("SIGTERM", stop);
          process.off("SIGINT", stop);
          resolve();
        });
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
