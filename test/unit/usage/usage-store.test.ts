import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createManualClock, type ManualClock } from "../../../src/clock.js";
import { Decision, UsageEventSchema, type UsageEvent } from "../../../src/gen/tollgate/usage/v1/usage_pb.js";
import { REASON_CODES, REASONS } from "../../../src/sidecar/reasons.js";
import { usageDatabasePath } from "../../../src/usage/usage-schema.js";
import { InvalidUsageEventError, SqliteUsageStore, type UsageSource } from "../../../src/usage/usage-store.js";
import { TRUNCATED_FIELD_LENGTHS } from "../../../src/usage/usage-validation.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";

/** 2026-01-01T10:00:00Z, the start of a minute. */
const NOW_MS = Date.UTC(2026, 0, 1, 10);
const MINUTE = 60_000;
const DAY = 86_400_000;
const SOURCE: UsageSource = { sidecarId: "pod-1", spoolId: "spool-a" };

type EventOverrides = Partial<
  Pick<UsageEvent, "apiId" | "keyId" | "ownerId" | "method" | "path" | "scopes" | "decision" | "reason" | "status" | "shadowExceeded" | "overage" | "clientAddress" | "userAgent" | "requestId">
> & { timeMs?: number; cost?: number; overageCost?: number };

/** Builds an allowed request of key_a at NOW_MS, changed by `overrides`. */
function usageEvent(sequence: number, overrides: EventOverrides = {}): UsageEvent {
  const { timeMs = NOW_MS, cost = 1, overageCost = 0, ...rest } = overrides;
  return create(UsageEventSchema, {
    sequence: BigInt(sequence),
    timeMs: BigInt(timeMs),
    apiId: "api_shop",
    keyId: "key_a",
    ownerId: "acme",
    method: "GET",
    path: "/orders",
    scopes: ["read"],
    decision: Decision.ALLOW,
    reason: "ok",
    status: 200,
    cost: BigInt(cost),
    overageCost: BigInt(overageCost),
    clientAddress: "192.0.2.7",
    userAgent: "curl/8",
    requestId: "req-1",
    ...rest,
  });
}

function events(first: number, last: number, overrides: EventOverrides = {}): UsageEvent[] {
  const list: UsageEvent[] = [];
  for (let sequence = first; sequence <= last; sequence++) list.push(usageEvent(sequence, overrides));
  return list;
}

describe("SqliteUsageStore", () => {
  let dataDir: string;
  let clock: ManualClock;
  let usage: SqliteUsageStore;

  beforeEach(() => {
    dataDir = makeTempDir("usage-store");
    clock = createManualClock(NOW_MS);
    usage = SqliteUsageStore.open(usageDatabasePath(dataDir), clock);
  });
  afterEach(async () => {
    await usage.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const count = (table: string) => (usage.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  const totalRequests = () => (usage.db.prepare("SELECT coalesce(sum(requests), 0) AS n FROM usage_minutes").get() as { n: number }).n;
  const highestOf = (source: UsageSource) =>
    (usage.db.prepare("SELECT highest_sequence FROM usage_sources WHERE sidecar_id = ? AND spool_id = ?").get(source.sidecarId, source.spoolId) as { highest_sequence: number } | undefined)?.highest_sequence;
  const minutes = () =>
    usage.db
      .prepare("SELECT minute_ms, api_id, key_id, owner_id, decision, reason, requests, cost, overage_requests, overage_cost, shadow_exceeded FROM usage_minutes ORDER BY minute_ms, key_id, decision, reason")
      .all();
  const firstUse = (keyId: string) => usage.db.prepare("SELECT api_id, owner_id, first_allowed_ms FROM key_first_use WHERE key_id = ?").get(keyId);

  it("opens with durable commits and an owner-only file", () => {
    expect(usage.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(usage.db.pragma("synchronous", { simple: true })).toBe(2);
    expect(statSync(join(dataDir, "usage.db")).mode & 0o777).toBe(0o600);
  });

  describe("ingest", () => {
    it("stores new events", async () => {
      const result = await usage.ingest(SOURCE, events(1, 3));

      expect(result).toEqual({ inserted: 3, duplicates: 0, highestSequence: 3 });
      expect(count("usage_events")).toBe(3);
      expect(totalRequests()).toBe(3);
      expect(highestOf(SOURCE)).toBe(3);
    });

    it("keeps every field of the raw event", async () => {
      await usage.ingest(SOURCE, [usageEvent(7, { scopes: ["read", "write"], shadowExceeded: true, overage: true, cost: 5, overageCost: 3 })]);

      expect(usage.db.prepare("SELECT * FROM usage_events").get()).toEqual({
        sidecar_id: "pod-1",
        spool_id: "spool-a",
        sequence: 7,
        time_ms: NOW_MS,
        api_id: "api_shop",
        key_id: "key_a",
        owner_id: "acme",
        method: "GET",
        path: "/orders",
        scopes: '["read","write"]',
        decision: "allow",
        reason: "ok",
        status: 200,
        cost: 5,
        shadow_exceeded: 1,
        overage: 1,
        client_address: "192.0.2.7",
        user_agent: "curl/8",
        request_id: "req-1",
        received_at_ms: NOW_MS,
        overage_cost: 3,
      });
    });

    it("stores a repeat within a batch once", async () => {
      const result = await usage.ingest(SOURCE, [usageEvent(1), usageEvent(2), usageEvent(2), usageEvent(3)]);

      expect(result).toEqual({ inserted: 3, duplicates: 1, highestSequence: 3 });
      expect(count("usage_events")).toBe(3);
      expect(totalRequests()).toBe(3);
    });

    it("counts a resent batch as duplicates", async () => {
      await usage.ingest(SOURCE, events(1, 3));
      const resent = await usage.ingest(SOURCE, events(1, 3));

      expect(resent).toEqual({ inserted: 0, duplicates: 3, highestSequence: 3 });
      expect(count("usage_events")).toBe(3);
      expect(totalRequests()).toBe(3);
    });

    it("stores only the new part of an overlapping batch", async () => {
      await usage.ingest(SOURCE, events(1, 3));
      const result = await usage.ingest(SOURCE, events(2, 5));

      expect(result).toEqual({ inserted: 2, duplicates: 2, highestSequence: 5 });
      expect(totalRequests()).toBe(5);
      expect(highestOf(SOURCE)).toBe(5);
    });

    it("acknowledges the batch's own highest sequence for an old resend", async () => {
      await usage.ingest(SOURCE, events(1, 10));
      const result = await usage.ingest(SOURCE, events(1, 4));

      expect(result.highestSequence).toBe(4);
      expect(highestOf(SOURCE)).toBe(10);
    });

    it("does not count a resend after the raw events were pruned", async () => {
      const old = { timeMs: NOW_MS - 8 * DAY };
      await usage.ingest(SOURCE, events(1, 3, old));
      await usage.pruneRawEvents(NOW_MS - 7 * DAY);
      expect(count("usage_events")).toBe(0);

      const resent = await usage.ingest(SOURCE, events(1, 3, old));

      expect(resent).toEqual({ inserted: 0, duplicates: 3, highestSequence: 3 });
      expect(count("usage_events")).toBe(0);
      expect(totalRequests()).toBe(3);
    });

    it("keeps spools apart", async () => {
      await usage.ingest(SOURCE, events(1, 2));
      const otherSpool = await usage.ingest({ sidecarId: "pod-1", spoolId: "spool-b" }, events(1, 2));

      expect(otherSpool.inserted).toBe(2);
      expect(count("usage_events")).toBe(4);
      expect(count("usage_sources")).toBe(2);
    });

    it("counts a spool resent under a new sidecar id once", async () => {
      await usage.ingest(SOURCE, events(1, 3));
      const restarted = await usage.ingest({ sidecarId: "pod-1-restarted", spoolId: SOURCE.spoolId }, events(2, 5));

      expect(restarted).toEqual({ inserted: 2, duplicates: 2, highestSequence: 5 });
      expect(totalRequests()).toBe(5);
      expect(usage.db.prepare("SELECT sidecar_id FROM usage_sources").pluck().all()).toEqual(["pod-1-restarted"]);
    });

    it("acknowledges an empty batch with the highest stored sequence", async () => {
      expect(await usage.ingest(SOURCE, [])).toEqual({ inserted: 0, duplicates: 0, highestSequence: 0 });
      await usage.ingest(SOURCE, events(1, 4));
      expect(await usage.ingest(SOURCE, [])).toEqual({ inserted: 0, duplicates: 0, highestSequence: 4 });
    });

    it("records when a source last sent", async () => {
      await usage.ingest(SOURCE, events(1, 1));
      clock.advance(5 * MINUTE);
      await usage.ingest(SOURCE, events(1, 1));

      const row = usage.db.prepare("SELECT last_received_at_ms FROM usage_sources").get() as { last_received_at_ms: number };
      expect(row.last_received_at_ms).toBe(NOW_MS + 5 * MINUTE);
    });

    it("truncates the fields copied from the HTTP request", async () => {
      const long = "x".repeat(10_000);
      await usage.ingest(SOURCE, [usageEvent(1, { method: long, path: `/${long}`, clientAddress: long, userAgent: long, requestId: long })]);

      const row = usage.db.prepare("SELECT method, path, client_address, user_agent, request_id FROM usage_events").get() as Record<string, string>;
      expect(row.method).toHaveLength(TRUNCATED_FIELD_LENGTHS.method);
      expect(row.path).toHaveLength(TRUNCATED_FIELD_LENGTHS.path);
      expect(row.client_address).toHaveLength(TRUNCATED_FIELD_LENGTHS.client_address);
      expect(row.user_agent).toHaveLength(TRUNCATED_FIELD_LENGTHS.user_agent);
      expect(row.request_id).toHaveLength(TRUNCATED_FIELD_LENGTHS.request_id);
    });

    it("bounds route scopes instead of rejecting them", async () => {
      const scopes = Array.from({ length: 150 }, () => "s".repeat(500));
      const result = await usage.ingest(SOURCE, [usageEvent(1, { scopes })]);

      const stored = JSON.parse(usage.db.prepare("SELECT scopes FROM usage_events").pluck().get() as string) as string[];
      expect(result.inserted).toBe(1);
      expect(stored).toHaveLength(100);
      expect(stored[0]).toHaveLength(200);
    });

    it("counts id length in characters, as the admin API does", async () => {
      const result = await usage.ingest(SOURCE, [usageEvent(1, { ownerId: "😀".repeat(200) })]);
      expect(result.inserted).toBe(1);
    });
  });

  describe("minute rollups", () => {
    it("group by minute, key, decision and reason", async () => {
      await usage.ingest(SOURCE, [
        usageEvent(1, { timeMs: NOW_MS }),
        usageEvent(2, { timeMs: NOW_MS + 59_999 }),
        usageEvent(3, { timeMs: NOW_MS + MINUTE }),
        usageEvent(4, { timeMs: NOW_MS + 10, keyId: "key_b", ownerId: "" }),
        usageEvent(5, { timeMs: NOW_MS + 20, decision: Decision.DENY, reason: "rate_limited", status: 429, cost: 0 }),
        usageEvent(6, { timeMs: NOW_MS + 30, decision: Decision.DENY, reason: "unknown_key", status: 401, keyId: "", ownerId: "", cost: 0 }),
      ]);

      const row = (minuteMs: number, keyId: string, ownerId: string, decision: string, reason: string, requests: number, cost: number) => ({
        minute_ms: minuteMs,
        api_id: "api_shop",
        key_id: keyId,
        owner_id: ownerId,
        decision,
        reason,
        requests,
        cost,
        overage_requests: 0,
        overage_cost: 0,
        shadow_exceeded: 0,
      });
      expect(minutes()).toEqual([
        row(NOW_MS, "", "", "deny", "unknown_key", 1, 0),
        row(NOW_MS, "key_a", "acme", "allow", "ok", 2, 2),
        row(NOW_MS, "key_a", "acme", "deny", "rate_limited", 1, 0),
        row(NOW_MS, "key_b", "", "allow", "ok", 1, 1),
        row(NOW_MS + MINUTE, "key_a", "acme", "allow", "ok", 1, 1),
      ]);
    });

    it("add up across batches", async () => {
      await usage.ingest(SOURCE, events(1, 2, { cost: 3 }));
      await usage.ingest(SOURCE, events(3, 5, { cost: 4 }));
      await usage.ingest({ sidecarId: "pod-2", spoolId: "spool-z" }, events(1, 1, { cost: 10 }));

      expect(minutes()).toEqual([expect.objectContaining({ minute_ms: NOW_MS, requests: 6, cost: 28 })]);
    });

    it.each([
      { name: "plain", flags: {}, expected: { requests: 2, cost: 10, overage_requests: 0, overage_cost: 0, shadow_exceeded: 0 } },
      { name: "overage", flags: { overage: true, overageCost: 3 }, expected: { requests: 2, cost: 10, overage_requests: 2, overage_cost: 6, shadow_exceeded: 0 } },
      { name: "shadow exceeded", flags: { shadowExceeded: true }, expected: { requests: 2, cost: 10, overage_requests: 0, overage_cost: 0, shadow_exceeded: 2 } },
      { name: "both", flags: { overage: true, overageCost: 3, shadowExceeded: true }, expected: { requests: 2, cost: 10, overage_requests: 2, overage_cost: 6, shadow_exceeded: 2 } },
    ])("sum cost, overage and shadow for $name events", async ({ flags, expected }) => {
      await usage.ingest(SOURCE, [usageEvent(1, { cost: 3, ...flags }), usageEvent(2, { cost: 7, ...flags })]);

      expect(minutes()).toEqual([expect.objectContaining(expected)]);
    });

    it("sum overage apart from plain events of the same minute", async () => {
      await usage.ingest(SOURCE, [usageEvent(1, { cost: 2 }), usageEvent(2, { cost: 5, overage: true, overageCost: 5 }), usageEvent(3, { cost: 1, shadowExceeded: true })]);

      expect(minutes()).toEqual([expect.objectContaining({ requests: 3, cost: 8, overage_requests: 1, overage_cost: 5, shadow_exceeded: 1 })]);
    });

    it("sum overage cost units, not the cost of overage requests", async () => {
      // A quota of 3 units: the second request of cost 2 crosses it with 1 unit, and a denial has no cost.
      await usage.ingest(SOURCE, [
        usageEvent(1, { cost: 2 }),
        usageEvent(2, { cost: 2, overage: true, overageCost: 1 }),
        usageEvent(3, { cost: 2, overage: true, overageCost: 2 }),
        usageEvent(4, { decision: Decision.DENY, reason: "rate_limited", status: 429, cost: 0, overage: true }),
      ]);

      expect(minutes()).toEqual([
        expect.objectContaining({ decision: "allow", requests: 3, cost: 6, overage_requests: 2, overage_cost: 3 }),
        expect.objectContaining({ decision: "deny", requests: 1, cost: 0, overage_requests: 1, overage_cost: 0 }),
      ]);
      expect(usage.db.prepare("SELECT overage_cost FROM usage_events ORDER BY sequence").pluck().all()).toEqual([0, 1, 2, 0]);
    });
  });

  describe("schema", () => {
    it("adds overage_cost to events stored before it existed", async () => {
      await usage.close();
      // Turn the file back into the first schema version, with one event stored under it.
      const old = new Database(usageDatabasePath(dataDir));
      old.exec("ALTER TABLE usage_events DROP COLUMN overage_cost");
      old.pragma("user_version = 1");
      old.prepare("INSERT INTO usage_events SELECT 'pod-0', 'spool-0', 1, ?, '', '', '', 'GET', '/', '[]', 'allow', 'ok', 200, 4, 0, 1, '', '', '', ?").run(NOW_MS, NOW_MS);
      old.close();

      usage = SqliteUsageStore.open(usageDatabasePath(dataDir), clock);

      expect(usage.db.pragma("user_version", { simple: true })).toBe(2);
      expect(usage.db.prepare("SELECT sidecar_id, overage_cost FROM usage_events").all()).toEqual([{ sidecar_id: "pod-0", overage_cost: 0 }]);
      await usage.ingest(SOURCE, [usageEvent(2, { cost: 4, overage: true, overageCost: 2 })]);
      expect(usage.db.prepare("SELECT overage_cost FROM usage_events WHERE sidecar_id = ?").pluck().get(SOURCE.sidecarId)).toBe(2);
    });
  });

  describe("first allowed use", () => {
    it("keeps the earliest allowed time across batches", async () => {
      await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS + 5 * MINUTE })]);
      await usage.ingest({ sidecarId: "pod-2", spoolId: "spool-b" }, [
        usageEvent(1, { timeMs: NOW_MS - 60 * MINUTE, decision: Decision.DENY, reason: "rate_limited", status: 429, cost: 0 }),
        usageEvent(2, { timeMs: NOW_MS + MINUTE, ownerId: "acme-2" }),
        usageEvent(3, { timeMs: NOW_MS + 2 * MINUTE }),
      ]);
      await usage.ingest(SOURCE, [usageEvent(2, { timeMs: NOW_MS + 30 * MINUTE })]);

      expect(firstUse("key_a")).toEqual({ api_id: "api_shop", owner_id: "acme-2", first_allowed_ms: NOW_MS + MINUTE });
    });

    it("keeps the earliest allowed time within a batch", async () => {
      await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS + 3 * MINUTE }), usageEvent(2, { timeMs: NOW_MS + MINUTE }), usageEvent(3, { timeMs: NOW_MS + 2 * MINUTE })]);

      expect(firstUse("key_a")).toMatchObject({ first_allowed_ms: NOW_MS + MINUTE });
    });

    it("ignores denials and events without a key", async () => {
      await usage.ingest(SOURCE, [
        usageEvent(1, { keyId: "key_denied", decision: Decision.DENY, reason: "revoked_key", status: 401, cost: 0 }),
        usageEvent(2, { keyId: "" }),
      ]);

      expect(count("key_first_use")).toBe(0);
    });

    it("ignores duplicates", async () => {
      await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS + MINUTE })]);
      await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS - MINUTE })]);

      expect(firstUse("key_a")).toMatchObject({ first_allowed_ms: NOW_MS + MINUTE });
    });
  });

  describe("validation", () => {
    it.each([
      { field: "sequence", event: usageEvent(0), message: /must be from 1 to/ },
      { field: "sequence", event: create(UsageEventSchema, { ...usageEvent(1), sequence: 2n ** 60n }), message: /must be from 1 to 9007199254740991/ },
      { field: "time_ms", event: usageEvent(4, { timeMs: 1_767_225_600 }), message: /1767225600 is outside/ },
      { field: "time_ms", event: usageEvent(4, { timeMs: NOW_MS + 2 * DAY }), message: /one day after the server's clock/ },
      { field: "api_id", event: usageEvent(4, { apiId: "a".repeat(201) }), message: /201 characters, more than the maximum 200/ },
      { field: "key_id", event: usageEvent(4, { keyId: "k".repeat(201) }), message: /more than the maximum 200/ },
      { field: "owner_id", event: usageEvent(4, { ownerId: "o".repeat(201) }), message: /more than the maximum 200/ },
      { field: "decision", event: usageEvent(4, { decision: Decision.UNSPECIFIED }), message: /DECISION_ALLOW or DECISION_DENY/ },
      { field: "reason", event: usageEvent(4, { reason: "" }), message: /must be one of the sidecar's decision reasons \(ok, invalid_request, .*\), not ""$/ },
      { field: "reason", event: usageEvent(4, { reason: "Rate Limited" }), message: /, not "Rate Limited"$/ },
      { field: "reason", event: usageEvent(4, { reason: "free_pass", decision: Decision.DENY, status: 403, cost: 0 }), message: /, not "free_pass"$/ },
      { field: "reason", event: usageEvent(4, { reason: "r".repeat(65) }), message: new RegExp(`, not "${"r".repeat(64)}…"$`) },
      { field: "reason", event: usageEvent(4, { reason: "toString" }), message: /, not "toString"$/ },
      { field: "decision", event: usageEvent(4, { reason: "rate_limited", status: 429 }), message: /must be DECISION_DENY for reason "rate_limited"/ },
      { field: "decision", event: usageEvent(4, { decision: Decision.DENY, cost: 0 }), message: /must be DECISION_ALLOW for reason "ok"/ },
      { field: "status", event: usageEvent(4, { status: 429 }), message: /429 does not match reason "ok", which has status 200/ },
      { field: "status", event: usageEvent(4, { decision: Decision.DENY, reason: "rate_limited", status: 200, cost: 0 }), message: /200 does not match reason "rate_limited", which has status 429/ },
      { field: "status", event: usageEvent(4, { decision: Decision.DENY, reason: "unknown_key", status: 403, cost: 0 }), message: /403 does not match reason "unknown_key", which has status 401/ },
      { field: "cost", event: usageEvent(4, { decision: Decision.DENY, reason: "rate_limited", status: 429, cost: 5 }), message: /is 5, but a denied request costs 0/ },
      { field: "cost", event: usageEvent(4, { cost: 1_000_001 }), message: /more than the maximum 1000000/ },
      { field: "overage_cost", event: usageEvent(4, { cost: 2, overage: true, overageCost: 3 }), message: /3 is more than the event's cost 2/ },
      { field: "overage_cost", event: usageEvent(4, { decision: Decision.DENY, reason: "rate_limited", status: 429, cost: 0, overage: true, overageCost: 1 }), message: /is 1, but a denied request has no overage cost/ },
      { field: "overage_cost", event: usageEvent(4, { cost: 2, overage: false, overageCost: 1 }), message: /but overage is false/ },
    ])("rejects an invalid $field: $message", async ({ field, event, message }) => {
      const batch = [usageEvent(1), usageEvent(2), event];
      const error = await usage.ingest(SOURCE, batch).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(InvalidUsageEventError);
      expect((error as InvalidUsageEventError).field).toBe(field);
      expect((error as InvalidUsageEventError).sequence).toBe(event.sequence);
      expect((error as Error).message).toContain(`${field} (event sequence ${event.sequence}): `);
      expect((error as Error).message).toMatch(message);
    });

    it("stores nothing of a rejected batch", async () => {
      await usage.ingest(SOURCE, [usageEvent(1), usageEvent(2), usageEvent(3, { reason: "" })]).catch(() => undefined);

      expect(count("usage_events")).toBe(0);
      expect(count("usage_minutes")).toBe(0);
      expect(count("usage_sources")).toBe(0);
    });

    it("rejects a sequence that goes down", async () => {
      const error = await usage.ingest(SOURCE, [usageEvent(5), usageEvent(9), usageEvent(7)]).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(InvalidUsageEventError);
      expect((error as Error).message).toBe("sequence (event sequence 7): comes after sequence 9, but events must be in ascending sequence order");
    });

    it("rejects a batch of more than 10000 events", async () => {
      const error = await usage.ingest(SOURCE, events(1, 10_001)).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(InvalidUsageEventError);
      expect((error as InvalidUsageEventError).field).toBe("events");
      expect((error as Error).message).toBe("events: a batch has 10001 events, more than the maximum 10000");
    });

    it("accepts every sidecar reason with its status", async () => {
      const batch = REASON_CODES.map((reason, index) =>
        usageEvent(index + 1, { reason, status: REASONS[reason].status, decision: reason === "ok" ? Decision.ALLOW : Decision.DENY, cost: reason === "ok" ? 1 : 0 }),
      );

      const result = await usage.ingest(SOURCE, batch);

      expect(result.inserted).toBe(REASON_CODES.length);
    });

    it("accepts an event a day ahead of the server's clock", async () => {
      const result = await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS + DAY })]);
      expect(result.inserted).toBe(1);
    });
  });

  describe("pruning", () => {
    it("deletes old raw events in chunks and keeps rollups", async () => {
      await usage.ingest(SOURCE, events(1, 10, { timeMs: NOW_MS - 8 * DAY }));
      await usage.ingest(SOURCE, events(11, 12, { timeMs: NOW_MS - 6 * DAY }));

      const result = await usage.pruneRawEvents(NOW_MS - 7 * DAY, { chunkRows: 3 });

      expect(result).toEqual({ deletedRows: 10, chunks: 4 });
      expect(usage.db.prepare("SELECT sequence FROM usage_events ORDER BY sequence").pluck().all()).toEqual([11, 12]);
      expect(totalRequests()).toBe(12);
    });

    it("deletes raw events strictly before the cutoff", async () => {
      await usage.ingest(SOURCE, [usageEvent(1, { timeMs: NOW_MS - 1 }), usageEvent(2, { timeMs: NOW_MS })]);

      expect(await usage.pruneRawEvents(NOW_MS)).toEqual({ deletedRows: 1, chunks: 1 });
      expect(await usage.pruneRawEvents(NOW_MS)).toEqual({ deletedRows: 0, chunks: 0 });
    });

    it("stops between chunks when aborted", async () => {
      await usage.ingest(SOURCE, events(1, 10, { timeMs: NOW_MS - 8 * DAY }));
      const abort = new AbortController();
      abort.abort();

      expect(await usage.pruneRawEvents(NOW_MS, { chunkRows: 3, signal: abort.signal })).toEqual({ deletedRows: 0, chunks: 0 });
      expect(count("usage_events")).toBe(10);
    });

    it("deletes rollup minutes before the cutoff only", async () => {
      await usage.ingest(SOURCE, [
        usageEvent(1, { timeMs: NOW_MS - 2 * MINUTE }),
        usageEvent(2, { timeMs: NOW_MS - MINUTE + 5 }),
        usageEvent(3, { timeMs: NOW_MS - MINUTE + 6, keyId: "key_b" }),
        usageEvent(4, { timeMs: NOW_MS }),
      ]);

      const result = await usage.pruneRollups(NOW_MS - MINUTE, { chunkRows: 1 });

      expect(result).toEqual({ deletedRows: 1, chunks: 1 });
      expect(usage.db.prepare("SELECT DISTINCT minute_ms FROM usage_minutes ORDER BY minute_ms").pluck().all()).toEqual([NOW_MS - MINUTE, NOW_MS]);
      expect(count("key_first_use")).toBe(2);
    });
  });
});
