import type Database from "better-sqlite3";

/**
 * Schema migrations, applied in order at open. `PRAGMA user_version` records
 * how many have run, so each runs exactly once per file; never edit one that
 * has shipped, append a new one.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE apis (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     key_prefix TEXT NOT NULL,
     default_plan_id TEXT,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE plans (
     id TEXT PRIMARY KEY,
     api_id TEXT NOT NULL REFERENCES apis (id),
     name TEXT NOT NULL,
     tiers TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     UNIQUE (api_id, name)
   );
   CREATE TABLE keys (
     id TEXT PRIMARY KEY,
     api_id TEXT NOT NULL REFERENCES apis (id),
     hash TEXT NOT NULL UNIQUE,
     start TEXT NOT NULL,
     name TEXT,
     owner_id TEXT,
     plan_id TEXT REFERENCES plans (id),
     scopes TEXT NOT NULL DEFAULT '[]',
     enabled INTEGER NOT NULL DEFAULT 1,
     expires_at INTEGER,
     revoked_at INTEGER,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX keys_by_api ON keys (api_id, created_at);
   CREATE INDEX keys_by_owner ON keys (owner_id);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`the store's schema version ${current} is newer than this build's ${SCHEMA_VERSION}: upgrade Tollgate`);
  }
  for (let version = current; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
