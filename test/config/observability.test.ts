import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

/**
 * The alert rules and the Grafana dashboard may only query metrics that a
 * live sidecar and server expose, so renaming a metric cannot silently
 * blind them.
 */
let server: ServerHarness;
let sidecar: SidecarHarness;
const exposed = new Set<string>();

function readDeployFile(path: string): string {
  return readFileSync(fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url)), "utf8");
}

/** Metric names a /metrics page exposes, with the series names of each histogram. */
function metricNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
    type === "histogram" ? [name!, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!],
  );
}

function referencedMetrics(expression: string): string[] {
  return [...expression.matchAll(/\btollgate_[a-z0-9_]+/g)].map(([name]) => name);
}

beforeAll(async () => {
  server = await startServerHarness();
  const { secret } = await server.server.store.createToken(null, { name: "observability test", kind: "sidecar" });
  sidecar = await startSidecarHarness({ server: server.baseUrl, token: secret }, { createStore: false });
  for (const url of [`${server.baseUrl}/metrics`, `http://127.0.0.1:${sidecar.sidecar.httpPort}/metrics`]) {
    for (const name of metricNames(await (await fetch(url)).text())) exposed.add(name);
  }
});

afterAll(async () => {
  await sidecar.close();
  await server.close();
});

describe("alert rules", () => {
  const rules = (parse(readDeployFile("prometheus/tollgate-alerts.yaml")) as { groups: { rules: Record<string, unknown>[] }[] }).groups.flatMap((group) => group.rules);

  it.each(rules.map((rule) => [rule.alert as string, rule] as const))("%s queries exposed metrics", (_name, rule) => {
    const names = referencedMetrics(rule.expr as string);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(exposed).toContain(name);
  });

  it.each(rules.map((rule) => [rule.alert as string, rule] as const))("%s has severity and summary", (_name, rule) => {
    expect(["warning", "critical"]).toContain((rule.labels as Record<string, string>).severity);
    expect((rule.annotations as Record<string, string>).summary).toBeTruthy();
  });
});

describe("grafana dashboard", () => {
  const dashboard = JSON.parse(readDeployFile("grafana/tollgate-dashboard.json")) as { panels: { title: string; targets: { expr: string }[] }[] };

  it.each(dashboard.panels.map((panel) => [panel.title, panel] as const))("%s queries exposed metrics", (_title, panel) => {
    for (const target of panel.targets) {
      const names = referencedMetrics(target.expr);
      expect(names.length).toBeGreaterThan(0);
      for (const name of names) expect(exposed).toContain(name);
    }
  });
});
