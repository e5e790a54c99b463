import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenKind } from "../../src/gen/tollgate/admin/v1/resources_pb.js";
import { ApiService, KeyService, TokenService } from "../../src/gen/tollgate/admin/v1/services_pb.js";
import { Decision, UsageEventSchema } from "../../src/gen/tollgate/usage/v1/usage_pb.js";
import { createManualClock } from "../../src/clock.js";
import { runTollgate } from "../helpers/cli-process.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";

const at = (time: string) => Date.parse(`2026-11-02T${time}Z`);
/** An owner id that CSV must quote. */
const QUOTED_OWNER = 'Acme, "North"';
const DAY = ["--from", "2026-11-02", "--to", "2026-11-03"];

let harness: ServerHarness;
let sidecarToken: string;
const keyIds = { north: "", beta: "" };

beforeAll(async () => {
  harness = await startServerHarness({ clock: createManualClock(at("09:00:00")) });
  const apiId = (await harness.connectClient(ApiService).createApi({ name: "shop" })).api!.id;
  const keys = harness.connectClient(KeyService);
  keyIds.north = (await keys.createKey({ apiId, ownerId: QUOTED_OWNER, name: "north key" })).key!.id;
  keyIds.beta = (await keys.createKey({ apiId, ownerId: "beta" })).key!.id;
  sidecarToken = (await harness.connectClient(TokenService).createToken({ name: "edge", kind: TokenKind.SIDECAR })).secret;

  harness.clock.advance(3 * 3_600_000);
  const north = { apiId, keyId: keyIds.north, ownerId: QUOTED_OWNER };
  const events: MessageInitShape<typeof UsageEventSchema>[] = [
    { ...north, timeMs: BigInt(at("10:00:00")), decision: Decision.ALLOW, reason: "ok", status: 200, cost: 3n },
    { ...north, timeMs: BigInt(at("10:00:10")), decision: Decision.ALLOW, reason: "ok", status: 200, cost: 3n, overage: true, overageCost: 3n },
    { ...north, timeMs: BigInt(at("10:00:20")), decision: Decision.DENY, reason: "rate_limited", status: 429 },
    { ...north, timeMs: BigInt(at("10:00:30")), decision: Decision.DENY, reason: "disabled_key", status: 403 },
    { apiId, keyId: keyIds.beta, ownerId: "beta", timeMs: BigInt(at("11:30:00")), decision: Decision.ALLOW, reason: "ok", status: 200, cost: 1n },
  ];
  await harness.server.usage.ingest(
    { sidecarId: "edge-1", spoolId: "spool-1" },
    events.map((event, i) => create(UsageEventSchema, { method: "GET", path: "/v1/items", clientAddress: "192.0.2.10", ...event, sequence: BigInt(i + 1) })),
  );
});

afterAll(async () => {
  await harness?.close();
});

/** Runs `tollgate --server ... --token ... usage ARGS` in a child process. */
function usage(...args: string[]) {
  return runTollgate(["--server", harness.baseUrl, "--token", ADMIN_TOKEN, "usage", ...args]);
}

/** Splits a table into rows of cells, dropping the padding. */
function tableRows(text: string): string[][] {
  return text.trim().split("\n").map((line) => line.trim().split(/\s{2,}/));
}

describe("tollgate usage", () => {
  it("prints requests per hour and key as a table", async () => {
    const result = await usage("requests", "--bucket", "hour", "--by", "key", ...DAY);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(tableRows(result.stdout)).toEqual([
      ["TIME", "KEY", "REQUESTS", "ALLOWED", "DENIED", "COST"],
      ["2026-11-02T10:00:00.000Z", keyIds.north, "4", "2", "2", "6"],
      ["2026-11-02T11:00:00.000Z", keyIds.beta, "1", "1", "0", "1"],
    ]);
  });

  it("prints requests as the API's JSON with --json", async () => {
    const result = await usage("requests", "--bucket", "day", ...DAY, "--json");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      series: [{ group: "", points: [{ bucketStartTime: "2026-11-02T00:00:00Z", requests: "5", allowed: "3", denied: "2", cost: "7" }] }],
    });
  });

  it("prints the decision breakdown", async () => {
    const result = await usage("breakdown", ...DAY, "--owner", QUOTED_OWNER);
    expect(result.code).toBe(0);
    expect(tableRows(result.stdout)).toEqual([
      ["DECISION", "REASON", "STATUS", "REQUESTS", "SHARE"],
      ["allow", "ok", "200", "2", "50.0%"],
      ["deny", "disabled_key", "403", "1", "25.0%"],
      ["deny", "rate_limited", "429", "1", "25.0%"],
      ["4 requests"],
    ]);
  });

  it("prints the top keys", async () => {
    const result = await usage("top-keys", "--limit", "1", ...DAY);
    expect(result.code).toBe(0);
    expect(tableRows(result.stdout)).toEqual([
      ["KEY", "NAME", "OWNER", "REQUESTS", "ALLOWED", "DENIED", "COST"],
      [keyIds.north, "north key", QUOTED_OWNER, "4", "2", "2", "6"],
    ]);
  });

  it("prints time to first call with a summary", async () => {
    const result = await usage("first-call", ...DAY);
    expect(result.code).toBe(0);
    const rows = tableRows(result.stdout);
    expect(rows[0]).toEqual(["KEY", "OWNER", "CREATED", "FIRST CALL", "AFTER"]);
    expect(rows.slice(1, 3).map((row) => [row[0], row[4]]).sort()).toEqual(
      [
        [keyIds.north, "1h"],
        [keyIds.beta, "2h30m"],
      ].sort(),
    );
    expect(rows[3]).toEqual(["2 keys: 2 with a first call, 0 without; median 1h, p90 2h30m"]);
  });

  it("prints weekly adoption", async () => {
    const result = await usage("adoption", "--weeks", "1", "--to", "2026-11-09");
    expect(result.code).toBe(0);
    expect(tableRows(result.stdout)).toEqual([
      ["WEEK", "ACTIVE KEYS", "REQUESTS", "PER KEY", "KEYS CHANGE", "REQUESTS CHANGE"],
      ["2026-11-02", "2", "3", "1.5", "-", "-"],
    ]);
  });

  it("prints error rates and cascades", async () => {
    const result = await usage("errors", ...DAY);
    expect(result.code).toBe(0);
    const [owners, cascades] = result.stdout.split("\n\n");
    expect(tableRows(owners!)).toEqual([
      ["OWNER", "REQUESTS", "401", "403", "429"],
      [QUOTED_OWNER, "4", "0.0%", "25.0%", "25.0%"],
      ["beta", "1", "0.0%", "0.0%", "0.0%"],
    ]);
    expect(tableRows(cascades!)).toEqual([
      ["MINUTE", "KEY OR ADDRESS", "DENIED", "REASONS"],
      ["2026-11-02T10:00:00.000Z", "address 192.0.2.10", "2", "disabled_key=1 rate_limited=1"],
      ["2026-11-02T10:00:00.000Z", `key ${keyIds.north}`, "2", "disabled_key=1 rate_limited=1"],
    ]);
  });

  it("prints retention with unobservable cells as -", async () => {
    const result = await usage("retention", "--cohorts", "1", "--as-of", "2026-11-02T12:00:00Z");
    expect(result.code).toBe(0);
    expect(tableRows(result.stdout)).toEqual([
      ["COHORT", "KEYS", "WEEK 1", "WEEK 4", "WEEK 12"],
      ["2026-11-02", "2", "-", "-", "-"],
      ["A cell is - until every key of the cohort has lived through that week."],
    ]);
  });

  it("exports billing as CSV with a header row and RFC 4180 quoting", async () => {
    const result = await usage("billing", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "csv");
    expect(result.code).toBe(0);
    const apiId = (await harness.connectClient(ApiService).getApi({ id: "shop" })).api!.id;
    expect(result.stdout).toBe(
      [
        "period_start,period_end,owner_id,api_id,api_name,requests,cost_units,overage_requests,overage_cost_units",
        `2026-11-01T00:00:00.000Z,2026-12-01T00:00:00.000Z,"Acme, ""North""",${apiId},shop,2,6,1,3`,
        `2026-11-01T00:00:00.000Z,2026-12-01T00:00:00.000Z,beta,${apiId},shop,1,1,0,0`,
        "",
      ].join("\r\n"),
    );
  });

  it("prints billing as JSON and as a table", async () => {
    const json = await usage("billing", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "json", "--owner", "beta");
    expect(json.code).toBe(0);
    const body = JSON.parse(json.stdout) as { periodStartTime: string; lines: { ownerId: string; requests: string; overageRequests: string }[] };
    expect(body.periodStartTime).toBe("2026-11-01T00:00:00Z");
    expect(body.lines.map((line) => [line.ownerId, line.requests, line.overageRequests])).toEqual([["beta", "1", "0"]]);

    const table = await usage("billing", "--from", "2026-11-01", "--to", "2026-12-01");
    expect(table.code).toBe(0);
    expect(tableRows(table.stdout)).toEqual([
      ["Billable usage from 2026-11-01T00:00:00.000Z to 2026-12-01T00:00:00.000Z (allowed requests only)"],
      ["OWNER", "API", "REQUESTS", "COST UNITS", "OVERAGE REQUESTS", "OVERAGE COST UNITS"],
      [QUOTED_OWNER, "shop", "2", "6", "1", "3"],
      ["beta", "shop", "1", "1", "0", "0"],
      [QUOTED_OWNER, "(all)", "2", "6", "1", "3"],
      ["beta", "(all)", "1", "1", "0", "0"],
    ]);
  });
});

describe("tollgate usage errors", () => {
  it("exits 2 without a server, in one line", async () => {
    const result = await runTollgate(["usage", "breakdown"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("tollgate: usage needs a server, because a local store records no usage: pass --server URL or set TOLLGATE_SERVER\n");
  });

  it("exits 2 when the server rejects a sidecar token", async () => {
    const result = await runTollgate(["--server", harness.baseUrl, "--token", sidecarToken, "usage", "breakdown"]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^tollgate: the server rejected the token/);
  });

  it.each([
    [["billing", "--from", "2026-11-01"], /--to <time>' not specified/],
    [["billing", "--from", "2026-11-31", "--to", "2026-12-01"], /^tollgate: --from: "2026-11-31" is not a valid date/],
    [["requests", "--from", "2026-13-01", "--to", "2026-12-05"], /^tollgate: --from: "2026-13-01" is not a valid date such as 2026-11-01/],
    [["requests", "--from", "2026-00-10", "--to", "2026-12-05"], /^tollgate: --from: "2026-00-10" is not a valid date/],
    [["requests", "--from", "2026-12-01", "--to", "2026-12-32"], /^tollgate: --to: "2026-12-32" is not a valid date/],
    [["breakdown", "--from", "2026-13-01T10:00:00Z"], /^tollgate: --from: "2026-13-01T10:00:00Z" is not a valid date/],
    [["requests", "--from", "0000-01-01", "--to", "2026-12-05"], /^tollgate: --from: "0000-01-01" is before 1970-01-01, the earliest time usage covers$/],
    [["adoption", "--to", "1969-12-31"], /^tollgate: --to: "1969-12-31" is before 1970-01-01/],
    [["retention", "--as-of", "2026-02-29"], /^tollgate: --as-of: "2026-02-29" is not a valid date/],
    [["requests", "--bucket", "minute", "--since", "400d"], /^tollgate: --since: "400d" is longer than 366 days, the maximum range$/],
    [["breakdown", "--since", "30000d", "--to", "2026-01-01"], /^tollgate: --since: "30000d" is longer than 366 days/],
    [["billing", "--from", "2025-01-01", "--to", "2026-03-01"], /^tollgate: --to: must be at most 366 days after --from$/],
    [["top-keys", "--from", "2024-01-01", "--to", "2026-01-01"], /^tollgate: --from: the range to 2026-01-01T00:00:00.000Z is longer than 366 days, the maximum range$/],
    [["billing", "--from", "2026-12-01", "--to", "2026-11-01"], /^tollgate: --to: "2026-11-01" must be after --from "2026-12-01"/],
    [["breakdown", "--from", "2026-11-01T10:00:00"], /^tollgate: --from: "2026-11-01T10:00:00" is not a valid date such as 2026-11-01 or a time with its zone/],
    [["breakdown", "--since", "1d", "--from", "2026-11-01"], /^tollgate: --since: cannot be combined with --from/],
    [["requests", "--bucket", "second"], /argument 'second' is invalid/],
    [["requests", "--bucket", "minute", "--from", "2026-01-01", "--to", "2026-02-01"], /^tollgate: bucket: the range touches 44640 minute buckets/],
    [["top-keys", "--limit", "0"], /^tollgate: --limit: "0" is not a whole number from 1 to 1000/],
  ])("exits 2 for %j", async (args, message) => {
    const result = await usage(...args);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr.trim()).toMatch(message);
  });

  it("exits 1 for an unknown API", async () => {
    const result = await usage("breakdown", "--api", "nope");
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('tollgate: api_id: API "nope" not found\n');
  });

  it.each(["requests", "breakdown", "top-keys", "first-call", "adoption", "errors", "retention", "billing"])("answers usage %s --help", async (subcommand) => {
    const result = await runTollgate(["usage", subcommand, "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: tollgate usage ${subcommand} [options]`);
  });
});
