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
  /** Time a new stream has to send its Hello; default DEFAULT_HELLO_TIMEOUT_MS. */
  helloTimeoutMs?: number;
  /** Maximum usage streams open at once; default DEFAULT_MAX_STREAMS. */
  maxStreams?: number;
}

/**
 * Maximum size of one stream message, above the adapter's 1 MiB for admin
 * calls: a batch of 500 events with every string at the sidecar's bounds
 * takes about 1.6 MB of ASCII, and sidecars cap a batch at 1 MiB of encoded
 * events. Connect allocates a message's full length as soon as its 5-byte
 * header arrives, so each open stream can hold up to this much memory
 * before its handler receives the message.
 * NOTE: the worst case is therefore about maxStreams x 4 MiB (4 GiB at the
 * default of 1024 streams), reached only by clients with valid tokens.
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** A sidecar sends its Hello right after opening the stream, so a stream without one after this long is stuck or hostile. */
export const DEFAULT_HELLO_TIMEOUT_MS = 10_000;

/** About one stream per sidecar pod; each stream can hold up to MAX_MESSAGE_BYTES while it reads a batch. */
export const DEFAULT_MAX_STREAMS = 1024;

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
  const maxStreams = context.maxStreams ?? DEFAULT_MAX_STREAMS;
  let openStreams = 0;

  async function* report(requests: AsyncIterable<ReportRequest>, handlerContext: HandlerContext): AsyncGenerator<ReportResponse> {
    if (openStreams >= maxStreams) {
      context.logger.warn({ maxStreams }, "usage stream rejected: too many open streams");
      throw new ConnectError(`too many usage streams open (maximum ${maxStreams}): retry later`, Code.ResourceExhausted);
    }
    // Counted from the moment the stream opens, so streams that never send a Hello show in the gauge too.
    openStreams += 1;
    context.metrics.streams.inc();
    try {
      yield* receiveBatches(requests, handlerContext, context);
    } finally {
      openStreams -= 1;
      context.metrics.streams.dec();
    }
  }

  // Options given here are merged over the adapter's, so authentication still applies.
  router.service(UsageService, { report }, { readMaxBytes: MAX_MESSAGE_BYTES });
}

async function* receiveBatches(requests: AsyncIterable<ReportRequest>, handlerContext: HandlerContext, context: UsageIngestContext): AsyncGenerator<ReportResponse> {
  const { logger } = context;
  const stop = AbortSignal.any([handlerContext.signal, context.shutdown]);
  const messages = requests[Symbol.asyncIterator]();

  const hello = await receiveHello(messages, stop, context);
  if (hello === undefined) return;
  const source = parseHello(hello);

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

/** Reads the stream's first message, ending the stream with DEADLINE_EXCEEDED when it does not arrive in time. */
async function receiveHello(messages: AsyncIterator<ReportRequest>, stop: AbortSignal, context: UsageIngestContext): Promise<ReportRequest | undefined> {
  const timeoutMs = context.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const hello = await nextMessage(messages, AbortSignal.any([stop, timeout]));
  if (hello === undefined && timeout.aborted && !stop.aborted) {
    context.logger.warn({ timeoutMs }, "usage stream closed: timed out waiting for the hello");
    throw new ConnectError(`no hello within ${timeoutMs} ms of opening the usage stream`, Code.DeadlineExceeded);
  }
  return hello;
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
