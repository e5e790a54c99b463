import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { EventBatchSchema, UsageEventSchema } from "../../../src/gen/tollgate/usage/v1/usage_pb.js";
import { decodeSpooledEvent, encodeUsageRecord, frameSpooledEvent } from "../../../src/usage/event-encoding.js";
import { toUsageEvent, type UsageRecord } from "../../../src/usage/usage-event.js";
import { usageRecord } from "./usage-fakes.js";

const CASES: [string, Partial<UsageRecord>][] = [
  ["a typical allowed event", {}],
  ["a denial with flags", { allowed: false, reason: "rate_limited", status: 429, cost: 0, shadowExceeded: true, overage: true }],
  ["empty strings left out", { apiId: "", keyId: "", ownerId: "", method: "", path: "", reason: "", clientAddress: "", userAgent: "", requestId: "", scopes: [] }],
  ["several scopes and an empty one", { scopes: ["read", "", "write:all"] }],
  ["non-ASCII text", { path: "/v1/städte/東京/🚀", userAgent: "agent ✓ ünïcödé", ownerId: "org_ß" }],
  ["strings longer than 127 bytes", { path: `/${"p".repeat(2047)}`, userAgent: "u".repeat(256), requestId: "r".repeat(200) }],
  ["multi-byte strings at the length bound", { path: `/${"é".repeat(2047)}`, userAgent: "😀".repeat(128) }],
  ["large numbers", { timeMs: 8_640_000_000_000, cost: 1_000_000, status: 503, overageCost: 999_999 }],
  ["overage cost past the quota", { overage: true, cost: 2, overageCost: 1 }],
  ["overage flag without overage cost", { overage: true, overageCost: 0 }],
  ["zero time", { timeMs: 0 }],
];

describe("usage event encoding", () => {
  it.each(CASES)("matches protobuf-es: %s", (_case, overrides) => {
    const record = { ...usageRecord("req-1"), ...overrides };

    const encoded = encodeUsageRecord(record);

    expect(Buffer.from(encoded).toString("hex")).toBe(Buffer.from(toBinary(UsageEventSchema, toUsageEvent(record))).toString("hex"));
  });

  it("copies the encoded bytes", () => {
    const first = encodeUsageRecord(usageRecord("first"));
    const copy = Uint8Array.from(first);

    encodeUsageRecord({ ...usageRecord("second"), path: "/other", requestId: "overwritten" });

    expect(Uint8Array.from(first)).toEqual(copy);
  });

  it.each([1, 127, 128, 16_384, 2 ** 40])("frames sequence %i like a batch element", (sequence) => {
    const record = usageRecord("framed");
    const stored = encodeUsageRecord(record);

    const batch = create(EventBatchSchema);
    batch.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: frameSpooledEvent(sequence, stored) }];
    const decoded = fromBinary(EventBatchSchema, toBinary(EventBatchSchema, batch));

    expect(decoded.events).toEqual([toUsageEvent(record, sequence)]);
  });

  it("decodes stored bytes with their sequence", () => {
    const record = { ...usageRecord("stored"), cost: 5, overage: true, overageCost: 3 };

    expect(decodeSpooledEvent(9, encodeUsageRecord(record))).toEqual(toUsageEvent(record, 9));
  });
});
