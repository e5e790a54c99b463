import type { ServiceImpl } from "@connectrpc/connect";
import type { KeyService } from "../../gen/tollgate/admin/v1/services_pb.js";
import type { ListKeysFilter } from "../../keys/key-store.js";
import { actorOf, type AdminContext } from "./context.js";
import { KEY_STATES_BY_ENUM, keyToMessage } from "./convert.js";
import { failedPrecondition, throwIfInvalid } from "./errors.js";
import { parseKeyUpdate } from "./key-update.js";
import { createKeyVerifier } from "./key-verify.js";
import { requireApi, requireKey, requirePlan } from "./lookup.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import {
  checkEnum,
  checkFutureTime,
  checkGracePeriod,
  checkMetadata,
  checkOptionalLabel,
  checkPageSize,
  checkReference,
  checkScopes,
  checkTiers,
  FieldProblems,
} from "./validate.js";

/** Position in the key listing: the last key returned, in (creation time, id) order. */
interface KeyPosition {
  createdAtMs: number;
  id: string;
}

/**
 * Issues and manages API keys. A key's secret is returned once, by CreateKey
 * or RotateKey, and is never logged. The store keeps only its hash.
 */
export function createKeyService({ store, clock, logger }: AdminContext): ServiceImpl<typeof KeyService> {
  return {
    async createKey(request, context) {
      const problems = new FieldProblems();
      checkReference(problems, "api_id", request.apiId);
      if (request.planId !== "") checkReference(problems, "plan_id", request.planId);
      const name = checkOptionalLabel(problems, "name", request.name);
      const ownerId = checkOptionalLabel(problems, "owner_id", request.ownerId);
      const scopes = checkScopes(problems, "scopes", request.scopes);
      const metadata = request.metadata === undefined ? null : checkMetadata(problems, "metadata", request.metadata);
      const tierOverride = request.tierOverride === undefined ? null : checkTiers(problems, "tier_override.tiers", request.tierOverride.tiers);
      const expiresAtMs = request.expireTime === undefined ? null : checkFutureTime(problems, "expire_time", request.expireTime, clock.wallMs());
      throwIfInvalid(problems);

      const api = await requireApi(store, request.apiId);
      // Unset leaves the choice to the store, which falls back to the API's default plan.
      const planId = request.planId === "" ? undefined : (await requirePlan(store, api, request.planId)).id;
      const actor = actorOf(context);
      const { key, secret } = await store.createKey(actor, { apiId: api.id, planId, name, ownerId, scopes, metadata, tierOverride, expiresAtMs });
      logger.info({ keyId: key.id, apiId: api.id, actorId: actor.id }, "key created");
      return { key: keyToMessage(key, clock.wallMs()), secret };
    },

    async getKey(request) {
      const problems = new FieldProblems();
      const id = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      return { key: keyToMessage(await requireKey(store, id), clock.wallMs()) };
    },

    async listKeys(request) {
      const problems = new FieldProblems();
      if (request.apiId !== "") checkReference(problems, "api_id", request.apiId);
      if (request.ownerId !== "") checkReference(problems, "owner_id", request.ownerId);
      const state = checkEnum(problems, "state", request.state, KEY_STATES_BY_ENUM, "a KEY_STATE_* value");
      const pageSize = checkPageSize(problems, "page_size", request.pageSize);
      const filters = { apiId: request.apiId, ownerId: request.ownerId, state: request.state };
      const after = request.pageToken === "" ? undefined : decodePageToken(request.pageToken, filters, isKeyPosition);
      if (request.pageToken !== "" && after === undefined) problems.add("page_token", "invalid, or issued for other filters");
      throwIfInvalid(problems);

      const filter: ListKeysFilter = { state, after, limit: pageSize + 1 };
      if (request.apiId !== "") filter.apiId = (await requireApi(store, request.apiId)).id;
      if (request.ownerId !== "") filter.ownerId = request.ownerId;
      // Fetching one row more than a page shows whether another page follows.
      const keys = await store.listKeys(filter);
      const page = keys.slice(0, pageSize);
      const last = page.at(-1);
      const nowMs = clock.wallMs();
      return {
        keys: page.map((key) => keyToMessage(key, nowMs)),
        nextPageToken: keys.length > pageSize && last ? encodePageToken<KeyPosition>({ createdAtMs: last.createdAtMs, id: last.id }, filters) : "",
      };
    },

    async updateKey(request, context) {
      const problems = new FieldProblems();
      const id = checkReference(problems, "id", request.id);
      const { patch, planReference } = parseKeyUpdate(request, problems, clock.wallMs());
      throwIfInvalid(problems);

      const key = await requireKey(store, id);
      if (planReference === null) patch.planId = null;
      if (typeof planReference === "string") {
        const api = await requireApi(store, key.apiId);
        patch.planId = (await requirePlan(store, api, planReference)).id;
      }
      const updated = await store.updateKey(actorOf(context), id, patch);
      return { key: keyToMessage(updated, clock.wallMs()) };
    },

    async revokeKey(request, context) {
      const problems = new FieldProblems();
      const id = checkReference(problems, "id", request.id);
      throwIfInvalid(problems);

      await requireKey(store, id);
      const actor = actorOf(context);
      const revoked = await store.revokeKey(actor, id);
      logger.info({ keyId: id, actorId: actor.id }, "key revoked");
      return { key: keyToMessage(revoked, clock.wallMs()) };
    },

    async rotateKey(request, context) {
      const problems = new FieldProblems();
      const id = checkReference(problems, "id", request.id);
      const graceMs = checkGracePeriod(problems, "grace_period", request.gracePeriod);
      throwIfInvalid(problems);

      const key = await requireKey(store, id);
      if (key.revokedAtMs !== null) throw failedPrecondition("id", `key ${JSON.stringify(id)} is revoked and cannot be rotated`);
      const actor = actorOf(context);
      const rotated = await store.rotateKey(actor, id, graceMs);
      logger.info({ keyId: id, graceMs, actorId: actor.id }, "key rotated");
      return { key: keyToMessage(rotated.key, clock.wallMs()), secret: rotated.secret };
    },

    verifyKey: createKeyVerifier(store, clock, logger),
  };
}

function isKeyPosition(value: unknown): value is KeyPosition {
  if (value === null || typeof value !== "object") return false;
  const { createdAtMs, id } = value as Partial<KeyPosition>;
  return typeof createdAtMs === "number" && Number.isSafeInteger(createdAtMs) && typeof id === "string";
}
