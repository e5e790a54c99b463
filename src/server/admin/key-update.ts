import type { UpdateKeyRequest } from "../../gen/tollgate/admin/v1/services_pb.js";
import type { KeyPatch } from "../../keys/key-store.js";
import type { FieldProblems } from "./validate.js";
import { checkFutureTime, checkMetadata, checkOptionalLabel, checkReference, checkScopes, checkTiers } from "./validate.js";

/** A validated UpdateKey request; `planReference` still has to be resolved within the key's API. */
export interface KeyUpdate {
  patch: KeyPatch;
  /** Plan id or name to move the key to. Null removes the key's plan, and undefined leaves it unchanged. */
  planReference: string | null | undefined;
}

/**
 * Turns an UpdateKey request into a patch, recording every bad field. Only
 * fields that are set change. An empty string clears name, owner_id and
 * plan_id, an empty metadata object clears metadata, and the clear_* flags
 * clear the tier override and the expiry time.
 */
export function parseKeyUpdate(request: UpdateKeyRequest, problems: FieldProblems, nowMs: number): KeyUpdate {
  const patch: KeyPatch = {};
  let planReference: string | null | undefined;

  if (request.name !== undefined) patch.name = checkOptionalLabel(problems, "name", request.name);
  if (request.ownerId !== undefined) patch.ownerId = checkOptionalLabel(problems, "owner_id", request.ownerId);
  if (request.metadata !== undefined) patch.metadata = checkMetadata(problems, "metadata", request.metadata);
  if (request.scopes !== undefined) patch.scopes = checkScopes(problems, "scopes.scopes", request.scopes.scopes);
  if (request.enabled !== undefined) patch.enabled = request.enabled;
  if (request.planId !== undefined) {
    planReference = request.planId === "" ? null : checkReference(problems, "plan_id", request.planId);
  }

  if (request.tierOverride !== undefined && request.clearTierOverride) problems.add("clear_tier_override", "cannot be combined with tier_override");
  else if (request.tierOverride !== undefined) patch.tierOverride = checkTiers(problems, "tier_override.tiers", request.tierOverride.tiers);
  else if (request.clearTierOverride) patch.tierOverride = null;

  if (request.expireTime !== undefined && request.clearExpireTime) problems.add("clear_expire_time", "cannot be combined with expire_time");
  else if (request.expireTime !== undefined) patch.expiresAtMs = checkFutureTime(problems, "expire_time", request.expireTime, nowMs);
  else if (request.clearExpireTime) patch.expiresAtMs = null;

  if (Object.keys(patch).length === 0 && planReference === undefined && problems.empty) {
    problems.addForRequest("no field to change: set at least one of name, owner_id, metadata, scopes, plan_id, tier_override, clear_tier_override, expire_time, clear_expire_time, enabled");
  }
  return { patch, planReference };
}
