import { describe, expect, it } from "vitest";
import { errorRatesByOwner, statusOfReason } from "../../../src/server/analytics/error-rates.js";

describe("statusOfReason", () => {
  it.each([
    ["ok", 200],
    ["unknown_key", 401],
    ["disabled_key", 403],
    ["rate_limited", 429],
    ["not_ready", 503],
    ["some_future_reason", undefined],
    ["toString", undefined],
  ])("maps %s to %s", (reason, status) => {
    expect(statusOfReason(reason)).toBe(status);
  });
});

describe("errorRatesByOwner", () => {
  it("divides denials by status by all requests of each owner", () => {
    const rates = errorRatesByOwner([
      { ownerId: "acme", decision: "allow", reason: "ok", requests: 10 },
      { ownerId: "acme", decision: "deny", reason: "revoked_key", requests: 2 },
      { ownerId: "acme", decision: "deny", reason: "expired_key", requests: 2 },
      { ownerId: "acme", decision: "deny", reason: "insufficient_scope", requests: 1 },
      { ownerId: "acme", decision: "deny", reason: "rate_limited", requests: 5 },
      { ownerId: "acme", decision: "deny", reason: "internal_error", requests: 5 },
      { ownerId: "", decision: "deny", reason: "missing_key", requests: 3 },
      { ownerId: "", decision: "deny", reason: "a_reason_from_a_newer_sidecar", requests: 1 },
    ]);
    expect(rates).toEqual([
      { ownerId: "", requests: 4, unauthorizedRequests: 3, forbiddenRequests: 0, rateLimitedRequests: 0, unauthorizedRate: 0.75, forbiddenRate: 0, rateLimitedRate: 0 },
      { ownerId: "acme", requests: 25, unauthorizedRequests: 4, forbiddenRequests: 1, rateLimitedRequests: 5, unauthorizedRate: 0.16, forbiddenRate: 0.04, rateLimitedRate: 0.2 },
    ]);
  });

  it("returns no owners for no counts", () => {
    expect(errorRatesByOwner([])).toEqual([]);
  });
});
