import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Registry } from "prom-client";
import type { Clock } from "../../clock.js";
import {
  ReplicationService,
  SubscribeResponseSchema,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../gen/tollgate/replication/v1/replication_pb.js";
import { hashKey } from "../../keys/key-format.js";
import { countRows, encodeBatch, type ReplicationBatch } from "../../keys/replica-messages.js";
import type { Logger } from "../../log/logger.js";
import type { ServerStore } from "../store/server-store.js";
import { DEFAULT_MAX_BATCH_ROWS, readChangeBatches } from "./change-batches.js";
import { ChangeWaiter } from "./change-waiter.js";
import { createReplicationMetrics, type ReplicationMetrics } from "./replication-metrics.js";

export interface ReplicationContext {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
  registry: Registry;
  /** Aborted when the server shuts down, to end open streams. */
  shutdown: AbortSignal;
  /** Maximum quiet time on a stream before the server sends a heartbeat. Default 5000 ms. */
  heartbeatIntervalMs?: number;
  /** Maximum rows of each kind per batch. Default 250. */
  maxBatchRows?: number;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

/** Maximum length of a sidecar id in the logs, because the id comes from the client and is not trusted. */
const MAX_SIDECAR_ID_LENGTH = 128;

/**
 * Registers ReplicationService.Subscribe, a server stream. It first sends a
 * snapshot (for after_version 0, or a version this store never reached) or
 * the changes after after_version, ending with a complete batch. Then it
 * sends each committed change as it happens, and a heartbeat with the
 * current version whenever the stream has been quiet for the heartbeat
 * interval.
 *
 * A stream ends when the client goes away or the server shuts down. It ends
 * with UNAUTHENTICATED when its token has been revoked, which the stream
 * notices at its next change or heartbeat. A store failure ends it with an
 * error, and the sidecar reconnects from its version.
 */
export function registerReplicationService(router: ConnectRouter, context: ReplicationContext): void {
  const metrics = createReplicationMetrics(context.registry);
  router.service(ReplicationService, {
    subscribe: (request, handlerContext) => {
      const stop = AbortSignal.any([handlerContext.signal, context.shutdown]);
      return streamChanges(request, tokenHashOf(handlerContext.requestHeader), stop, context, metrics);
    },
  });
}

async function* streamChanges(
  request: SubscribeRequest,
  tokenHash: string,
  stop: AbortSignal,
  context: ReplicationContext,
  metrics: ReplicationMetrics,
): AsyncGenerator<SubscribeResponse> {
  const { store, logger } = context;
  const maxRows = context.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS;
  const sidecarId = request.sidecarId.slice(0, MAX_SIDECAR_ID_LENGTH);

  // Listening starts before the first read, so a change that commits during the snapshot wakes the live loop.
  const waiter = new ChangeWaiter(store);
  metrics.connectedSidecars.inc();
  const progress = { sentVersion: 0 };
  let ending = "client went away";

  try {
    const requested = request.afterVersion;
    const serverVersion = await store.currentVersion();
    // A replica ahead of this store was filled from another store (a restored backup, say), so only a snapshot makes it match.
    // NOTE: a replica of another store whose version is not ahead goes undetected, because the stream carries no store identity.
    const snapshot = requested === 0n || requested > BigInt(serverVersion);
    metrics.subscriptions.labels(snapshot ? "snapshot" : "resume").inc();
    logger.info({ sidecarId, afterVersion: Number(requested), serverVersion, mode: snapshot ? "snapshot" : "resume" }, "replication stream opened");

    progress.sentVersion = snapshot ? 0 : Number(requested);
    yield* sendChanges(store, progress, { reset: snapshot, skipEmpty: false, maxRows }, metrics);
    yield* followChanges(waiter, tokenHash, stop, progress, context, metrics);
    if (context.shutdown.aborted) ending = "server shutting down";
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
      ending = "token revoked";
    } else {
      ending = "failed";
      logger.error({ err: error, sidecarId, sentVersion: progress.sentVersion }, "replication stream failed");
    }
    throw error;
  } finally {
    waiter.close();
    metrics.connectedSidecars.dec();
    logger.info({ sidecarId, sentVersion: progress.sentVersion, reason: ending }, "replication stream closed");
  }
}

/**
 * Sends the changes after `progress.sentVersion` as batches, advancing it
 * with each batch sent. `skipEmpty` drops batches without rows, for live
 * updates woken by a change that touched no replicated row (a token, an org).
 * The first run keeps them, because the sidecar needs its complete batch.
 */
async function* sendChanges(
  store: ServerStore,
  progress: { sentVersion: number },
  options: { reset: boolean; skipEmpty: boolean; maxRows: number },
  metrics: ReplicationMetrics,
): AsyncGenerator<SubscribeResponse> {
  for await (const batch of readChangeBatches(store, progress.sentVersion, options)) {
    if (options.skipEmpty && countRows(batch) === 0) continue;
    yield batchResponse(batch, metrics);
    progress.sentVersion = batch.version;
  }
}

/**
 * Sends each change as it commits and a heartbeat after every quiet
 * interval, until `stop` aborts. Throws UNAUTHENTICATED once the stream's
 * token has been revoked.
 */
async function* followChanges(
  waiter: ChangeWaiter,
  tokenHash: string,
  stop: AbortSignal,
  progress: { sentVersion: number },
  context: ReplicationContext,
  metrics: ReplicationMetrics,
): AsyncGenerator<SubscribeResponse> {
  const { store } = context;
  const heartbeatIntervalMs = context.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const maxRows = context.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS;

  while (!stop.aborted) {
    const reason = await waiter.wait(heartbeatIntervalMs, stop);
    if (reason === "abort") return;
    // The auth interceptor checked the token when the stream opened, and a revocation must also cut off a stream that is already open.
    if (!(await store.findToken(tokenHash))) throw new ConnectError("the token was revoked", Code.Unauthenticated);

    if (reason === "timeout") {
      yield heartbeatResponse(await store.currentVersion(), context.clock.wallMs(), metrics);
    } else {
      yield* sendChanges(store, progress, { reset: false, skipEmpty: true, maxRows }, metrics);
    }
  }
}

/** Returns the SHA-256 of the request's bearer token, the form in which the store keeps tokens. */
function tokenHashOf(header: Headers): string {
  const match = /^bearer\s+(\S+)\s*$/i.exec((header.get("authorization") ?? "").trim());
  return hashKey(match?.[1] ?? "");
}

function batchResponse(batch: ReplicationBatch, metrics: ReplicationMetrics): SubscribeResponse {
  metrics.batchesSent.inc();
  metrics.rowsSent.labels("api").inc(batch.apis.length);
  metrics.rowsSent.labels("plan").inc(batch.plans.length);
  metrics.rowsSent.labels("key").inc(batch.keys.length);
  return create(SubscribeResponseSchema, { event: { case: "batch", value: encodeBatch(batch) } });
}

function heartbeatResponse(version: number, serverTimeMs: number, metrics: ReplicationMetrics): SubscribeResponse {
  metrics.heartbeatsSent.inc();
  return create(SubscribeResponseSchema, { event: { case: "heartbeat", value: { version: BigInt(version), serverTimeMs: BigInt(serverTimeMs) } } });
}
