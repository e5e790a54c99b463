import { join } from "node:path";
import type { Command } from "commander";
import { formatListenAddress } from "../config/listen-address.js";
import { DEFAULT_LISTEN } from "../config/sidecar-config.js";
import { formatTier, type Tier } from "../ratelimit/tier.js";
import type { TollgateServer } from "../server/server.js";
import { SYSTEM_ACTOR, type TokenKind } from "../server/store/records.js";
import type { ServerStore } from "../server/store/server-store.js";
import { dataDirOf } from "./options.js";
import { serverConfigFrom } from "./server-command.js";
import { addSidecarOptions, sidecarConfigFrom, untilSignal, type SidecarFlagsOptions } from "./sidecar-command.js";
import type { CommandContext } from "./store-commands.js";

const DEMO_API = "demo";
const DEMO_PLAN = "free";
const DEMO_TIERS: Tier[] = [
  { limit: 5, windowMs: 1_000, mode: "reject" },
  { limit: 60, windowMs: 60_000, mode: "reject" },
  { limit: 1_000, windowMs: 86_400_000, mode: "shadow" },
];
/** Names of the tokens each dev run issues; the previous run's are revoked. */
const DEV_TOKEN_NAMES: Record<TokenKind, string> = { admin: "dev admin", sidecar: "dev sidecar" };

interface DevOptions extends SidecarFlagsOptions {
  serverListen?: string;
}

export function addDevCommand(program: Command, context: CommandContext): void {
  const command = program
    .command("dev")
    .description("run a server and a sidecar replicating from it, with a demo API, plan and key created on the first run");
  addSidecarOptions(command, { data: "folder for the server's store (DIR/server) and the sidecar's replica (DIR/sidecar)", logLevel: "debug" })
    .option("--server-listen <host:port>", "the server's admin API address; default 127.0.0.1:8080")
    .action(async (options: DevOptions) => {
      const dataDir = dataDirOf(options, context.env);
      const logLevel = options.logLevel ?? context.env.TOLLGATE_LOG_LEVEL ?? "debug";
      const serverConfig = serverConfigFrom({ data: join(dataDir, "server"), listen: options.serverListen, logLevel }, context);
      const [{ createLogger }, { startServer }, { startSidecar }] = await Promise.all([
        import("../log/logger.js"),
        import("../server/server.js"),
        import("../sidecar/sidecar.js"),
      ]);
      const logger = createLogger(serverConfig.logLevel);

      let server: TollgateServer;
      try {
        server = await startServer(serverConfig, { logger, clock: context.clock });
      } catch (error) {
        throw new Error(`failed to start the server: ${(error as Error).message}`, { cause: error });
      }
      const serverUrl = `http://${formatListenAddress({ host: serverConfig.listen.host, port: server.port })}`;
      const adminToken = await issueDevToken(server.store, "admin");
      const sidecarToken = await issueDevToken(server.store, "sidecar");

      const sidecarConfig = sidecarConfigFrom(
        { ...options, logLevel, data: join(dataDir, "sidecar"), server: serverUrl, token: sidecarToken, sidecarId: "dev" },
        context,
      );
      let sidecar: Awaited<ReturnType<typeof startSidecar>>;
      try {
        sidecar = await startSidecar(sidecarConfig, { logger, clock: context.clock });
      } catch (error) {
        await server.close();
        throw new Error(`failed to start the sidecar: ${(error as Error).message}`, { cause: error });
      }
      // Only now, so that a failed start never creates a demo key whose secret was never shown. The sidecar replicates it within moments.
      const demoSecret = await seedDemo(server.store);
      const stopped = untilSignal(logger, async () => {
        await sidecar.close();
        await server.close();
      });

      const target = formatListenAddress({ host: sidecarConfig.listen.host, port: sidecar.grpcPort });
      const targetFlag = target === DEFAULT_LISTEN ? "" : ` --target ${target}`;
      const { output } = context;
      output.err(`tollgate dev: server on ${serverUrl}, ext_authz on port ${sidecar.grpcPort}, metrics on http port ${sidecar.httpPort}`);
      output.out(`Tollgate dev: server data in ${join(dataDir, "server")}, sidecar replica in ${join(dataDir, "sidecar")}`);
      output.out(`  API ${DEMO_API}, plan ${DEMO_PLAN}: ${DEMO_TIERS.map(formatTier).join(" ")}`);
      if (demoSecret) {
        output.out(`  Demo key, shown only now:\n\n    ${demoSecret}\n`);
        output.out(`Try it:\n  npx tollgate check${targetFlag} --key ${demoSecret} GET /v1/hello`);
      } else {
        output.out("  The demo key was created on an earlier run and its secret is not stored. Make another with:");
        output.out(`    npx tollgate --server ${serverUrl} --token <admin token> keys create --api ${DEMO_API}`);
      }
      output.out(`Admin token for this run (the previous run's no longer works):\n  export TOLLGATE_SERVER=${serverUrl} TOLLGATE_ADMIN_TOKEN=${adminToken}`);
      output.out(`Envoy's ext_authz gRPC cluster goes to ${target}; sidecar metrics at http://${formatListenAddress({ host: sidecarConfig.http.host, port: sidecar.httpPort })}/metrics\n`);
      await stopped;
      logger.flush();
    });
}

/** Creates the demo API, plan and a key when the API is new; returns the key's secret then. */
async function seedDemo(store: ServerStore): Promise<string | undefined> {
  if (await store.findApi(DEMO_API)) return undefined;
  const org = await store.defaultOrg(SYSTEM_ACTOR);
  const api = await store.createApi(SYSTEM_ACTOR, { name: DEMO_API, keyPrefix: DEMO_API, orgId: org.id });
  await store.setPlan(SYSTEM_ACTOR, { apiId: api.id, name: DEMO_PLAN, tiers: DEMO_TIERS, makeDefault: true });
  return (await store.createKey(SYSTEM_ACTOR, { apiId: api.id, name: "demo key", ownerId: "demo-owner" })).secret;
}

/** Issues this run's token of `kind` and revokes the ones earlier dev runs issued, whose secrets were printed and are gone. */
async function issueDevToken(store: ServerStore, kind: TokenKind): Promise<string> {
  const { token, secret } = await store.createToken(SYSTEM_ACTOR, { name: DEV_TOKEN_NAMES[kind], kind });
  for (const earlier of await store.listTokens()) {
    if (earlier.name === DEV_TOKEN_NAMES[kind] && earlier.id !== token.id && earlier.revokedAtMs === null) await store.revokeToken(SYSTEM_ACTOR, earlier.id);
  }
  return secret;
}
