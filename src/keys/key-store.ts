import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import type { Tier } from "../ratelimit/tier.js";
import { openWritableDatabase } from "../sqlite/open-database.js";
import { displayStart, generateId, generateKey, hashKey, validatePrefix } from "./key-format.js";
import type { ApiRecord, KeyGrant, KeyRecord, KeyState, PlanRecord } from "./records.js";
import { migrateKeyStore, SCHEMA_VERSION } from "./schema.js";
import { StoreError } from "./store-error.js";

export interface CreateKeyInput {
  apiId: string;
  planId?: string | null;
  name?: string | null;
  ownerId?: string | null;
  scopes?: string[];
  expiresAtMs?: number | null;
  metadata?: Record<string, unknown> | null;
  tierOverride?: Tier[] | null;
}

/** Changes to a key; fields left undefined stay as they are, null clears. */
export interface KeyPatch {
  name?: string | null;
  ownerId?: string | null;
  planId?: string | null;
  scopes?: string[];
  expiresAtMs?: number | null;
  metadata?: Record<string, unknown> | null;
  tierOverride?: Tier[] | null;
  enabled?: boolean;
}

export interface ListKeysFilter {
  apiId?: string;
  ownerId?: string;
  state?: KeyState;
  /** Keys after this one in (creation time, id) order, for paging. */
  after?: { createdAtMs: number; id: string };
  limit?: number;
}

/** Everything that changed after a version, in version order, for replication. */
export interface ChangeSet {
  apis: ApiRecord[];
  plans: PlanRecord[];
  keys: ReplicatedKey[];
  /** The highest version in the set, or the requested one when nothing changed. */
  version: number;
}

/** A key with the hashes a replica needs to verify it. Never leaves the server except to sidecars. */
export interface ReplicatedKey extends KeyRecord {
  hash: string;
  previousSecrets: { hash: string; expiresAtMs: number }[];
}

export { StoreError, type StoreErrorCode } from "./store-error.js";

/**
 * The SQLite key store: APIs, plans and keys in one file (WAL mode, so a
 * sidecar reads while another process writes). Secrets never enter it; a key
 * is found by the SHA-256 of the presented secret.
 *
 * Every change takes the next global version and stamps it on the changed
 * row, so "what changed after version N" is one indexed query: the basis of
 * replication. A replica applies the server's rows with the server's versions.
 */
export class KeyStore {
  private readonly statements;

  private constructor(
    /** The open database, for stores that keep more tables in the same file. */
    readonly db: Database.Database,
    private readonly clock: { wallMs(): number },
  ) {
    this.statements = prepareStatements(db);
  }

  /** Opens the store at `path`, creating it and running migrations when needed. */
  static open(path: string, clock: { wallMs(): number }): KeyStore {
    const db = openWritableDatabase(path, {
      prepare: (opened) => {
        opened.pragma("foreign_keys = ON");
        migrateKeyStore(opened);
      },
    });
    return new KeyStore(db, clock);
  }

  /**
   * Opens an existing store for reading, or returns undefined while the file
   * does not exist yet or another process has not finished creating it.
   * Throws for a file that is not a store, or whose schema is older or newer
   * than this build's: readers never migrate, the writer does.
   */
  static openExisting(path: string, clock: { wallMs(): number }): KeyStore | undefined {
    if (!existsSync(path)) return undefined;
    const db = new Database(path, { fileMustExist: true });
    try {
      db.pragma("busy_timeout = 5000");
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version === 0) {
        db.close();
        return undefined;
      }
      if (version !== SCHEMA_VERSION) {
        throw new Error(
          version < SCHEMA_VERSION
            ? `the store's schema version ${version} is older than this build's ${SCHEMA_VERSION}: run any tollgate command on it, such as tollgate apis list, to upgrade it`
            : `the store's schema version ${version} is newer than this build's ${SCHEMA_VERSION}: upgrade Tollgate`,
        );
      }
      return new KeyStore(db, clock);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  close(): void {
    this.db.close();
  }

  /** Returns SQLite's data_version, which changes whenever another connection commits to the file. */
  dataVersion(): number {
    return this.db.pragma("data_version", { simple: true }) as number;
  }

  /**
   * Runs `work` in one transaction: all of its changes commit together, or none on a throw.
   * Transactions start IMMEDIATE, taking the write lock at once, so a second writer waits
   * for the busy timeout instead of failing when its read turns into a write.
   */
  transaction<T>(work: () => T): T {
    return this.db.transaction(work).immediate();
  }

  /** The version of the last change in this store. */
  currentVersion(): number {
    return Number((this.statements.getMeta.get("version") as { value: string }).value);
  }

  /**
   * Returns whether keys can be served from this store: always for a store of record,
   * and for a replica only once it has applied a complete snapshot.
   */
  isServing(): boolean {
    const row = this.statements.getMeta.get("replica_state") as { value: string } | undefined;
    return row === undefined || row.value === "synced";
  }

  createApi(name: string, keyPrefix: string, orgId: string | null = null): ApiRecord {
    const problem = validatePrefix(keyPrefix);
    if (problem) throw new StoreError(`invalid prefix "${keyPrefix}": ${problem}`, "invalid_argument");
    return this.db.transaction(() => {
      if (this.findApi(name)) throw new StoreError(`API "${name}" already exists`, "already_exists");
      const api: ApiRecord = { id: generateId("api"), orgId, name, keyPrefix, defaultPlanId: null, createdAtMs: this.clock.wallMs(), version: this.nextVersion() };
      this.statements.upsertApi.run(apiToRow(api));
      return api;
    }).immediate();
  }

  /** Finds an API by id or name. */
  findApi(idOrName: string): ApiRecord | undefined {
    const row = this.statements.apiByIdOrName.get({ ref: idOrName }) as ApiRow | undefined;
    return row && apiFromRow(row);
  }

  listApis(orgId?: string): ApiRecord[] {
    const apis = (this.statements.allApis.all() as ApiRow[]).map(apiFromRow);
    return orgId === undefined ? apis : apis.filter((api) => api.orgId === orgId);
  }

  /** Sets the plan of keys created without one; null for none. */
  setDefaultPlan(apiId: string, planId: string | null): ApiRecord {
    return this.db.transaction(() => {
      const api = this.requireApi(apiId);
      if (planId !== null) this.requirePlan(api.id, planId);
      const updated = { ...api, defaultPlanId: planId, version: this.nextVersion() };
      this.statements.upsertApi.run(apiToRow(updated));
      return updated;
    }).immediate();
  }

  /**
   * Creates or replaces the plan `name` of an API. The API's first plan, or
   * any plan set with `makeDefault`, becomes the default for new keys.
   */
  setPlan(apiId: string, name: string, tiers: Tier[], makeDefault = false): PlanRecord {
    return this.db.transaction(() => {
      const api = this.requireApi(apiId);
      const nowMs = this.clock.wallMs();
      const version = this.nextVersion();
      const existing = this.findPlan(api.id, name);
      const plan: PlanRecord = existing
        ? { ...existing, tiers, updatedAtMs: nowMs, version }
        : { id: generateId("plan"), apiId: api.id, name, tiers, createdAtMs: nowMs, updatedAtMs: nowMs, version };
      this.statements.upsertPlan.run(planToRow(plan));
      if (makeDefault || api.defaultPlanId === null) {
        this.statements.upsertApi.run(apiToRow({ ...api, defaultPlanId: plan.id, version }));
      }
      return plan;
    }).immediate();
  }

  /** Finds a plan of an API by id or name. */
  findPlan(apiId: string, idOrName: string): PlanRecord | undefined {
    const row = this.statements.planByIdOrName.get({ apiId, ref: idOrName }) as PlanRow | undefined;
    return row && planFromRow(row);
  }

  listPlans(apiId: string): PlanRecord[] {
    return (this.statements.plansOfApi.all(apiId) as PlanRow[]).map(planFromRow);
  }

  /** Creates a key and returns it with its secret, which is not kept anywhere. */
  createKey(input: CreateKeyInput): { key: KeyRecord; secret: string } {
    return this.db.transaction(() => {
      const api = this.requireApi(input.apiId);
      const planId = input.planId === undefined ? api.defaultPlanId : input.planId;
      if (planId !== null) this.requirePlan(api.id, planId);

      const secret = generateKey(api.keyPrefix);
      const nowMs = this.clock.wallMs();
      const key: KeyRecord = {
        id: generateId("key"),
        apiId: api.id,
        start: displayStart(secret),
        name: input.name ?? null,
        ownerId: input.ownerId ?? null,
        planId,
        scopes: input.scopes ?? [],
        enabled: true,
        expiresAtMs: input.expiresAtMs ?? null,
        revokedAtMs: null,
        createdAtMs: nowMs,
        updatedAtMs: nowMs,
        metadata: input.metadata ?? null,
        tierOverride: input.tierOverride ?? null,
        previousSecretExpiresAtMs: null,
        version: this.nextVersion(),
      };
      this.statements.upsertKey.run({ ...keyToRow(key), hash: hashKey(secret) });
      return { key, secret };
    }).immediate();
  }

  getKey(id: string): KeyRecord | undefined {
    const row = this.statements.keyById.get({ id, nowMs: this.clock.wallMs() }) as KeyRow | undefined;
    return row && keyFromRow(row);
  }

  /** Lists keys in creation order, filtered and paged in SQL. */
  listKeys(filter: ListKeysFilter = {}): KeyRecord[] {
    const conditions = ["1 = 1"];
    const parameters: Record<string, unknown> = { nowMs: this.clock.wallMs() };
    if (filter.apiId !== undefined) {
      conditions.push("api_id = @apiId");
      parameters.apiId = filter.apiId;
    }
    if (filter.ownerId !== undefined) {
      conditions.push("owner_id = @ownerId");
      parameters.ownerId = filter.ownerId;
    }
    if (filter.state !== undefined) conditions.push(STATE_CONDITIONS[filter.state]);
    if (filter.after !== undefined) {
      conditions.push("(created_at, id) > (@afterCreatedAt, @afterId)");
      parameters.afterCreatedAt = filter.after.createdAtMs;
      parameters.afterId = filter.after.id;
    }
    const limit = filter.limit === undefined ? "" : ` LIMIT ${Math.max(0, Math.floor(filter.limit))}`;
    const sql = `SELECT ${KEY_COLUMNS} FROM keys k WHERE ${conditions.join(" AND ")} ORDER BY created_at, id${limit}`;
    return (this.db.prepare(sql).all(parameters) as KeyRow[]).map(keyFromRow);
  }

  /** Applies a patch to a key; returns the key before and after. */
  updateKey(id: string, patch: KeyPatch): { before: KeyRecord; after: KeyRecord } {
    return this.db.transaction(() => {
      const before = this.requireKey(id);
      if (patch.planId !== undefined && patch.planId !== null) this.requirePlan(before.apiId, patch.planId);
      const after: KeyRecord = { ...before, version: this.nextVersion(), updatedAtMs: this.clock.wallMs() };
      for (const field of PATCHABLE_FIELDS) {
        if (patch[field] !== undefined) (after as unknown as Record<string, unknown>)[field] = patch[field];
      }
      if (patch.planId !== undefined && patch.planId !== null) after.planId = this.requirePlan(before.apiId, patch.planId).id;
      this.statements.updateKey.run(keyToRow(after));
      return { before, after: this.requireKey(id) };
    }).immediate();
  }

  /** Revokes a key for good; revoking twice keeps the first time. */
  revokeKey(id: string): KeyRecord {
    const key = this.requireKey(id);
    if (key.revokedAtMs !== null) return key;
    return this.db.transaction(() => {
      this.statements.revokeKey.run({ id, nowMs: this.clock.wallMs(), version: this.nextVersion() });
      return this.requireKey(id);
    }).immediate();
  }

  setKeyEnabled(id: string, enabled: boolean): KeyRecord {
    return this.updateKey(id, { enabled }).after;
  }

  /**
   * Gives a key a new secret. The old one keeps working for `graceMs` (none
   * when 0), and earlier secrets stop now.
   */
  rotateKey(id: string, graceMs: number): { key: KeyRecord; secret: string } {
    return this.db.transaction(() => {
      const key = this.requireKey(id);
      if (key.revokedAtMs !== null) throw new StoreError(`key "${id}" is revoked and cannot be rotated`, "invalid_argument");
      const api = this.requireApi(key.apiId);
      const nowMs = this.clock.wallMs();
      const oldHash = (this.statements.hashOfKey.get(id) as { hash: string }).hash;

      this.statements.deletePreviousSecrets.run(id);
      if (graceMs > 0) this.statements.insertPreviousSecret.run({ hash: oldHash, keyId: id, expiresAt: nowMs + graceMs });

      const secret = generateKey(api.keyPrefix);
      this.statements.setSecret.run({ id, hash: hashKey(secret), start: displayStart(secret), nowMs, version: this.nextVersion() });
      return { key: this.requireKey(id), secret };
    }).immediate();
  }

  /**
   * Finds the key whose secret hashes to `hash`, with its API and the tiers
   * that apply: the current secret, or a rotated one still in its grace time.
   */
  findGrant(hash: string): KeyGrant | undefined {
    const nowMs = this.clock.wallMs();
    const current = this.statements.grantByHash.get({ hash, nowMs }) as GrantRow | undefined;
    const row = current ?? (this.statements.grantByPreviousHash.get({ hash, nowMs }) as GrantRow | undefined);
    if (!row) return undefined;
    const key = keyFromRow(row);
    return {
      ...key,
      viaPreviousSecret: current === undefined,
      apiName: row.api_name,
      planName: row.plan_name,
      tiers: key.tierOverride ?? (row.plan_tiers ? (JSON.parse(row.plan_tiers) as Tier[]) : []),
    };
  }

  /** Lists what changed after `version`, at most `maxRows` rows of each kind, for replication. */
  changesAfter(version: number, maxRows: number): ChangeSet {
    const nowMs = this.clock.wallMs();
    const apis = (this.statements.apisAfter.all(version, maxRows) as ApiRow[]).map(apiFromRow);
    const plans = (this.statements.plansAfter.all(version, maxRows) as PlanRow[]).map(planFromRow);
    const keys = (this.statements.keysAfter.all({ version, maxRows, nowMs }) as (KeyRow & { hash: string })[]).map((row) => ({
      ...keyFromRow(row),
      hash: row.hash,
      previousSecrets: (this.statements.previousSecretsOf.all({ keyId: row.id, nowMs }) as { hash: string; expires_at: number }[]).map((secret) => ({
        hash: secret.hash,
        expiresAtMs: secret.expires_at,
      })),
    }));

    // When a kind was cut at maxRows, later rows of the other kinds wait for the next call, so the set is a consistent prefix.
    const cuts = [apis, plans, keys].filter((rows) => rows.length === maxRows).map((rows) => rows.at(-1)!.version);
    const upTo = cuts.length > 0 ? Math.min(...cuts) : Math.max(version, ...[...apis, ...plans, ...keys].map((row) => row.version));
    const within = <T extends { version: number }>(rows: T[]) => rows.filter((row) => row.version <= upTo);
    return { apis: within(apis), plans: within(plans), keys: within(keys), version: upTo };
  }

  /**
   * Applies replicated rows with the server's versions, in one transaction.
   * `reset` empties the replica first, for a snapshot; `complete` marks it
   * servable at `version`.
   */
  applyReplication(change: ChangeSet & { reset: boolean; complete: boolean }): void {
    this.db.transaction(() => {
      if (change.reset) {
        this.db.exec("DELETE FROM previous_secrets; DELETE FROM keys; DELETE FROM plans; DELETE FROM apis;");
        this.statements.setMeta.run({ name: "replica_state", value: "syncing" });
      }
      // Keys reference plans and plans reference APIs: apply in that order.
      for (const api of change.apis) this.statements.upsertApi.run(apiToRow(api));
      for (const plan of change.plans) this.statements.upsertPlan.run(planToRow(plan));
      for (const key of change.keys) {
        this.statements.upsertKey.run({ ...keyToRow(key), hash: key.hash });
        this.statements.deletePreviousSecrets.run(key.id);
        for (const secret of key.previousSecrets) this.statements.insertPreviousSecret.run({ hash: secret.hash, keyId: key.id, expiresAt: secret.expiresAtMs });
      }
      this.statements.setMeta.run({ name: "version", value: String(change.version) });
      if (change.complete) this.statements.setMeta.run({ name: "replica_state", value: "synced" });
    }).immediate();
  }

  /**
   * Marks a new replica as not servable until its first complete snapshot,
   * and turns off foreign-key checks on this connection, because a snapshot
   * may bring a key before the plan it names.
   */
  markReplica(): void {
    this.db.pragma("foreign_keys = OFF");
    if (this.statements.getMeta.get("replica_state") === undefined) this.statements.setMeta.run({ name: "replica_state", value: "syncing" });
  }

  private nextVersion(): number {
    return (this.statements.bumpVersion.get() as { value: number }).value;
  }

  private requireApi(idOrName: string): ApiRecord {
    const api = this.findApi(idOrName);
    if (!api) throw new StoreError(`API "${idOrName}" not found`, "not_found");
    return api;
  }

  private requirePlan(apiId: string, idOrName: string): PlanRecord {
    const plan = this.findPlan(apiId, idOrName);
    if (!plan) throw new StoreError(`plan "${idOrName}" not found in API "${apiId}"`, "not_found");
    return plan;
  }

  private requireKey(id: string): KeyRecord {
    const key = this.getKey(id);
    if (!key) throw new StoreError(`key "${id}" not found`, "not_found");
    return key;
  }
}

const PATCHABLE_FIELDS = ["name", "ownerId", "planId", "scopes", "expiresAtMs", "metadata", "tierOverride", "enabled"] as const satisfies readonly (keyof KeyPatch)[];

/** SQL conditions for each key state, in the order the sidecar checks them; `@nowMs` is wall time. */
const STATE_CONDITIONS: Record<KeyState, string> = {
  revoked: "revoked_at IS NOT NULL",
  expired: "revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= @nowMs",
  disabled: "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > @nowMs) AND enabled = 0",
  active: "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > @nowMs) AND enabled = 1",
};

/** Key columns plus when the last rotation's old secret stops working. */
const KEY_COLUMNS = `k.id, k.api_id, k.start, k.name, k.owner_id, k.plan_id, k.scopes, k.enabled, k.expires_at, k.revoked_at,
  k.created_at, k.updated_at, k.metadata, k.tier_override, k.version,
  (SELECT MAX(expires_at) FROM previous_secrets s WHERE s.key_id = k.id AND s.expires_at > @nowMs) AS previous_expires_at`;

interface ApiRow {
  id: string;
  org_id: string | null;
  name: string;
  key_prefix: string;
  default_plan_id: string | null;
  created_at: number;
  version: number;
}

interface PlanRow {
  id: string;
  api_id: string;
  name: string;
  tiers: string;
  created_at: number;
  updated_at: number;
  version: number;
}

interface KeyRow {
  id: string;
  api_id: string;
  start: string;
  name: string | null;
  owner_id: string | null;
  plan_id: string | null;
  scopes: string;
  enabled: number;
  expires_at: number | null;
  revoked_at: number | null;
  created_at: number;
  updated_at: number;
  metadata: string | null;
  tier_override: string | null;
  version: number;
  previous_expires_at?: number | null;
}

interface GrantRow extends KeyRow {
  api_name: string;
  plan_name: string | null;
  plan_tiers: string | null;
}

function prepareStatements(db: Database.Database) {
  const grantColumns = `${KEY_COLUMNS}, a.name AS api_name, p.name AS plan_name, p.tiers AS plan_tiers`;
  return {
    getMeta: db.prepare(`SELECT value FROM meta WHERE name = ?`),
    setMeta: db.prepare(`INSERT INTO meta (name, value) VALUES (@name, @value) ON CONFLICT (name) DO UPDATE SET value = excluded.value`),
    bumpVersion: db.prepare(`UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'version' RETURNING CAST(value AS INTEGER) AS value`),
    upsertApi: db.prepare(
      `INSERT INTO apis (id, org_id, name, key_prefix, default_plan_id, created_at, version)
       VALUES (@id, @org_id, @name, @key_prefix, @default_plan_id, @created_at, @version)
       ON CONFLICT (id) DO UPDATE SET org_id = excluded.org_id, name = excluded.name, key_prefix = excluded.key_prefix,
         default_plan_id = excluded.default_plan_id, version = excluded.version`,
    ),
    apiByIdOrName: db.prepare(`SELECT * FROM apis WHERE id = @ref OR name = @ref ORDER BY id = @ref DESC LIMIT 1`),
    allApis: db.prepare(`SELECT * FROM apis ORDER BY name`),
    upsertPlan: db.prepare(
      `INSERT INTO plans (id, api_id, name, tiers, created_at, updated_at, version)
       VALUES (@id, @api_id, @name, @tiers, @created_at, @updated_at, @version)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, tiers = excluded.tiers, updated_at = excluded.updated_at, version = excluded.version`,
    ),
    planByIdOrName: db.prepare(`SELECT * FROM plans WHERE api_id = @apiId AND (id = @ref OR name = @ref) ORDER BY id = @ref DESC LIMIT 1`),
    plansOfApi: db.prepare(`SELECT * FROM plans WHERE api_id = ? ORDER BY name`),
    upsertKey: db.prepare(
      `INSERT INTO keys (id, api_id, hash, start, name, owner_id, plan_id, scopes, enabled, expires_at, revoked_at, created_at, updated_at, metadata, tier_override, version)
       VALUES (@id, @api_id, @hash, @start, @name, @owner_id, @plan_id, @scopes, @enabled, @expires_at, @revoked_at, @created_at, @updated_at, @metadata, @tier_override, @version)
       ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, start = excluded.start, name = excluded.name, owner_id = excluded.owner_id,
         plan_id = excluded.plan_id, scopes = excluded.scopes, enabled = excluded.enabled, expires_at = excluded.expires_at,
         revoked_at = excluded.revoked_at, updated_at = excluded.updated_at, metadata = excluded.metadata,
         tier_override = excluded.tier_override, version = excluded.version`,
    ),
    updateKey: db.prepare(
      `UPDATE keys SET name = @name, owner_id = @owner_id, plan_id = @plan_id, scopes = @scopes, enabled = @enabled,
         expires_at = @expires_at, updated_at = @updated_at, metadata = @metadata, tier_override = @tier_override, version = @version
       WHERE id = @id`,
    ),
    keyById: db.prepare(`SELECT ${KEY_COLUMNS} FROM keys k WHERE k.id = @id`),
    hashOfKey: db.prepare(`SELECT hash FROM keys WHERE id = ?`),
    revokeKey: db.prepare(`UPDATE keys SET revoked_at = @nowMs, updated_at = @nowMs, version = @version WHERE id = @id AND revoked_at IS NULL`),
    setSecret: db.prepare(`UPDATE keys SET hash = @hash, start = @start, updated_at = @nowMs, version = @version WHERE id = @id`),
    deletePreviousSecrets: db.prepare(`DELETE FROM previous_secrets WHERE key_id = ?`),
    insertPreviousSecret: db.prepare(`INSERT OR REPLACE INTO previous_secrets (hash, key_id, expires_at) VALUES (@hash, @keyId, @expiresAt)`),
    previousSecretsOf: db.prepare(`SELECT hash, expires_at FROM previous_secrets WHERE key_id = @keyId AND expires_at > @nowMs`),
    grantByHash: db.prepare(
      `SELECT ${grantColumns} FROM keys k
       JOIN apis a ON a.id = k.api_id
       LEFT JOIN plans p ON p.id = k.plan_id
       WHERE k.hash = @hash`,
    ),
    grantByPreviousHash: db.prepare(
      `SELECT ${grantColumns} FROM previous_secrets s
       JOIN keys k ON k.id = s.key_id
       JOIN apis a ON a.id = k.api_id
       LEFT JOIN plans p ON p.id = k.plan_id
       WHERE s.hash = @hash AND s.expires_at > @nowMs`,
    ),
    apisAfter: db.prepare(`SELECT * FROM apis WHERE version > ? ORDER BY version LIMIT ?`),
    plansAfter: db.prepare(`SELECT * FROM plans WHERE version > ? ORDER BY version LIMIT ?`),
    keysAfter: db.prepare(`SELECT ${KEY_COLUMNS}, k.hash FROM keys k WHERE k.version > @version ORDER BY k.version LIMIT @maxRows`),
  };
}

function apiFromRow(row: ApiRow): ApiRecord {
  return {
    id: row.id,
    orgId: row.org_id,
    name: row.name,
    keyPrefix: row.key_prefix,
    defaultPlanId: row.default_plan_id,
    createdAtMs: row.created_at,
    version: row.version,
  };
}

function apiToRow(api: ApiRecord): ApiRow {
  return {
    id: api.id,
    org_id: api.orgId,
    name: api.name,
    key_prefix: api.keyPrefix,
    default_plan_id: api.defaultPlanId,
    created_at: api.createdAtMs,
    version: api.version,
  };
}

function planFromRow(row: PlanRow): PlanRecord {
  return {
    id: row.id,
    apiId: row.api_id,
    name: row.name,
    tiers: JSON.parse(row.tiers) as Tier[],
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
    version: row.version,
  };
}

function planToRow(plan: PlanRecord): PlanRow {
  return {
    id: plan.id,
    api_id: plan.apiId,
    name: plan.name,
    tiers: JSON.stringify(plan.tiers),
    created_at: plan.createdAtMs,
    updated_at: plan.updatedAtMs,
    version: plan.version,
  };
}

function keyFromRow(row: KeyRow): KeyRecord {
  return {
    id: row.id,
    apiId: row.api_id,
    start: row.start,
    name: row.name,
    ownerId: row.owner_id,
    planId: row.plan_id,
    scopes: JSON.parse(row.scopes) as string[],
    enabled: row.enabled === 1,
    expiresAtMs: row.expires_at,
    revokedAtMs: row.revoked_at,
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
    metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as Record<string, unknown>),
    tierOverride: row.tier_override === null ? null : (JSON.parse(row.tier_override) as Tier[]),
    previousSecretExpiresAtMs: row.previous_expires_at ?? null,
    version: row.version,
  };
}

function keyToRow(key: KeyRecord): Omit<KeyRow, "previous_expires_at"> {
  return {
    id: key.id,
    api_id: key.apiId,
    start: key.start,
    name: key.name,
    owner_id: key.ownerId,
    plan_id: key.planId,
    scopes: JSON.stringify(key.scopes),
    enabled: key.enabled ? 1 : 0,
    expires_at: key.expiresAtMs,
    revoked_at: key.revokedAtMs,
    created_at: key.createdAtMs,
    updated_at: key.updatedAtMs,
    metadata: key.metadata === null ? null : JSON.stringify(key.metadata),
    tier_override: key.tierOverride === null ? null : JSON.stringify(key.tierOverride),
    version: key.version,
  };
}
