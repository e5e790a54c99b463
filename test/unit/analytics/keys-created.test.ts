import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { listKeysCreatedIn } from "../../../src/server/analytics/keys-created.js";
import { openStoreFixture, type StoreFixture } from "./store-fixture.js";

const START = Date.parse("2026-11-02T00:00:00Z");

describe("listKeysCreatedIn", () => {
  let records: StoreFixture;
  let expected: string[];

  beforeEach(async () => {
    records = openStoreFixture(START - 1000);
    const api = await records.createApi("shop");
    await records.createKeyAt(START - 1, api);
    expected = [];
    // Five keys in the same millisecond test paging through ties in creation time.
    for (let i = 0; i < 5; i += 1) expected.push((await records.createKeyAt(START, api)).id);
    expected.push((await records.createKeyAt(START + 10, api)).id);
    await records.createKeyAt(START + 20, api);
  });

  afterEach(async () => {
    await records.close();
  });

  it.each([1, 2, 3, 1000])("returns each key of [start, end) once with pages of %i", async (pageKeys) => {
    const keys = await listKeysCreatedIn(records.store, { startMs: START, endMs: START + 20 }, {}, pageKeys);
    // The store orders keys created in the same millisecond by id.
    const sameMillisecond = expected.slice(0, 5).sort((a, b) => (a < b ? -1 : 1));
    expect(keys.map((key) => key.id)).toEqual([...sameMillisecond, expected[5]]);
  });
});
