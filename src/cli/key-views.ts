import type { ApiRecord, PlanRecord } from "../keys/records.js";
import { formatTier } from "../ratelimit/tier.js";
import type { AuditRecord, TokenRecord } from "../server/store/records.js";
import type { KeyView } from "./admin-backend.js";
import { formatTime, printJson, printTable, type Output } from "./output.js";

/** Formats a key for printing, never with its secret, which only `keys create` and `keys rotate` show. */
export function keyView({ key, state }: KeyView) {
  return {
    id: key.id,
    start: key.start,
    apiId: key.apiId,
    name: key.name,
    ownerId: key.ownerId,
    planId: key.planId,
    scopes: key.scopes,
    state,
    enabled: key.enabled,
    tierOverride: key.tierOverride?.map(formatTier) ?? null,
    expiresAt: key.expiresAtMs === null ? null : formatTime(key.expiresAtMs),
    revokedAt: key.revokedAtMs === null ? null : formatTime(key.revokedAtMs),
    previousSecretExpiresAt: key.previousSecretExpiresAtMs === null ? null : formatTime(key.previousSecretExpiresAtMs),
    createdAt: formatTime(key.createdAtMs),
  };
}

export function printKeys(output: Output, keys: KeyView[], json: boolean): void {
  const views = keys.map(keyView);
  if (json) return printJson(output, views);
  printTable(
    output,
    ["ID", "START", "STATE", "PLAN", "OWNER", "SCOPES", "EXPIRES", "NAME"],
    views.map((view) => [view.id, `${view.start}…`, view.state, view.planId ?? "-", view.ownerId ?? "-", view.scopes.join(",") || "-", view.expiresAt ?? "-", view.name ?? "-"]),
  );
}

export function apiView(api: ApiRecord) {
  return { id: api.id, name: api.name, keyPrefix: api.keyPrefix, defaultPlanId: api.defaultPlanId, createdAt: formatTime(api.createdAtMs) };
}

export function printApis(output: Output, apis: ApiRecord[], json: boolean): void {
  if (json) return printJson(output, apis.map(apiView));
  printTable(output, ["ID", "NAME", "PREFIX", "DEFAULT PLAN"], apis.map((api) => [api.id, api.name, api.keyPrefix, api.defaultPlanId ?? "-"]));
}

export function planView(plan: PlanRecord) {
  return { id: plan.id, apiId: plan.apiId, name: plan.name, tiers: plan.tiers.map(formatTier), updatedAt: formatTime(plan.updatedAtMs) };
}

export function printPlans(output: Output, plans: PlanRecord[], json: boolean, defaultPlanId: string | null): void {
  if (json) return printJson(output, plans.map(planView));
  printTable(
    output,
    ["ID", "NAME", "TIERS", "DEFAULT"],
    plans.map((plan) => [plan.id, plan.name, plan.tiers.map(formatTier).join(" "), plan.id === defaultPlanId ? "yes" : ""]),
  );
}

export function printAudit(output: Output, events: AuditRecord[], json: boolean): void {
  if (json) return printJson(output, events.map((event) => ({ ...event, at: formatTime(event.atMs) })));
  printTable(
    output,
    ["TIME", "ACTOR", "ACTION", "RESOURCE"],
    events.map((event) => [formatTime(event.atMs), event.actor.name, event.action, event.resourceId]),
  );
}

export function tokenView(token: TokenRecord) {
  return { id: token.id, name: token.name, kind: token.kind, start: token.start, createdAt: formatTime(token.createdAtMs), revokedAt: token.revokedAtMs === null ? null : formatTime(token.revokedAtMs) };
}

export function printTokens(output: Output, tokens: TokenRecord[], json: boolean): void {
  if (json) return printJson(output, tokens.map(tokenView));
  printTable(output, ["ID", "NAME", "KIND", "START", "REVOKED"], tokens.map((token) => [token.id, token.name, token.kind, `${token.start}…`, token.revokedAtMs === null ? "-" : formatTime(token.revokedAtMs)]));
}
