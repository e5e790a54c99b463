import type { ConnectRouter } from "@connectrpc/connect";
import { AnalyticsService } from "../../gen/tollgate/analytics/v1/analytics_pb.js";
import { withErrorMapping } from "../admin/errors.js";
import { createAnalyticsService, type AnalyticsContext } from "./analytics-service.js";

export type { AnalyticsContext } from "./analytics-service.js";
export { createUsageQueryClient, type UsageQueryClient } from "./usage-query-client.js";

/**
 * Registers the analytics service on the router. The adapter's auth
 * interceptor admits only admin tokens to it, as to every service that is
 * not a sidecar's.
 */
export function registerAnalyticsService(router: ConnectRouter, context: AnalyticsContext): void {
  router.service(AnalyticsService, withErrorMapping(AnalyticsService.typeName, createAnalyticsService(context), context.logger));
}
