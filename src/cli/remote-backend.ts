import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  KeyState as KeyStateProto,
  TokenKind as TokenKindProto,
  type Api,
  type Key,
  type Plan,
  type Token,
} from "../gen/tollgate/admin/v1/resources_pb.js";
import { ApiService, AuditService, KeyService, PlanService, TokenService } from "../gen/tollgate/admin/v1/services_pb.js";
import { StoreError } from "../keys/store-error.js";
import { tierFromMessage, tierToMessage } from "../server/admin/convert.js";
import type { ApiRecord, KeyRecord, KeyState, PlanRecord } from "../keys/records.js";
import type { Tier } from "../ratelimit/tier.js";
import type { TokenKind, TokenRecord } from "../server/store/records.js";
import type { AdminBackend, KeyView } from "./admin-backend.js";
import { UsageError } from "./errors.js";

/**
 * Opens the CLI's backend with `--server`: the server's admin API over the Connect
 * protocol (JSON over HTTP/1.1, as curl would call it), with an admin token.
 */
export function openRemoteBackend(baseUrl: string, token: string): AdminBackend {
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors: [authorize] });
  const keys = createClient(KeyService, transport);
  const apis = createClient(ApiService, transport);
  const plans = createClient(PlanService, transport);
  const audit = createClient(AuditService, transport);
  const tokens = createClient(TokenService, transport);
  const call = <T>(work: () => Promise<T>) => work().catch((error: unknown) => Promise.reject(translateError(error, baseUrl)));

  return {
    createApi: (name, keyPrefix) => call(async () => apiFromProto((await apis.createApi({ name, keyPrefix })).api!)),
    listApis: () => call(async () => (await apis.listApis({})).apis.map(apiFromProto)),
    setPlan: (api, name, tiers, makeDefault) =>
      call(async () => planFromProto((await plans.setPlan({ apiId: api, name, tiers: tiers.map(tierToMessage), makeDefault })).plan!)),
    listPlans: (api) =>
      call(async () => {
        const found = (await apis.getApi({ id: api })).api!;
        const listed = await plans.listPlans({ apiId: found.id });
        return { plans: listed.plans.map(planFromProto), defaultPlanId: found.defaultPlanId || null };
      }),
    createKey: (request) =>
      call(async () => {
        const created = await keys.createKey({
          apiId: request.api,
          planId: request.plan ?? "",
          name: request.name ?? "",
          ownerId: request.ownerId ?? "",
          scopes: request.scopes,
          expireTime: request.expiresAtMs === null ? undefined : timestampFromMs(request.expiresAtMs),
        });
        return { key: keyViewFromProto(created.key!), secret: created.secret };
      }),
    listKeys: (request) =>
      call(async () => {
        const apiId = request.api === undefined ? "" : (await apis.getApi({ id: request.api })).api!.id;
        const state = request.state === undefined ? KeyStateProto.UNSPECIFIED : KEY_STATE_TO_PROTO[request.state];
        const views: KeyView[] = [];
        let pageToken = "";
        do {
          const page = await keys.listKeys({ apiId, ownerId: request.ownerId ?? "", state, pageSize: 1000, pageToken });
          views.push(...page.keys.map(keyViewFromProto));
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        return views;
      }),
    updateKey: (id, patch) =>
      call(async () => {
        const updated = await keys.updateKey({
          id,
          name: patch.name === undefined ? undefined : (patch.name ?? ""),
          ownerId: patch.ownerId === undefined ? undefined : (patch.ownerId ?? ""),
          scopes: patch.scopes === undefined ? undefined : { scopes: patch.scopes },
          planId: patch.plan,
          expireTime: patch.expiresAtMs === undefined || patch.expiresAtMs === null ? undefined : timestampFromMs(patch.expiresAtMs),
          clearExpireTime: patch.expiresAtMs === null,
          enabled: patch.enabled,
        });
        return keyViewFromProto(updated.key!);
      }),
    revokeKey: (id) => call(async () => keyViewFromProto((await keys.revokeKey({ id })).key!)),
    rotateKey: (id, graceMs) =>
      call(async () => {
        const rotated = await keys.rotateKey({ id, gracePeriod: durationFromMs(graceMs) });
        return { key: keyViewFromProto(rotated.key!), secret: rotated.secret };
      }),
    listAudit: (resourceId, limit) =>
      call(async () =>
        (await audit.listAuditEvents({ resourceId: resourceId ?? "", pageSize: limit })).events.map((event) => ({
          id: event.id,
          atMs: msOf(event.time) ?? 0,
          actor: { id: event.actorId, name: event.actorName },
          action: event.action,
          resourceType: event.resourceType,
          resourceId: event.resourceId,
          before: event.before ?? null,
          after: event.after ?? null,
        })),
      ),
    createToken: (name, kind) =>
      call(async () => {
        const created = await tokens.createToken({ name, kind: TOKEN_KIND_TO_PROTO[kind] });
        return { token: tokenFromProto(created.token!), secret: created.secret };
      }),
    listTokens: () => call(async () => (await tokens.listTokens({})).tokens.map(tokenFromProto)),
    revokeToken: (id) => call(async () => tokenFromProto((await tokens.revokeToken({ id })).token!)),
    close: async () => {},
  };
}

/** Turns an admin API error into the CLI's errors: not found and conflicts exit 1, bad input exits 2. */
export function translateError(error: unknown, baseUrl: string): Error {
  const connectError = ConnectError.from(error);
  switch (connectError.code) {
    case Code.NotFound:
      return new StoreError(connectError.rawMessage, "not_found");
    case Code.AlreadyExists:
      return new StoreError(connectError.rawMessage, "already_exists");
    case Code.InvalidArgument:
      return new UsageError(connectError.rawMessage);
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new UsageError(`the server rejected the token (${connectError.rawMessage}); pass an admin token with --token or TOLLGATE_ADMIN_TOKEN`);
    case Code.Unavailable:
      return new Error(`the server at ${baseUrl} is unreachable: ${connectError.rawMessage}`);
    default:
      return new Error(`the server failed: ${connectError.rawMessage}`);
  }
}

const KEY_STATE_FROM_PROTO: Record<number, KeyState> = {
  [KeyStateProto.ACTIVE]: "active",
  [KeyStateProto.REVOKED]: "revoked",
  [KeyStateProto.EXPIRED]: "expired",
  [KeyStateProto.DISABLED]: "disabled",
};
const KEY_STATE_TO_PROTO: Record<KeyState, KeyStateProto> = {
  active: KeyStateProto.ACTIVE,
  revoked: KeyStateProto.REVOKED,
  expired: KeyStateProto.EXPIRED,
  disabled: KeyStateProto.DISABLED,
};
const TOKEN_KIND_TO_PROTO: Record<TokenKind, TokenKindProto> = { admin: TokenKindProto.ADMIN, sidecar: TokenKindProto.SIDECAR };

function msOf(timestamp: Timestamp | undefined): number | null {
  return timestamp === undefined ? null : timestampMs(timestamp);
}

function apiFromProto(api: Api): ApiRecord {
  return {
    id: api.id,
    orgId: api.orgId || null,
    name: api.name,
    keyPrefix: api.keyPrefix,
    defaultPlanId: api.defaultPlanId || null,
    createdAtMs: msOf(api.createTime) ?? 0,
    version: 0,
  };
}

function planFromProto(plan: Plan): PlanRecord {
  return {
    id: plan.id,
    apiId: plan.apiId,
    name: plan.name,
    tiers: plan.tiers.map(tierFromMessage),
    createdAtMs: msOf(plan.createTime) ?? 0,
    updatedAtMs: msOf(plan.updateTime) ?? 0,
    version: 0,
  };
}

function keyViewFromProto(key: Key): KeyView {
  const record: KeyRecord = {
    id: key.id,
    apiId: key.apiId,
    start: key.start,
    name: key.name || null,
    ownerId: key.ownerId || null,
    planId: key.planId || null,
    scopes: key.scopes,
    enabled: key.enabled,
    expiresAtMs: msOf(key.expireTime),
    revokedAtMs: msOf(key.revokeTime),
    createdAtMs: msOf(key.createTime) ?? 0,
    updatedAtMs: msOf(key.updateTime) ?? 0,
    metadata: key.metadata ?? null,
    tierOverride: key.tierOverride ? key.tierOverride.tiers.map(tierFromMessage) : null,
    previousSecretExpiresAtMs: msOf(key.previousSecretExpireTime),
    version: 0,
  };
  return { key: record, state: KEY_STATE_FROM_PROTO[key.state] ?? "active" };
}

function tokenFromProto(token: Token): TokenRecord {
  return {
    id: token.id,
    name: token.name,
    kind: token.kind === TokenKindProto.SIDECAR ? "sidecar" : "admin",
    start: token.start,
    createdAtMs: msOf(token.createTime) ?? 0,
    revokedAtMs: msOf(token.revokeTime),
  };
}
