import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ApiSchema,
  AuditEventSchema,
  KeySchema,
  KeyState as KeyStateMessage,
  OrgSchema,
  PlanSchema,
  TierMode,
  TierSchema,
  TokenKind as TokenKindMessage,
  TokenSchema,
  type Api,
  type AuditEvent,
  type Key,
  type Org,
  type Plan,
  type Tier as TierMessage,
  type Token,
} from "../../gen/tollgate/admin/v1/resources_pb.js";
import { keyStateAt, type ApiRecord, type KeyRecord, type KeyState, type PlanRecord } from "../../keys/records.js";
import type { Tier } from "../../ratelimit/tier.js";
import type { AuditRecord, OrgRecord, TokenKind, TokenRecord } from "../store/records.js";

/** Key states of ListKeys' filter; KEY_STATE_UNSPECIFIED means any state. */
export const KEY_STATES_BY_ENUM: ReadonlyMap<number, KeyState | undefined> = new Map([
  [KeyStateMessage.UNSPECIFIED, undefined],
  [KeyStateMessage.ACTIVE, "active"],
  [KeyStateMessage.REVOKED, "revoked"],
  [KeyStateMessage.EXPIRED, "expired"],
  [KeyStateMessage.DISABLED, "disabled"],
]);

/** Token kinds a token can be created with. */
export const TOKEN_KINDS_BY_ENUM: ReadonlyMap<number, TokenKind> = new Map([
  [TokenKindMessage.ADMIN, "admin"],
  [TokenKindMessage.SIDECAR, "sidecar"],
]);

const KEY_STATE_ENUMS: Record<KeyState, KeyStateMessage> = {
  active: KeyStateMessage.ACTIVE,
  revoked: KeyStateMessage.REVOKED,
  expired: KeyStateMessage.EXPIRED,
  disabled: KeyStateMessage.DISABLED,
};

const TOKEN_KIND_ENUMS: Record<TokenKind, TokenKindMessage> = {
  admin: TokenKindMessage.ADMIN,
  sidecar: TokenKindMessage.SIDECAR,
};

export function orgToMessage(org: OrgRecord): Org {
  return create(OrgSchema, { id: org.id, name: org.name, createTime: timestampFromMs(org.createdAtMs) });
}

export function apiToMessage(api: ApiRecord): Api {
  return create(ApiSchema, {
    id: api.id,
    orgId: api.orgId ?? "",
    name: api.name,
    keyPrefix: api.keyPrefix,
    defaultPlanId: api.defaultPlanId ?? "",
    createTime: timestampFromMs(api.createdAtMs),
  });
}

const TIER_MODE_TO_PROTO: Record<Tier["mode"], TierMode> = { reject: TierMode.REJECT, overage: TierMode.OVERAGE, shadow: TierMode.SHADOW };

export function tierToMessage(tier: Tier): TierMessage {
  return create(TierSchema, { limit: BigInt(tier.limit), windowMs: BigInt(tier.windowMs), mode: TIER_MODE_TO_PROTO[tier.mode] });
}

/** Reads a tier the server sent; a mode this build does not know is read as unspecified, which means reject. */
export function tierFromMessage(tier: TierMessage): Tier {
  const mode = (Object.keys(TIER_MODE_TO_PROTO) as Tier["mode"][]).find((name) => TIER_MODE_TO_PROTO[name] === tier.mode) ?? "reject";
  return { limit: Number(tier.limit), windowMs: Number(tier.windowMs), mode };
}

export function planToMessage(plan: PlanRecord): Plan {
  return create(PlanSchema, {
    id: plan.id,
    apiId: plan.apiId,
    name: plan.name,
    tiers: plan.tiers.map(tierToMessage),
    createTime: timestampFromMs(plan.createdAtMs),
    updateTime: timestampFromMs(plan.updatedAtMs),
  });
}

/** Converts a key record. Its state depends on the wall time `nowMs`, because keys expire. */
export function keyToMessage(key: KeyRecord, nowMs: number): Key {
  return create(KeySchema, {
    id: key.id,
    apiId: key.apiId,
    start: key.start,
    name: key.name ?? "",
    ownerId: key.ownerId ?? "",
    planId: key.planId ?? "",
    scopes: key.scopes,
    metadata: key.metadata === null ? undefined : (key.metadata as JsonObject),
    tierOverride: key.tierOverride === null ? undefined : { tiers: key.tierOverride.map(tierToMessage) },
    enabled: key.enabled,
    state: KEY_STATE_ENUMS[keyStateAt(key, nowMs)],
    expireTime: optionalTimestamp(key.expiresAtMs),
    revokeTime: optionalTimestamp(key.revokedAtMs),
    createTime: timestampFromMs(key.createdAtMs),
    updateTime: timestampFromMs(key.updatedAtMs),
    previousSecretExpireTime: optionalTimestamp(key.previousSecretExpiresAtMs),
  });
}

export function tokenToMessage(token: TokenRecord): Token {
  return create(TokenSchema, {
    id: token.id,
    name: token.name,
    kind: TOKEN_KIND_ENUMS[token.kind],
    start: token.start,
    createTime: timestampFromMs(token.createdAtMs),
    revokeTime: optionalTimestamp(token.revokedAtMs),
  });
}

/** Converts an audit record. A `before` or `after` that is not a JSON object, such as null, is left unset. */
export function auditToMessage(event: AuditRecord): AuditEvent {
  return create(AuditEventSchema, {
    id: event.id,
    time: timestampFromMs(event.atMs),
    actorId: event.actor.id,
    actorName: event.actor.name,
    action: event.action,
    resourceType: event.resourceType,
    resourceId: event.resourceId,
    before: asJsonObject(event.before),
    after: asJsonObject(event.after),
  });
}

function optionalTimestamp(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : timestampFromMs(ms);
}

function asJsonObject(value: unknown): JsonObject | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as JsonObject) : undefined;
}
