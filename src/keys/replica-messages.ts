import { create } from "@bufbuild/protobuf";
import {
  BatchSchema,
  ReplicaApiSchema,
  ReplicaKeySchema,
  ReplicaPlanSchema,
  ReplicaTierSchema,
  type Batch,
  type ReplicaApi,
  type ReplicaKey,
  type ReplicaPlan,
  type ReplicaTier,
} from "../gen/tollgate/replication/v1/replication_pb.js";
import { TIER_MODES, type Tier, type TierMode } from "../ratelimit/tier.js";
import type { ChangeSet, ReplicatedKey } from "./key-store.js";
import type { ApiRecord, PlanRecord } from "./records.js";

/** A change set as the replication stream carries it: one batch, applied in one transaction. */
export interface ReplicationBatch extends ChangeSet {
  /** The replica starts from empty with this batch. */
  reset: boolean;
  /** The replica is a consistent copy of the server at `version` once this batch is applied. */
  complete: boolean;
}

export type DecodedBatch = { ok: true; batch: ReplicationBatch } | { ok: false; problem: string };

/** Encodes a batch for the wire. Proto3 has no null, so absent strings become "" and absent times 0. */
export function encodeBatch(batch: ReplicationBatch): Batch {
  return create(BatchSchema, {
    version: BigInt(batch.version),
    reset: batch.reset,
    complete: batch.complete,
    apis: batch.apis.map(encodeApi),
    plans: batch.plans.map(encodePlan),
    keys: batch.keys.map(encodeKey),
  });
}

/**
 * Decodes a batch from the wire, or returns the first problem that makes it
 * unsafe to apply: a number past 2^53, or a tier mode this build does not
 * enforce. Fields the stream does not carry get neutral values: no org, no
 * metadata, and a key's update time equal to its creation time.
 */
export function decodeBatch(message: Batch): DecodedBatch {
  try {
    const apis = message.apis.map(decodeApi);
    const plans = message.plans.map(decodePlan);
    const keys = message.keys.map(decodeKey);
    return { ok: true, batch: { version: toSafeNumber(message.version, "batch version"), reset: message.reset, complete: message.complete, apis, plans, keys } };
  } catch (error) {
    if (error instanceof InvalidBatchError) return { ok: false, problem: error.message };
    throw error;
  }
}

/** Counts the rows of every kind in a change set. */
export function countRows(changes: ChangeSet): number {
  return changes.apis.length + changes.plans.length + changes.keys.length;
}

class InvalidBatchError extends Error {}

function encodeApi(api: ApiRecord): ReplicaApi {
  return create(ReplicaApiSchema, {
    id: api.id,
    name: api.name,
    keyPrefix: api.keyPrefix,
    defaultPlanId: api.defaultPlanId ?? "",
    createTimeMs: BigInt(api.createdAtMs),
    version: BigInt(api.version),
  });
}

function decodeApi(api: ReplicaApi): ApiRecord {
  return {
    id: api.id,
    orgId: null,
    name: api.name,
    keyPrefix: api.keyPrefix,
    defaultPlanId: api.defaultPlanId === "" ? null : api.defaultPlanId,
    createdAtMs: toSafeNumber(api.createTimeMs, `create time of API ${api.id}`),
    version: toSafeNumber(api.version, `version of API ${api.id}`),
  };
}

function encodePlan(plan: PlanRecord): ReplicaPlan {
  return create(ReplicaPlanSchema, {
    id: plan.id,
    apiId: plan.apiId,
    name: plan.name,
    tiers: plan.tiers.map(encodeTier),
    createTimeMs: BigInt(plan.createdAtMs),
    updateTimeMs: BigInt(plan.updatedAtMs),
    version: BigInt(plan.version),
  });
}

function decodePlan(plan: ReplicaPlan): PlanRecord {
  return {
    id: plan.id,
    apiId: plan.apiId,
    name: plan.name,
    tiers: plan.tiers.map((tier) => decodeTier(tier, `plan ${plan.id}`)),
    createdAtMs: toSafeNumber(plan.createTimeMs, `create time of plan ${plan.id}`),
    updatedAtMs: toSafeNumber(plan.updateTimeMs, `update time of plan ${plan.id}`),
    version: toSafeNumber(plan.version, `version of plan ${plan.id}`),
  };
}

function encodeKey(key: ReplicatedKey): ReplicaKey {
  return create(ReplicaKeySchema, {
    id: key.id,
    apiId: key.apiId,
    hash: key.hash,
    start: key.start,
    name: key.name ?? "",
    ownerId: key.ownerId ?? "",
    planId: key.planId ?? "",
    scopes: key.scopes,
    enabled: key.enabled,
    expireTimeMs: BigInt(key.expiresAtMs ?? 0),
    revokeTimeMs: BigInt(key.revokedAtMs ?? 0),
    createTimeMs: BigInt(key.createdAtMs),
    hasTierOverride: key.tierOverride !== null,
    tierOverride: (key.tierOverride ?? []).map(encodeTier),
    previousSecrets: key.previousSecrets.map((secret) => ({ hash: secret.hash, expireTimeMs: BigInt(secret.expiresAtMs) })),
    version: BigInt(key.version),
  });
}

function decodeKey(key: ReplicaKey): ReplicatedKey {
  const owner = `key ${key.id}`;
  const createdAtMs = toSafeNumber(key.createTimeMs, `create time of ${owner}`);
  const previousSecrets = key.previousSecrets.map((secret) => ({ hash: secret.hash, expiresAtMs: toSafeNumber(secret.expireTimeMs, `previous secret expiry of ${owner}`) }));
  return {
    id: key.id,
    apiId: key.apiId,
    hash: key.hash,
    start: key.start,
    name: key.name === "" ? null : key.name,
    ownerId: key.ownerId === "" ? null : key.ownerId,
    planId: key.planId === "" ? null : key.planId,
    scopes: [...key.scopes],
    enabled: key.enabled,
    expiresAtMs: optionalTime(key.expireTimeMs, `expiry of ${owner}`),
    revokedAtMs: optionalTime(key.revokeTimeMs, `revocation time of ${owner}`),
    createdAtMs,
    updatedAtMs: createdAtMs,
    metadata: null,
    tierOverride: key.hasTierOverride ? key.tierOverride.map((tier) => decodeTier(tier, owner)) : null,
    previousSecretExpiresAtMs: previousSecrets.length === 0 ? null : Math.max(...previousSecrets.map((secret) => secret.expiresAtMs)),
    previousSecrets,
    version: toSafeNumber(key.version, `version of ${owner}`),
  };
}

function encodeTier(tier: Tier): ReplicaTier {
  return create(ReplicaTierSchema, { limit: BigInt(tier.limit), windowMs: BigInt(tier.windowMs), mode: tier.mode });
}

function decodeTier(tier: ReplicaTier, owner: string): Tier {
  // A mode this build does not know cannot be enforced as the server meant, so the batch is rejected rather than guessed at.
  if (!(TIER_MODES as readonly string[]).includes(tier.mode)) {
    throw new InvalidBatchError(`unknown tier mode "${tier.mode}" in ${owner}: this sidecar enforces ${TIER_MODES.join(" and ")}; upgrade it`);
  }
  return { limit: toSafeNumber(tier.limit, `tier limit of ${owner}`), windowMs: toSafeNumber(tier.windowMs, `tier window of ${owner}`), mode: tier.mode as TierMode };
}

/** Zero on the wire means unset. */
function optionalTime(value: bigint, field: string): number | null {
  return value === 0n ? null : toSafeNumber(value, field);
}

function toSafeNumber(value: bigint, field: string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new InvalidBatchError(`invalid ${field}: ${value} is outside the range of exact integers`);
  return number;
}
