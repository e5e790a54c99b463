import { rmSync } from "node:fs";
import { join } from "node:path";
import { createManualClock, type ManualClock } from "../../../src/clock.js";
import type { ApiRecord, KeyRecord } from "../../../src/keys/records.js";
import { SYSTEM_ACTOR } from "../../../src/server/store/records.js";
import { SqliteServerStore } from "../../../src/server/store/sqlite-server-store.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";

export interface StoreFixture {
  store: SqliteServerStore;
  clock: ManualClock;
  createApi(name: string): Promise<ApiRecord>;
  /** Creates a key at `createdAtMs`; keys must be created in time order, since the clock only moves forward. */
  createKeyAt(createdAtMs: number, api: ApiRecord, ownerId?: string): Promise<KeyRecord>;
  close(): Promise<void>;
}

/** Opens a real store of record in a temp folder, with a manual clock starting at `startMs`. */
export function openStoreFixture(startMs: number): StoreFixture {
  const dir = makeTempDir("analytics-store");
  const clock = createManualClock(startMs);
  const store = SqliteServerStore.open(join(dir, "tollgate.db"), clock);

  return {
    store,
    clock,
    async createApi(name) {
      const org = await store.defaultOrg(SYSTEM_ACTOR);
      return store.createApi(SYSTEM_ACTOR, { name, keyPrefix: name, orgId: org.id });
    },
    async createKeyAt(createdAtMs, api, ownerId) {
      clock.advance(createdAtMs - clock.wallMs());
      return (await store.createKey(SYSTEM_ACTOR, { apiId: api.id, ownerId: ownerId ?? null })).key;
    },
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
