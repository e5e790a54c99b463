import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The server's usage ingest metrics, registered once per server registry. */
export interface UsageIngestMetrics {
  eventsIngested: Counter;
  eventsDuplicate: Counter;
  streams: Gauge;
  batchSeconds: Histogram;
  eventsPruned: Counter;
}

/**
 * Buckets from 0.5 ms to 2.5 s. A batch's time is mostly the fsync of its
 * commit (synchronous=FULL), which takes from under a millisecond on a
 * local SSD to tens of milliseconds on network storage.
 */
const BATCH_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export function createUsageIngestMetrics(registry: Registry): UsageIngestMetrics {
  return {
    eventsIngested: new Counter({
      name: "tollgate_server_usage_events_ingested_total",
      help: "Usage events from sidecars stored for the first time.",
      registers: [registry],
    }),
    eventsDuplicate: new Counter({
      name: "tollgate_server_usage_events_duplicate_total",
      help: "Usage events received again after they were stored, such as resends after a reconnect; not counted twice.",
      registers: [registry],
    }),
    streams: new Gauge({
      name: "tollgate_server_usage_streams",
      help: "Usage streams open now, counted from when they open, before their Hello.",
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: "tollgate_server_usage_ingest_batch_seconds",
      help: "Time to check and commit one usage batch, before its Ack is sent.",
      buckets: BATCH_SECONDS_BUCKETS,
      registers: [registry],
    }),
    eventsPruned: new Counter({
      name: "tollgate_server_usage_events_pruned_total",
      help: "Raw usage events deleted after the raw retention period; their minute rollups stay.",
      registers: [registry],
    }),
  };
}
