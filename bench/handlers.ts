import { create } from "@bufbuild/protobuf";
import { systemClock } from "../src/clock.js";
import { storePath } from "../src/config/sidecar-config.js";
import { CheckResponseSchema } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { LocalKeySource } from "../src/keys/key-source.js";
import { createLogger } from "../src/log/logger.js";
import { createSidecarMetrics } from "../src/metrics/sidecar-metrics.js";
import { RateLimiter } from "../src/ratelimit/limiter.js";
import { createCheckHandler, type CheckHandler } from "../src/sidecar/check-service.js";
import { Readiness } from "../src/sidecar/health.js";

export const HANDLER_KINDS = ["real", "floor"] as const;
export type HandlerKind = (typeof HANDLER_KINDS)[number];

/** A Check handler with the readiness the gRPC health service reports for it. */
export interface BenchHandler {
  check: CheckHandler;
  readiness: Readiness;
  close(): void;
}

/**
 * Builds the sidecar's Check handler over the store in `dataDir`, wired as
 * `startSidecar` wires it. The idle-counter sweep is left out because it
 * runs every 10 s in the sidecar, so it would land in some measurements and
 * miss others, which only adds noise.
 */
export function createRealHandler(dataDir: string): BenchHandler {
  const path = storePath(dataDir);
  const keys = new LocalKeySource(path, systemClock);
  if (!keys.ready) throw new Error(`key store not found at ${path}: seed it before starting the server`);

  const readiness = new Readiness();
  readiness.markStoreLoaded();
  const check = createCheckHandler({
    keys,
    limiter: new RateLimiter(),
    clock: systemClock,
    logger: createLogger("silent"),
    metrics: createSidecarMetrics(),
  });
  return { check, readiness, close: () => keys.close() };
}

/**
 * Builds the floor handler: it returns one constant allow response, so a
 * measurement with it shows what the gRPC stack alone costs.
 */
export function createFloorHandler(): BenchHandler {
  const response = create(CheckResponseSchema, {
    status: { code: 0 },
    httpResponse: { case: "okResponse", value: {} },
  });
  const readiness = new Readiness();
  readiness.markStoreLoaded();
  return { check: () => response, readiness, close: () => {} };
}
