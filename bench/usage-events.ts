import { randomUUID } from "node:crypto";
import { generateId } from "../src/keys/key-format.js";
import type { UsageRecord } from "../src/usage/usage-event.js";

/**
 * Builds `count` usage records shaped like those the sidecar records for
 * allowed GETs through Envoy, spread over `keyCount` keys of one API, so
 * that a batch touches as many minute rollups as real traffic from that
 * many keys would. Every record has its own request id, as Envoy's
 * x-request-id is per request. Records are built ahead of the run, because
 * the sidecar builds them on the Check path, outside what is measured here.
 */
export function buildSampleRecords(count: number, keyCount: number, timeMs: number): UsageRecord[] {
  const apiId = generateId("api");
  const keys = Array.from({ length: keyCount }, (_, index) => ({ keyId: generateId("key"), ownerId: `customer-${index}` }));
  return Array.from({ length: count }, (_, index) => ({
    timeMs,
    apiId,
    ...keys[index % keyCount]!,
    method: "GET",
    path: "/v1/orders",
    scopes: [],
    allowed: true,
    reason: "ok",
    status: 200,
    cost: 1,
    shadowExceeded: false,
    overage: false,
    overageCost: 0,
    clientAddress: "203.0.113.7",
    userAgent: "bench-client/1.0",
    requestId: randomUUID(),
  }));
}
