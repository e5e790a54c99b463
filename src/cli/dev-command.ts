import type { Command } from "commander";
import { formatListenAddress } from "../config/listen-address.js";
import { DEFAULT_LISTEN } from "../config/sidecar-config.js";
import { formatTier, type Tier } from "../ratelimit/tier.js";
import { dataDirOf } from "./options.js";
import { addSidecarOptions, runSidecarUntilSignal, sidecarConfigFrom, type SidecarFlagsOptions } from "./sidecar-command.js";
import type { CommandContext } from "./store-commands.js";
import { storePath } from "../config/sidecar-config.js";
import { KeyStore } from "../keys/key-store.js";

const DEMO_API = "demo";
const DEMO_PLAN = "free";
const DEMO_TIERS: Tier[] = [
  { limit: 5, windowMs: 1_000, mode: "reject" },
  { limit: 60, windowMs: 60_000, mode: "reject" },
  { limit: 1_000, windowMs: 86_400_000, mode: "shadow" },
];

export function addDevCommand(program: Command, context: CommandContext): void {
  const command = program
    .command("dev")
    .description("set up a demo API, plan and key in the local store (first run only) and run a sidecar on it");
  addSidecarOptions(command).action(async (options: SidecarFlagsOptions) => {
    const config = sidecarConfigFrom({ logLevel: "debug", ...options }, context);
    const store = KeyStore.open(storePath(dataDirOf(options, context.env)), context.clock);
    let secret: string | undefined;
    try {
      secret = seedDemo(store);
    } finally {
      store.close();
    }

    await runSidecarUntilSignal(config, context, (sidecar) => {
      const { output } = context;
      const target = formatListenAddress({ host: config.listen.host, port: sidecar.grpcPort });
      const targetFlag = target === DEFAULT_LISTEN ? "" : ` --target ${target}`;

      output.out(`Tollgate dev: key store in ${dataDirOf(options, context.env)}`);
      output.out(`  API ${DEMO_API}, plan ${DEMO_PLAN}: ${DEMO_TIERS.map(formatTier).join(" ")}`);
      if (secret) {
        output.out(`  Demo key, shown only now:\n\n    ${secret}\n`);
        output.out(`Try it:\n  npx tollgate check${targetFlag} --key ${secret} GET /v1/hello`);
      } else {
        output.out("  The demo key was created on an earlier run and its secret is not stored. Make another with:");
        output.out(`    npx tollgate keys create --api ${DEMO_API}`);
      }
      output.out(`Envoy's ext_authz gRPC cluster goes to ${target}; metrics at http://${formatListenAddress({ host: config.http.host, port: sidecar.httpPort })}/metrics\n`);
    });
  });
}

/** Creates the demo API, plan and a key when the API is new; returns the key's secret then. */
function seedDemo(store: KeyStore): string | undefined {
  if (store.findApi(DEMO_API)) return undefined;
  const api = store.createApi(DEMO_API, DEMO_API);
  store.setPlan(api.id, DEMO_PLAN, DEMO_TIERS, true);
  return store.createKey({ apiId: api.id, name: "demo key", ownerId: "demo-owner" }).secret;
}
