import { existsSync, statSync } from "node:fs";
import type { Clock } from "../clock.js";
import { KeyStore } from "./key-store.js";
import type { KeyGrant } from "./records.js";

/** Source of the keys the sidecar decides with; ready once a servable store exists. */
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
  /** Called when a store that was serving is closed because it was replaced or became unreadable. */
  onLost?: () => void;
  /** Called when the store cannot be opened or read; the source then stays or becomes not ready. */
  onError?: (error: unknown) => void;
  /** How often to look for changes made by other processes; they are enforced within this time. Default 100 ms. */
  watchIntervalMs?: number;
  /** Most grants kept in memory; the oldest goes first. Default 200,000. */
  maxCachedKeys?: number;
}

/**
 * Serves keys from a local SQLite store written by other processes (the CLI,
 * or the replication client). Verified grants are cached and the cache is
 * dropped when another connection commits, so a change applies within one
 * watch interval. The source is not ready while the file is missing,
 * unreadable or of an older schema, or, for a replica, until its first
 * complete snapshot. A file replaced underneath it is opened again.
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
  /** Inode of the open file, to notice when it is replaced. */
  private inode = -1;
  private lastError: string | undefined;
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
    // A read error propagates, so the Check handler returns internal_error and logs it.
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
    this.store = undefined;
    this.closeStore();
  }

  private tryOpen(): boolean {
    try {
      if (!this.opened) {
        this.inode = existsSync(this.path) ? statSync(this.path).ino : -1;
        this.opened = KeyStore.openExisting(this.path, this.clock);
      }
      if (!this.opened?.isServing()) return false;
    } catch (error) {
      this.closeStore();
      this.reportError(error);
      return false;
    }
    this.store = this.opened;
    this.lastError = undefined;
    this.watchForChanges();
    this.options.onReady?.();
    return true;
  }

  /** Reports an error once, not again on every retry until a different one occurs. */
  private reportError(error: unknown): void {
    const message = String((error as Error)?.message ?? error);
    if (message === this.lastError) return;
    this.lastError = message;
    this.options.onError?.(error);
  }

  private closeStore(): void {
    if (this.store) this.options.onLost?.();
    clearInterval(this.watchTimer);
    this.cache.clear();
    try {
      this.opened?.close();
    } catch {
      // Closing a connection to a broken file can fail too; it is dropped either way.
    }
    this.opened = undefined;
    this.store = undefined;
  }

  /** Closes a store that was replaced or became unreadable, and retries until one opens again. */
  private reopen(error?: unknown): void {
    this.closeStore();
    if (error !== undefined) this.reportError(error);
    if (this.tryOpen() || this.retryTimer) return;
    this.retryTimer = setInterval(() => {
      if (this.tryOpen()) this.stopRetrying();
    }, this.options.openRetryMs ?? 250);
    this.retryTimer.unref();
  }

  /**
   * Drops the cached grants whenever SQLite's data_version shows a commit by
   * another connection, such as the CLI or the replication client.
   */
  private watchForChanges(): void {
    const store = this.store!;
    this.dataVersion = store.dataVersion();
    this.watchTimer = setInterval(() => {
      try {
        if (!existsSync(this.path) || statSync(this.path).ino !== this.inode) return this.reopen();
        const version = store.dataVersion();
        if (version === this.dataVersion) return;
        this.dataVersion = version;
        this.cache.clear();
      } catch (error) {
        this.reopen(error);
      }
    }, this.options.watchIntervalMs ?? 100);
    this.watchTimer.unref();
  }

  private stopRetrying(): void {
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }
}
