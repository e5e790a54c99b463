import type { Command } from "commander";
import type { Clock } from "../clock.js";
import { storePath } from "../config/sidecar-config.js";
import { KeyStore } from "../keys/key-store.js";
import { KEY_STATES, type KeyState } from "../keys/records.js";
import { UsageError } from "./errors.js";
import { apiView, keyView, planView, printApis, printKeys, printPlans } from "./key-views.js";
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

export interface CommandContext {
  output: Output;
  env: Environment;
  clock: Clock;
  /** Set by a command whose outcome is not plain success, such as a denied check. */
  exitCode: number;
}

/** Opens the store for one command and closes it afterwards, also on error. */
export function withStore<T>(options: { data?: string }, context: CommandContext, work: (store: KeyStore) => T): T {
  const store = KeyStore.open(storePath(dataDirOf(options, context.env)), context.clock);
  try {
    return work(store);
  } finally {
    store.close();
  }
}

export function addApiCommands(program: Command, context: CommandContext): void {
  const { output } = context;
  const apis = program.command("apis").description("create and list APIs");

  const create = apis
    .command("create <name>")
    .description("create an API; its keys start with its prefix")
    .option("--prefix <prefix>", "key prefix: 1 to 12 lower-case letters or digits (default: from the name)");
  addJsonOption(addDataOption(create)).action((name: string, options: { prefix?: string; data?: string; json?: boolean }) => {
    const label = parseLabelOption("NAME", name);
    const api = withStore(options, context, (store) => store.createApi(label, options.prefix ?? prefixFromName(label)));
    if (options.json) printJson(output, apiView(api));
    else output.out(`Created API ${api.name} (${api.id}); its keys start with ${api.keyPrefix}_`);
  });

  const list = apis.command("list").description("list APIs");
  addJsonOption(addDataOption(list)).action((options: { data?: string; json?: boolean }) => {
    printApis(output, withStore(options, context, (store) => store.listApis()), options.json === true);
  });
}

export function addPlanCommands(program: Command, context: CommandContext): void {
  const { output } = context;
  const plans = program.command("plans").description("set and list rate-limit plans");

  const set = plans
    .command("set <api> <plan>")
    .description("create or replace a plan's tiers, e.g. --tier 5/1s --tier 8/1m")
    .option("--tier <LIMIT/WINDOW[:MODE]>", "a tier: LIMIT per WINDOW (ms, s, m, h, d), MODE reject (default) or shadow; repeatable", collect)
    .option("--default", "make this the plan of keys created without --plan");
  addJsonOption(addDataOption(set)).action(
    (apiName: string, planName: string, options: { tier?: string[]; default?: boolean; data?: string; json?: boolean }) => {
      if (!options.tier || options.tier.length === 0) throw new UsageError("--tier: give at least one tier, such as --tier 5/1s");
      const tiers = parseTiersOption(options.tier);
      const plan = withStore(options, context, (store) => {
        const api = store.findApi(apiName);
        if (!api) throw new UsageError(`API "${apiName}" not found; create it with: tollgate apis create ${apiName}`);
        return store.setPlan(api.id, parseLabelOption("PLAN", planName), tiers, options.default === true);
      });
      if (options.json) printJson(output, planView(plan));
      else output.out(`Plan ${plan.name} (${plan.id}): ${planView(plan).tiers.join(" ")}`);
    },
  );

  const list = plans.command("list <api>").description("list an API's plans");
  addJsonOption(addDataOption(list)).action((apiName: string, options: { data?: string; json?: boolean }) => {
    withStore(options, context, (store) => {
      const api = store.findApi(apiName);
      if (!api) throw new UsageError(`API "${apiName}" not found`);
      printPlans(output, store.listPlans(api.id), options.json === true, api.defaultPlanId);
    });
  });
}

export function addKeyCommands(program: Command, context: CommandContext): void {
  const { output, clock } = context;
  const keys = program.command("keys").description("create, list, revoke, disable and enable API keys");

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
    (options: { api: string; plan?: string; scopes?: string; expiresIn?: string; name?: string; owner?: string; data?: string; json?: boolean }) => {
      const scopes = options.scopes === undefined ? [] : parseScopesOption(options.scopes);
      const expiresAtMs = options.expiresIn === undefined ? null : clock.wallMs() + parseExpiresInOption(options.expiresIn);
      const name = options.name === undefined ? null : parseLabelOption("--name", options.name);
      const ownerId = options.owner === undefined ? null : parseLabelOption("--owner", options.owner);

      const { key, secret } = withStore(options, context, (store) => {
        const api = store.findApi(options.api);
        if (!api) throw new UsageError(`--api: API "${options.api}" not found`);
        let planId: string | undefined;
        if (options.plan !== undefined) {
          const plan = store.findPlan(api.id, options.plan);
          if (!plan) throw new UsageError(`--plan: plan "${options.plan}" not found in API "${api.name}"`);
          planId = plan.id;
        }
        return store.createKey({ apiId: api.id, planId, scopes, expiresAtMs, name, ownerId });
      });

      if (options.json) return printJson(output, { ...keyView(key, clock.wallMs()), key: secret });
      output.out(`Created key ${key.id}. Its secret is shown only now; store it safely:\n\n  ${secret}\n`);
    },
  );

  const list = keys
    .command("list")
    .description("list keys (never their secrets)")
    .option("--api <api>", "only keys of this API (name or id)")
    .option("--owner <id>", "only keys of this owner")
    .option("--state <state>", `only keys in this state: ${KEY_STATES.join(", ")}`);
  addJsonOption(addDataOption(list)).action((options: { api?: string; owner?: string; state?: string; data?: string; json?: boolean }) => {
    if (options.state !== undefined && !(KEY_STATES as readonly string[]).includes(options.state)) {
      throw new UsageError(`--state: "${options.state}" is not one of ${KEY_STATES.join(", ")}`);
    }
    const found = withStore(options, context, (store) => {
      let apiId: string | undefined;
      if (options.api !== undefined) {
        apiId = store.findApi(options.api)?.id;
        if (!apiId) throw new UsageError(`--api: API "${options.api}" not found`);
      }
      return store.listKeys({ apiId, ownerId: options.owner, state: options.state as KeyState | undefined });
    });
    printKeys(output, found, options.json === true, clock.wallMs());
  });

  const changes = [
    ["revoke", "revoke a key for good", (store: KeyStore, id: string) => store.revokeKey(id)],
    ["disable", "disable a key until it is enabled again (403)", (store: KeyStore, id: string) => store.setKeyEnabled(id, false)],
    ["enable", "enable a disabled key", (store: KeyStore, id: string) => store.setKeyEnabled(id, true)],
  ] as const;
  for (const [verb, description, change] of changes) {
    const command = keys.command(`${verb} <id>`).description(description);
    addJsonOption(addDataOption(command)).action((id: string, options: { data?: string; json?: boolean }) => {
      const key = withStore(options, context, (store) => change(store, id));
      if (options.json) printJson(output, keyView(key, clock.wallMs()));
      else output.out(`Key ${key.id} is now ${keyView(key, clock.wallMs()).state}`);
    });
  }
}

/** A key prefix from an API name: its letters and digits, lower-cased, at most 12; "tg" when none fit. */
export function prefixFromName(name: string): string {
  const prefix = name.toLowerCase().replace(/[^a-z0-9]/g, "").replace(/^[0-9]+/, "").slice(0, 12);
  return prefix || "tg";
}
