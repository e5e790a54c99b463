import type { ConnectRouter } from "@connectrpc/connect";
import type { Registry } from "prom-client";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../log/logger.js";
import type { ServerStore } from "../store/server-store.js";

export interface ReplicationContext {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
  registry: Registry;
  /** Aborted when the server shuts down, to end open streams. */
  shutdown: AbortSignal;
}

export function registerReplicationService(router: ConnectRouter, context: ReplicationContext): void {
  void router;
  void context;
}
