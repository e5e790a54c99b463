import { Counter, Gauge, type Registry } from "prom-client";

/** The server's replication metrics, registered once per server registry. */
export interface ReplicationMetrics {
  connectedSidecars: Gauge;
  subscriptions: Counter<"mode">;
  batchesSent: Counter;
  rowsSent: Counter<"kind">;
  heartbeatsSent: Counter;
}

export type SubscriptionMode = "snapshot" | "resume";
export type RowKind = "api" | "plan" | "key";

export function createReplicationMetrics(registry: Registry): ReplicationMetrics {
  const subscriptions = new Counter({
    name: "tollgate_server_replication_subscriptions_total",
    help: "Replication streams opened, by mode: snapshot (from an empty replica) or resume (changes after the replica's version).",
    labelNames: ["mode"] as const,
    registers: [registry],
  });
  const rowsSent = new Counter({
    name: "tollgate_server_replication_rows_sent_total",
    help: "APIs, plans and keys sent to sidecars, by kind.",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  // Pre-create every series so dashboards and rate() see zeros, not gaps.
  for (const mode of ["snapshot", "resume"] satisfies SubscriptionMode[]) subscriptions.labels(mode).inc(0);
  for (const kind of ["api", "plan", "key"] satisfies RowKind[]) rowsSent.labels(kind).inc(0);

  return {
    connectedSidecars: new Gauge({
      name: "tollgate_server_replication_connected_sidecars",
      help: "Replication streams open now, one per connected sidecar.",
      registers: [registry],
    }),
    subscriptions,
    batchesSent: new Counter({
      name: "tollgate_server_replication_batches_sent_total",
      help: "Replication batches sent to sidecars, snapshots and changes alike.",
      registers: [registry],
    }),
    rowsSent,
    heartbeatsSent: new Counter({
      name: "tollgate_server_replication_heartbeats_sent_total",
      help: "Heartbeats sent on idle replication streams.",
      registers: [registry],
    }),
  };
}
