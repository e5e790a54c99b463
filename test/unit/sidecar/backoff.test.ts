import { describe, expect, it } from "vitest";
import { backoffDelayMs } from "../../../src/sidecar/backoff.js";

describe("backoffDelayMs", () => {
  it.each([
    [1, 0, 50],
    [1, 0.999_999, 100],
    [2, 0.999_999, 200],
    [5, 0.999_999, 1_600],
    [8, 0.999_999, 10_000],
    [8, 0, 5_000],
    [1_000, 0.999_999, 10_000],
  ])("attempt %i with random %f waits %i ms", (attempt, random, expectedMs) => {
    expect(backoffDelayMs(attempt, () => random)).toBe(expectedMs);
  });

  it("honours custom bounds", () => {
    expect(backoffDelayMs(1, () => 0.999_999, { initialDelayMs: 10, maxDelayMs: 15 })).toBe(10);
    expect(backoffDelayMs(3, () => 0.999_999, { initialDelayMs: 10, maxDelayMs: 15 })).toBe(15);
  });

  it("treats attempt 0 as the first", () => {
    expect(backoffDelayMs(0, () => 0.999_999)).toBe(100);
  });
});
