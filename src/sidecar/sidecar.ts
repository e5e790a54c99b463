import { systemClock, type Clock } from "../clock.js";
import { storePath, type SidecarConfig } from "../config/sidecar-config.js";
import { formatListenAddress } from "../config/listen-address.js";
import { LocalKeySource } from "../keys/key-source.js";
import { KeyStore } from "../keys/key-store.js";
import type { Logger } from "../log/logger.js";
import { createReplicaMetrics, createSidecarMetrics, type SidecarMetrics } from "../metrics/sidecar-metrics.js";
import { RateLimiter } from "../ratelimit/limiter.js";
import { ApiIdCache, startUsageMetering, type UsageMetering } from "../usage/usage-metering.js";
import { createCheckHandler } from "./check-service.js";
import { startGrpcServer } from "./grpc-server.js";
import { Readiness } from "./health.js";
import { startHttpServer } from "./http-server.js";
import { startReplicationClient, type ReplicationClient } from "./replication-client.js";

export interface Sidecar {
  grpcPort: number;
  httpPort: number;
  metrics: SidecarMetrics;
  /**
   * Stops taking Checks, finishes in-flight ones within the grace time,
   * writes and sends the usage events left (within the drain timeout), and
   * releases the stores.
   */
  close(): Promise<void>;
}

export interface SidecarDependencies {
  logger: Logger;
  clock?: Clock;
  /** How often idle rate-limit counters are dropped. Default 10 s. */
  sweepIntervalMs?: number;
}

/**
 * Starts a sidecar that serves keys from the store in `config.dataDir`: a
 * local store written by the CLI, or, with `config.replication`, a replica
 * that the sidecar keeps in step with the server.
 */
export async function startSidecar(config: SidecarConfig, dependencies: SidecarDependencies): Promise<Sidecar> {
  const { logger } = dependencies;
  const clock = dependencies.clock ?? systemClock;
  const limiter = new RateLimiter();
  const metrics = createSidecarMetrics({ rateLimitCounters: () => limiter.size });
  const readiness = new Readiness();

  const path = storePath(config.dataDir);
  // The replica is marked before the key source first opens the file, so the source cannot serve it before its first complete snapshot.
  const replica = config.replication && openReplica(path, clock);
  const keys = new LocalKeySource(path, clock, {
    onReady: () => {
      logger.info({ store: path }, "key store loaded");
      metrics.storeReady.set(1);
      readiness.markStoreLoaded();
    },
    onLost: () => {
      logger.warn({ store: path }, "key store replaced or unreadable; every Check returns not_ready until it opens again");
      metrics.storeReady.set(0);
      readiness.markStoreLoaded(false);
    },
    onError: (error) => logger.error({ err: error, store: path }, "key store cannot be opened"),
  });
  if (replica) {
    if (!keys.ready) logger.warn({ store: path }, "replica not synced yet; every Check returns not_ready until the first complete snapshot");
  } else if (!keys.ready) {
    logger.warn({ store: path }, "key store not found; every Check returns not_ready until it is created");
  }
  const apiIds = replica && new ApiIdCache(replica, logger);
  const replication = replica && startReplication(config, replica, { logger, clock, metrics, keys, afterCommit: () => apiIds?.clear() });

  const sweepTimer = setInterval(() => limiter.sweep(clock.monotonicMs()), dependencies.sweepIntervalMs ?? 10_000);
  sweepTimer.unref();
  const releaseAll = async () => {
    clearInterval(sweepTimer);
    await replication?.close();
    keys.close();
    replica?.close();
  };

  let usage: UsageMetering | undefined;
  try {
    if (config.usage && config.replication && apiIds) {
      usage = startUsageMetering({ dataDir: config.dataDir, server: config.replication, usage: config.usage }, { logger, clock, registry: metrics.registry, apiIds });
    }
  } catch (error) {
    await releaseAll();
    throw error;
  }

  const check = createCheckHandler({
    keys,
    limiter,
    clock,
    logger,
    metrics,
    keyQueryParameter: config.keyQueryParameter,
    trustedProxyHops: config.trustedProxyHops,
    onOutcome: usage?.recordOutcome,
  });
  // A sidecar that cannot bind both ports releases everything, so the process exits instead of serving half-started.
  let grpcServer: Awaited<ReturnType<typeof startGrpcServer>> | undefined;
  let httpServer: Awaited<ReturnType<typeof startHttpServer>>;
  try {
    grpcServer = await startGrpcServer(formatListenAddress(config.listen), check, readiness, logger);
    httpServer = await startHttpServer(config.http.host, config.http.port, metrics.registry, readiness, logger);
  } catch (error) {
    await grpcServer?.close(0);
    // Nothing was decided yet, so there is nothing to drain; whatever an earlier run left stays in the spool.
    await usage?.close(0);
    await releaseAll();
    throw error;
  }
  const started = grpcServer;

  return {
    grpcPort: started.port,
    httpPort: httpServer.port,
    metrics,
    async close() {
      logger.info({ graceMs: config.shutdownGraceMs }, "sidecar shutting down");
      readiness.markDraining();
      await started.close(config.shutdownGraceMs);
      logger.info("checks stopped");
      await usage?.close(config.usage?.drainTimeoutMs ?? 0);
      await httpServer.close();
      await releaseAll();
      logger.info("sidecar stopped");
    },
  };
}

function openReplica(path: string, clock: Clock): KeyStore {
  const replica = KeyStore.open(path, clock);
  replica.markReplica();
  // In WAL mode, NORMAL skips the fsync per commit. A power loss can then lose the last commits but not consistency, and the replica resumes from the version it kept.
  replica.db.pragma("synchronous = NORMAL");
  return replica;
}

function startReplication(
  config: SidecarConfig,
  replica: KeyStore,
  context: { logger: Logger; clock: Clock; metrics: SidecarMetrics; keys: LocalKeySource; afterCommit: () => void },
): ReplicationClient {
  const { serverUrl, token, sidecarId } = config.replication!;
  const startedMonotonicMs = context.clock.monotonicMs();
  let client: ReplicationClient | undefined;
  const metrics = createReplicaMetrics(context.metrics.registry, {
    stalenessSeconds: () => (context.clock.monotonicMs() - (client?.lastContactMonotonicMs ?? startedMonotonicMs)) / 1000,
  });
  context.logger.info({ server: serverUrl, sidecarId, replicaVersion: replica.currentVersion(), synced: replica.isServing() }, "replicating keys from the server");
  // Every commit drops the cached grants, so the next Check reads the change instead of waiting for the key source's next poll of the file.
  const onCommitted = ({ complete }: { complete: boolean }) => {
    context.keys.dropCachedGrants();
    context.afterCommit();
    if (complete) context.keys.refresh();
  };
  client = startReplicationClient({ serverUrl, token, sidecarId, replica, clock: context.clock, logger: context.logger, metrics, onCommitted });
  return client;
}
