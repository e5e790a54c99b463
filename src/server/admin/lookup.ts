import type { ApiRecord, KeyRecord, PlanRecord } from "../../keys/records.js";
import type { ServerStore } from "../store/server-store.js";
import { notFound } from "./errors.js";

/** Finds an API by id or name, or raises NOT_FOUND naming `field` (default `api_id`). */
export async function requireApi(store: ServerStore, reference: string, field = "api_id"): Promise<ApiRecord> {
  const api = await store.findApi(reference);
  if (!api) throw notFound(field, "API", reference);
  return api;
}

/** Finds a plan of an API by id or name, or raises NOT_FOUND naming `field` (default `plan_id`). */
export async function requirePlan(store: ServerStore, api: ApiRecord, reference: string, field = "plan_id"): Promise<PlanRecord> {
  const plan = await store.findPlan(api.id, reference);
  if (!plan) throw notFound(field, "plan", reference);
  return plan;
}

/** Finds a key by id, or raises NOT_FOUND naming `id`. */
export async function requireKey(store: ServerStore, id: string): Promise<KeyRecord> {
  const key = await store.getKey(id);
  if (!key) throw notFound("id", "key", id);
  return key;
}
