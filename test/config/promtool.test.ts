import { spawnSync } from "node:child_process";
import { closeSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoPath } from "../helpers/deploy-files.js";
import { startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { makeTempDir, startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

/**
 * Prometheus's own checks: `promtool check metrics` lints the /metrics pages
 * of a live server and a sidecar replicating from it, and `promtool check
 * rules` parses the alerting rules. CI installs promtool (Debian's prometheus
 * package, from .ci/run), so with CI=true a missing promtool fails the run;
 * elsewhere these tests are skipped without it.
 */
const promtoolVersion = spawnSync("promtool", ["--version"], { encoding: "utf8" });
const promtoolFound = promtoolVersion.status === 0;
const required = process.env.CI === "true";

function runPromtool(args: string[], stdinFile?: string): { status: number | null; output: string } {
  const stdin = stdinFile === undefined ? "ignore" : openSync(stdinFile, "r");
  try {
    const result = spawnSync("promtool", args, { encoding: "utf8", stdio: [stdin, "pipe", "pipe"], timeout: 30_000 });
    if (result.error) throw result.error;
    return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
  } finally {
    if (typeof stdin === "number") closeSync(stdin);
  }
}

describe.skipIf(!promtoolFound && !required)("promtool", () => {
  let server: ServerHarness;
  let sidecar: SidecarHarness;
  let workDir: string;
  const pages = new Map<string, string>();

  beforeAll(async () => {
    if (!promtoolFound) return;
    workDir = makeTempDir("promtool");
    server = await startServerHarness();
    const { secret } = await server.server.store.createToken(null, { name: "promtool test", kind: "sidecar" });
    sidecar = await startSidecarHarness({ server: server.baseUrl, token: secret }, { createStore: false });
    // One Check gives the labelled counters and histograms a series each, so they are linted with samples.
    await sidecar.check({ key: "demo_not_a_real_key" });

    for (const [name, url] of [
      ["server", `${server.baseUrl}/metrics`],
      ["sidecar", `http://127.0.0.1:${sidecar.sidecar.httpPort}/metrics`],
    ] as const) {
      const file = join(workDir, `${name}.prom`);
      writeFileSync(file, await (await fetch(url)).text());
      pages.set(name, file);
    }
  });

  afterAll(async () => {
    await sidecar?.close();
    await server?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("is installed", () => {
    expect(promtoolFound, "promtool is not on PATH; install it with: apt-get install -y --no-install-recommends prometheus").toBe(true);
  });

  it.each(["server", "sidecar"])("accepts the %s's metrics page", (name) => {
    const { status, output } = runPromtool(["check", "metrics"], pages.get(name));
    expect(output, `promtool check metrics on the ${name}'s /metrics`).toBe("");
    expect(status).toBe(0);
  });

  it("accepts the alerting rules", () => {
    const { status, output } = runPromtool(["check", "rules", "--lint=all", "--lint-fatal", repoPath("deploy/prometheus/tollgate-alerts.yaml")]);
    expect(status, output).toBe(0);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });
});
