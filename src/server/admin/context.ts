import type { HandlerContext } from "@connectrpc/connect";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../log/logger.js";
import { ACTOR } from "../auth.js";
import type { Actor } from "../store/records.js";
import type { ServerStore } from "../store/server-store.js";

/** Dependencies shared by every admin service. */
export interface AdminContext {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
}

/** Returns the token that made this call, set by the auth interceptor, as the actor recorded for changes. */
export function actorOf(context: HandlerContext): Actor {
  return context.values.get(ACTOR);
}
