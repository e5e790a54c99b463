import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { REASON_CODES } from "../sidecar/reasons.js";

/**
 * The sidecar's Prometheus metrics, on a registry of its own so that two
 * sidecars in one process (as in tests) never share counts.
 */
export interface SidecarMetrics {
  registry: Registry;
  decisions: Counter<"decision" | "reason">;
  checkDuration: Histogram<"decision">;
  rateLimitCounters: Gauge;
  storeReady: Gauge;
}

/** Values read at scrape time from the components that own them. */
export interface SidecarGauges {
  rateLimitCounters(): number;
}

export function createSidecarMetrics(gauges: SidecarGauges = { rateLimitCounters: () => 0 }): SidecarMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tollgate_" });

  const decisions = new Counter({
    name: "tollgate_check_decisions_total",
    help: "Check requests answered, by decision (allow or deny) and reason.",
    labelNames: ["decision", "reason"] as const,
    registers: [registry],
  });
  // Pre-create every series so dashboards and rate() see zeros, not gaps.
  for (const reason of REASON_CODES) decisions.labels(reason === "ok" ? "allow" : "deny", reason).inc(0);

  return {
    registry,
    decisions,
    checkDuration: new Histogram({
      name: "tollgate_check_duration_seconds",
      help: "Time from receiving a Check request to having its answer, in the sidecar.",
      labelNames: ["decision"] as const,
      // From 25 µs: an answer from memory and SQLite takes tens of microseconds, and Envoy's default timeout is 200 ms.
      buckets: [0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2],
      registers: [registry],
    }),
    rateLimitCounters: new Gauge({
      name: "tollgate_ratelimit_counters",
      help: "Sliding-window counters held in memory, one per key and window length.",
      registers: [registry],
      collect() {
        this.set(gauges.rateLimitCounters());
      },
    }),
    storeReady: new Gauge({
      name: "tollgate_store_ready",
      help: "1 when the key store is loaded and Check answers from it, 0 before.",
      registers: [registry],
    }),
  };
}
