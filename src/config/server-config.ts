import { LOG_LEVELS, type LogLevel } from "../log/levels.js";
import { parseListenAddress, type ListenAddress } from "./listen-address.js";
import type { LoadedConfig } from "./sidecar-config.js";

/** Everything the server is started with, validated and frozen. */
export interface ServerConfig {
  /** Folder of the store of record; `--data`, TOLLGATE_DATA, default ./data. */
  readonly dataDir: string;
  /** Admin API (Connect, gRPC, gRPC-Web), replication, /metrics, /healthz; `--listen`, TOLLGATE_SERVER_LISTEN, default 127.0.0.1:8080. */
  readonly listen: ListenAddress;
  /** `--log-level`, TOLLGATE_LOG_LEVEL, default info. */
  readonly logLevel: LogLevel;
  /** Bootstrap admin token from TOLLGATE_ADMIN_TOKEN; undefined generates one on first start. */
  readonly adminToken: string | undefined;
  /** How long shutdown waits for open requests and streams; default 5000 ms. */
  readonly shutdownGraceMs: number;
}

export interface ServerFlags {
  data?: string;
  listen?: string;
  logLevel?: string;
  shutdownGraceMs?: string;
}

export const DEFAULT_SERVER_LISTEN = "127.0.0.1:8080";
/** Shortest admin token accepted from the environment: 16 characters, about 96 bits if random. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/** Reads the server's settings from flags, then TOLLGATE_* variables, then defaults; reports every problem. */
export function loadServerConfig(flags: ServerFlags, env: Readonly<Record<string, string | undefined>>): LoadedConfig<ServerConfig> {
  const problems: string[] = [];

  const listen = parseListenAddress(flags.listen ?? env.TOLLGATE_SERVER_LISTEN ?? DEFAULT_SERVER_LISTEN);
  if (typeof listen === "string") problems.push(`--listen: ${listen}`);

  const logLevel = flags.logLevel ?? env.TOLLGATE_LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) problems.push(`--log-level: "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);

  const adminToken = env.TOLLGATE_ADMIN_TOKEN;
  if (adminToken !== undefined && (adminToken.length < MIN_ADMIN_TOKEN_LENGTH || /\s/.test(adminToken))) {
    problems.push(`TOLLGATE_ADMIN_TOKEN: must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters with no spaces`);
  }

  const graceText = flags.shutdownGraceMs ?? env.TOLLGATE_SHUTDOWN_GRACE_MS ?? "5000";
  const shutdownGraceMs = Number(graceText);
  if (!/^\d+$/.test(graceText) || shutdownGraceMs > 600_000) problems.push(`--shutdown-grace-ms: "${graceText}" must be whole milliseconds from 0 to 600000`);

  const dataDir = flags.data ?? env.TOLLGATE_DATA ?? "./data";
  if (dataDir.trim() === "") problems.push("--data: the data folder must not be empty");

  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: Object.freeze({ dataDir, listen: listen as ListenAddress, logLevel: logLevel as LogLevel, adminToken, shutdownGraceMs }) };
}
