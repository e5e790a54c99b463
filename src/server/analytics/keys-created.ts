import type { KeyRecord } from "../../keys/records.js";
import type { ServerStore } from "../store/server-store.js";
import type { UsageRange } from "./usage-filter.js";

/** Keys per store call while walking a creation range. */
export const PAGE_KEYS = 1000;

/**
 * Lists the keys created in `range`, oldest first, with the optional API
 * (an id) and owner filters, reading the store of record `pageKeys` keys at a time.
 */
export async function listKeysCreatedIn(
  store: ServerStore,
  range: UsageRange,
  filter: { apiId?: string; ownerId?: string },
  pageKeys = PAGE_KEYS,
): Promise<KeyRecord[]> {
  const found: KeyRecord[] = [];
  // The store lists keys after a (creation time, id) position. Key ids are
  // never empty, so starting after (startMs, "") includes keys created at startMs.
  let after = { createdAtMs: range.startMs, id: "" };
  for (;;) {
    const page = await store.listKeys({ ...filter, after, limit: pageKeys });
    for (const key of page) {
      if (key.createdAtMs >= range.endMs) return found;
      found.push(key);
    }
    const last = page.at(-1);
    if (page.length < pageKeys || last === undefined) return found;
    after = { createdAtMs: last.createdAtMs, id: last.id };
  }
}
