import type { ServerStore } from "../store/server-store.js";

export type WakeReason = "change" | "timeout" | "abort";

/**
 * Listens for committed store changes on behalf of one stream. Changes that
 * commit while the stream is busy are remembered as one pending flag, so a
 * slow stream reads them later in one batch instead of queueing a wake-up
 * per change.
 */
export class ChangeWaiter {
  private pending = false;
  private wake: (() => void) | undefined;
  private readonly stopListening: () => void;

  constructor(store: Pick<ServerStore, "onChange">) {
    this.stopListening = store.onChange(() => {
      this.pending = true;
      this.wake?.();
    });
  }

  /**
   * Resolves with "change" once a change has committed since the last
   * "change" (at once if one already has), with "timeout" after `timeoutMs`,
   * or with "abort" when `signal` aborts.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<WakeReason> {
    if (signal.aborted) return Promise.resolve("abort");
    if (this.pending) {
      this.pending = false;
      return Promise.resolve("change");
    }

    return new Promise<WakeReason>((resolve) => {
      const finish = (reason: WakeReason) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.wake = undefined;
        if (reason === "change") this.pending = false;
        resolve(reason);
      };
      const onAbort = () => finish("abort");
      const timer = setTimeout(() => finish("timeout"), timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.wake = () => finish("change");
    });
  }

  close(): void {
    this.stopListening();
    this.wake = undefined;
  }
}
