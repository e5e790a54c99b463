import type Database from "better-sqlite3";
import type { Clock } from "../../clock.js";
import { displayStart, generateId, generateKey, hashKey } from "../../keys/key-format.js";
import { KeyStore, StoreError, type ChangeSet, type CreateKeyInput, type KeyPatch, type ListKeysFilter } from "../../keys/key-store.js";
import type { ApiRecord, KeyGrant, KeyRecord, PlanRecord } from "../../keys/records.js";
import type { Tier } from "../../ratelimit/tier.js";
import type { Actor, AuditRecord, OrgRecord, TokenKind, TokenRecord } from "./records.js";
import type { ListAuditFilter, ServerStore } from "./server-store.js";

/** Key prefixes of the tokens the server issues, so a leaked one is recognisable. */
export const TOKEN_PREFIXES: Record<TokenKind, string> = { admin: "tgadmin", sidecar: "tgsidecar" };

const DEFAULT_ORG = "default";

/**
 * Server tables beside the key store's, in the same file, migrated in order.
 * `meta.server_schema` counts how many have run.
 */
const SERVER_MIGRATIONS: readonly string[] = [
  `CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
   CREATE TABLE tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     kind TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     start TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   );
   CREATE TABLE audit_events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     at INTEGER NOT NULL,
     actor_id TEXT NOT NULL,
     actor_name TEXT NOT NULL,
     action TEXT NOT NULL,
     resource_type TEXT NOT NULL,
     resource_id TEXT NOT NULL,
     before TEXT,
     after TEXT
   );
   CREATE INDEX audit_events_by_resource ON audit_events (resource_id, seq);`,
];

/** The embedded store of record: the key store plus orgs, tokens and the audit log, in one SQLite file. */
export class SqliteServerStore implements ServerStore {
  private readonly db: Database.Database;
  private readonly listeners = new Set<(version: number) => void>();

  private constructor(
    private readonly keys: KeyStore,
    private readonly clock: Clock,
  ) {
    this.db = keys.db;
    migrateServerTables(this.db);
  }

  static open(path: string, clock: Clock): SqliteServerStore {
    return new SqliteServerStore(KeyStore.open(path, clock), clock);
  }

  async createOrg(actor: Actor, name: string): Promise<OrgRecord> {
    return this.change(actor, "org.create", "org", () => {
      if (this.db.prepare(`SELECT 1 FROM orgs WHERE name = ?`).get(name)) throw new StoreError(`org "${name}" already exists`, "already_exists");
      const org: OrgRecord = { id: generateId("org"), name, createdAtMs: this.clock.wallMs() };
      this.db.prepare(`INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)`).run(org.id, org.name, org.createdAtMs);
      return { resourceId: org.id, before: null, after: org, result: org };
    });
  }

  async getOrg(id: string): Promise<OrgRecord | undefined> {
    const row = this.db.prepare(`SELECT * FROM orgs WHERE id = @ref OR name = @ref ORDER BY id = @ref DESC LIMIT 1`).get({ ref: id }) as OrgRow | undefined;
    return row && orgFromRow(row);
  }

  async listOrgs(): Promise<OrgRecord[]> {
    return (this.db.prepare(`SELECT * FROM orgs ORDER BY name`).all() as OrgRow[]).map(orgFromRow);
  }

  async defaultOrg(actor: Actor): Promise<OrgRecord> {
    return (await this.getOrg(DEFAULT_ORG)) ?? this.createOrg(actor, DEFAULT_ORG);
  }

  async createApi(actor: Actor, input: { name: string; keyPrefix: string; orgId: string }): Promise<ApiRecord> {
    return this.change(actor, "api.create", "api", () => {
      if (!this.db.prepare(`SELECT 1 FROM orgs WHERE id = ?`).get(input.orgId)) throw new StoreError(`org "${input.orgId}" not found`, "not_found");
      const api = this.keys.createApi(input.name, input.keyPrefix, input.orgId);
      return { resourceId: api.id, before: null, after: api, result: api };
    });
  }

  async findApi(idOrName: string): Promise<ApiRecord | undefined> {
    return this.keys.findApi(idOrName);
  }

  async listApis(orgId?: string): Promise<ApiRecord[]> {
    return this.keys.listApis(orgId);
  }

  async setDefaultPlan(actor: Actor, apiId: string, planId: string | null): Promise<ApiRecord> {
    return this.change(actor, "api.update", "api", () => {
      const before = this.keys.findApi(apiId);
      const after = this.keys.setDefaultPlan(apiId, planId);
      return { resourceId: after.id, before, after, result: after };
    });
  }

  async setPlan(actor: Actor, input: { apiId: string; name: string; tiers: Tier[]; makeDefault: boolean }): Promise<PlanRecord> {
    const api = this.keys.findApi(input.apiId);
    const before = api && this.keys.findPlan(api.id, input.name);
    return this.change(actor, before ? "plan.update" : "plan.create", "plan", () => {
      const plan = this.keys.setPlan(input.apiId, input.name, input.tiers, input.makeDefault);
      return { resourceId: plan.id, before: before ?? null, after: plan, result: plan };
    });
  }

  async findPlan(apiId: string, idOrName: string): Promise<PlanRecord | undefined> {
    return this.keys.findPlan(apiId, idOrName);
  }

  async listPlans(apiId: string): Promise<PlanRecord[]> {
    return this.keys.listPlans(apiId);
  }

  async createKey(actor: Actor, input: CreateKeyInput): Promise<{ key: KeyRecord; secret: string }> {
    return this.change(actor, "key.create", "key", () => {
      const created = this.keys.createKey(input);
      return { resourceId: created.key.id, before: null, after: created.key, result: created };
    });
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    return this.keys.getKey(id);
  }

  async listKeys(filter: ListKeysFilter): Promise<KeyRecord[]> {
    return this.keys.listKeys(filter);
  }

  async updateKey(actor: Actor, id: string, patch: KeyPatch): Promise<KeyRecord> {
    return this.change(actor, "key.update", "key", () => {
      const { before, after } = this.keys.updateKey(id, patch);
      return { resourceId: id, before, after, result: after };
    });
  }

  async revokeKey(actor: Actor, id: string): Promise<KeyRecord> {
    // Revoking twice changes nothing, so it records nothing either.
    const current = this.keys.getKey(id);
    if (current?.revokedAtMs != null) return current;
    return this.change(actor, "key.revoke", "key", () => {
      const before = this.keys.getKey(id);
      const after = this.keys.revokeKey(id);
      return { resourceId: id, before: before ?? null, after, result: after };
    });
  }

  async rotateKey(actor: Actor, id: string, graceMs: number): Promise<{ key: KeyRecord; secret: string }> {
    return this.change(actor, "key.rotate", "key", () => {
      const before = this.keys.getKey(id);
      const rotated = this.keys.rotateKey(id, graceMs);
      return { resourceId: id, before: before ?? null, after: rotated.key, result: rotated };
    });
  }

  async findGrant(hash: string): Promise<KeyGrant | undefined> {
    return this.keys.findGrant(hash);
  }

  async createToken(actor: Actor | null, input: { name: string; kind: TokenKind; secret?: string }): Promise<{ token: TokenRecord; secret: string }> {
    const secret = input.secret ?? generateKey(TOKEN_PREFIXES[input.kind]);
    const creator = actor ?? { id: "bootstrap", name: "bootstrap" };
    return this.change(creator, "token.create", "token", () => {
      if (this.db.prepare(`SELECT 1 FROM tokens WHERE hash = ?`).get(hashKey(secret))) {
        throw new StoreError("a token with this secret exists already, perhaps revoked: choose another secret", "already_exists");
      }
      const token: TokenRecord = {
        id: generateId("tok"),
        name: input.name,
        kind: input.kind,
        // A secret chosen by the operator may have any shape: show at most its first 4 characters.
        start: secret.startsWith(`${TOKEN_PREFIXES[input.kind]}_`) ? displayStart(secret) : secret.slice(0, 4),
        createdAtMs: this.clock.wallMs(),
        revokedAtMs: null,
      };
      this.db
        .prepare(`INSERT INTO tokens (id, name, kind, hash, start, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(token.id, token.name, token.kind, hashKey(secret), token.start, token.createdAtMs);
      return { resourceId: token.id, before: null, after: token, result: { token, secret } };
    });
  }

  async findToken(hash: string): Promise<TokenRecord | undefined> {
    const row = this.db.prepare(`SELECT * FROM tokens WHERE hash = ? AND revoked_at IS NULL`).get(hash) as TokenRow | undefined;
    return row && tokenFromRow(row);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (this.db.prepare(`SELECT * FROM tokens ORDER BY created_at, id`).all() as TokenRow[]).map(tokenFromRow);
  }

  async revokeToken(actor: Actor, id: string): Promise<TokenRecord> {
    return this.change(actor, "token.revoke", "token", () => {
      const row = this.db.prepare(`SELECT * FROM tokens WHERE id = ?`).get(id) as TokenRow | undefined;
      if (!row) throw new StoreError(`token "${id}" not found`, "not_found");
      this.db.prepare(`UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`).run(this.clock.wallMs(), id);
      const after = tokenFromRow(this.db.prepare(`SELECT * FROM tokens WHERE id = ?`).get(id) as TokenRow);
      return { resourceId: id, before: tokenFromRow(row), after, result: after };
    });
  }

  async countTokens(kind: TokenKind): Promise<number> {
    return (this.db.prepare(`SELECT COUNT(*) AS count FROM tokens WHERE kind = ? AND revoked_at IS NULL`).get(kind) as { count: number }).count;
  }

  async listAuditEvents(filter: ListAuditFilter): Promise<AuditRecord[]> {
    let afterSeq = 0;
    if (filter.afterId !== undefined) {
      const after = this.db.prepare(`SELECT seq FROM audit_events WHERE id = ?`).get(filter.afterId) as { seq: number } | undefined;
      if (!after) throw new StoreError(`audit event "${filter.afterId}" not found`, "invalid_argument");
      afterSeq = after.seq;
    }
    const rows = this.db
      .prepare(`SELECT * FROM audit_events WHERE seq > @afterSeq AND (@resourceId IS NULL OR resource_id = @resourceId) ORDER BY seq LIMIT @limit`)
      .all({ afterSeq, resourceId: filter.resourceId ?? null, limit: filter.limit }) as AuditRow[];
    return rows.map(auditFromRow);
  }

  async currentVersion(): Promise<number> {
    return this.keys.currentVersion();
  }

  async changesAfter(version: number, maxRows: number): Promise<ChangeSet> {
    return this.keys.changesAfter(version, maxRows);
  }

  onChange(listener: (version: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.keys.close();
  }

  /**
   * Runs one change and its audit event in a single transaction, then passes
   * the new version to the listeners once it has committed.
   */
  private change<T>(actor: Actor, action: string, resourceType: string, work: () => { resourceId: string; before: unknown; after: unknown; result: T }): T {
    const versionBefore = this.keys.currentVersion();
    const result = this.keys.transaction(() => {
      const done = work();
      this.db
        .prepare(
          `INSERT INTO audit_events (id, at, actor_id, actor_name, action, resource_type, resource_id, before, after)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(generateId("evt"), this.clock.wallMs(), actor.id, actor.name, action, resourceType, done.resourceId, toJson(done.before), toJson(done.after));
      return done.result;
    });

    const version = this.keys.currentVersion();
    if (version !== versionBefore) for (const listener of this.listeners) listener(version);
    return result;
  }
}

function migrateServerTables(db: Database.Database): void {
  const row = db.prepare(`SELECT value FROM meta WHERE name = 'server_schema'`).get() as { value: string } | undefined;
  const current = row ? Number(row.value) : 0;
  if (current > SERVER_MIGRATIONS.length) {
    throw new Error(`the server schema version ${current} is newer than this build's ${SERVER_MIGRATIONS.length}: upgrade Tollgate`);
  }
  for (let version = current; version < SERVER_MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(SERVER_MIGRATIONS[version]!);
      db.prepare(`INSERT INTO meta (name, value) VALUES ('server_schema', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`).run(String(version + 1));
    }).immediate();
  }
}

function toJson(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

interface OrgRow {
  id: string;
  name: string;
  created_at: number;
}

interface TokenRow {
  id: string;
  name: string;
  kind: TokenKind;
  hash: string;
  start: string;
  created_at: number;
  revoked_at: number | null;
}

interface AuditRow {
  id: string;
  at: number;
  actor_id: string;
  actor_name: string;
  action: string;
  resource_type: string;
  resource_id: string;
  before: string | null;
  after: string | null;
}

function orgFromRow(row: OrgRow): OrgRecord {
  return { id: row.id, name: row.name, createdAtMs: row.created_at };
}

function tokenFromRow(row: TokenRow): TokenRecord {
  return { id: row.id, name: row.name, kind: row.kind, start: row.start, createdAtMs: row.created_at, revokedAtMs: row.revoked_at };
}

function auditFromRow(row: AuditRow): AuditRecord {
  return {
    id: row.id,
    atMs: row.at,
    actor: { id: row.actor_id, name: row.actor_name },
    action: row.action,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    before: row.before === null ? null : JSON.parse(row.before),
    after: row.after === null ? null : JSON.parse(row.after),
  };
}
