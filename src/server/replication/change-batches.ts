import type { ReplicationBatch } from "../../keys/replica-messages.js";
import type { ServerStore } from "../store/server-store.js";

/**
 * Maximum rows of each kind (APIs, plans, keys) in one batch. Reading and
 * encoding a key took about 65 µs on the server, and parsing and applying it
 * about 110 µs on a sidecar (1000-key batches, Node 20, one development VM),
 * all on the event loop. At 250 keys (about 50 KB) a batch holds up the
 * server's admin calls for about 16 ms and the sidecar's Checks for about 28 ms.
 */
export const DEFAULT_MAX_BATCH_ROWS = 250;

export interface ChangeBatchOptions {
  /** Start the first batch with reset, so the run is a whole snapshot. */
  reset: boolean;
  /** Maximum rows of each kind per batch. Default DEFAULT_MAX_BATCH_ROWS. */
  maxRows?: number;
}

/**
 * Reads everything that changed after `afterVersion` as a run of batches.
 * Each batch is a consistent prefix: it carries every row changed after the
 * previous batch whose version is at most this batch's version, and none
 * above, so a replica may stop after any batch and resume from its version.
 *
 * Always yields at least one batch, even when nothing changed, and the last
 * batch of the run has `complete` set. The run reads the store's state as it
 * goes, so rows changed meanwhile arrive in later batches with their new
 * versions.
 */
export async function* readChangeBatches(
  store: Pick<ServerStore, "changesAfter">,
  afterVersion: number,
  options: ChangeBatchOptions,
): AsyncGenerator<ReplicationBatch> {
  const maxRows = options.maxRows ?? DEFAULT_MAX_BATCH_ROWS;
  let version = afterVersion;
  let first = true;

  for (;;) {
    const changes = await store.changesAfter(version, maxRows);
    // A kind that filled its quota may have more rows beyond the cut, so only a read where every kind came up short reaches the end.
    const cut = [changes.apis, changes.plans, changes.keys].some((rows) => rows.length >= maxRows);
    yield { ...changes, reset: first && options.reset, complete: !cut };
    if (!cut) return;
    first = false;
    version = changes.version;
  }
}
