import { describe, expect, it } from "vitest";
import { decodePageToken, encodePageToken } from "../../../../src/server/admin/page-token.js";

interface Position {
  id: string;
}

function isPosition(value: unknown): value is Position {
  return value !== null && typeof value === "object" && typeof (value as Position).id === "string";
}

describe("page tokens", () => {
  it("round-trips a position for the same filters", () => {
    const token = encodePageToken({ id: "key_1" }, { apiId: "shop" });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, { apiId: "shop" }, isPosition)).toEqual({ id: "key_1" });
  });

  it("rejects a token for other filters", () => {
    const token = encodePageToken({ id: "key_1" }, { apiId: "shop" });
    expect(decodePageToken(token, { apiId: "maps" }, isPosition)).toBeUndefined();
  });

  it.each([
    ["not base64 JSON", "%%%"],
    ["JSON that is not an object", Buffer.from("42").toString("base64url")],
    ["a position of the wrong shape", encodePageToken({ id: 7 }, {})],
    ["no fingerprint", Buffer.from(JSON.stringify({ position: { id: "x" } })).toString("base64url")],
  ])("rejects %s", (_case, token) => {
    expect(decodePageToken(token, {}, isPosition)).toBeUndefined();
  });
});
