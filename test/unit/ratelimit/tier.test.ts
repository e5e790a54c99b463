import { describe, expect, it } from "vitest";
import { MAX_WINDOW_MS, formatTier, formatWindow, parseDurationMs, parseTier, type Tier } from "../../../src/ratelimit/tier.js";

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

describe("parseTier", () => {
  it.each<[string, Tier]>([
    ["5/1s", { limit: 5, windowMs: SECOND, mode: "reject" }],
    ["8/1m", { limit: 8, windowMs: MINUTE, mode: "reject" }],
    ["100/1d:shadow", { limit: 100, windowMs: DAY, mode: "shadow" }],
    ["10000/30d:overage", { limit: 10000, windowMs: 30 * DAY, mode: "overage" }],
    ["10/500ms", { limit: 10, windowMs: 500, mode: "reject" }],
    ["1000/1h", { limit: 1000, windowMs: HOUR, mode: "reject" }],
    ["5/90s", { limit: 5, windowMs: 90 * SECOND, mode: "reject" }],
    ["5/1s:reject", { limit: 5, windowMs: SECOND, mode: "reject" }],
    ["1/1ms", { limit: 1, windowMs: 1, mode: "reject" }],
    ["1/366d", { limit: 1, windowMs: MAX_WINDOW_MS, mode: "reject" }],
    [" 5/1s ", { limit: 5, windowMs: SECOND, mode: "reject" }],
  ])("%j parses", (text, expected) => {
    expect(parseTier(text)).toEqual({ ok: true, tier: expected });
  });

  it.each([
    ["0/1s", "the limit must be at least 1"],
    ["5/0s", "the window must be from 1ms to 366d"],
    ["5/0ms", "the window must be from 1ms to 366d"],
    ["5/367d", "the window must be from 1ms to 366d"],
    ["5/1s:bogus", 'unknown mode "bogus"'],
    ["5/1y", "expected LIMIT/WINDOW[:MODE]"],
    ["", "expected LIMIT/WINDOW[:MODE]"],
    ["5", "expected LIMIT/WINDOW[:MODE]"],
    ["5/", "expected LIMIT/WINDOW[:MODE]"],
    ["/1s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1", "expected LIMIT/WINDOW[:MODE]"],
    ["-5/1s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/-1s", "expected LIMIT/WINDOW[:MODE]"],
    ["1.5/1s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1.5s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1S", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1s:", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1s:Shadow", "expected LIMIT/WINDOW[:MODE]"],
    ["5 / 1s", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1s shadow", "expected LIMIT/WINDOW[:MODE]"],
    ["5/1s/1m", "expected LIMIT/WINDOW[:MODE]"],
    ["99999999999999999999/1s", 'invalid tier "99999999999999999999/1s"'],
    ["5/99999999999999999999d", "the window must be from 1ms to 366d"],
  ])("%j rejected", (text, expectedProblem) => {
    const parsed = parseTier(text);

    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? "" : parsed.problem).toContain(expectedProblem);
  });

  it("huge limit problem not misleading", () => {
    const parsed = parseTier("99999999999999999999/1s");

    expect(parsed.ok).toBe(false);
    // The limit is far above 1, so "at least 1" would send the user the wrong way.
    expect(parsed.ok ? "" : parsed.problem).not.toContain("at least 1");
  });
});

describe("formatTier", () => {
  it.each<[Tier, string]>([
    [{ limit: 5, windowMs: SECOND, mode: "reject" }, "5/1s"],
    [{ limit: 8, windowMs: MINUTE, mode: "reject" }, "8/1m"],
    [{ limit: 100, windowMs: DAY, mode: "shadow" }, "100/1d:shadow"],
    [{ limit: 10, windowMs: 500, mode: "reject" }, "10/500ms"],
    [{ limit: 10, windowMs: 1_500, mode: "reject" }, "10/1500ms"],
    [{ limit: 3, windowMs: 90 * SECOND, mode: "reject" }, "3/90s"],
    [{ limit: 3, windowMs: 90 * MINUTE, mode: "shadow" }, "3/90m:shadow"],
    [{ limit: 7, windowMs: 36 * HOUR, mode: "reject" }, "7/36h"],
    [{ limit: 7, windowMs: 2 * DAY, mode: "reject" }, "7/2d"],
    [{ limit: 1, windowMs: MAX_WINDOW_MS, mode: "reject" }, "1/366d"],
  ])("%j formats as %s and parses back", (tier, expected) => {
    expect(formatTier(tier)).toBe(expected);
    expect(parseTier(formatTier(tier))).toEqual({ ok: true, tier });
  });

  it.each([
    ["1000ms", "1s"],
    ["60s", "1m"],
    ["120s", "2m"],
    ["60m", "1h"],
    ["24h", "1d"],
  ])("window %s formats as %s", (text, expected) => {
    expect(formatWindow(parseDurationMs(text)!)).toBe(expected);
  });
});

describe("parseDurationMs", () => {
  it.each<[string, number | undefined]>([
    ["250ms", 250],
    ["90s", 90 * SECOND],
    ["5m", 5 * MINUTE],
    ["2h", 2 * HOUR],
    ["30d", 30 * DAY],
    [" 1s ", SECOND],
    ["0s", undefined],
    ["0ms", undefined],
    ["", undefined],
    ["5", undefined],
    ["s", undefined],
    ["1y", undefined],
    ["-1s", undefined],
    ["1.5s", undefined],
    ["1S", undefined],
    ["1 s", undefined],
    ["99999999999999999999d", undefined],
  ])("%j is %s ms", (text, expected) => {
    expect(parseDurationMs(text)).toBe(expected);
  });
});
