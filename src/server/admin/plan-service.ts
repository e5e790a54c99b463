import type { ServiceImpl } from "@connectrpc/connect";
import type { PlanService } from "../../gen/tollgate/admin/v1/services_pb.js";
import { actorOf, type AdminContext } from "./context.js";
import { planToMessage } from "./convert.js";
import { throwIfInvalid } from "./errors.js";
import { requireApi, requirePlan } from "./lookup.js";
import { checkLabel, checkReference, checkTiers, FieldProblems } from "./validate.js";

/** Sets, gets and lists the rate-limit plans of an API. */
export function createPlanService({ store }: AdminContext): ServiceImpl<typeof PlanService> {
  return {
    async setPlan(request, context) {
      const problems = new FieldProblems();
      checkReference(problems, "api_id", request.apiId);
      const name = checkLabel(problems, "name", request.name);
      const tiers = checkTiers(problems, "tiers", request.tiers);
      throwIfInvalid(problems);

      const api = await requireApi(store, request.apiId);
      const plan = await store.setPlan(actorOf(context), { apiId: api.id, name, tiers, makeDefault: request.makeDefault });
      return { plan: planToMessage(plan) };
    },

    async getPlan(request) {
      const problems = new FieldProblems();
      checkReference(problems, "api_id", request.apiId);
      const reference = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      const api = await requireApi(store, request.apiId);
      return { plan: planToMessage(await requirePlan(store, api, reference, "id")) };
    },

    async listPlans(request) {
      const problems = new FieldProblems();
      checkReference(problems, "api_id", request.apiId);
      throwIfInvalid(problems);

      const api = await requireApi(store, request.apiId);
      return { plans: (await store.listPlans(api.id)).map(planToMessage) };
    },
  };
}
