/**
 * Whether the sidecar should receive traffic: serving once its key store is
 * loaded, and no longer serving while it shuts down. Both the gRPC health
 * service and `/readyz` report it.
 */
export class Readiness {
  private storeLoaded = false;
  private draining = false;
  private readonly listeners = new Set<(serving: boolean) => void>();

  get serving(): boolean {
    return this.storeLoaded && !this.draining;
  }

  /** Reason the sidecar is not serving, or undefined when it is. */
  get problem(): string | undefined {
    if (this.draining) return "shutting down";
    if (!this.storeLoaded) return "the key store has not been loaded yet";
    return undefined;
  }

  markStoreLoaded(loaded = true): void {
    this.update(() => (this.storeLoaded = loaded));
  }

  markDraining(): void {
    this.update(() => (this.draining = true));
  }

  /** Calls `listener` on every change of `serving`; returns a function that stops it. */
  onChange(listener: (serving: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private update(change: () => void): void {
    const before = this.serving;
    change();
    if (this.serving !== before) for (const listener of this.listeners) listener(this.serving);
  }
}
