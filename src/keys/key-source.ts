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
  /** How often to check the store while it is not ready. Default 250 ms. */
  openRetryMs?: number;
  /** Called once when the store has been opened. */
  onReady?: () => void;
}

/**
 * Serves keys from a local SQLite store written by other processes (the CLI,
 * or the replication client). Every lookup reads the file's latest committed
 * state, so a revocation is enforced from the next Check on. The source is
 * not ready while the file is missing or, for a replica, until its first
 * complete snapshot; once ready it stays ready.
 */
export class LocalKeySource implements KeySource {
  /** The store once it may serve keys. */
  private store: KeyStore | undefined;
  /** The store once its file exists, perhaps not yet servable. */
  private opened: KeyStore | undefined;
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
    this.opened?.close();
    this.opened = undefined;
    this.store = undefined;
  }

  private tryOpen(): boolean {
    this.opened ??= KeyStore.openExisting(this.path, this.clock);
    if (!this.opened?.isServing()) return false;
    this.store = this.opened;
    this.options.onReady?.();
    return true;
  }

  private stopRetrying(): void {
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }
}
