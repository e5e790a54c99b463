import type { Clock } from "../clock.js";
import { KeyStore } from "./key-store.js";
import type { KeyGrant } from "./records.js";

/** Where the sidecar finds keys: ready once a store with a schema exists. */
export interface KeySource {
  readonly ready: boolean;
  findGrant(hash: string): KeyGrant | undefined;
  close(): void;
}

export interface LocalKeySourceOptions {
  /** How often to look for the store file while it does not exist yet. Default 250 ms. */
  openRetryMs?: number;
  /** Called once when the store has been opened. */
  onReady?: () => void;
}

/**
 * Serves keys from a local SQLite store written by other processes (the CLI,
 * or the replication client). Every lookup reads the file's latest committed
 * state, so a revocation is enforced from the next Check on; a missing file
 * keeps the source not ready until it appears.
 */
export class LocalKeySource implements KeySource {
  private store: KeyStore | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string,
    private readonly clock: Clock,
    private readonly options: LocalKeySourceOptions = {},
  ) {
    if (!this.tryOpen()) {
      this.retryTimer = setInterval(() => {
        if (this.tryOpen()) this.stopRetrying();
      }, options.openRetryMs ?? 250);
      this.retryTimer.unref();
    }
  }

  get ready(): boolean {
    return this.store !== undefined;
  }

  findGrant(hash: string): KeyGrant | undefined {
    return this.store?.findGrant(hash);
  }

  close(): void {
    this.stopRetrying();
    this.store?.close();
    this.store = undefined;
  }

  private tryOpen(): boolean {
    this.store = KeyStore.openExisting(this.path, this.clock);
    if (this.store) this.options.onReady?.();
    return this.store !== undefined;
  }

  private stopRetrying(): void {
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }
}
