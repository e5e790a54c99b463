import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createManualClock } from "../../../src/clock.js";
import { storePath } from "../../../src/config/sidecar-config.js";
import { KeyStore } from "../../../src/keys/key-store.js";
import { createLogger } from "../../../src/log/logger.js";
import { ApiIdCache } from "../../../src/usage/usage-metering.js";
import { makeTempDir } from "../../helpers/sidecar-harness.js";

describe("API id cache", () => {
  let dataDir: string;
  let store: KeyStore;
  let cache: ApiIdCache;

  beforeEach(() => {
    dataDir = makeTempDir("api-ids");
    store = KeyStore.open(storePath(dataDir), createManualClock());
    cache = new ApiIdCache(store, createLogger("silent", new Writable({ write: (_chunk, _encoding, done) => done() })));
  });

  afterEach(() => {
    store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("resolves a name or an id", () => {
    const api = store.createApi("shop", "shop");

    expect(cache.resolve("shop")).toBe(api.id);
    expect(cache.resolve(api.id)).toBe(api.id);
    expect(cache.resolve("unknown")).toBeUndefined();
  });

  it("caches results until cleared", () => {
    expect(cache.resolve("later")).toBeUndefined();
    const api = store.createApi("later", "later");

    expect(cache.resolve("later")).toBeUndefined();
    cache.clear();
    expect(cache.resolve("later")).toBe(api.id);
  });

  it("returns undefined when the replica fails", () => {
    store.close();

    expect(cache.resolve("shop")).toBeUndefined();
    store = KeyStore.open(storePath(dataDir), createManualClock());
  });
});
