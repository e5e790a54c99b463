import { chmodSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

export interface WritableDatabaseOptions {
  /**
   * Sync level. `NORMAL` survives the process being killed but may lose the
   * last commits to a power loss. `FULL` syncs every commit, for data already
   * promised to a client (an Ack, say). WAL mode is used either way.
   */
  synchronous?: "NORMAL" | "FULL";
  /** Setup run after the pragmas, such as migrations. When it throws, the file is closed. */
  prepare?: (db: Database.Database) => void;
}

/**
 * Opens (creating when needed) a SQLite file for writing: owner-only, WAL,
 * a busy timeout for other processes' writes, then `prepare` (migrations).
 * Every file we write contains something private: key hashes, or usage events
 * that name keys, owners and client addresses. SQLite gives its -wal and
 * -shm files the same mode.
 */
export function openWritableDatabase(path: string, options: WritableDatabaseOptions = {}): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    chmodSync(path, 0o600);
    db.pragma("journal_mode = WAL");
    if (options.synchronous) db.pragma(`synchronous = ${options.synchronous}`);
    db.pragma("busy_timeout = 5000");
    options.prepare?.(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
