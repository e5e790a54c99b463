import type Database from "better-sqlite3";

/**
 * Applies schema migrations in order. `PRAGMA user_version` records how many
 * have run, so each runs exactly once per file. Append new ones: nothing
 * checks that a shipped migration is left unchanged.
 */
export function migrate(db: Database.Database, migrations: readonly string[], fileKind: string): void {
  const latest = migrations.length;
  const version = () => db.pragma("user_version", { simple: true }) as number;
  if (version() > latest) {
    throw new Error(`the ${fileKind}'s schema version ${version()} is newer than this build's ${latest}: upgrade Tollgate`);
  }
  // Each step rereads the version under the write lock, because another process may have run it meanwhile.
  while (version() < latest) {
    db.transaction(() => {
      const current = version();
      if (current >= latest) return;
      db.exec(migrations[current]!);
      db.pragma(`user_version = ${current + 1}`);
    }).immediate();
  }
}
