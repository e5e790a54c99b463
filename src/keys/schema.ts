import type Database from "better-sqlite3";
import { migrate } from "../sqlite/migrations.js";

/** The key store's schema migrations, applied in order at open. */
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

  // Versions for replication, rotation grace, per-key tier overrides and metadata.
  `CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
   INSERT INTO meta (name, value) VALUES ('version', '0');
   ALTER TABLE apis ADD COLUMN org_id TEXT;
   ALTER TABLE apis ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE plans ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE keys ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE keys ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE keys ADD COLUMN metadata TEXT;
   ALTER TABLE keys ADD COLUMN tier_override TEXT;
   UPDATE keys SET updated_at = created_at;
   CREATE TABLE previous_secrets (
     hash TEXT PRIMARY KEY,
     key_id TEXT NOT NULL REFERENCES keys (id),
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX previous_secrets_by_key ON previous_secrets (key_id);
   CREATE INDEX apis_by_version ON apis (version);
   CREATE INDEX plans_by_version ON plans (version);
   CREATE INDEX keys_by_version ON keys (version);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings a key store up to this build's schema. */
export function migrateKeyStore(db: Database.Database): void {
  migrate(db, MIGRATIONS, "store");
}
