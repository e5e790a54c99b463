import { describe, expect, it } from "vitest";
import { loadSidecarConfig, type SidecarFlags } from "../../../src/config/sidecar-config.js";

const REPLICATING: SidecarFlags = { server: "http://127.0.0.1:8080", token: "tgsidecar_secret-value-123" };

function loadOk(flags: SidecarFlags, env: Record<string, string> = {}) {
  const loaded = loadSidecarConfig(flags, env);
  if (!loaded.ok) throw new Error(`config rejected: ${loaded.problems.join("; ")}`);
  return loaded.config;
}

describe("sidecar usage settings", () => {
  it("default on with --server", () => {
    const config = loadOk(REPLICATING);

    expect(config.usage).toEqual({ spoolMaxEvents: 1_000_000, spoolFullPolicy: "drop-oldest", flushIntervalMs: 10, drainTimeoutMs: 10_000 });
    expect(config.trustedProxyHops).toBe(0);
  });

  it("off without --server", () => {
    expect(loadOk({}).usage).toBeUndefined();
  });

  it("off with --no-usage or TOLLGATE_USAGE=off", () => {
    expect(loadOk({ ...REPLICATING, usage: false }).usage).toBeUndefined();
    expect(loadOk(REPLICATING, { TOLLGATE_USAGE: "off" }).usage).toBeUndefined();
    // commander passes usage: true when --no-usage is absent, which leaves the variable in charge.
    expect(loadOk({ ...REPLICATING, usage: true }, { TOLLGATE_USAGE: "off" }).usage).toBeUndefined();
    expect(loadOk({ ...REPLICATING, usage: true }, { TOLLGATE_USAGE: "on" }).usage).toBeDefined();
  });

  it("read from flags", () => {
    const config = loadOk({
      ...REPLICATING,
      trustedProxyHops: "2",
      usageSpoolMaxEvents: "5000",
      usageSpoolFull: "drop-newest",
      usageFlushInterval: "1s",
      usageDrainTimeout: "500ms",
    });

    expect(config.trustedProxyHops).toBe(2);
    expect(config.usage).toEqual({ spoolMaxEvents: 5_000, spoolFullPolicy: "drop-newest", flushIntervalMs: 1_000, drainTimeoutMs: 500 });
  });

  it("read from TOLLGATE_* variables, flags first", () => {
    const env = {
      TOLLGATE_TRUSTED_PROXY_HOPS: "1",
      TOLLGATE_USAGE_SPOOL_MAX_EVENTS: "10",
      TOLLGATE_USAGE_SPOOL_FULL: "drop-newest",
      TOLLGATE_USAGE_FLUSH_INTERVAL: "50ms",
      TOLLGATE_USAGE_DRAIN_TIMEOUT: "0",
    };

    const fromEnv = loadOk(REPLICATING, env);
    const flagsWin = loadOk({ ...REPLICATING, usageFlushInterval: "20ms", trustedProxyHops: "3" }, env);

    expect(fromEnv.trustedProxyHops).toBe(1);
    expect(fromEnv.usage).toEqual({ spoolMaxEvents: 10, spoolFullPolicy: "drop-newest", flushIntervalMs: 50, drainTimeoutMs: 0 });
    expect(flagsWin.usage?.flushIntervalMs).toBe(20);
    expect(flagsWin.trustedProxyHops).toBe(3);
  });

  it.each(["0", "0s", "0ms", "0m", " 0s "])("drain timeout %j means no wait", (text) => {
    expect(loadOk({ ...REPLICATING, usageDrainTimeout: text }).usage?.drainTimeoutMs).toBe(0);
  });

  it("bad values listed together", () => {
    const loaded = loadSidecarConfig(
      {
        ...REPLICATING,
        trustedProxyHops: "-1",
        usageSpoolMaxEvents: "0",
        usageSpoolFull: "drop-everything",
        usageFlushInterval: "10",
        usageDrainTimeout: "forever",
      },
      { TOLLGATE_USAGE: "maybe" },
    );

    expect(loaded.ok).toBe(false);
    const problems = loaded.ok ? [] : loaded.problems;
    expect(problems).toContainEqual('--trusted-proxy-hops: "-1" must be a whole number from 0 to 32');
    expect(problems).toContainEqual('--usage-spool-max-events: "0" must be a whole number from 1 to 100000000');
    expect(problems).toContainEqual('--usage-spool-full: "drop-everything" must be one of drop-oldest, drop-newest');
    expect(problems).toContainEqual('--usage-flush-interval: "10" must be a duration from 1ms to 10s, such as 10ms or 1s');
    expect(problems).toContainEqual('--usage-drain-timeout: "forever" must be 0 or a duration up to 10m, such as 500ms or 10s');
    expect(problems).toContainEqual('TOLLGATE_USAGE: "maybe" must be on or off');
    expect(problems).toHaveLength(6);
  });

  it.each([
    [{ trustedProxyHops: "33" }, /--trusted-proxy-hops: "33"/],
    [{ trustedProxyHops: "1.5" }, /--trusted-proxy-hops: "1.5"/],
    [{ usageSpoolMaxEvents: "100000001" }, /--usage-spool-max-events: "100000001"/],
    [{ usageSpoolMaxEvents: "1e6" }, /--usage-spool-max-events: "1e6"/],
    [{ usageFlushInterval: "0ms" }, /--usage-flush-interval: "0ms"/],
    [{ usageFlushInterval: "11s" }, /--usage-flush-interval: "11s"/],
    [{ usageDrainTimeout: "11m" }, /--usage-drain-timeout: "11m"/],
    [{ usageDrainTimeout: "-5s" }, /--usage-drain-timeout: "-5s"/],
    [{ usageDrainTimeout: "0x" }, /--usage-drain-timeout: "0x"/],
    [{ usageDrainTimeout: "0.5s" }, /--usage-drain-timeout: "0.5s"/],
  ])("reject %j", (flags, problem) => {
    const loaded = loadSidecarConfig({ ...REPLICATING, ...flags }, {});

    expect(loaded.ok).toBe(false);
    expect(loaded.ok ? "" : loaded.problems.join("\n")).toMatch(problem);
  });

  it("bad usage values reported without --server", () => {
    const loaded = loadSidecarConfig({ usageSpoolFull: "sometimes" }, {});

    expect(loaded.ok).toBe(false);
    expect(loaded.ok ? "" : loaded.problems.join("\n")).toMatch(/--usage-spool-full: "sometimes"/);
  });
});
