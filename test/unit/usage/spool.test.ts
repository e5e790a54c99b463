import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { usageSpoolPath } from "../../../src/config/sidecar-config.js";
import { decodeSpooledEvent } from "../../../src/usage/event-encoding.js";
import { UsageSpool, type UsageSpoolOptions } from "../../../src/usage/spool.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";
import { records } from "./usage-fakes.js";

describe("usage spool", () => {
  let dataDir: string;
  let path: string;
  const opened: UsageSpool[] = [];

  function open(options: Partial<UsageSpoolOptions> = {}): UsageSpool {
    const spool = UsageSpool.open(path, { maxEvents: 1_000, fullPolicy: "drop-oldest", ...options });
    opened.push(spool);
    return spool;
  }

  /** Request ids and sequences of every event left, oldest first. */
  function contents(spool: UsageSpool) {
    return spool.readAfter(0, 1_000).map(({ sequence, bytes }) => [sequence, decodeSpooledEvent(sequence, bytes).requestId]);
  }

  beforeEach(() => {
    dataDir = makeTempDir("spool");
    path = usageSpoolPath(dataDir);
  });

  afterEach(() => {
    for (const spool of opened.splice(0)) {
      try {
        spool.close();
      } catch {
        // Closed by the test already.
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("appends with ascending sequences", () => {
    const spool = open();

    const first = spool.append(records("a", "b"));
    const second = spool.append(records("c"));

    expect(first).toEqual({ sequences: [1, 2], dropped: 0 });
    expect(second).toEqual({ sequences: [3], dropped: 0 });
    expect(spool.count).toBe(3);
    expect(contents(spool)).toEqual([
      [1, "a"],
      [2, "b"],
      [3, "c"],
    ]);
  });

  it("reads after a sequence up to a limit", () => {
    const spool = open();
    spool.append(records("a", "b", "c", "d"));

    const [first] = spool.readAfter(0, 1);

    expect(spool.readAfter(1, 2).map(({ sequence, bytes }) => decodeSpooledEvent(sequence, bytes).requestId)).toEqual(["b", "c"]);
    expect(spool.readAfter(4, 10)).toEqual([]);
    expect(decodeSpooledEvent(first!.sequence, first!.bytes)).toMatchObject({ sequence: 1n, apiId: "api_payments", keyId: "key_1", scopes: ["read"], cost: 1n });
  });

  it("deletes through an acknowledged sequence", () => {
    const spool = open();
    spool.append(records("a", "b", "c"));

    expect(spool.deleteThrough(2)).toBe(2);
    expect(spool.deleteThrough(2)).toBe(0);
    expect(spool.count).toBe(1);
    expect(contents(spool)).toEqual([[3, "c"]]);
  });

  it("keeps sequences rising after emptying", () => {
    const spool = open();
    spool.append(records("a", "b"));
    spool.deleteThrough(2);

    expect(spool.append(records("c")).sequences).toEqual([3]);
  });

  it("reopen keeps events, spool id and sequence", () => {
    const first = open();
    first.append(records("a", "b", "c"));
    first.deleteThrough(1);
    const spoolId = first.spoolId;
    first.close();

    const reopened = open();

    expect(reopened.spoolId).toBe(spoolId);
    expect(reopened.count).toBe(2);
    expect(contents(reopened)).toEqual([
      [2, "b"],
      [3, "c"],
    ]);
    expect(reopened.append(records("d")).sequences).toEqual([4]);
  });

  it("new file gets a new spool id", () => {
    const first = open();
    const firstId = first.spoolId;
    first.close();
    rmSync(dataDir, { recursive: true, force: true });

    const second = open();

    expect(firstId).toMatch(/^[0-9a-f-]{36}$/);
    expect(second.spoolId).not.toBe(firstId);
    expect(second.append(records("a")).sequences).toEqual([1]);
  });

  it("file readable by its owner only", () => {
    open();

    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, "usage-spool.db")).isFile()).toBe(true);
  });

  it("drop-oldest bound deletes the oldest", () => {
    const spool = open({ maxEvents: 5, fullPolicy: "drop-oldest" });
    spool.append(records("a", "b", "c"));

    const result = spool.append(records("d", "e", "f", "g"));

    expect(result).toEqual({ sequences: [4, 5, 6, 7], dropped: 2 });
    expect(spool.count).toBe(5);
    expect(contents(spool).map(([, name]) => name)).toEqual(["c", "d", "e", "f", "g"]);
  });

  it("drop-oldest bound with a batch larger than it", () => {
    const spool = open({ maxEvents: 3, fullPolicy: "drop-oldest" });
    spool.append(records("a"));

    const result = spool.append(records("b", "c", "d", "e"));

    expect(result.dropped).toBe(2);
    expect(contents(spool)).toEqual([
      [3, "c"],
      [4, "d"],
      [5, "e"],
    ]);
  });

  it("drop-newest bound drops what is appended", () => {
    const spool = open({ maxEvents: 5, fullPolicy: "drop-newest" });
    spool.append(records("a", "b", "c"));

    const partly = spool.append(records("d", "e", "f", "g"));
    const none = spool.append(records("h"));

    expect(partly).toEqual({ sequences: [4, 5], dropped: 2 });
    expect(none).toEqual({ sequences: [], dropped: 1 });
    expect(spool.count).toBe(5);
    expect(contents(spool).map(([, name]) => name)).toEqual(["a", "b", "c", "d", "e"]);
    // Dropped events took no sequence, so the next stored one follows without a gap.
    spool.deleteThrough(1);
    expect(spool.append(records("i")).sequences).toEqual([6]);
  });

  it("failed append stores nothing", () => {
    const spool = open();
    spool.append(records("a"));

    expect(() => spool.appendEncoded([new Uint8Array([1]), null as unknown as Uint8Array])).toThrow();

    expect(spool.count).toBe(1);
    expect(spool.append(records("b")).sequences).toEqual([2]);
    expect(contents(spool)).toEqual([
      [1, "a"],
      [2, "b"],
    ]);
  });
});
