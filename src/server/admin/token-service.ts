import type { ServiceImpl } from "@connectrpc/connect";
import type { TokenService } from "../../gen/tollgate/admin/v1/services_pb.js";
import { actorOf, type AdminContext } from "./context.js";
import { TOKEN_KINDS_BY_ENUM, tokenToMessage } from "./convert.js";
import { failedPrecondition, notFound, throwIfInvalid } from "./errors.js";
import { checkEnum, checkLabel, checkReference, FieldProblems } from "./validate.js";

/** Creates, lists and revokes the server's bearer tokens. A token's secret is returned once, at creation. */
export function createTokenService({ store, logger }: AdminContext): ServiceImpl<typeof TokenService> {
  return {
    async createToken(request, context) {
      const problems = new FieldProblems();
      const name = checkLabel(problems, "name", request.name);
      const kind = checkEnum(problems, "kind", request.kind, TOKEN_KINDS_BY_ENUM, "TOKEN_KIND_ADMIN or TOKEN_KIND_SIDECAR");
      throwIfInvalid(problems);

      const actor = actorOf(context);
      const { token, secret } = await store.createToken(actor, { name, kind: kind! });
      logger.info({ tokenId: token.id, kind: token.kind, actorId: actor.id }, "token created");
      return { token: tokenToMessage(token), secret };
    },

    async listTokens() {
      return { tokens: (await store.listTokens()).map(tokenToMessage) };
    },

    /** Revokes a token for good, except the last admin token, which would lock every administrator out. */
    async revokeToken(request, context) {
      const problems = new FieldProblems();
      const id = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      const token = (await store.listTokens()).find((candidate) => candidate.id === id);
      if (!token) throw notFound("id", "token", id);
      if (token.kind === "admin" && token.revokedAtMs === null && (await store.countTokens("admin")) <= 1) {
        throw failedPrecondition("id", "the last admin token cannot be revoked; create another admin token first");
      }

      const actor = actorOf(context);
      const revoked = await store.revokeToken(actor, id);
      logger.info({ tokenId: id, actorId: actor.id }, "token revoked");
      return { token: tokenToMessage(revoked) };
    },
  };
}
