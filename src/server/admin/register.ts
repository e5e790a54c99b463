import type { ConnectRouter } from "@connectrpc/connect";
import { ApiService, AuditService, KeyService, OrgService, PlanService, TokenService } from "../../gen/tollgate/admin/v1/services_pb.js";
import { createApiService } from "./api-service.js";
import { createAuditService } from "./audit-service.js";
import type { AdminContext } from "./context.js";
import { withErrorMapping } from "./errors.js";
import { createKeyService } from "./key-service.js";
import { createOrgService } from "./org-service.js";
import { createPlanService } from "./plan-service.js";
import { createTokenService } from "./token-service.js";

export type { AdminContext } from "./context.js";

/**
 * Registers every admin service on the router. The adapter's auth interceptor
 * runs first, so every call that reaches a handler carries an admin token.
 */
export function registerAdminServices(router: ConnectRouter, context: AdminContext): void {
  const { logger } = context;
  router.service(OrgService, withErrorMapping(OrgService.typeName, createOrgService(context), logger));
  router.service(ApiService, withErrorMapping(ApiService.typeName, createApiService(context), logger));
  router.service(PlanService, withErrorMapping(PlanService.typeName, createPlanService(context), logger));
  router.service(KeyService, withErrorMapping(KeyService.typeName, createKeyService(context), logger));
  router.service(AuditService, withErrorMapping(AuditService.typeName, createAuditService(context), logger));
  router.service(TokenService, withErrorMapping(TokenService.typeName, createTokenService(context), logger));
}
