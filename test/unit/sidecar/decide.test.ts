import { describe, expect, it } from "vitest";
import { generateKey } from "../../../src/keys/key-format.js";
import type { KeyGrant } from "../../../src/keys/records.js";
import type { Credential } from "../../../src/sidecar/credential.js";
import { decide } from "../../../src/sidecar/decide.js";
import type { RouteSettings } from "../../../src/sidecar/route.js";
import { START_WALL_MS, createFakeContext, issueKey, tier } from "../fakes.js";

const MINUTE = 60_000;
const DAY = 86_400_000;

interface Scenario {
  /** How the request presents the key. Undefined presents the issued key unchanged. */
  presented?: "none" | "ambiguous" | "malformed" | "unstored";
  /** Changes to the issued key's grant, which starts with a tier of 2 requests per minute. */
  grant?: Partial<KeyGrant>;
  route?: Partial<RouteSettings>;
  ready?: boolean;
  /** Requests the key already made this minute. */
  spentThisMinute?: number;
}

function run(scenario: Scenario) {
  const issued = issueKey({ tiers: [tier(2, MINUTE)], ...scenario.grant });
  const context = createFakeContext([issued], { ready: scenario.ready });
  for (let request = 0; request < (scenario.spentThisMinute ?? 0); request++) {
    context.limiter.admit(issued.grant.id, issued.grant.tiers, 1, context.clock.monotonicMs());
  }

  const route: RouteSettings = { scopes: [], cost: 1, ...scenario.route };
  const decision = decide(credentialFor(scenario.presented, issued.key), route, context);
  return { decision, context, key: issued.key };
}

function credentialFor(presented: Scenario["presented"], key: string): Credential {
  switch (presented) {
    case "none":
      return { kind: "none" };
    case "ambiguous":
      return { kind: "ambiguous" };
    case "malformed":
      return { kind: "present", key: withOneCharChanged(key), sources: ["authorization"] };
    case "unstored":
      return { kind: "present", key: generateKey("tg"), sources: ["authorization"] };
    default:
      return { kind: "present", key, sources: ["authorization"] };
  }
}

/** Returns the key with one base58 character swapped for another, so that only the checksum can catch it. */
function withOneCharChanged(key: string): string {
  const index = key.length - 10;
  return key.slice(0, index) + (key[index] === "A" ? "B" : "A") + key.slice(index + 1);
}

const REVOKED = { revokedAtMs: START_WALL_MS - DAY };
const EXPIRED = { expiresAtMs: START_WALL_MS - DAY };
const DISABLED = { enabled: false };
const NEEDS_WRITE = { scopes: ["write"] };

describe("decide", () => {
  it.each<[string, Scenario, string]>([
    ["store not loaded", { ready: false }, "not_ready"],
    ["no key", { presented: "none" }, "missing_key"],
    ["two different keys", { presented: "ambiguous" }, "ambiguous_key"],
    ["bad checksum", { presented: "malformed" }, "malformed_key"],
    ["key not in store", { presented: "unstored" }, "unknown_key"],
    ["key of another API", { route: { api: "billing" } }, "unknown_key"],
    ["revoked key", { grant: REVOKED }, "revoked_key"],
    ["expired key", { grant: EXPIRED }, "expired_key"],
    ["disabled key", { grant: DISABLED }, "disabled_key"],
    ["scope missing", { route: NEEDS_WRITE }, "insufficient_scope"],
    ["one of two scopes missing", { grant: { scopes: ["read"] }, route: { scopes: ["read", "write"] } }, "insufficient_scope"],
    ["limit used up", { spentThisMinute: 2 }, "rate_limited"],
    ["valid key", {}, "ok"],
    ["API matched by name", { route: { api: "payments" } }, "ok"],
    ["API matched by id", { route: { api: "api_payments" } }, "ok"],
    ["scopes held", { grant: { scopes: ["read", "write"] }, route: { scopes: ["write", "read"] } }, "ok"],
    ["expiry in future", { grant: { expiresAtMs: START_WALL_MS + DAY } }, "ok"],
    ["cost 0 over limit", { spentThisMinute: 2, route: { cost: 0 } }, "ok"],
  ])("%s gives its reason", (_case, scenario, expectedReason) => {
    expect(run(scenario).decision.reason).toBe(expectedReason);
  });

  it("key expiring now is expired", () => {
    const issued = issueKey();
    const context = createFakeContext([issued]);
    issued.grant.expiresAtMs = context.clock.wallMs();

    const decision = decide({ kind: "present", key: issued.key, sources: ["x-api-key"] }, { scopes: [], cost: 1 }, context);

    expect(decision.reason).toBe("expired_key");
  });

  it.each<[string, Scenario, string]>([
    ["not ready before missing key", { ready: false, presented: "none" }, "not_ready"],
    ["not ready before malformed key", { ready: false, presented: "malformed" }, "not_ready"],
    ["not ready before revoked key", { ready: false, grant: REVOKED }, "not_ready"],
    ["wrong API before revoked", { route: { api: "billing" }, grant: { ...REVOKED, ...DISABLED } }, "unknown_key"],
    [
      "revoked before everything else",
      { grant: { ...REVOKED, ...EXPIRED, ...DISABLED }, route: NEEDS_WRITE, spentThisMinute: 2 },
      "revoked_key",
    ],
    ["expired before disabled", { grant: { ...EXPIRED, ...DISABLED }, route: NEEDS_WRITE, spentThisMinute: 2 }, "expired_key"],
    ["disabled before scope", { grant: DISABLED, route: NEEDS_WRITE, spentThisMinute: 2 }, "disabled_key"],
    ["scope before rate limit", { route: NEEDS_WRITE, spentThisMinute: 2 }, "insufficient_scope"],
  ])("earliest reason wins: %s", (_case, scenario, expectedReason) => {
    expect(run(scenario).decision.reason).toBe(expectedReason);
  });

  it.each<[string, Scenario]>([
    ["store not loaded", { ready: false }],
    ["no key", { presented: "none" }],
    ["two different keys", { presented: "ambiguous" }],
    ["bad checksum", { presented: "malformed" }],
    ["key not in store", { presented: "unstored" }],
    ["key of another API", { route: { api: "billing" } }],
    ["revoked key", { grant: REVOKED }],
    ["expired key", { grant: EXPIRED }],
    ["disabled key", { grant: DISABLED }],
    ["scope missing", { route: NEEDS_WRITE }],
  ])("no counter for failed key: %s", (_case, scenario) => {
    const { decision, context } = run(scenario);

    expect(decision.allowed).toBe(false);
    expect(decision.rate).toBeUndefined();
    expect(context.limiter.size).toBe(0);
  });

  it("allowed request counts once", () => {
    const { decision, context } = run({});

    expect(decision.allowed).toBe(true);
    expect(decision.rate?.tiers.map((outcome) => outcome.remaining)).toEqual([1]);
    expect(context.limiter.size).toBe(1);
  });

  it("rate-limited decision carries blocking tier", () => {
    const { decision } = run({ spentThisMinute: 2 });

    expect(decision.allowed).toBe(false);
    expect(decision.rate?.admitted).toBe(false);
    expect(decision.rate?.blocking?.tier).toEqual(tier(2, MINUTE));
    expect(decision.grant?.id).toBe("key_test1");
  });

  it("route cost taken from tiers", () => {
    const { decision } = run({ grant: { tiers: [tier(10, MINUTE)] }, route: { cost: 4 } });

    expect(decision.rate?.tiers[0]?.remaining).toBe(6);
  });

  it.each<[string, Scenario]>([
    ["bad checksum", { presented: "malformed" }],
    ["revoked key", { grant: REVOKED }],
    ["limit used up", { spentThisMinute: 2 }],
  ])("denial omits secret key: %s", (_case, scenario) => {
    const { decision, key } = run(scenario);

    expect(JSON.stringify(decision)).not.toContain(key.slice(3, 27));
  });
});
