import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerProcessMetrics } from "./process-metrics.js";
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
  registerProcessMetrics(registry, "tollgate_");

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

/** Why usage events were dropped: the spool was at its bound, or writing to it failed until the memory buffer filled. */
export type UsageDropCause = "spool_full" | "write_failed";
export const USAGE_DROP_CAUSES: readonly UsageDropCause[] = ["spool_full", "write_failed"];

/** Metrics of usage metering; registered only when the sidecar sends usage to a server. */
export interface UsageMetrics {
  eventsDropped: Counter<"cause">;
  eventsSent: Counter;
  eventsAcknowledged: Counter;
  streamConnected: Gauge;
  streamErrors: Counter;
  flushDuration: Histogram;
}

/** Values the usage metrics read at scrape time. */
export interface UsageGauges {
  spoolEvents(): number;
  bufferedEvents(): number;
}

export function createUsageMetrics(registry: Registry, gauges: UsageGauges): UsageMetrics {
  new Gauge({
    name: "tollgate_usage_spool_events",
    help: "Usage events in the spool that the server has not acknowledged yet.",
    registers: [registry],
    collect() {
      this.set(gauges.spoolEvents());
    },
  });
  new Gauge({
    name: "tollgate_usage_buffered_events",
    help: "Usage events held in memory and not yet written to the spool.",
    registers: [registry],
    collect() {
      this.set(gauges.bufferedEvents());
    },
  });

  const eventsDropped = new Counter({
    name: "tollgate_usage_events_dropped_total",
    help: "Usage events dropped, by cause: spool_full (the spool was at --usage-spool-max-events) or write_failed (spool writes failed until the memory buffer was full).",
    labelNames: ["cause"] as const,
    registers: [registry],
  });
  for (const cause of USAGE_DROP_CAUSES) eventsDropped.labels(cause).inc(0);

  return {
    eventsDropped,
    eventsSent: new Counter({
      name: "tollgate_usage_events_sent_total",
      help: "Usage events sent to the server, resent ones counted again.",
      registers: [registry],
    }),
    eventsAcknowledged: new Counter({
      name: "tollgate_usage_events_acknowledged_total",
      help: "Usage events the server acknowledged, which the sidecar then deleted from the spool.",
      registers: [registry],
    }),
    streamConnected: new Gauge({
      name: "tollgate_usage_stream_connected",
      help: "1 while a usage stream to the server is open, else 0.",
      registers: [registry],
    }),
    streamErrors: new Counter({
      name: "tollgate_usage_stream_errors_total",
      help: "Usage streams that ended with an error or were ended by the server.",
      registers: [registry],
    }),
    flushDuration: new Histogram({
      name: "tollgate_usage_flush_duration_seconds",
      help: "Time to write one flush of buffered usage events to the spool, in one transaction.",
      // From 100 µs, because a small batch commits in a fraction of a millisecond without an fsync. Up to 1 s for a slow or failing disk.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}
