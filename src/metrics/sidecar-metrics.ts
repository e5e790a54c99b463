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
    help: "Check requests decided, by decision (allow or deny) and reason.",
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
      help: "Time the sidecar takes to decide a Check request, from receipt to response.",
      labelNames: ["decision"] as const,
      // From 25 µs, because a decision from memory and SQLite takes tens of microseconds; up to 200 ms, Envoy's default timeout.
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
      help: "1 when the key store is loaded and Check decides from it, 0 before.",
      registers: [registry],
    }),
  };
}

/** Metrics of the replica a sidecar keeps of the server's keys; registered only when the sidecar replicates. */
export interface ReplicaMetrics {
  version: Gauge;
  serverVersion: Gauge;
  lastSyncTimestampSeconds: Gauge;
  connected: Gauge;
  syncErrors: Counter;
}

/** Values the replica metrics read at scrape time. */
export interface ReplicaGauges {
  /** Seconds since the last batch or heartbeat, or since the sidecar started when none has arrived. */
  stalenessSeconds(): number;
}

export function createReplicaMetrics(registry: Registry, gauges: ReplicaGauges): ReplicaMetrics {
  new Gauge({
    name: "tollgate_replica_staleness_seconds",
    help: "Seconds since the sidecar last heard from the server (a batch or a heartbeat), or since it started when it has not yet.",
    registers: [registry],
    collect() {
      this.set(gauges.stalenessSeconds());
    },
  });

  return {
    version: new Gauge({
      name: "tollgate_replica_version",
      help: "Version of the last change applied to the local replica.",
      registers: [registry],
    }),
    serverVersion: new Gauge({
      name: "tollgate_replica_server_version",
      help: "The server's latest version as last reported by a batch or heartbeat; the gap to tollgate_replica_version is the backlog.",
      registers: [registry],
    }),
    lastSyncTimestampSeconds: new Gauge({
      name: "tollgate_replica_last_sync_timestamp_seconds",
      help: "Unix time of the last batch or heartbeat received from the server; 0 before the first.",
      registers: [registry],
    }),
    connected: new Gauge({
      name: "tollgate_replica_connected",
      help: "1 while a replication stream to the server is open, else 0.",
      registers: [registry],
    }),
    syncErrors: new Counter({
      name: "tollgate_replica_sync_errors_total",
      help: "Replication streams that ended with an error: connection failures, rejected batches, failed writes.",
      registers: [registry],
    }),
  };
}
