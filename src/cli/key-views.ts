import { keyStateAt, type ApiRecord, type KeyRecord, type PlanRecord } from "../keys/records.js";
import { formatTier } from "../ratelimit/tier.js";
import { formatTime, printJson, printTable, type Output } from "./output.js";

/** How a key is printed; never with its secret, which only `keys create` shows. */
export function keyView(key: KeyRecord, nowMs: number) {
  return {
    id: key.id,
    start: key.start,
    apiId: key.apiId,
    name: key.name,
    ownerId: key.ownerId,
    planId: key.planId,
    scopes: key.scopes,
    state: keyStateAt(key, nowMs),
    enabled: key.enabled,
    expiresAt: key.expiresAtMs === null ? null : formatTime(key.expiresAtMs),
    revokedAt: key.revokedAtMs === null ? null : formatTime(key.revokedAtMs),
    createdAt: formatTime(key.createdAtMs),
  };
}

export function printKeys(output: Output, keys: KeyRecord[], json: boolean, nowMs: number): void {
  const views = keys.map((key) => keyView(key, nowMs));
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
