import type { KeyStore } from "../keys/key-store.js";
import type { ReplicationBatch } from "../keys/replica-messages.js";

/**
 * `committed`: the batch is visible to other connections now (false while a
 * snapshot is staged). `complete`: the batch finished a sync, so the replica
 * is a consistent copy of the server at its version.
 */
export type ApplyResult = { ok: true; committed: boolean; complete: boolean } | { ok: false; problem: string };

/**
 * Applies replication batches to the sidecar's replica, one transaction per
 * batch, and checks that they follow the stream's rules.
 *
 * A snapshot that arrives while the replica is already serving (the server's
 * store was replaced) is staged in one open transaction and committed only
 * with its complete batch. Check reads through another connection, so it
 * keeps seeing the old replica instead of a half-filled one. A snapshot into
 * a replica that has never been complete is committed batch by batch,
 * because nothing is served from it yet.
 */
export class ReplicaWriter {
  private staging = false;
  /** Set while a stream that subscribed after version 0 has not yet sent its first (reset) batch. */
  private expectReset = false;
  private appliedVersion = 0;

  constructor(private readonly replica: KeyStore) {}

  /**
   * The version to subscribe after: the replica's version once it has been
   * complete, else 0 for a fresh snapshot. A replica that never completed
   * may hold a half snapshot or a store that was not a replica before.
   */
  resumeVersion(): number {
    return this.replica.isServing() ? this.replica.currentVersion() : 0;
  }

  /** Starts a new stream that subscribed after `afterVersion`. Call `abandon` when the previous one ended. */
  beginStream(afterVersion: number): void {
    this.abandon();
    this.expectReset = afterVersion === 0;
    this.appliedVersion = afterVersion;
  }

  /** Applies one batch, or returns why it was rejected without applying it. A failing write throws, leaving the batch unapplied. */
  apply(batch: ReplicationBatch): ApplyResult {
    if (this.expectReset && !batch.reset) return { ok: false, problem: "the first batch of a snapshot did not have reset set" };
    if (!batch.reset && batch.version < this.appliedVersion) {
      return { ok: false, problem: `batch version ${batch.version} is older than the version ${this.appliedVersion} already applied` };
    }

    if (batch.reset && this.replica.isServing() && !this.staging) {
      this.replica.db.exec("BEGIN IMMEDIATE");
      this.staging = true;
    }
    // Inside the staging transaction, better-sqlite3 runs this batch's transaction as a savepoint.
    this.replica.applyReplication(batch);
    this.expectReset = false;
    this.appliedVersion = batch.version;

    if (this.staging && batch.complete) {
      this.replica.db.exec("COMMIT");
      this.staging = false;
    }
    return { ok: true, committed: !this.staging, complete: batch.complete };
  }

  /** Rolls back a staged snapshot that the stream did not finish, leaving the replica as it was. */
  abandon(): void {
    if (!this.staging) return;
    this.staging = false;
    if (this.replica.db.inTransaction) this.replica.db.exec("ROLLBACK");
  }
}
