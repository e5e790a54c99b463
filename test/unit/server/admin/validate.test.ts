import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { TierMode, TierSchema } from "../../../../src/gen/tollgate/admin/v1/resources_pb.js";
import {
  checkFutureTime,
  checkGracePeriod,
  checkLabel,
  checkMetadata,
  checkOptionalLabel,
  checkPageSize,
  checkReference,
  checkScopes,
  checkTiers,
  FieldProblems,
} from "../../../../src/server/admin/validate.js";

const NOW_MS = Date.UTC(2026, 0, 1);

function tier(limit: bigint, windowMs: bigint, mode: TierMode = TierMode.UNSPECIFIED) {
  return create(TierSchema, { limit, windowMs, mode });
}

describe("checkTiers", () => {
  it.each([
    ["a limit of 0", [tier(0n, 1000n)], "tiers[0].limit: must be from 1 to 9007199254740991"],
    ["a limit past the safe integers", [tier(2n ** 53n, 1000n)], "tiers[0].limit: must be from 1 to 9007199254740991"],
    ["a window of 0", [tier(1n, 0n)], "tiers[0].window_ms: must be from 1 to 31622400000"],
    ["a window over 366 days", [tier(1n, 1000n), tier(1n, 31_622_400_001n)], "tiers[1].window_ms: must be from 1 to 31622400000"],
    ["an unknown mode", [tier(1n, 1000n, 9 as TierMode)], "tiers[0].mode: must be TIER_MODE_REJECT, TIER_MODE_OVERAGE, TIER_MODE_SHADOW or unspecified (reject)"],
    ["no tiers", [], "tiers: at least one tier required"],
    ["17 tiers", Array.from({ length: 17 }, () => tier(1n, 1000n)), "tiers: at most 16 tiers"],
  ])("rejects %s", (_case, tiers, message) => {
    const problems = new FieldProblems();
    checkTiers(problems, "tiers", tiers);
    expect(problems.messages).toEqual([message]);
  });

  it("reads unspecified as reject and keeps shadow and overage", () => {
    const problems = new FieldProblems();
    const tiers = checkTiers(problems, "tiers", [
      tier(5n, 1000n),
      tier(9007199254740991n, 31_622_400_000n, TierMode.SHADOW),
      tier(100n, 60_000n, TierMode.OVERAGE),
    ]);
    expect(problems.empty).toBe(true);
    expect(tiers).toEqual([
      { limit: 5, windowMs: 1000, mode: "reject" },
      { limit: 9007199254740991, windowMs: 31_622_400_000, mode: "shadow" },
      { limit: 100, windowMs: 60_000, mode: "overage" },
    ]);
  });
});

describe("labels and references", () => {
  it.each([
    ["", false],
    ["a", true],
    ["x".repeat(200), true],
    ["x".repeat(201), false],
    ["🙂".repeat(200), true],
    ["tab\there", false],
    ["del\u007f", false],
    ["c1\u0085", false],
    ["Ünïcode name", true],
  ])("checkLabel(%j) accepts: %s", (text, accepted) => {
    const problems = new FieldProblems();
    checkLabel(problems, "name", text);
    expect(problems.empty).toBe(accepted);
  });

  it("reads an empty optional label as none", () => {
    const problems = new FieldProblems();
    expect(checkOptionalLabel(problems, "name", "")).toBeNull();
    expect(problems.empty).toBe(true);
  });

  it("requires a reference", () => {
    const problems = new FieldProblems();
    checkReference(problems, "api_id", "");
    expect(problems.messages).toEqual(["api_id: required"]);
  });
});

describe("checkScopes", () => {
  it("names each bad scope by index and drops duplicates", () => {
    const problems = new FieldProblems();
    const scopes = checkScopes(problems, "scopes", ["read", "read", "bad scope", "x".repeat(65), "billing:write"]);
    expect(problems.messages).toEqual(['scopes[2]: must be 1 to 64 letters, digits or ":._/-"', 'scopes[3]: must be 1 to 64 letters, digits or ":._/-"']);
    expect(scopes).toContain("billing:write");
    expect(scopes.filter((scope) => scope === "read")).toHaveLength(1);
  });

  it("limits the number of scopes", () => {
    const problems = new FieldProblems();
    checkScopes(problems, "scopes", Array.from({ length: 101 }, (_, i) => `s${i}`));
    expect(problems.messages).toEqual(["scopes: at most 100 scopes"]);
  });
});

describe("checkMetadata", () => {
  it.each([
    ["16 KiB of JSON", { v: "x".repeat(16 * 1024 - 8) }, []],
    ["one byte more", { v: "x".repeat(16 * 1024 - 7) }, ["metadata: at most 16 KiB"]],
    ["multi-byte characters counted as UTF-8", { v: "é".repeat(8200) }, ["metadata: at most 16 KiB"]],
    ["an infinite number", { nested: { n: Number.POSITIVE_INFINITY } }, ["metadata: numbers must be finite"]],
  ])("checks %s", (_case, metadata, messages) => {
    const problems = new FieldProblems();
    checkMetadata(problems, "metadata", metadata);
    expect(problems.messages).toEqual(messages);
  });

  it("reads an empty object as no metadata", () => {
    expect(checkMetadata(new FieldProblems(), "metadata", {})).toBeNull();
  });
});

describe("times and sizes", () => {
  it.each([
    ["one millisecond ahead", NOW_MS + 1, []],
    ["now", NOW_MS, ["expire_time: must be in the future"]],
    ["in the past", NOW_MS - 1000, ["expire_time: must be in the future"]],
  ])("checkFutureTime accepts %s only when ahead", (_case, ms, messages) => {
    const problems = new FieldProblems();
    expect(checkFutureTime(problems, "expire_time", timestampFromMs(ms), NOW_MS)).toBe(ms);
    expect(problems.messages).toEqual(messages);
  });

  it("rejects a timestamp outside the protobuf range", () => {
    const problems = new FieldProblems();
    checkFutureTime(problems, "expire_time", { ...timestampFromMs(NOW_MS), seconds: 253_402_300_800n }, NOW_MS);
    expect(problems.messages).toEqual(["expire_time: not a valid timestamp"]);
  });

  it.each([
    ["unset", undefined, 0, true],
    ["zero", durationFromMs(0), 0, true],
    ["30 days", durationFromMs(30 * 86_400_000), 30 * 86_400_000, true],
    ["half a millisecond, rounded up", { seconds: 0n, nanos: 500_000 }, 1, true],
    ["30 days and 1 ms", durationFromMs(30 * 86_400_000 + 1), 0, false],
    ["negative", { seconds: -5n, nanos: 0 }, 0, false],
  ])("checkGracePeriod reads %s", (_case, duration, expectedMs, accepted) => {
    const problems = new FieldProblems();
    expect(checkGracePeriod(problems, "grace_period", duration as Parameters<typeof checkGracePeriod>[2])).toBe(expectedMs);
    expect(problems.empty).toBe(accepted);
  });

  it.each([
    [0, 100],
    [1, 1],
    [1000, 1000],
    [1001, 1000],
  ])("checkPageSize(%i) is %i", (requested, pageSize) => {
    expect(checkPageSize(new FieldProblems(), "page_size", requested)).toBe(pageSize);
  });

  it("rejects a negative page size", () => {
    const problems = new FieldProblems();
    checkPageSize(problems, "page_size", -1);
    expect(problems.messages).toEqual(["page_size: must not be negative"]);
  });
});
