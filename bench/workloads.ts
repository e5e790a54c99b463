import { encodeCheckRequests } from "./check-requests.js";
import type { HandlerKind } from "./handlers.js";
import type { SeededKeys } from "./seed.js";

export const WORKLOAD_NAMES = ["floor", "valid", "unknown", "limited"] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

/** A stream of Check requests and the status every measured call should return. */
export interface Workload {
  name: WorkloadName;
  handler: HandlerKind;
  requests: Buffer[];
  /** HTTP status Envoy should act on for every measured call. */
  expectedStatus: number;
  /** Send every request once before warming up, to use up the keys' limits. */
  prime: boolean;
}

/**
 * Builds the four workloads: the floor (valid-key requests to the
 * constant handler), valid keys under their limits (200), well-formed keys
 * that are not stored (401), and keys over their one-per-hour limit (429).
 */
export function buildWorkloads(keys: SeededKeys): Workload[] {
  const valid = encodeCheckRequests(keys.valid);
  return [
    { name: "floor", handler: "floor", requests: valid, expectedStatus: 200, prime: false },
    { name: "valid", handler: "real", requests: valid, expectedStatus: 200, prime: false },
    { name: "unknown", handler: "real", requests: encodeCheckRequests(keys.unknown), expectedStatus: 401, prime: false },
    { name: "limited", handler: "real", requests: encodeCheckRequests(keys.limited), expectedStatus: 429, prime: true },
  ];
}
