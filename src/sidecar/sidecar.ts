import { systemClock, type Clock } from "../clock.js";
import { storePath, type SidecarConfig } from "../config/sidecar-config.js";
import { formatListenAddress } from "../config/listen-address.js";
import { LocalKeySource } from "../keys/key-source.js";
import type { Logger } from "../log/logger.js";
import { createSidecarMetrics, type SidecarMetrics } from "../metrics/sidecar-metrics.js";
import { RateLimiter } from "../ratelimit/limiter.js";
import { createCheckHandler } from "./check-service.js";
import { startGrpcServer } from "./grpc-server.js";
import { Readiness } from "./health.js";
import { startHttpServer } from "./http-server.js";

export interface Sidecar {
  grpcPort: number;
  httpPort: number;
  metrics: SidecarMetrics;
  /** Stops taking Checks, finishes in-flight ones within the grace time, and releases the store. */
  close(): Promise<void>;
}

export interface SidecarDependencies {
  logger: Logger;
  clock?: Clock;
  /** How often idle rate-limit counters are dropped. Default 10 s. */
  sweepIntervalMs?: number;
}

/** Starts a sidecar that serves keys from the local store in `config.dataDir`. */
export async function startSidecar(config: SidecarConfig, dependencies: SidecarDependencies): Promise<Sidecar> {
  const { logger } = dependencies;
  const clock = dependencies.clock ?? systemClock;
  const limiter = new RateLimiter();
  const metrics = createSidecarMetrics({ rateLimitCounters: () => limiter.size });
  const readiness = new Readiness();

  const path = storePath(config.dataDir);
  const keys = new LocalKeySource(path, clock, {
    onReady: () => {
      logger.info({ store: path }, "key store loaded");
      metrics.storeReady.set(1);
      readiness.markStoreLoaded();
    },
  });
  if (!keys.ready) logger.warn({ store: path }, "key store not found; answering not_ready until it is created");

  const sweepTimer = setInterval(() => limiter.sweep(clock.monotonicMs()), dependencies.sweepIntervalMs ?? 10_000);
  sweepTimer.unref();

  const check = createCheckHandler({ keys, limiter, clock, logger, metrics, keyQueryParameter: config.keyQueryParameter });
  const grpcServer = await startGrpcServer(formatListenAddress(config.listen), check, readiness, logger);
  const httpServer = await startHttpServer(config.http.host, config.http.port, metrics.registry, readiness, logger);

  return {
    grpcPort: grpcServer.port,
    httpPort: httpServer.port,
    metrics,
    async close() {
      logger.info({ graceMs: config.shutdownGraceMs }, "sidecar shutting down");
      readiness.markDraining();
      clearInterval(sweepTimer);
      await grpcServer.close(config.shutdownGraceMs);
      await httpServer.close();
      keys.close();
      logger.info("sidecar stopped");
    },
  };
}
