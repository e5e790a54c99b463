import { Option, type Command } from "commander";
import { parseDurationMs } from "../ratelimit/tier.js";
import { DAY_MS, MAX_RANGE_MS } from "../server/analytics/time-buckets.js";
import { UsageError } from "./errors.js";
import { addJsonOption } from "./options.js";
import type { CommandContext } from "./store-commands.js";
import type { AnalyticsClient, UsageBucket, UsageFilterOptions, UsageGrouping, UsageOrder, UsageRangeQuery } from "./usage-client.js";
import type { BillingFormat } from "./usage-views.js";

/**
 * Adds `tollgate usage`: analytics and billable usage from the server's usage
 * database. A local store records no usage, so every subcommand needs
 * `--server` (or TOLLGATE_SERVER) and an admin token.
 */
export function addUsageCommands(program: Command, context: CommandContext): void {
  const { output, clock } = context;
  const usage = program.command("usage").description("show usage analytics and billable usage from the server (needs --server)");

  const requests = usage
    .command("requests")
    .description("requests per time bucket, in total or per key, owner or API")
    .addOption(new Option("--bucket <unit>", "bucket width").choices(BUCKETS).default("hour"))
    .addOption(new Option("--by <group>", "one row per bucket and this group").choices(GROUPINGS).default("total"));
  addRangeOptions(requests, "24h");
  addFilterOptions(requests, { key: true });
  addJsonOption(requests).action(async (options: RangeOptions & FilterOptions & { bucket: UsageBucket; by: UsageGrouping; json?: boolean }, command: Command) => {
    const query = { ...parseRange(options, clock.wallMs(), "24h"), ...filterOf(options), bucket: options.bucket, by: options.by };
    await withAnalytics(command, context, async (client, views) => views.printRequestsOverTime(output, await client.requestsOverTime(query), options.by, options.json === true));
  });

  const breakdown = usage.command("breakdown").description("requests per decision and reason");
  addRangeOptions(breakdown, "24h");
  addFilterOptions(breakdown, { key: true });
  addJsonOption(breakdown).action(async (options: RangeOptions & FilterOptions & { json?: boolean }, command: Command) => {
    const query = { ...parseRange(options, clock.wallMs(), "24h"), ...filterOf(options) };
    await withAnalytics(command, context, async (client, views) => views.printDecisionBreakdown(output, await client.decisionBreakdown(query), options.json === true));
  });

  const topKeys = usage
    .command("top-keys")
    .description("the keys with the most requests or cost")
    .option("--limit <n>", "how many keys, from 1 to 1000", "10")
    .addOption(new Option("--order <by>", "rank by all requests or by cost units of allowed requests").choices(ORDERS).default("requests"));
  addRangeOptions(topKeys, "24h");
  addFilterOptions(topKeys, { key: false });
  addJsonOption(topKeys).action(async (options: RangeOptions & FilterOptions & { limit: string; order: UsageOrder; json?: boolean }, command: Command) => {
    const query = { ...parseRange(options, clock.wallMs(), "24h"), ...filterOf(options), order: options.order, limit: parseCount("--limit", options.limit, 1, 1000) };
    await withAnalytics(command, context, async (client, views) => views.printTopKeys(output, await client.topKeys(query), options.json === true));
  });

  const firstCall = usage
    .command("first-call")
    .description("how long after creation each key made its first allowed request; the range selects keys by creation time")
    .option("--limit <n>", "how many keys to list, from 1 to 1000; the summary covers all", "100");
  addRangeOptions(firstCall, "30d");
  addFilterOptions(firstCall, { key: false });
  addJsonOption(firstCall).action(async (options: RangeOptions & FilterOptions & { limit: string; json?: boolean }, command: Command) => {
    // The range selects keys by creation time, so the server sets no maximum span.
    const query = { ...parseRange(options, clock.wallMs(), "30d", null), ...filterOf(options), limit: parseCount("--limit", options.limit, 1, 1000) };
    await withAnalytics(command, context, async (client, views) => views.printTimeToFirstCall(output, await client.timeToFirstCall(query), options.json === true));
  });

  const adoption = usage
    .command("adoption")
    .description("keys with allowed requests per week (weeks start Monday 00:00 UTC), with the change from the week before")
    .option("--weeks <n>", "how many whole weeks, from 1 to 52", "8")
    .option("--to <time>", "the weeks end on the Monday at or before this date or time (default: now)");
  addFilterOptions(adoption, { key: false });
  addJsonOption(adoption).action(async (options: FilterOptions & { weeks: string; to?: string; json?: boolean }, command: Command) => {
    const query = { ...filterOf(options), weeks: parseCount("--weeks", options.weeks, 1, 52), endMs: options.to === undefined ? clock.wallMs() : parseTimeOption("--to", options.to) };
    await withAnalytics(command, context, async (client, views) => views.printWeeklyAdoption(output, await client.weeklyAdoption(query), options.json === true));
  });

  const errors = usage
    .command("errors")
    .description("401, 403 and 429 rates per owner, and keys or addresses denied for several reasons within one minute")
    .option("--min-reasons <n>", "different denial reasons within one minute that make a cascade, from 2 to 20", "2")
    .option("--max-cascades <n>", "how many cascades to list, from 1 to 1000", "100");
  addRangeOptions(errors, "24h");
  addFilterOptions(errors, { key: true });
  addJsonOption(errors).action(async (options: RangeOptions & FilterOptions & { minReasons: string; maxCascades: string; json?: boolean }, command: Command) => {
    const query = {
      ...parseRange(options, clock.wallMs(), "24h"),
      ...filterOf(options),
      minReasons: parseCount("--min-reasons", options.minReasons, 2, 20),
      maxCascades: parseCount("--max-cascades", options.maxCascades, 1, 1000),
    };
    await withAnalytics(command, context, async (client, views) => views.printErrorPatterns(output, await client.errorPatterns(query), options.json === true));
  });

  const retention = usage
    .command("retention")
    .description("weekly cohorts of new keys and the share with allowed requests in week 1, 4 and 12 after creation")
    .option("--cohorts <n>", "how many weekly cohorts, from 1 to 52", "12")
    .option("--as-of <time>", "the last cohort is the week of this date or time, and later activity is not counted (default: now)");
  addFilterOptions(retention, { key: false });
  addJsonOption(retention).action(async (options: FilterOptions & { cohorts: string; asOf?: string; json?: boolean }, command: Command) => {
    const query = { ...filterOf(options), cohorts: parseCount("--cohorts", options.cohorts, 1, 52), asOfMs: options.asOf === undefined ? clock.wallMs() : parseTimeOption("--as-of", options.asOf) };
    await withAnalytics(command, context, async (client, views) => views.printRetention(output, await client.retention(query), options.json === true));
  });

  const billing = usage
    .command("billing")
    .description("billable usage per owner and API over a period: allowed requests, cost units and overage")
    .requiredOption("--from <time>", "start of the period, a date such as 2026-11-01 (00:00 UTC) or a time with its zone")
    .requiredOption("--to <time>", "end of the period, not included, such as 2026-12-01")
    .addOption(new Option("--format <format>", "output format; csv has a header row and RFC 4180 quoting").choices(BILLING_FORMATS).default("table"));
  addFilterOptions(billing, { key: false });
  addJsonOption(billing).action(async (options: FilterOptions & { from: string; to: string; format: BillingFormat; json?: boolean }, command: Command) => {
    if (options.json && options.format !== "table" && options.format !== "json") throw new UsageError(`--json: cannot be combined with --format ${options.format}`);
    const startMs = parseTimeOption("--from", options.from);
    const endMs = parseTimeOption("--to", options.to);
    if (endMs <= startMs) throw new UsageError(`--to: "${options.to}" must be after --from "${options.from}"`);
    if (endMs - startMs > MAX_RANGE_MS) throw new UsageError(`--to: must be at most ${MAX_RANGE_MS / DAY_MS} days after --from`);
    const query = { startMs, endMs, ...filterOf(options) };
    const format = options.json ? "json" : options.format;
    await withAnalytics(command, context, async (client, views) => views.printBillableUsage(output, await client.billableUsage(query), format));
  });
}

const BUCKETS: UsageBucket[] = ["minute", "hour", "day", "week"];
const GROUPINGS: UsageGrouping[] = ["total", "key", "owner", "api"];
const ORDERS: UsageOrder[] = ["requests", "cost"];
const BILLING_FORMATS: BillingFormat[] = ["table", "json", "csv"];

interface RangeOptions {
  since?: string;
  from?: string;
  to?: string;
}

interface FilterOptions {
  api?: string;
  key?: string;
  owner?: string;
}

interface ServerOptions {
  server?: string;
  token?: string;
}

/**
 * Runs `work` with a client of the server's analytics API. The client and
 * the printers load on use, so other commands do not pay for them.
 */
async function withAnalytics(
  command: Command,
  context: CommandContext,
  work: (client: AnalyticsClient, views: typeof import("./usage-views.js")) => Promise<void>,
): Promise<void> {
  const options = command.optsWithGlobals<ServerOptions>();
  const server = options.server ?? context.env.TOLLGATE_SERVER;
  if (server === undefined) throw new UsageError("usage needs a server, because a local store records no usage: pass --server URL or set TOLLGATE_SERVER");
  if (!/^https?:\/\/[^/\s]+\/?$/.test(server)) throw new UsageError(`--server: "${server}" is not a URL such as http://127.0.0.1:8080`);
  const token = options.token ?? context.env.TOLLGATE_ADMIN_TOKEN;
  if (!token) throw new UsageError("--token: an admin token is required with --server (or set TOLLGATE_ADMIN_TOKEN)");

  const [{ openAnalyticsClient }, views] = await Promise.all([import("./usage-client.js"), import("./usage-views.js")]);
  await work(openAnalyticsClient(server.replace(/\/$/, ""), token), views);
}

function addRangeOptions(command: Command, defaultSince: string): Command {
  return command
    .option("--since <duration>", `the range ends now (or at --to) and starts this long before, such as 90m, 24h or 7d (default: ${defaultSince})`)
    .option("--from <time>", "start of the range, a date such as 2026-11-01 (00:00 UTC) or a time with its zone such as 2026-11-01T08:00:00Z")
    .option("--to <time>", "end of the range, not included (default: now)");
}

function addFilterOptions(command: Command, include: { key: boolean }): Command {
  command.option("--api <api>", "only this API (name or id)");
  if (include.key) command.option("--key <id>", "only this key id");
  return command.option("--owner <id>", "only keys of this owner");
}

function filterOf(options: FilterOptions): UsageFilterOptions {
  return { api: options.api, key: options.key, owner: options.owner };
}

/**
 * Reads --since, --from and --to into a range; without --from, the range is
 * --since (or `defaultSince`) long. A range longer than `maxSpanMs` is
 * rejected here, so that the error names the flag that set it.
 */
function parseRange(options: RangeOptions, nowMs: number, defaultSince: string, maxSpanMs: number | null = MAX_RANGE_MS): Pick<UsageRangeQuery, "startMs" | "endMs"> {
  if (options.since !== undefined && options.from !== undefined) throw new UsageError("--since: cannot be combined with --from");
  const endMs = options.to === undefined ? nowMs : parseTimeOption("--to", options.to);

  let startMs: number;
  if (options.from !== undefined) {
    startMs = parseTimeOption("--from", options.from);
  } else {
    const sinceText = options.since ?? defaultSince;
    const sinceMs = parseDurationMs(sinceText);
    if (sinceMs === undefined) throw new UsageError(`--since: "${sinceText}" is not a positive duration such as 90m, 24h or 7d`);
    if (maxSpanMs !== null && sinceMs > maxSpanMs) throw new UsageError(`--since: "${sinceText}" is longer than ${maxSpanMs / DAY_MS} days, the maximum range`);
    startMs = endMs - sinceMs;
    if (startMs < 0) throw new UsageError(`--since: "${sinceText}" reaches before 1970-01-01, the earliest time usage covers`);
  }
  if (endMs <= startMs) throw new UsageError(`--to: ${new Date(endMs).toISOString()} must be after the start, ${new Date(startMs).toISOString()}`);
  if (maxSpanMs !== null && endMs - startMs > maxSpanMs) {
    throw new UsageError(`--from: the range to ${new Date(endMs).toISOString()} is longer than ${maxSpanMs / DAY_MS} days, the maximum range`);
  }
  return { startMs, endMs };
}

const DATE_PATTERN = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME_PATTERN = /^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Reads a date (00:00 UTC) or a date and time with its zone, in ISO 8601,
 * from 1970 on, because usage is never recorded before 1970. A time without
 * a zone is rejected, because it would silently depend on the machine's time
 * zone.
 */
export function parseTimeOption(flag: string, text: string): number {
  const datePart = DATE_PATTERN.test(text) ? text : DATE_TIME_PATTERN.exec(text)?.[1];
  const ms = Date.parse(text);
  const dateMs = datePart === undefined ? Number.NaN : Date.parse(datePart);
  // Date.parse rejects month 13 or day 32 but rolls 2026-02-30 over to March, so the date part must also survive a round trip.
  const validDate = !Number.isNaN(dateMs) && !Number.isNaN(ms) && new Date(dateMs).toISOString().slice(0, 10) === datePart;
  if (!validDate) {
    throw new UsageError(`${flag}: "${text}" is not a valid date such as 2026-11-01 or a time with its zone such as 2026-11-01T08:00:00Z`);
  }
  if (ms < 0) throw new UsageError(`${flag}: "${text}" is before 1970-01-01, the earliest time usage covers`);
  return ms;
}

function parseCount(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new UsageError(`${flag}: "${text}" is not a whole number from ${min} to ${max}`);
  return value;
}
