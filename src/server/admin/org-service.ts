import type { ServiceImpl } from "@connectrpc/connect";
import type { OrgService } from "../../gen/tollgate/admin/v1/services_pb.js";
import { actorOf, type AdminContext } from "./context.js";
import { orgToMessage } from "./convert.js";
import { notFound, throwIfInvalid } from "./errors.js";
import { checkLabel, checkReference, FieldProblems } from "./validate.js";

/** Creates, gets and lists organizations, the owners of APIs. */
export function createOrgService({ store }: AdminContext): ServiceImpl<typeof OrgService> {
  return {
    async createOrg(request, context) {
      const problems = new FieldProblems();
      const name = checkLabel(problems, "name", request.name);
      throwIfInvalid(problems);

      return { org: orgToMessage(await store.createOrg(actorOf(context), name)) };
    },

    async getOrg(request) {
      const problems = new FieldProblems();
      const reference = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      const org = await store.getOrg(reference);
      if (!org) throw notFound("id", "org", reference);
      return { org: orgToMessage(org) };
    },

    async listOrgs() {
      return { orgs: (await store.listOrgs()).map(orgToMessage) };
    },
  };
}
