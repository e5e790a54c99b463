import { describe, expect, it } from "vitest";
import { RateLimiter, type AdmitResult, type TierOutcome } from "../../../src/ratelimit/limiter.js";
import type { Tier } from "../../../src/ratelimit/tier.js";
import { rateLimitHeaders, retryAfterSeconds } from "../../../src/sidecar/rate-headers.js";
import { clockAtWindowStart, tier } from "../fakes.js";

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

function outcome(tierOf: Tier, remaining: number, resetMs: number, exceeded = false): TierOutcome {
  return { tier: tierOf, remaining, resetMs, exceeded, excessCost: 0 };
}

function headersOf(rate: AdmitResult): Record<string, string> {
  return Object.fromEntries(rateLimitHeaders(rate));
}

describe("rateLimitHeaders", () => {
  it("no tiers, no headers", () => {
    expect(rateLimitHeaders({ admitted: true, tiers: [] })).toEqual([]);
  });

  it("policy lists every tier", () => {
    const rate: AdmitResult = {
      admitted: true,
      tiers: [outcome(tier(5, SECOND), 4, 1_000), outcome(tier(8, MINUTE), 7, 60_000)],
    };

    expect(headersOf(rate)["ratelimit-policy"]).toBe('"5/1s";q=5;w=1, "8/1m";q=8;w=60');
  });

  it.each([
    [tier(100, DAY, "shadow"), '"100/1d:shadow";q=100;w=86400'],
    [tier(10, 500), '"10/500ms";q=10;w=1'],
    [tier(10, 1_500), '"10/1500ms";q=10;w=2'],
    [tier(1_000, HOUR), '"1000/1h";q=1000;w=3600'],
  ])("policy item for %j", (tierOf, expected) => {
    const rate: AdmitResult = { admitted: true, tiers: [outcome(tierOf, 1, 100)] };

    expect(headersOf(rate)["ratelimit-policy"]).toBe(expected);
  });

  it("RateLimit after first request", () => {
    const clock = clockAtWindowStart(SECOND);
    const limiter = new RateLimiter();

    const rate = limiter.admit("key_a", [tier(5, SECOND)], 1, clock.monotonicMs());

    expect(headersOf(rate).ratelimit).toBe('"5/1s";r=4;t=1');
  });

  it("RateLimit lists every tier", () => {
    const rate: AdmitResult = {
      admitted: true,
      tiers: [outcome(tier(5, SECOND), 4, 1_000), outcome(tier(8, MINUTE), 2, 42_300)],
    };

    expect(headersOf(rate).ratelimit).toBe('"5/1s";r=4;t=1, "8/1m";r=2;t=43');
  });

  it("X-RateLimit from tier with least room", () => {
    const rate: AdmitResult = {
      admitted: true,
      tiers: [outcome(tier(5, SECOND), 4, 1_000), outcome(tier(8, MINUTE), 2, 42_300), outcome(tier(3, HOUR, "shadow"), 0, 600_000, true)],
    };

    expect(headersOf(rate)).toMatchObject({ "x-ratelimit-limit": "8", "x-ratelimit-remaining": "2", "x-ratelimit-reset": "43" });
  });

  it("X-RateLimit tie goes to shorter window", () => {
    const rate: AdmitResult = {
      admitted: true,
      tiers: [outcome(tier(50, MINUTE), 3, 30_000), outcome(tier(5, SECOND), 3, 400)],
    };

    expect(headersOf(rate)).toMatchObject({ "x-ratelimit-limit": "5", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "1" });
  });

  it("X-RateLimit from shadow tiers when only shadow", () => {
    const rate: AdmitResult = {
      admitted: true,
      tiers: [outcome(tier(5, SECOND, "shadow"), 4, 1_000), outcome(tier(8, MINUTE, "shadow"), 1, 5_000)],
    };

    expect(headersOf(rate)["x-ratelimit-limit"]).toBe("8");
  });

  it("X-RateLimit from blocking tier when denied", () => {
    const blocking = outcome(tier(100, HOUR), 0, 1_200_000, true);
    const rate: AdmitResult = {
      admitted: false,
      tiers: [outcome(tier(5, SECOND), 0, 800, true), blocking],
      blocking,
    };

    expect(headersOf(rate)).toMatchObject({ "x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1200" });
  });

  it("X-RateLimit-Reset matches Retry-After when denied", () => {
    const blocking = outcome(tier(5, SECOND), 0, 1_700, true);
    const rate: AdmitResult = { admitted: false, tiers: [blocking], blocking };

    expect(headersOf(rate)["x-ratelimit-reset"]).toBe(String(retryAfterSeconds(blocking)));
    expect(headersOf(rate).ratelimit).toBe('"5/1s";r=0;t=1');
  });
});

describe("retryAfterSeconds", () => {
  it.each([
    ["sub-second window, short wait", 500, 300, 1],
    ["sub-second window, wait above window", 250, 490, 1],
    ["sub-millisecond wait", SECOND, 0.4, 1],
    ["zero wait", SECOND, 0, 1],
    ["one-second window, full wait", SECOND, 1_000, 1],
    ["one-second window, wait above window", SECOND, 1_001, 1],
    ["fraction rounds up", MINUTE, 12_300, 13],
    ["whole seconds kept", MINUTE, 12_000, 12],
    ["minute window, wait of two windows", MINUTE, 120_000, 60],
    ["odd window rounds up", 1_500, 1_600, 2],
    ["hour window, short wait", HOUR, 1_500, 2],
    ["hour window, almost full wait", HOUR, 3_599_001, 3_600],
    ["hour window, wait above window", HOUR, 7_200_000, 3_600],
    ["day window", DAY, 5 * HOUR + 1, 18_001],
  ])("%s", (_case, windowMs, resetMs, expected) => {
    const seconds = retryAfterSeconds(outcome(tier(1, windowMs), 0, resetMs, true));

    expect(seconds).toBe(expected);
    expect(Number.isInteger(seconds)).toBe(true);
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(Math.max(1, Math.ceil(windowMs / SECOND)));
  });
});
