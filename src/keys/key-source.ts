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
  /** How often to look for changes made by other processes; they are enforced within this time. Default 100 ms. */
  watchIntervalMs?: number;
  /** Most grants kept in memory; the oldest goes first. Default 200,000. */
  maxCachedKeys?: number;
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
  /** Grants found by hash, dropped whenever another connection commits to the store. */
  private readonly cache = new Map<string, KeyGrant>();
  private readonly maxCachedKeys: number;
  private dataVersion = -1;
  private watchTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string,
    private readonly clock: Clock,
    private readonly options: LocalKeySourceOptions = {},
  ) {
    this.maxCachedKeys = options.maxCachedKeys ?? 200_000;
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
    const cached = this.cache.get(hash);
    if (cached) return cached;
    const grant = this.store?.findGrant(hash);
    // A rotated secret stops at its own time, which the cache would not notice: look those up every time.
    if (grant && !grant.viaPreviousSecret) {
      if (this.cache.size >= this.maxCachedKeys) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(hash, grant);
    }
    return grant;
  }

  /**
   * Checks the store now instead of at the next poll, for a writer that has
   * just made it servable (the replication client after its first complete
   * batch). Does nothing once the source is ready.
   */
  refresh(): void {
    if (this.ready) return;
    if (this.tryOpen()) this.stopRetrying();
  }

  /**
   * Drops every cached grant now, for a writer in this process that has just
   * committed (the replication client), so the change applies from the next
   * Check instead of after the next watch interval.
   */
  dropCachedGrants(): void {
    this.cache.clear();
    if (this.store) this.dataVersion = this.store.dataVersion();
  }

  close(): void {
    this.stopRetrying();
    clearInterval(this.watchTimer);
    this.cache.clear();
    this.opened?.close();
    this.opened = undefined;
    this.store = undefined;
  }

  private tryOpen(): boolean {
    this.opened ??= KeyStore.openExisting(this.path, this.clock);
    if (!this.opened?.isServing()) return false;
    this.store = this.opened;
    this.watchForChanges();
    this.options.onReady?.();
    return true;
  }

  /**
   * Drops the cached grants whenever SQLite's data_version shows a commit by
   * another connection, such as the CLI or the replication client.
   */
  private watchForChanges(): void {
    const store = this.store!;
    this.dataVersion = store.dataVersion();
    this.watchTimer = setInterval(() => {
      const version = store.dataVersion();
      if (version === this.dataVersion) return;
      this.dataVersion = version;
      this.cache.clear();
    }, this.options.watchIntervalMs ?? 100);
    this.watchTimer.unref();
  }

  private stopRetrying(): void {
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }
}
