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
    [{ usageRetention: "7" }, /--usage-retention: "7" must be a duration such as 7d, 12h or 90m/],
    [{ usageRetention: "0d" }, /--usage-retention: "0d" must be a duration/],
    [{ usageRetention: "1w" }, /--usage-retention: "1w" must be a duration/],
    [{ usageRollupRetention: "90d" }, /--usage-rollup-retention: "90d" must be a duration of at least 91d \(13 weeks\)/],
    [{ usageRollupRetention: "year" }, /--usage-rollup-retention: "year" must be a duration of at least 91d/],
  ])("reject %j", (flags, problem) => {
    const loaded = loadServerConfig(flags, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.join("\n")).toMatch(problem);
  });

  it("list every problem at once", () => {
    const loaded = loadServerConfig({ usageRetention: "soon", usageRollupRetention: "1d", logLevel: "loud" }, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) {
      expect(loaded.problems).toHaveLength(3);
      expect(loaded.problems.map((problem) => problem.split(":", 1)[0])).toEqual(["--log-level", "--usage-retention", "--usage-rollup-retention"]);
    }
  });
});
