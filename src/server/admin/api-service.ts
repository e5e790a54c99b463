import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ApiService } from "../../gen/tollgate/admin/v1/services_pb.js";
import { prefixFromName, validatePrefix } from "../../keys/key-format.js";
import { TOKEN_PREFIXES } from "../store/sqlite-server-store.js";
import { actorOf, type AdminContext } from "./context.js";
import { apiToMessage } from "./convert.js";
import { notFound, throwIfInvalid } from "./errors.js";
import { requireApi, requirePlan } from "./lookup.js";
import { checkLabel, checkReference, FieldProblems } from "./validate.js";

/** Prefixes of the server's own tokens, reserved because an API using one would issue keys that look like tokens. */
const RESERVED_PREFIXES: ReadonlySet<string> = new Set(Object.values(TOKEN_PREFIXES));

/** Creates, gets, lists and updates APIs. */
export function createApiService({ store }: AdminContext): ServiceImpl<typeof ApiService> {
  return {
    async createApi(request, context) {
      const problems = new FieldProblems();
      const name = checkLabel(problems, "name", request.name);
      const keyPrefix = request.keyPrefix === "" ? prefixFromName(name) : request.keyPrefix;
      const prefixProblem = validatePrefix(keyPrefix);
      if (prefixProblem) problems.add("key_prefix", prefixProblem);
      else if (RESERVED_PREFIXES.has(keyPrefix)) problems.add("key_prefix", `"${keyPrefix}" is reserved for server tokens; choose another key_prefix`);
      if (request.orgId !== "") checkReference(problems, "org_id", request.orgId);
      throwIfInvalid(problems);

      // Checked before the default org is created, so a duplicate leaves nothing behind.
      if (await store.findApi(name)) throw new ConnectError(`name: API ${JSON.stringify(name)} already exists`, Code.AlreadyExists);
      const actor = actorOf(context);
      const org = request.orgId === "" ? await store.defaultOrg(actor) : await store.getOrg(request.orgId);
      if (!org) throw notFound("org_id", "org", request.orgId);

      return { api: apiToMessage(await store.createApi(actor, { name, keyPrefix, orgId: org.id })) };
    },

    async getApi(request) {
      const problems = new FieldProblems();
      const reference = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      return { api: apiToMessage(await requireApi(store, reference, "id")) };
    },

    async listApis(request) {
      if (request.orgId === "") return { apis: (await store.listApis()).map(apiToMessage) };

      const problems = new FieldProblems();
      checkReference(problems, "org_id", request.orgId);
      throwIfInvalid(problems);
      const org = await store.getOrg(request.orgId);
      if (!org) throw notFound("org_id", "org", request.orgId);
      return { apis: (await store.listApis(org.id)).map(apiToMessage) };
    },

    /** Sets or, with an empty string, clears the API's default plan. */
    async updateApi(request, context) {
      const problems = new FieldProblems();
      const reference = checkReference(problems, "id", request.id);
      if (request.defaultPlanId === undefined) problems.add("default_plan_id", 'required: a plan id or name, or "" to clear it');
      else if (request.defaultPlanId !== "") checkReference(problems, "default_plan_id", request.defaultPlanId);
      throwIfInvalid(problems);

      const api = await requireApi(store, reference, "id");
      const planId = request.defaultPlanId ? (await requirePlan(store, api, request.defaultPlanId, "default_plan_id")).id : null;
      return { api: apiToMessage(await store.setDefaultPlan(actorOf(context), api.id, planId)) };
    },
  };
}
