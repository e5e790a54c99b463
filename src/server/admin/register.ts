import type { ConnectRouter } from "@connectrpc/connect";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../log/logger.js";
import type { ServerStore } from "../store/server-store.js";

export interface AdminContext {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
}

/** Registers every admin service on the router. */
export function registerAdminServices(router: ConnectRouter, context: AdminContext): void {
  void router;
  void context;
}
