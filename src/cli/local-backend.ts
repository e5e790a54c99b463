import { existsSync } from "node:fs";
import type { Clock } from "../clock.js";
import { storePath } from "../config/sidecar-config.js";
import { KeyStore, StoreError } from "../keys/key-store.js";
import { keyStateAt, type KeyRecord } from "../keys/records.js";
import type { AdminBackend, KeyView } from "./admin-backend.js";
import { UsageError } from "./errors.js";

/**
 * Opens the CLI's backend in standalone mode: the SQLite store in the data folder.
 * With `mustExist`, for commands that only read, a missing store is an error
 * rather than a new empty one, so a mistyped --data does not pass unnoticed.
 */
export function openLocalBackend(dataDir: string, clock: Clock, mustExist = false): AdminBackend {
  const path = storePath(dataDir);
  if (mustExist && !existsSync(path)) {
    throw new StoreError(`no key store at ${path}: check --data, or create an API first with tollgate apis create NAME`, "not_found");
  }
  const store = KeyStore.open(path, clock);
  const view = (key: KeyRecord): KeyView => ({ key, state: keyStateAt(key, clock.wallMs()) });
  const requireApi = (ref: string, flag: string) => {
    const api = store.findApi(ref);
    if (!api) throw new StoreError(`${flag}: API "${ref}" not found; create it with: tollgate apis create ${ref}`, "not_found");
    return api;
  };
  const requirePlan = (apiId: string, ref: string) => {
    const plan = store.findPlan(apiId, ref);
    if (!plan) throw new StoreError(`--plan: plan "${ref}" not found`, "not_found");
    return plan;
  };
  const serverOnly = (what: string) => Promise.reject(new UsageError(`${what} exist only on a server: pass --server URL or set TOLLGATE_SERVER`));

  return {
    createApi: async (name, keyPrefix) => store.createApi(name, keyPrefix),
    listApis: async () => store.listApis(),
    setPlan: async (api, name, tiers, makeDefault) => store.setPlan(requireApi(api, "API").id, name, tiers, makeDefault),
    listPlans: async (api) => {
      const found = requireApi(api, "API");
      return { plans: store.listPlans(found.id), defaultPlanId: found.defaultPlanId };
    },
    createKey: async (request) => {
      const api = requireApi(request.api, "--api");
      const planId = request.plan === undefined ? undefined : requirePlan(api.id, request.plan).id;
      const { key, secret } = store.createKey({ ...request, apiId: api.id, planId });
      return { key: view(key), secret };
    },
    listKeys: async (request) => {
      const apiId = request.api === undefined ? undefined : requireApi(request.api, "--api").id;
      return store.listKeys({ apiId, ownerId: request.ownerId, state: request.state }).map(view);
    },
    updateKey: async (id, { plan, ...patch }) => {
      const key = store.getKey(id);
      if (!key) throw new StoreError(`key "${id}" not found`, "not_found");
      const planId = plan === undefined ? undefined : requirePlan(key.apiId, plan).id;
      return view(store.updateKey(id, { ...patch, planId }).after);
    },
    revokeKey: async (id) => view(store.revokeKey(id)),
    rotateKey: async (id, graceMs) => {
      const { key, secret } = store.rotateKey(id, graceMs);
      return { key: view(key), secret };
    },
    listAudit: () => serverOnly("audit logs"),
    createToken: () => serverOnly("tokens"),
    listTokens: () => serverOnly("tokens"),
    revokeToken: () => serverOnly("tokens"),
    close: async () => store.close(),
  };
}
