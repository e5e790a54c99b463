import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { JsonObject } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState, TierMode, TokenKind, type Key } from "../../src/gen/tollgate/admin/v1/resources_pb.js";
import {
  ApiService,
  AuditService,
  KeyService,
  OrgService,
  PlanService,
  TokenService,
} from "../../src/gen/tollgate/admin/v1/services_pb.js";
import { generateKey, hashKey } from "../../src/keys/key-format.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";

let harness: ServerHarness;
let orgs: Client<typeof OrgService>;
let apis: Client<typeof ApiService>;
let plans: Client<typeof PlanService>;
let keys: Client<typeof KeyService>;
let audit: Client<typeof AuditService>;
let tokens: Client<typeof TokenService>;
let sidecarToken: string;
/** Every secret a test saw, to search the log and the database for. */
const secrets: string[] = [];
let counter = 0;

beforeAll(async () => {
  harness = await startServerHarness();
  orgs = harness.connectClient(OrgService);
  apis = harness.connectClient(ApiService);
  plans = harness.connectClient(PlanService);
  keys = harness.connectClient(KeyService);
  audit = harness.connectClient(AuditService);
  tokens = harness.connectClient(TokenService);
  sidecarToken = remember((await tokens.createToken({ name: "sidecar for tests", kind: TokenKind.SIDECAR })).secret);
});

afterAll(async () => {
  await harness?.close();
});

function unique(label: string): string {
  counter += 1;
  return `${label}${counter}`;
}

function remember(secret: string): string {
  secrets.push(secret);
  return secret;
}

/** Runs a call that must fail and returns its error. */
async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call succeeded but was expected to fail");
}

async function newApi(): Promise<{ id: string; name: string; keyPrefix: string }> {
  const { api } = await apis.createApi({ name: unique("shop") });
  return api!;
}

/** Creates an API whose default plan "basic" allows 1000 requests per minute. */
async function newApiWithPlan(): Promise<{ apiId: string; planId: string; keyPrefix: string }> {
  const api = await newApi();
  const { plan } = await plans.setPlan({ apiId: api.id, name: "basic", tiers: [{ limit: 1000n, windowMs: 60_000n }] });
  return { apiId: api.id, planId: plan!.id, keyPrefix: api.keyPrefix };
}

/** CreateKey fields other than the API. */
interface KeyFields {
  planId?: string;
  name?: string;
  ownerId?: string;
  scopes?: string[];
  metadata?: JsonObject;
  tierOverride?: { tiers: { limit: bigint; windowMs: bigint; mode?: TierMode }[] };
  expireTime?: Timestamp;
}

async function newKey(apiId: string, fields: KeyFields = {}): Promise<{ key: Key; secret: string }> {
  const { key, secret } = await keys.createKey({ apiId, ...fields });
  return { key: key!, secret: remember(secret) };
}

function inMs(offsetMs: number) {
  return timestampFromMs(harness.clock.wallMs() + offsetMs);
}

async function verify(key: string, extra: { api?: string; scopes?: string[]; cost?: number } = {}) {
  return keys.verifyKey({ key, ...extra });
}

/** One row per admin method: a valid call, a call with a bad field, and a call naming an unknown id. */
interface MethodCase {
  method: string;
  call(token?: string | null): Promise<unknown>;
  /** Absent for methods without request fields. */
  invalid?: { call(): Promise<unknown>; message: RegExp };
  unknown?: { call(): Promise<unknown>; message: RegExp };
}

const METHODS: MethodCase[] = [
  {
    method: "OrgService.CreateOrg",
    call: (token) => harness.connectClient(OrgService, token).createOrg({ name: unique("org") }),
    invalid: { call: () => orgs.createOrg({ name: "" }), message: /^name: must be 1 to 200 printable characters$/ },
  },
  {
    method: "OrgService.GetOrg",
    call: (token) => harness.connectClient(OrgService, token).getOrg({ id: "default" }),
    invalid: { call: () => orgs.getOrg({ id: "" }), message: /^id: required$/ },
    unknown: { call: () => orgs.getOrg({ id: "org_missing" }), message: /^id: org "org_missing" not found$/ },
  },
  {
    method: "OrgService.ListOrgs",
    call: (token) => harness.connectClient(OrgService, token).listOrgs({}),
  },
  {
    method: "ApiService.CreateApi",
    call: (token) => harness.connectClient(ApiService, token).createApi({ name: unique("auth") }),
    invalid: { call: () => apis.createApi({ name: "shop", keyPrefix: "Bad_Prefix" }), message: /^key_prefix: a key prefix is 1 to 12 lower-case/ },
    unknown: { call: () => apis.createApi({ name: unique("orphan"), orgId: "org_missing" }), message: /^org_id: org "org_missing" not found$/ },
  },
  {
    method: "ApiService.GetApi",
    call: (token) => harness.connectClient(ApiService, token).getApi({ id: "x" }),
    invalid: { call: () => apis.getApi({ id: "" }), message: /^id: required$/ },
    unknown: { call: () => apis.getApi({ id: "api_missing" }), message: /^id: API "api_missing" not found$/ },
  },
  {
    method: "ApiService.ListApis",
    call: (token) => harness.connectClient(ApiService, token).listApis({}),
    invalid: { call: () => apis.listApis({ orgId: "x".repeat(201) }), message: /^org_id: must be 1 to 200 printable characters$/ },
    unknown: { call: () => apis.listApis({ orgId: "org_missing" }), message: /^org_id: org "org_missing" not found$/ },
  },
  {
    method: "ApiService.UpdateApi",
    call: (token) => harness.connectClient(ApiService, token).updateApi({ id: "x", defaultPlanId: "" }),
    invalid: { call: () => apis.updateApi({ id: "x" }), message: /^default_plan_id: required/ },
    unknown: { call: () => apis.updateApi({ id: "api_missing", defaultPlanId: "" }), message: /^id: API "api_missing" not found$/ },
  },
  {
    method: "PlanService.SetPlan",
    call: (token) => harness.connectClient(PlanService, token).setPlan({ apiId: "x", name: "p", tiers: [{ limit: 1n, windowMs: 1000n }] }),
    invalid: { call: () => plans.setPlan({ apiId: "x", name: "p", tiers: [] }), message: /^tiers: at least one tier required$/ },
    unknown: { call: () => plans.setPlan({ apiId: "api_missing", name: "p", tiers: [{ limit: 1n, windowMs: 1000n }] }), message: /^api_id: API "api_missing" not found$/ },
  },
  {
    method: "PlanService.GetPlan",
    call: (token) => harness.connectClient(PlanService, token).getPlan({ apiId: "x", id: "p" }),
    invalid: { call: () => plans.getPlan({ apiId: "x", id: "" }), message: /^id: required$/ },
    unknown: { call: () => plans.getPlan({ apiId: "api_missing", id: "p" }), message: /^api_id: API "api_missing" not found$/ },
  },
  {
    method: "PlanService.ListPlans",
    call: (token) => harness.connectClient(PlanService, token).listPlans({ apiId: "x" }),
    invalid: { call: () => plans.listPlans({ apiId: "" }), message: /^api_id: required$/ },
    unknown: { call: () => plans.listPlans({ apiId: "api_missing" }), message: /^api_id: API "api_missing" not found$/ },
  },
  {
    method: "KeyService.CreateKey",
    call: (token) => harness.connectClient(KeyService, token).createKey({ apiId: "x" }),
    invalid: { call: () => keys.createKey({ apiId: "x", scopes: ["read", "no spaces"] }), message: /^scopes\[1\]: must be 1 to 64 letters/ },
    unknown: { call: () => keys.createKey({ apiId: "api_missing" }), message: /^api_id: API "api_missing" not found$/ },
  },
  {
    method: "KeyService.GetKey",
    call: (token) => harness.connectClient(KeyService, token).getKey({ id: "x" }),
    invalid: { call: () => keys.getKey({ id: "" }), message: /^id: required$/ },
    unknown: { call: () => keys.getKey({ id: "key_missing" }), message: /^id: key "key_missing" not found$/ },
  },
  {
    method: "KeyService.ListKeys",
    call: (token) => harness.connectClient(KeyService, token).listKeys({}),
    invalid: { call: () => keys.listKeys({ pageToken: "not-a-token" }), message: /^page_token: invalid/ },
    unknown: { call: () => keys.listKeys({ apiId: "api_missing" }), message: /^api_id: API "api_missing" not found$/ },
  },
  {
    method: "KeyService.UpdateKey",
    call: (token) => harness.connectClient(KeyService, token).updateKey({ id: "x", enabled: true }),
    invalid: { call: () => keys.updateKey({ id: "x", name: "line\nbreak" }), message: /^name: must be 1 to 200 printable characters$/ },
    unknown: { call: () => keys.updateKey({ id: "key_missing", enabled: false }), message: /^id: key "key_missing" not found$/ },
  },
  {
    method: "KeyService.RevokeKey",
    call: (token) => harness.connectClient(KeyService, token).revokeKey({ id: "x" }),
    invalid: { call: () => keys.revokeKey({ id: "" }), message: /^id: required$/ },
    unknown: { call: () => keys.revokeKey({ id: "key_missing" }), message: /^id: key "key_missing" not found$/ },
  },
  {
    method: "KeyService.RotateKey",
    call: (token) => harness.connectClient(KeyService, token).rotateKey({ id: "x" }),
    invalid: { call: () => keys.rotateKey({ id: "x", gracePeriod: durationFromMs(31 * 86_400_000) }), message: /^grace_period: must be from 0 to 30 days/ },
    unknown: { call: () => keys.rotateKey({ id: "key_missing" }), message: /^id: key "key_missing" not found$/ },
  },
  {
    method: "KeyService.VerifyKey",
    call: (token) => harness.connectClient(KeyService, token).verifyKey({ key: "" }),
    invalid: { call: () => keys.verifyKey({ key: "", cost: 2_000_000 }), message: /^cost: must be from 0 to 1000000$/ },
  },
  {
    method: "AuditService.ListAuditEvents",
    call: (token) => harness.connectClient(AuditService, token).listAuditEvents({}),
    invalid: { call: () => audit.listAuditEvents({ pageSize: -1 }), message: /^page_size: must not be negative$/ },
  },
  {
    method: "TokenService.CreateToken",
    call: (token) => harness.connectClient(TokenService, token).createToken({ name: "t", kind: TokenKind.SIDECAR }),
    invalid: { call: () => tokens.createToken({ name: "t" }), message: /^kind: must be TOKEN_KIND_ADMIN or TOKEN_KIND_SIDECAR$/ },
  },
  {
    method: "TokenService.ListTokens",
    call: (token) => harness.connectClient(TokenService, token).listTokens({}),
  },
  {
    method: "TokenService.RevokeToken",
    call: (token) => harness.connectClient(TokenService, token).revokeToken({ id: "x" }),
    invalid: { call: () => tokens.revokeToken({ id: "" }), message: /^id: required$/ },
    unknown: { call: () => tokens.revokeToken({ id: "tok_missing" }), message: /^id: token "tok_missing" not found$/ },
  },
];

describe("errors of every admin method", () => {
  it.each(METHODS.map((row) => [row.method, row] as const))("%s without a token is unauthenticated", async (_method, row) => {
    const error = await rejection(row.call(null));
    expect(error.code).toBe(Code.Unauthenticated);
  });

  it.each(METHODS.map((row) => [row.method, row] as const))("%s with a wrong token is unauthenticated", async (_method, row) => {
    const error = await rejection(row.call("tgadmin_not-a-real-token"));
    expect(error.code).toBe(Code.Unauthenticated);
  });

  it.each(METHODS.map((row) => [row.method, row] as const))("%s with a sidecar token is permission denied", async (_method, row) => {
    const error = await rejection(row.call(sidecarToken));
    expect(error.code).toBe(Code.PermissionDenied);
  });

  const withFields = METHODS.filter((row) => row.invalid !== undefined);
  it.each(withFields.map((row) => [row.method, row] as const))("%s with a bad field is invalid argument", async (_method, row) => {
    const error = await rejection(row.invalid!.call());
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(row.invalid!.message);
  });

  const withUnknown = METHODS.filter((row) => row.unknown !== undefined);
  it.each(withUnknown.map((row) => [row.method, row] as const))("%s with an unknown id is not found", async (_method, row) => {
    const error = await rejection(row.unknown!.call());
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toMatch(row.unknown!.message);
  });
});

describe("validation", () => {
  it("reports every bad field of one request together", async () => {
    const error = await rejection(
      plans.setPlan({
        apiId: "",
        name: "",
        tiers: [
          { limit: 0n, windowMs: 1000n },
          { limit: 5n, windowMs: 31_622_400_001n, mode: 7 as TierMode },
        ],
      }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain("api_id: required");
    expect(error.rawMessage).toContain("name: must be 1 to 200 printable characters");
    expect(error.rawMessage).toContain("tiers[0].limit: must be from 1 to 9007199254740991");
    expect(error.rawMessage).toContain("tiers[1].window_ms: must be from 1 to 31622400000");
    expect(error.rawMessage).toContain("tiers[1].mode: must be TIER_MODE_REJECT");
  });

  it("rejects bad key fields together", async () => {
    const { apiId } = await newApiWithPlan();
    const error = await rejection(
      keys.createKey({
        apiId,
        name: "x".repeat(201),
        scopes: ["ok", ""],
        metadata: { blob: "x".repeat(17 * 1024) },
        tierOverride: { tiers: [{ limit: 1n, windowMs: 0n }] },
        expireTime: inMs(-1000),
      }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain("name: must be 1 to 200 printable characters");
    expect(error.rawMessage).toContain("scopes[1]: must be 1 to 64 letters");
    expect(error.rawMessage).toContain("metadata: at most 16 KiB");
    expect(error.rawMessage).toContain("tier_override.tiers[0].window_ms: must be from 1 to 31622400000");
    expect(error.rawMessage).toContain("expire_time: must be in the future");
  });

  it("rejects an unknown key state filter", async () => {
    const error = await rejection(keys.listKeys({ state: 9 as KeyState }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^state: /);
  });

  it("rejects an update that changes nothing", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    const error = await rejection(keys.updateKey({ id: key.id }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^no field to change/);
  });

  it("rejects setting and clearing one field at once", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    const error = await rejection(
      keys.updateKey({ id: key.id, tierOverride: { tiers: [{ limit: 1n, windowMs: 1000n }] }, clearTierOverride: true, expireTime: inMs(60_000), clearExpireTime: true }),
    );
    expect(error.rawMessage).toContain("clear_tier_override: cannot be combined with tier_override");
    expect(error.rawMessage).toContain("clear_expire_time: cannot be combined with expire_time");
  });

  it("rejects a page token issued for other filters", async () => {
    const { apiId } = await newApiWithPlan();
    await newKey(apiId);
    await newKey(apiId);
    const first = await keys.listKeys({ apiId, pageSize: 1 });
    expect(first.nextPageToken).not.toBe("");

    const error = await rejection(keys.listKeys({ apiId, ownerId: "someone", pageSize: 1, pageToken: first.nextPageToken }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^page_token: invalid/);
  });
});

describe("orgs", () => {
  it("creates, gets by id or name, and lists", async () => {
    const name = unique("acme");
    const { org } = await orgs.createOrg({ name });
    expect(org!.id).toMatch(/^org_/);
    expect(org!.name).toBe(name);
    expect(timestampMs(org!.createTime!)).toBe(harness.clock.wallMs());

    expect((await orgs.getOrg({ id: org!.id })).org!.name).toBe(name);
    expect((await orgs.getOrg({ id: name })).org!.id).toBe(org!.id);
    expect((await orgs.listOrgs({})).orgs.map((listed) => listed.id)).toContain(org!.id);
  });

  it("rejects a duplicate name", async () => {
    const name = unique("dup");
    await orgs.createOrg({ name });
    const error = await rejection(orgs.createOrg({ name }));
    expect(error.code).toBe(Code.AlreadyExists);
  });
});

describe("apis", () => {
  it("derives the prefix from the name and uses the default org", async () => {
    const { api } = await apis.createApi({ name: "Weather API 2" });
    expect(api!.keyPrefix).toBe("weatherapi2");
    const defaultOrg = (await orgs.getOrg({ id: "default" })).org!;
    expect(api!.orgId).toBe(defaultOrg.id);
    expect(api!.defaultPlanId).toBe("");
  });

  it("takes an explicit prefix and org by name", async () => {
    const orgName = unique("partner");
    const { org } = await orgs.createOrg({ name: orgName });
    const { api } = await apis.createApi({ name: unique("maps"), keyPrefix: "mp", orgId: orgName });
    expect(api!.keyPrefix).toBe("mp");
    expect(api!.orgId).toBe(org!.id);

    const listed = await apis.listApis({ orgId: org!.id });
    expect(listed.apis.map((listedApi) => listedApi.id)).toEqual([api!.id]);
  });

  it("gets by id or name", async () => {
    const api = await newApi();
    expect((await apis.getApi({ id: api.id })).api!.name).toBe(api.name);
    expect((await apis.getApi({ id: api.name })).api!.id).toBe(api.id);
  });

  it("rejects a duplicate name", async () => {
    const api = await newApi();
    const error = await rejection(apis.createApi({ name: api.name }));
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.rawMessage).toMatch(/^name: /);
  });

  it("rejects the prefixes of server tokens", async () => {
    const error = await rejection(apis.createApi({ name: unique("x"), keyPrefix: "tgadmin" }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^key_prefix: "tgadmin" is reserved/);
  });

  it("sets and clears the default plan", async () => {
    const api = await newApi();
    const first = (await plans.setPlan({ apiId: api.id, name: "free", tiers: [{ limit: 5n, windowMs: 1000n }] })).plan!;
    const second = (await plans.setPlan({ apiId: api.id, name: "pro", tiers: [{ limit: 50n, windowMs: 1000n }] })).plan!;
    expect((await apis.getApi({ id: api.id })).api!.defaultPlanId).toBe(first.id);

    expect((await apis.updateApi({ id: api.id, defaultPlanId: "pro" })).api!.defaultPlanId).toBe(second.id);
    expect((await apis.updateApi({ id: api.name, defaultPlanId: "" })).api!.defaultPlanId).toBe("");

    const error = await rejection(apis.updateApi({ id: api.id, defaultPlanId: "gold" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe('default_plan_id: plan "gold" not found');
  });
});

describe("plans", () => {
  it("creates, replaces, gets and lists", async () => {
    const api = await newApi();
    const created = (await plans.setPlan({ apiId: api.name, name: "basic", tiers: [{ limit: 5n, windowMs: 1000n }, { limit: 100n, windowMs: 86_400_000n, mode: TierMode.SHADOW }] })).plan!;
    expect(created.apiId).toBe(api.id);
    expect(created.tiers.map((tier) => [tier.limit, tier.windowMs, tier.mode])).toEqual([
      [5n, 1000n, TierMode.REJECT],
      [100n, 86_400_000n, TierMode.SHADOW],
    ]);

    harness.clock.advance(1000);
    const replaced = (await plans.setPlan({ apiId: api.id, name: "basic", tiers: [{ limit: 9n, windowMs: 2000n, mode: TierMode.REJECT }] })).plan!;
    expect(replaced.id).toBe(created.id);
    expect(replaced.tiers).toHaveLength(1);
    expect(timestampMs(replaced.updateTime!)).toBe(timestampMs(created.updateTime!) + 1000);

    expect((await plans.getPlan({ apiId: api.id, id: created.id })).plan!.name).toBe("basic");
    expect((await plans.getPlan({ apiId: api.id, id: "basic" })).plan!.tiers[0]!.limit).toBe(9n);
    expect((await plans.listPlans({ apiId: api.id })).plans.map((plan) => plan.id)).toEqual([created.id]);
  });

  it("makes a later plan the default on request", async () => {
    const api = await newApi();
    await plans.setPlan({ apiId: api.id, name: "free", tiers: [{ limit: 5n, windowMs: 1000n }] });
    const pro = (await plans.setPlan({ apiId: api.id, name: "pro", tiers: [{ limit: 50n, windowMs: 1000n }], makeDefault: true })).plan!;
    expect((await apis.getApi({ id: api.id })).api!.defaultPlanId).toBe(pro.id);
  });

  it("reports an unknown plan of a known API", async () => {
    const api = await newApi();
    const error = await rejection(plans.getPlan({ apiId: api.id, id: "gold" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe('id: plan "gold" not found');
  });
});

describe("keys", () => {
  it("creates a key with every field", async () => {
    const { apiId, keyPrefix } = await newApiWithPlan();
    await plans.setPlan({ apiId, name: "pro", tiers: [{ limit: 10n, windowMs: 1000n }] });
    const expireTime = inMs(3_600_000);
    const { key, secret } = await newKey(apiId, {
      planId: "pro",
      name: "ci",
      ownerId: "customer-7",
      scopes: ["read", "write", "read"],
      metadata: { team: "payments", seats: 3, tags: ["a", "b"] },
      tierOverride: { tiers: [{ limit: 2n, windowMs: 5000n }] },
      expireTime,
    });

    expect(secret).toMatch(new RegExp(`^${keyPrefix}_[1-9A-HJ-NP-Za-km-z]{30}$`));
    expect(secret.startsWith(key.start)).toBe(true);
    expect(key.id).toMatch(/^key_/);
    expect(key.apiId).toBe(apiId);
    expect(key.name).toBe("ci");
    expect(key.ownerId).toBe("customer-7");
    expect(key.scopes).toEqual(["read", "write"]);
    expect(key.metadata).toEqual({ team: "payments", seats: 3, tags: ["a", "b"] });
    expect(key.tierOverride!.tiers.map((tier) => [tier.limit, tier.windowMs])).toEqual([[2n, 5000n]]);
    expect(timestampMs(key.expireTime!)).toBe(timestampMs(expireTime));
    expect(key.state).toBe(KeyState.ACTIVE);
    expect(key.enabled).toBe(true);

    const fetched = (await keys.getKey({ id: key.id })).key!;
    expect(fetched.planId).toBe(key.planId);
    expect(jsonText(fetched)).not.toContain(secret.slice(key.start.length));
  });

  it("defaults to the API's default plan", async () => {
    const { apiId, planId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    expect(key.planId).toBe(planId);
  });

  it("accepts the API by name", async () => {
    const api = await newApi();
    const { key } = await newKey(api.name);
    expect(key.apiId).toBe(api.id);
    expect(key.planId).toBe("");
  });

  it("reports an unknown plan", async () => {
    const { apiId } = await newApiWithPlan();
    const error = await rejection(keys.createKey({ apiId, planId: "gold" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe('plan_id: plan "gold" not found');
  });

  it("lists in pages without repeats", async () => {
    const { apiId } = await newApiWithPlan();
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      created.push((await newKey(apiId)).key.id);
      harness.clock.advance(1);
    }

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await keys.listKeys({ apiId, pageSize: 2, pageToken });
      expect(page.keys.length).toBeLessThanOrEqual(2);
      seen.push(...page.keys.map((key) => key.id));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== "");

    expect(pages).toBe(3);
    expect(seen).toEqual(created);
  });

  it("ends with an empty token on an exact last page", async () => {
    const { apiId } = await newApiWithPlan();
    await newKey(apiId);
    await newKey(apiId);
    const page = await keys.listKeys({ apiId, pageSize: 2 });
    expect(page.keys).toHaveLength(2);
    expect(page.nextPageToken).toBe("");
  });

  it("pages by 100 by default and accepts larger sizes", async () => {
    const { apiId } = await newApiWithPlan();
    for (let i = 0; i < 101; i++) await newKey(apiId);

    const defaultPage = await keys.listKeys({ apiId });
    expect(defaultPage.keys).toHaveLength(100);
    expect(defaultPage.nextPageToken).not.toBe("");
    const largePage = await keys.listKeys({ apiId, pageSize: 5000 });
    expect(largePage.keys).toHaveLength(101);
    expect(largePage.nextPageToken).toBe("");
  });

  it("filters by owner and state", async () => {
    const { apiId } = await newApiWithPlan();
    const active = (await newKey(apiId, { ownerId: "alice" })).key;
    const revoked = (await newKey(apiId, { ownerId: "alice" })).key;
    const disabled = (await newKey(apiId, { ownerId: "bob" })).key;
    const expiring = (await newKey(apiId, { ownerId: "bob", expireTime: inMs(1000) })).key;
    await keys.revokeKey({ id: revoked.id });
    await keys.updateKey({ id: disabled.id, enabled: false });
    harness.clock.advance(1001);

    const ids = async (request: { ownerId?: string; state?: KeyState }) => (await keys.listKeys({ apiId, ...request })).keys.map((key) => key.id);
    expect((await ids({ ownerId: "alice" })).sort()).toEqual([active.id, revoked.id].sort());
    expect(await ids({ state: KeyState.ACTIVE })).toEqual([active.id]);
    expect(await ids({ state: KeyState.REVOKED })).toEqual([revoked.id]);
    expect(await ids({ state: KeyState.DISABLED })).toEqual([disabled.id]);
    expect(await ids({ state: KeyState.EXPIRED })).toEqual([expiring.id]);
    expect(await ids({ ownerId: "bob", state: KeyState.EXPIRED })).toEqual([expiring.id]);
  });

  it("revokes a key and keeps the first revocation time", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    const revoked = (await keys.revokeKey({ id: key.id })).key!;
    expect(revoked.state).toBe(KeyState.REVOKED);
    expect(timestampMs(revoked.revokeTime!)).toBe(harness.clock.wallMs());

    harness.clock.advance(5000);
    const again = (await keys.revokeKey({ id: key.id })).key!;
    expect(timestampMs(again.revokeTime!)).toBe(timestampMs(revoked.revokeTime!));
  });
});

describe("key updates", () => {
  it("changes only the fields that are set", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId, { name: "old", ownerId: "alice", scopes: ["read"], metadata: { a: 1 } });

    const renamed = (await keys.updateKey({ id: key.id, name: "new" })).key!;
    expect(renamed.name).toBe("new");
    expect(renamed.ownerId).toBe("alice");
    expect(renamed.scopes).toEqual(["read"]);
    expect(renamed.metadata).toEqual({ a: 1 });
    expect(renamed.planId).toBe(key.planId);
    expect(renamed.enabled).toBe(true);
  });

  it("sets and clears each field", async () => {
    const { apiId, planId } = await newApiWithPlan();
    const pro = (await plans.setPlan({ apiId, name: "pro", tiers: [{ limit: 10n, windowMs: 1000n }] })).plan!;
    const { key } = await newKey(apiId, { name: "n", ownerId: "o" });
    const update = async (fields: Parameters<typeof keys.updateKey>[0]) => (await keys.updateKey({ id: key.id, ...fields })).key!;

    expect((await update({ ownerId: "bob" })).ownerId).toBe("bob");
    expect((await update({ ownerId: "" })).ownerId).toBe("");
    expect((await update({ name: "" })).name).toBe("");
    expect((await update({ metadata: { plan: "trial" } })).metadata).toEqual({ plan: "trial" });
    expect((await update({ metadata: {} })).metadata).toBeUndefined();
    expect((await update({ scopes: { scopes: ["a", "b"] } })).scopes).toEqual(["a", "b"]);
    expect((await update({ scopes: { scopes: [] } })).scopes).toEqual([]);
    expect((await update({ planId: "pro" })).planId).toBe(pro.id);
    expect((await update({ planId: planId })).planId).toBe(planId);
    expect((await update({ planId: "" })).planId).toBe("");

    const overridden = await update({ tierOverride: { tiers: [{ limit: 3n, windowMs: 1000n, mode: TierMode.SHADOW }] } });
    expect(overridden.tierOverride!.tiers[0]!.mode).toBe(TierMode.SHADOW);
    expect((await update({ clearTierOverride: true })).tierOverride).toBeUndefined();

    const expireTime = inMs(60_000);
    expect(timestampMs((await update({ expireTime })).expireTime!)).toBe(timestampMs(expireTime));
    expect((await update({ clearExpireTime: true })).expireTime).toBeUndefined();

    const disabled = await update({ enabled: false });
    expect(disabled.enabled).toBe(false);
    expect(disabled.state).toBe(KeyState.DISABLED);
    expect((await update({ enabled: true })).state).toBe(KeyState.ACTIVE);
  });

  it("rejects a past expiry and a plan of another API", async () => {
    const { apiId } = await newApiWithPlan();
    const other = await newApiWithPlan();
    const { key } = await newKey(apiId);

    const past = await rejection(keys.updateKey({ id: key.id, expireTime: inMs(0) }));
    expect(past.code).toBe(Code.InvalidArgument);
    expect(past.rawMessage).toBe("expire_time: must be in the future");

    const foreign = await rejection(keys.updateKey({ id: key.id, planId: other.planId }));
    expect(foreign.code).toBe(Code.NotFound);
    expect(foreign.rawMessage).toMatch(/^plan_id: plan "plan_/);
  });
});

describe("rotation", () => {
  it("keeps the old secret working through the grace period", async () => {
    const { apiId } = await newApiWithPlan();
    const { key, secret: oldSecret } = await newKey(apiId);
    const rotated = await keys.rotateKey({ id: key.id, gracePeriod: durationFromMs(60_000) });
    const newSecret = remember(rotated.secret);

    expect(newSecret).not.toBe(oldSecret);
    expect(rotated.key!.id).toBe(key.id);
    expect(newSecret.startsWith(rotated.key!.start)).toBe(true);
    expect(timestampMs(rotated.key!.previousSecretExpireTime!)).toBe(harness.clock.wallMs() + 60_000);
    expect((await verify(oldSecret)).reason).toBe("ok");
    expect((await verify(newSecret)).reason).toBe("ok");

    harness.clock.advance(59_999);
    expect((await verify(oldSecret)).reason).toBe("ok");
    harness.clock.advance(1);
    expect((await verify(oldSecret)).reason).toBe("unknown_key");
    expect((await verify(newSecret)).reason).toBe("ok");
    expect((await keys.getKey({ id: key.id })).key!.previousSecretExpireTime).toBeUndefined();
  });

  it("stops the old secret at once without a grace period", async () => {
    const { apiId } = await newApiWithPlan();
    const { key, secret: oldSecret } = await newKey(apiId);
    const newSecret = remember((await keys.rotateKey({ id: key.id })).secret);

    expect((await verify(oldSecret)).reason).toBe("unknown_key");
    expect((await verify(newSecret)).reason).toBe("ok");
  });

  it("rejects rotating a revoked key", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    await keys.revokeKey({ id: key.id });
    const error = await rejection(keys.rotateKey({ id: key.id }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toMatch(/^id: key "key_\w+" is revoked/);
  });

  it("rejects a negative grace period", async () => {
    const error = await rejection(keys.rotateKey({ id: "key_x", gracePeriod: { seconds: -1n, nanos: 0 } }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^grace_period: /);
  });
});

describe("verification", () => {
  it("allows an active key and returns it", async () => {
    const api = await newApi();
    const { key, secret } = await newKey(api.id, { scopes: ["read"] });
    const result = await verify(secret, { api: api.name, scopes: ["read"] });
    expect(result.allowed).toBe(true);
    expect(result.reason).toBe("ok");
    expect(result.httpStatus).toBe(200);
    expect(result.key!.id).toBe(key.id);
    expect(result.retryAfterSeconds).toBe(0);
  });

  it.each([
    ["missing_key", 401, ""],
    ["malformed_key", 401, "not-a-key"],
    ["malformed_key", 401, "tg_1111111111111111111111111111"],
  ])("denies %s with %i", async (reason, status, presented) => {
    const result = await verify(presented);
    expect(result.allowed).toBe(false);
    expect(result.reason).toBe(reason);
    expect(result.httpStatus).toBe(status);
    expect(result.key).toBeUndefined();
  });

  it("denies a well-formed key never issued", async () => {
    const api = await newApi();
    const result = await verify(generateKey(api.keyPrefix));
    expect(result.reason).toBe("unknown_key");
    expect(result.httpStatus).toBe(401);
    expect(result.key).toBeUndefined();
  });

  it("denies a key of another API", async () => {
    const api = await newApi();
    const other = await newApi();
    const { secret } = await newKey(api.id);

    const result = await verify(secret, { api: other.name });
    expect(result.reason).toBe("unknown_key");
    expect(result.key).toBeUndefined();
    expect((await verify(secret, { api: api.id })).reason).toBe("ok");
  });

  it("denies revoked, expired and disabled keys with the key", async () => {
    const api = await newApi();
    const revoked = await newKey(api.id);
    const expired = await newKey(api.id, { expireTime: inMs(1000) });
    const disabled = await newKey(api.id);
    await keys.revokeKey({ id: revoked.key.id });
    await keys.updateKey({ id: disabled.key.id, enabled: false });
    harness.clock.advance(1000);

    for (const [issued, reason, status] of [
      [revoked, "revoked_key", 401],
      [expired, "expired_key", 401],
      [disabled, "disabled_key", 403],
    ] as const) {
      const result = await verify(issued.secret);
      expect(result.reason, reason).toBe(reason);
      expect(result.httpStatus, reason).toBe(status);
      expect(result.allowed, reason).toBe(false);
      expect(result.key?.id, reason).toBe(issued.key.id);
    }
  });

  it("denies a missing scope with 403", async () => {
    const api = await newApi();
    const { secret } = await newKey(api.id, { scopes: ["read"] });
    const result = await verify(secret, { scopes: ["read", "write"] });
    expect(result.reason).toBe("insufficient_scope");
    expect(result.httpStatus).toBe(403);
  });

  it("rate limits with a retry time", async () => {
    const api = await newApi();
    await plans.setPlan({ apiId: api.id, name: "tiny", tiers: [{ limit: 2n, windowMs: 10_000n }] });
    const { secret } = await newKey(api.id);

    expect((await verify(secret)).reason).toBe("ok");
    expect((await verify(secret)).reason).toBe("ok");
    const limited = await verify(secret);
    expect(limited.allowed).toBe(false);
    expect(limited.reason).toBe("rate_limited");
    expect(limited.httpStatus).toBe(429);
    expect(limited.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.retryAfterSeconds).toBeLessThanOrEqual(10);

    harness.clock.advance(20_000);
    expect((await verify(secret)).reason).toBe("ok");
  });

  it("takes the cost from every tier, and zero is free", async () => {
    const api = await newApi();
    await plans.setPlan({ apiId: api.id, name: "tiny", tiers: [{ limit: 3n, windowMs: 10_000n }] });
    const { secret } = await newKey(api.id);

    expect((await verify(secret, { cost: 0 })).reason).toBe("ok");
    expect((await verify(secret, { cost: 3 })).reason).toBe("ok");
    expect((await verify(secret, { cost: 1 })).reason).toBe("rate_limited");
  });
});

describe("audit", () => {
  it("audits key changes with before and after", async () => {
    const { apiId } = await newApiWithPlan();
    const { key, secret } = await newKey(apiId, { name: "before" });
    await keys.updateKey({ id: key.id, name: "after" });
    const rotatedSecret = remember((await keys.rotateKey({ id: key.id, gracePeriod: durationFromMs(1000) })).secret);
    await keys.revokeKey({ id: key.id });

    const { events } = await audit.listAuditEvents({ resourceId: key.id });
    expect(events.map((event) => event.action)).toEqual(["key.create", "key.update", "key.rotate", "key.revoke"]);
    for (const event of events) {
      expect(event.actorName).toBe("bootstrap (TOLLGATE_ADMIN_TOKEN)");
      expect(event.actorId).toMatch(/^tok_/);
      expect(event.resourceType).toBe("key");
      expect(event.time).toBeDefined();
    }
    const [create, update, , revoke] = events;
    expect(create!.before).toBeUndefined();
    expect(create!.after!.name).toBe("before");
    expect(update!.before!.name).toBe("before");
    expect(update!.after!.name).toBe("after");
    expect(revoke!.before!.revokedAtMs).toBeNull();
    expect(revoke!.after!.revokedAtMs).toBe(harness.clock.wallMs());

    const text = jsonText(events);
    for (const hidden of [secret, rotatedSecret, hashKey(secret), hashKey(rotatedSecret)]) expect(text).not.toContain(hidden);
  });

  it("records org, API, plan and token changes", async () => {
    const { org } = await orgs.createOrg({ name: unique("audited") });
    const { api } = await apis.createApi({ name: unique("audited"), orgId: org!.id });
    const plan = (await plans.setPlan({ apiId: api!.id, name: "p", tiers: [{ limit: 1n, windowMs: 1000n }] })).plan!;
    await plans.setPlan({ apiId: api!.id, name: "p", tiers: [{ limit: 2n, windowMs: 1000n }] });
    await apis.updateApi({ id: api!.id, defaultPlanId: "" });
    const created = await tokens.createToken({ name: "audited", kind: TokenKind.SIDECAR });
    remember(created.secret);
    await tokens.revokeToken({ id: created.token!.id });

    const actions = async (resourceId: string) => (await audit.listAuditEvents({ resourceId })).events.map((event) => event.action);
    expect(await actions(org!.id)).toEqual(["org.create"]);
    expect(await actions(api!.id)).toEqual(["api.create", "api.update"]);
    expect(await actions(plan.id)).toEqual(["plan.create", "plan.update"]);
    expect(await actions(created.token!.id)).toEqual(["token.create", "token.revoke"]);

    const planUpdate = (await audit.listAuditEvents({ resourceId: plan.id })).events[1]!;
    expect(planUpdate.before!.tiers).toEqual([{ limit: 1, windowMs: 1000, mode: "reject" }]);
    expect(planUpdate.after!.tiers).toEqual([{ limit: 2, windowMs: 1000, mode: "reject" }]);
    expect(jsonText(await audit.listAuditEvents({ resourceId: created.token!.id }))).not.toContain(created.secret);
  });

  it("names the token that made the change", async () => {
    const created = await tokens.createToken({ name: "deploy bot", kind: TokenKind.ADMIN });
    const bot = harness.connectClient(OrgService, remember(created.secret));
    const { org } = await bot.createOrg({ name: unique("by-bot") });

    const [event] = (await audit.listAuditEvents({ resourceId: org!.id })).events;
    expect(event!.actorId).toBe(created.token!.id);
    expect(event!.actorName).toBe("deploy bot");
  });

  it("pages through the log", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    for (const name of ["a", "b", "c", "d"]) await keys.updateKey({ id: key.id, name });

    const first = await audit.listAuditEvents({ resourceId: key.id, pageSize: 3 });
    expect(first.events).toHaveLength(3);
    const second = await audit.listAuditEvents({ resourceId: key.id, pageSize: 3, pageToken: first.nextPageToken });
    expect(second.events.map((event) => event.after!.name)).toEqual(["c", "d"]);
    expect(second.nextPageToken).toBe("");

    const error = await rejection(audit.listAuditEvents({ pageSize: 3, pageToken: first.nextPageToken }));
    expect(error.rawMessage).toMatch(/^page_token: invalid/);
  });
});

describe("tokens", () => {
  it("creates a working admin token and revokes it", async () => {
    const created = await tokens.createToken({ name: "ops", kind: TokenKind.ADMIN });
    const secret = remember(created.secret);
    expect(secret).toMatch(/^tgadmin_/);
    expect(created.token!.kind).toBe(TokenKind.ADMIN);
    expect(secret.startsWith(created.token!.start)).toBe(true);

    const listed = await tokens.listTokens({});
    expect(listed.tokens.map((token) => token.id)).toContain(created.token!.id);
    expect(jsonText(listed)).not.toContain(secret);

    const asOps = harness.connectClient(KeyService, secret);
    await expect(asOps.listKeys({ pageSize: 1 })).resolves.toBeDefined();

    const revoked = (await tokens.revokeToken({ id: created.token!.id })).token!;
    expect(revoked.revokeTime).toBeDefined();
    const error = await rejection(asOps.listKeys({ pageSize: 1 }));
    expect(error.code).toBe(Code.Unauthenticated);
  });

  it("keeps the last admin token", async () => {
    const own = await startServerHarness();
    try {
      const ownTokens = own.connectClient(TokenService);
      const bootstrap = (await ownTokens.listTokens({})).tokens.find((token) => token.kind === TokenKind.ADMIN)!;
      const error = await rejection(ownTokens.revokeToken({ id: bootstrap.id }));
      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toMatch(/^id: the last admin token cannot be revoked/);

      const spare = await ownTokens.createToken({ name: "spare", kind: TokenKind.ADMIN });
      remember(spare.secret);
      await ownTokens.revokeToken({ id: bootstrap.id });
      const denied = await rejection(ownTokens.listTokens({}));
      expect(denied.code).toBe(Code.Unauthenticated);
    } finally {
      await own.close();
    }
  });
});

describe("protocols", () => {
  it("serves plain JSON over HTTP", async () => {
    const { apiId } = await newApiWithPlan();
    const { key } = await newKey(apiId);
    const response = await fetch(`${harness.baseUrl}/tollgate.admin.v1.KeyService/ListKeys`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ apiId }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { keys: { id: string; state: string }[] };
    expect(body.keys.map((listed) => listed.id)).toEqual([key.id]);
    expect(body.keys[0]!.state).toBe("KEY_STATE_ACTIVE");
  });

  it("returns JSON errors naming the field", async () => {
    const response = await fetch(`${harness.baseUrl}/tollgate.admin.v1.KeyService/GetKey`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: "{}",
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ code: "invalid_argument", message: "id: required" });
  });

  it("serves gRPC", async () => {
    const { apiId } = await newApiWithPlan();
    const grpcKeys = harness.grpcClient(KeyService);
    const { key, secret } = await grpcKeys.createKey({ apiId, name: "over grpc" });
    remember(secret);
    expect((await grpcKeys.getKey({ id: key!.id })).key!.name).toBe("over grpc");
    expect((await grpcKeys.verifyKey({ key: secret })).reason).toBe("ok");

    const error = await rejection(harness.grpcClient(KeyService, sidecarToken).getKey({ id: key!.id }));
    expect(error.code).toBe(Code.PermissionDenied);
  });
});

describe("secrets", () => {
  it("never reach the log or the database", async () => {
    const { apiId } = await newApiWithPlan();
    const { key, secret } = await newKey(apiId);
    await verify(secret);
    remember((await keys.rotateKey({ id: key.id, gracePeriod: durationFromMs(1000) })).secret);
    expect(secrets.length).toBeGreaterThan(10);

    const log = harness.logText();
    expect(log).toContain('"msg":"key created"');
    const files = filesUnder(harness.dataDir);
    expect(files.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(log.includes(secret), "secret in the log").toBe(false);
      for (const file of files) expect(readFileSync(file).includes(secret), `secret in ${file}`).toBe(false);
    }
    expect(log).not.toContain(ADMIN_TOKEN);
    for (const file of files) expect(readFileSync(file).includes(ADMIN_TOKEN), `admin token in ${file}`).toBe(false);
  });
});

/** Serializes response messages, whose 64-bit fields are bigints, to search them as text. */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) => (typeof field === "bigint" ? field.toString() : field));
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}
