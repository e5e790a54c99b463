import { describe, expect, it } from "vitest";
import { loadServerConfig } from "../../../src/config/server-config.js";

const DAY = 86_400_000;

describe("server usage retention settings", () => {
  it("default to 7 days of raw events and 400 days of rollups", () => {
    const loaded = loadServerConfig({}, {});
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    expect(loaded.config.usageRetentionMs).toBe(7 * DAY);
    expect(loaded.config.usageRollupRetentionMs).toBe(400 * DAY);
  });

  it("read TOLLGATE_USAGE_RETENTION and TOLLGATE_USAGE_ROLLUP_RETENTION", () => {
    const loaded = loadServerConfig({}, { TOLLGATE_USAGE_RETENTION: "36h", TOLLGATE_USAGE_ROLLUP_RETENTION: "91d" });
    expect(loaded).toEqual({ ok: true, config: expect.objectContaining({ usageRetentionMs: 36 * 3_600_000, usageRollupRetentionMs: 91 * DAY }) });
  });

  it("read flags before environment variables", () => {
    const loaded = loadServerConfig({ usageRetention: "2d", usageRollupRetention: "365d" }, { TOLLGATE_USAGE_RETENTION: "36h", TOLLGATE_USAGE_ROLLUP_RETENTION: "91d" });
    expect(loaded).toEqual({ ok: true, config: expect.objectContaining({ usageRetentionMs: 2 * DAY, usageRollupRetentionMs: 365 * DAY }) });
  });

  it.each([
    [{ usageRetention: "7" }, /--usage-retention: "7" must be a duration from 1ms to 36500d, such as 7d, 12h or 90m/],
    [{ usageRetention: "0d" }, /--usage-retention: "0d" must be a duration from 1ms to 36500d/],
    [{ usageRetention: "1w" }, /--usage-retention: "1w" must be a duration from 1ms/],
    [{ usageRetention: "36501d" }, /--usage-retention: "36501d" must be a duration from 1ms to 36500d/],
    [{ usageRetention: "999999999d" }, /--usage-retention: "999999999d" must be a duration from 1ms to 36500d/],
    [{ usageRollupRetention: "90d" }, /--usage-rollup-retention: "90d" must be a duration from 91d \(13 weeks\) to 36500d/],
    [{ usageRollupRetention: "36501d" }, /--usage-rollup-retention: "36501d" must be a duration from 91d \(13 weeks\) to 36500d/],
    [{ usageRollupRetention: "year" }, /--usage-rollup-retention: "year" must be a duration from 91d/],
    [{ usageRetention: "401d" }, /--usage-retention: "401d" must not be longer than --usage-rollup-retention \("400d"\)/],
    [{ usageRetention: "100d", usageRollupRetention: "91d" }, /--usage-retention: "100d" must not be longer than --usage-rollup-retention \("91d"\)/],
  ])("reject %j", (flags, problem) => {
    const loaded = loadServerConfig(flags, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.join("\n")).toMatch(problem);
  });

  it("accept raw retention equal to rollup retention", () => {
    const loaded = loadServerConfig({ usageRetention: "36500d", usageRollupRetention: "36500d" }, {});
    expect(loaded).toEqual({ ok: true, config: expect.objectContaining({ usageRetentionMs: 36_500 * DAY, usageRollupRetentionMs: 36_500 * DAY }) });
  });

  it("list every problem at once", () => {
    const loaded = loadServerConfig({ usageRetention: "soon", usageRollupRetention: "1d", logLevel: "loud" }, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) {
      expect(loaded.problems).toHaveLength(3);
      expect(loaded.problems.map((problem) => problem.split(":", 1)[0])).toEqual(["--log-level", "--usage-retention", "--usage-rollup-retention"]);
    }
  });

  it("list a retention longer than the rollups with other problems", () => {
    const loaded = loadServerConfig({ usageRetention: "200d", usageRollupRetention: "100d", logLevel: "loud" }, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.map((problem) => problem.split(":", 1)[0])).toEqual(["--log-level", "--usage-retention"]);
  });
});
