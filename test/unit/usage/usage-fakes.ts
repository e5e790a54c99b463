import type { UsageRecord } from "../../../src/usage/usage-event.js";
import { START_WALL_MS } from "../fakes.js";

/** A usage record whose request id names it, so tests can tell records apart after a round trip. */
export function usageRecord(name: string): UsageRecord {
  return {
    timeMs: START_WALL_MS,
    apiId: "api_payments",
    keyId: "key_1",
    ownerId: "org_acme",
    method: "GET",
    path: "/v1/items",
    scopes: ["read"],
    allowed: true,
    reason: "ok",
    status: 200,
    cost: 1,
    shadowExceeded: false,
    overage: false,
    overageCost: 0,
    clientAddress: "10.0.0.1",
    userAgent: "test",
    requestId: name,
  };
}

/** Usage records named by their request ids. */
export function records(...names: string[]): UsageRecord[] {
  return names.map(usageRecord);
}
