import type { Command } from "commander";
import type { Clock } from "../clock.js";
import { prefixFromName } from "../keys/key-format.js";
import { KEY_STATES, type KeyState } from "../keys/records.js";
import type { KeyPatch } from "../keys/key-store.js";
import { TOKEN_KINDS, type TokenKind } from "../server/store/records.js";
import type { AdminBackend } from "./admin-backend.js";
import { UsageError } from "./errors.js";
import { apiView, keyView, planView, printApis, printAudit, printKeys, printPlans, printTokens, tokenView } from "./key-views.js";
import {
  addDataOption,
  addJsonOption,
  collect,
  dataDirOf,
  parseExpiresInOption,
  parseLabelOption,
  parseScopesOption,
  parseTiersOption,
  type Environment,
} from "./options.js";
import { printJson, type Output } from "./output.js";
import { parseDurationMs } from "../ratelimit/tier.js";

export interface CommandContext {
  output: Output;
  env: Environment;
  clock: Clock;
  /** Set by a command whose outcome is not plain success, such as a denied check. */
  exitCode: number;
}

interface BackendOptions {
  data?: string;
  server?: string;
  token?: string;
}

/**
 * Runs `work` against the server when `--server` or TOLLGATE_SERVER is set,
 * else against the local store in the data folder, and closes it afterwards.
 */
export async function withBackend<T>(command: Command, context: CommandContext, work: (backend: AdminBackend) => Promise<T>, readOnly = false): Promise<T> {
  const options = command.optsWithGlobals<BackendOptions>();
  // An explicit --data picks the local store even when TOLLGATE_SERVER is set.
  const server = options.server ?? (options.data === undefined ? context.env.TOLLGATE_SERVER : undefined);
  let backend: AdminBackend;
  if (server !== undefined) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(server)) throw new UsageError(`--server: "${server}" is not a URL such as http://127.0.0.1:8080`);
    const token = options.token ?? context.env.TOLLGATE_ADMIN_TOKEN;
    if (!token) throw new UsageError("--token: an admin token is required with --server (or set TOLLGATE_ADMIN_TOKEN)");
    // Backends load on use, so a command pays only for the client libraries it needs.
    const { openRemoteBackend } = await import("./remote-backend.js");
    backend = openRemoteBackend(server.replace(/\/$/, ""), token);
  } else {
    const { openLocalBackend } = await import("./local-backend.js");
    backend = openLocalBackend(dataDirOf(options, context.env), context.clock, readOnly);
  }
  try {
    return await work(backend);
  } finally {
    await backend.close();
  }
}

export function addApiCommands(program: Command, context: CommandContext): void {
  const { output } = context;
  const apis = program.command("apis").description("create and list APIs");

  const create = apis
    .command("create <name>")
    .description("create an API; its keys start with its prefix")
    .option("--prefix <prefix>", "key prefix: 1 to 12 lower-case letters or digits (default: from the name)");
  addJsonOption(addDataOption(create)).action(async (name: string, options: { prefix?: string; json?: boolean }, command: Command) => {
    const label = parseLabelOption("NAME", name);
    const api = await withBackend(command, context, (backend) => backend.createApi(label, options.prefix ?? prefixFromName(label)));
    if (options.json) printJson(output, apiView(api));
    else output.out(`Created API ${api.name} (${api.id}); its keys start with ${api.keyPrefix}_`);
  });

  const list = apis.command("list").description("list APIs");
  addJsonOption(addDataOption(list)).action(async (options: { json?: boolean }, command: Command) => {
    printApis(output, await withBackend(command, context, (backend) => backend.listApis(), true), options.json === true);
  });
}

export function addPlanCommands(program: Command, context: CommandContext): void {
  const { output } = context;
  const plans = program.command("plans").description("set and list rate-limit plans");

  const set = plans
    .command("set <api> <plan>")
    .description("create or replace a plan's tiers, e.g. --tier 5/1s --tier 8/1m")
    .option("--tier <LIMIT/WINDOW[:MODE]>", "a tier: LIMIT per WINDOW (ms, s, m, h, d), MODE reject (default), overage or shadow; repeatable", collect)
    .option("--default", "make this the plan of keys created without --plan");
  addJsonOption(addDataOption(set)).action(async (apiName: string, planName: string, options: { tier?: string[]; default?: boolean; json?: boolean }, command: Command) => {
    if (!options.tier || options.tier.length === 0) throw new UsageError("--tier: give at least one tier, such as --tier 5/1s");
    const tiers = parseTiersOption(options.tier);
    const name = parseLabelOption("PLAN", planName);
    const plan = await withBackend(command, context, (backend) => backend.setPlan(apiName, name, tiers, options.default === true));
    if (options.json) printJson(output, planView(plan));
    else output.out(`Plan ${plan.name} (${plan.id}): ${planView(plan).tiers.join(" ")}`);
  });

  const list = plans.command("list <api>").description("list an API's plans");
  addJsonOption(addDataOption(list)).action(async (apiName: string, options: { json?: boolean }, command: Command) => {
    const { plans: found, defaultPlanId } = await withBackend(command, context, (backend) => backend.listPlans(apiName), true);
    printPlans(output, found, options.json === true, defaultPlanId);
  });
}

export function addKeyCommands(program: Command, context: CommandContext): void {
  const { output, clock } = context;
  const keys = program.command("keys").description("create, list, update, rotate, revoke, disable and enable API keys");

  const create = keys
    .command("create")
    .description("create a key and print its secret, once")
    .requiredOption("--api <api>", "API name or id")
    .option("--plan <plan>", "plan name or id (default: the API's default plan)")
    .option("--scopes <a,b>", "comma-separated scopes the key holds")
    .option("--expires-in <duration>", "expire after a duration such as 12h or 30d")
    .option("--name <name>", "a label for people")
    .option("--owner <id>", "the customer or user the key belongs to");
  addJsonOption(addDataOption(create)).action(
    async (options: { api: string; plan?: string; scopes?: string; expiresIn?: string; name?: string; owner?: string; json?: boolean }, command: Command) => {
      const request = {
        api: options.api,
        plan: options.plan,
        scopes: options.scopes === undefined ? [] : parseScopesOption(options.scopes),
        expiresAtMs: options.expiresIn === undefined ? null : clock.wallMs() + parseExpiresInOption(options.expiresIn),
        name: options.name === undefined ? null : parseLabelOption("--name", options.name),
        ownerId: options.owner === undefined ? null : parseLabelOption("--owner", options.owner),
      };
      const { key, secret } = await withBackend(command, context, (backend) => backend.createKey(request));
      if (options.json) return printJson(output, { ...keyView(key), key: secret });
      output.out(`Created key ${key.key.id}. Its secret is shown only now; store it safely:\n\n  ${secret}\n`);
    },
  );

  const list = keys
    .command("list")
    .description("list keys (never their secrets)")
    .option("--api <api>", "only keys of this API (name or id)")
    .option("--owner <id>", "only keys of this owner")
    .option("--state <state>", `only keys in this state: ${KEY_STATES.join(", ")}`);
  addJsonOption(addDataOption(list)).action(async (options: { api?: string; owner?: string; state?: string; json?: boolean }, command: Command) => {
    if (options.state !== undefined && !(KEY_STATES as readonly string[]).includes(options.state)) {
      throw new UsageError(`--state: "${options.state}" is not one of ${KEY_STATES.join(", ")}`);
    }
    const found = await withBackend(command, context, (backend) => backend.listKeys({ api: options.api, ownerId: options.owner, state: options.state as KeyState | undefined }), true);
    printKeys(output, found, options.json === true);
  });

  const update = keys
    .command("update <id>")
    .description("change a key's name, owner, scopes, plan or expiry; only the options given change")
    .option("--name <name>", "a label for people")
    .option("--owner <id>", "the customer or user the key belongs to")
    .option("--scopes <a,b>", "replace the key's scopes; an empty string removes them all")
    .option("--plan <plan>", "plan name or id")
    .option("--expires-in <duration>", "expire after a duration from now, such as 30d")
    .option("--no-expiry", "remove the key's expiry");
  addJsonOption(addDataOption(update)).action(
    async (id: string, options: { name?: string; owner?: string; scopes?: string; plan?: string; expiresIn?: string; expiry?: boolean; json?: boolean }, command: Command) => {
      const patch: KeyPatch & { plan?: string } = {};
      if (options.name !== undefined) patch.name = parseLabelOption("--name", options.name);
      if (options.owner !== undefined) patch.ownerId = parseLabelOption("--owner", options.owner);
      if (options.scopes !== undefined) patch.scopes = parseScopesOption(options.scopes);
      if (options.plan !== undefined) patch.plan = options.plan;
      if (options.expiresIn !== undefined && options.expiry === false) throw new UsageError("--expires-in: cannot be combined with --no-expiry");
      if (options.expiresIn !== undefined) patch.expiresAtMs = clock.wallMs() + parseExpiresInOption(options.expiresIn);
      if (options.expiry === false) patch.expiresAtMs = null;
      if (Object.keys(patch).length === 0) throw new UsageError("give at least one of --name, --owner, --scopes, --plan, --expires-in or --no-expiry");
      printKeyChange(await withBackend(command, context, (backend) => backend.updateKey(id, patch)), options.json === true);
    },
  );

  const rotate = keys
    .command("rotate <id>")
    .description("give a key a new secret, printed once; the old one keeps working for --grace")
    .option("--grace <duration>", "how long the old secret keeps working, such as 10m or 1d; 0 stops it at once", "0");
  addJsonOption(addDataOption(rotate)).action(async (id: string, options: { grace: string; json?: boolean }, command: Command) => {
    const graceMs = options.grace === "0" ? 0 : parseDurationMs(options.grace);
    if (graceMs === undefined || graceMs > 30 * 86_400_000) throw new UsageError(`--grace: "${options.grace}" is not a duration from 0 to 30d, such as 10m`);
    const { key, secret } = await withBackend(command, context, (backend) => backend.rotateKey(id, graceMs));
    if (options.json) return printJson(output, { ...keyView(key), key: secret });
    output.out(`Rotated key ${key.key.id}. Its new secret is shown only now; store it safely:\n\n  ${secret}\n`);
  });

  const changes = [
    ["revoke", "revoke a key for good", (backend: AdminBackend, id: string) => backend.revokeKey(id)],
    ["disable", "disable a key until it is enabled again (403)", (backend: AdminBackend, id: string) => backend.updateKey(id, { enabled: false })],
    ["enable", "enable a disabled key", (backend: AdminBackend, id: string) => backend.updateKey(id, { enabled: true })],
  ] as const;
  for (const [verb, description, change] of changes) {
    const command = keys.command(`${verb} <id>`).description(description);
    addJsonOption(addDataOption(command)).action(async (id: string, options: { json?: boolean }, self: Command) => {
      printKeyChange(await withBackend(self, context, (backend) => change(backend, id)), options.json === true);
    });
  }

  function printKeyChange(key: Awaited<ReturnType<AdminBackend["revokeKey"]>>, json: boolean): void {
    if (json) printJson(output, keyView(key));
    else output.out(`Key ${key.key.id} is now ${key.state}`);
  }
}

export function addServerRecordCommands(program: Command, context: CommandContext): void {
  const { output } = context;

  const audit = program
    .command("audit")
    .description("print the server's audit log of changes (needs --server)")
    .option("--resource <id>", "only changes to this key, plan, API, org or token")
    .option("--limit <n>", "how many events, from 1 to 1000", "100");
  addJsonOption(addDataOption(audit)).action(async (options: { resource?: string; limit: string; json?: boolean }, command: Command) => {
    const limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError(`--limit: "${options.limit}" is not a whole number from 1 to 1000`);
    printAudit(output, await withBackend(command, context, (backend) => backend.listAudit(options.resource, limit)), options.json === true);
  });

  const tokens = program.command("tokens").description("create, list and revoke the server's admin and sidecar tokens (needs --server)");
  const create = tokens
    .command("create <name>")
    .description("create a token and print its secret, once")
    .option("--kind <kind>", `${TOKEN_KINDS.join(" or ")}: a sidecar token may only read the replica`, "sidecar");
  addJsonOption(addDataOption(create)).action(async (name: string, options: { kind: string; json?: boolean }, command: Command) => {
    if (!(TOKEN_KINDS as readonly string[]).includes(options.kind)) throw new UsageError(`--kind: "${options.kind}" is not one of ${TOKEN_KINDS.join(", ")}`);
    const label = parseLabelOption("NAME", name);
    const { token, secret } = await withBackend(command, context, (backend) => backend.createToken(label, options.kind as TokenKind));
    if (options.json) return printJson(output, { ...tokenView(token), token: secret });
    output.out(`Created ${token.kind} token ${token.id}. Its secret is shown only now; store it safely:\n\n  ${secret}\n`);
  });
  const list = tokens.command("list").description("list tokens (never their secrets)");
  addJsonOption(addDataOption(list)).action(async (options: { json?: boolean }, command: Command) => {
    printTokens(output, await withBackend(command, context, (backend) => backend.listTokens()), options.json === true);
  });
  const revoke = tokens.command("revoke <id>").description("revoke a token");
  addJsonOption(addDataOption(revoke)).action(async (id: string, options: { json?: boolean }, command: Command) => {
    const token = await withBackend(command, context, (backend) => backend.revokeToken(id));
    if (options.json) printJson(output, tokenView(token));
    else output.out(`Token ${token.id} is revoked`);
  });
}
