import { collectDefaultMetrics, type Registry } from "prom-client";

/**
 * prom-client's default gauges that end in `_total`, which Prometheus
 * reserves for counters (`promtool check metrics` rejects them). The same
 * counts stay available, per type, as `nodejs_active_handles`,
 * `nodejs_active_requests` and `nodejs_active_resources`.
 */
const GAUGES_NAMED_LIKE_COUNTERS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/** Registers the process and Node.js runtime metrics under `prefix`, minus the misnamed gauges. */
export function registerProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(`${prefix}${name}`);
}
