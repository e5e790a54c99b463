import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { ReportResponseSchema, UsageService, type EventBatch, type ReportRequest, type ReportResponse } from "../gen/tollgate/usage/v1/usage_pb.js";
import type { Logger } from "../log/logger.js";
import { TOKEN_HASH } from "../server/auth.js";
import type { ServerStore } from "../server/store/server-store.js";
import type { UsageIngestMetrics } from "./ingest-metrics.js";
import { InvalidUsageEventError, type UsageSource, type UsageStore } from "./usage-store.js";

export interface UsageIngestContext {
  usage: UsageStore;
  /** The store of record, to notice that a stream's token was revoked. */
  store: ServerStore;
  logger: Logger;
  metrics: UsageIngestMetrics;
  /** Aborted when the server shuts down, to end open streams. */
  shutdown: AbortSignal;
}

/**
 * Maximum size of one stream message, above the adapter's 1 MiB for admin
 * calls: a batch of 500 events with every string at the sidecar's bounds
 * takes about 1.6 MB of ASCII.
 */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** Sidecar ids and spool ids: what the sidecar's `--sidecar-id` accepts, so they are safe in logs and queries. */
const SOURCE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * Registers UsageService.Report, a bidi stream. The first message must be a
 * Hello naming the sidecar and its spool. The stream commits each batch
 * after it in one transaction, then sends an Ack with the batch's highest
 * sequence, so the sidecar may delete those events from its spool.
 *
 * An invalid message ends the stream with INVALID_ARGUMENT naming the field
 * and the event's sequence, storing nothing of that batch. A store failure
 * ends it with UNAVAILABLE, and the sidecar resends what was not
 * acknowledged. A revoked token ends it with UNAUTHENTICATED at its next
 * batch. On shutdown the stream finishes the batch it is committing and then
 * ends with OK; batches it has not read yet get no Ack and are resent.
 */
export function registerUsageIngestService(router: ConnectRouter, context: UsageIngestContext): void {
  // Options given here are merged over the adapter's, so authentication still applies.
  router.service(
    UsageService,
    { report: (requests, handlerContext) => receiveBatches(requests, handlerContext, context) },
    { readMaxBytes: MAX_MESSAGE_BYTES },
  );
}

async function* receiveBatches(requests: AsyncIterable<ReportRequest>, handlerContext: HandlerContext, context: UsageIngestContext): AsyncGenerator<ReportResponse> {
  const { logger, metrics } = context;
  const stop = AbortSignal.any([handlerContext.signal, context.shutdown]);
  const messages = requests[Symbol.asyncIterator]();

  const hello = await nextMessage(messages, stop);
  if (hello === undefined) return;
  const source = parseHello(hello);

  metrics.streams.inc();
  logger.info({ sidecarId: source.sidecarId, spoolId: source.spoolId }, "usage stream opened");
  const totals = { batches: 0, inserted: 0, duplicates: 0, highestSequence: 0 };
  let ending = "client closed the stream";

  try {
    for (;;) {
      const message = await nextMessage(messages, stop);
      if (message === undefined) break;
      if (message.message.case !== "batch") throw new ConnectError("message: only batches may follow the hello", Code.InvalidArgument);
      await checkTokenNotRevoked(handlerContext, context.store);

      const highestSequence = await commitBatch(source, message.message.value, totals, context);
      yield create(ReportResponseSchema, { message: { case: "ack", value: { sequence: BigInt(highestSequence) } } });
    }
    if (context.shutdown.aborted) ending = "server shutting down";
    else if (handlerContext.signal.aborted) ending = "client went away";
  } catch (error) {
    ending = endingOf(error);
    if (ending === "failed") logger.error({ err: error, sidecarId: source.sidecarId, spoolId: source.spoolId }, "usage stream failed");
    throw error;
  } finally {
    metrics.streams.dec();
    logger.info({ sidecarId: source.sidecarId, spoolId: source.spoolId, ...totals, reason: ending }, "usage stream closed");
  }
}

/** Commits one batch and adds it to the stream's totals; returns the sequence to acknowledge. */
async function commitBatch(source: UsageSource, batch: EventBatch, totals: { batches: number; inserted: number; duplicates: number; highestSequence: number }, context: UsageIngestContext): Promise<number> {
  const { metrics, logger } = context;
  const startedMs = performance.now();
  let result;
  try {
    result = await context.usage.ingest(source, batch.events);
  } catch (error) {
    if (error instanceof InvalidUsageEventError) {
      logger.warn({ sidecarId: source.sidecarId, spoolId: source.spoolId, field: error.field, sequence: error.sequence?.toString(), events: batch.events.length }, "usage batch rejected");
      throw new ConnectError(error.message, Code.InvalidArgument);
    }
    throw new ConnectError("failed to store the usage batch: resend it", Code.Unavailable, undefined, undefined, error);
  }
  metrics.batchSeconds.observe((performance.now() - startedMs) / 1000);

  metrics.eventsIngested.inc(result.inserted);
  metrics.eventsDuplicate.inc(result.duplicates);
  totals.batches += 1;
  totals.inserted += result.inserted;
  totals.duplicates += result.duplicates;
  totals.highestSequence = Math.max(totals.highestSequence, result.highestSequence);
  return result.highestSequence;
}

function parseHello(request: ReportRequest): UsageSource {
  if (request.message.case !== "hello") throw new ConnectError("message: the first message of a usage stream must be a hello", Code.InvalidArgument);
  const { sidecarId, spoolId } = request.message.value;
  for (const [field, value] of [["hello.sidecar_id", sidecarId], ["hello.spool_id", spoolId]] as const) {
    if (!SOURCE_ID_PATTERN.test(value)) {
      throw new ConnectError(`${field}: must be 1 to 128 letters, digits, "_", ".", ":" or "-"`, Code.InvalidArgument);
    }
  }
  return { sidecarId, spoolId };
}

/**
 * Returns the stream's next message, or undefined when the client has ended
 * its side or `stop` aborts first. A message that arrives after the abort is
 * left unread, so it gets no Ack and the sidecar resends it.
 */
async function nextMessage(messages: AsyncIterator<ReportRequest>, stop: AbortSignal): Promise<ReportRequest | undefined> {
  if (stop.aborted) return undefined;
  const next = messages.next();
  // The read is abandoned on abort and fails once the stream is torn down; nothing waits for it then.
  next.catch(() => undefined);

  let onAbort: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    stop.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const result = await Promise.race([next, aborted]);
    if (result === undefined || result.done) return undefined;
    return result.value;
  } finally {
    stop.removeEventListener("abort", onAbort!);
  }
}

/** The auth interceptor checked the token when the stream opened, and a revocation must also cut off a stream that is already open. */
async function checkTokenNotRevoked(handlerContext: HandlerContext, store: ServerStore): Promise<void> {
  const tokenHash = handlerContext.values.get(TOKEN_HASH);
  if (!(await store.findToken(tokenHash))) throw new ConnectError("the token was revoked", Code.Unauthenticated);
}

function endingOf(error: unknown): string {
  if (!(error instanceof ConnectError)) return "failed";
  if (error.code === Code.InvalidArgument) return "invalid message";
  if (error.code === Code.Unauthenticated) return "token revoked";
  if (error.code === Code.Canceled || error.code === Code.Aborted || error.code === Code.DeadlineExceeded) return "client went away";
  return "failed";
}
