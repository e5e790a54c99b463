import { join } from "node:path";
import { LOG_LEVELS, type LogLevel } from "../log/logger.js";
import { parseListenAddress, type ListenAddress } from "./listen-address.js";

/** Everything a sidecar is started with, validated and frozen. */
export interface SidecarConfig {
  /** Folder of the key store; `--data`, TOLLGATE_DATA, default ./data. */
  readonly dataDir: string;
  /** ext_authz and grpc.health.v1; `--listen`, TOLLGATE_LISTEN, default 127.0.0.1:9191. */
  readonly listen: ListenAddress;
  /** /metrics, /healthz and /readyz; `--http`, TOLLGATE_HTTP, default 127.0.0.1:9192. */
  readonly http: ListenAddress;
  /** `--log-level`, TOLLGATE_LOG_LEVEL, default info; debug logs one line per decision. */
  readonly logLevel: LogLevel;
  /** Query parameter that may carry the key; `--key-query-param`, TOLLGATE_KEY_QUERY_PARAM, default off. */
  readonly keyQueryParameter: string | undefined;
  /** How long shutdown waits for in-flight Checks; `--shutdown-grace`, default 5000 ms. */
  readonly shutdownGraceMs: number;
}

export interface SidecarFlags {
  data?: string;
  listen?: string;
  http?: string;
  logLevel?: string;
  keyQueryParam?: string;
  shutdownGraceMs?: string;
}

export type LoadedConfig<T> = { ok: true; config: T } | { ok: false; problems: string[] };

export const DEFAULT_LISTEN = "127.0.0.1:9191";
export const DEFAULT_HTTP = "127.0.0.1:9192";

/** The store file inside a data folder. */
export function storePath(dataDir: string): string {
  return join(dataDir, "tollgate.db");
}

/**
 * Reads the sidecar's settings from flags, then TOLLGATE_* variables, then
 * defaults, and reports every problem at once rather than the first.
 */
export function loadSidecarConfig(flags: SidecarFlags, env: Readonly<Record<string, string | undefined>>): LoadedConfig<SidecarConfig> {
  const problems: string[] = [];
  const pick = (flag: string | undefined, variable: string, fallback: string) => flag ?? env[variable] ?? fallback;

  const listen = parseListenAddress(pick(flags.listen, "TOLLGATE_LISTEN", DEFAULT_LISTEN));
  if (typeof listen === "string") problems.push(`--listen: ${listen}`);
  const http = parseListenAddress(pick(flags.http, "TOLLGATE_HTTP", DEFAULT_HTTP));
  if (typeof http === "string") problems.push(`--http: ${http}`);

  const logLevel = pick(flags.logLevel, "TOLLGATE_LOG_LEVEL", "info");
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) problems.push(`--log-level: "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);

  const keyQueryParameter = flags.keyQueryParam ?? env.TOLLGATE_KEY_QUERY_PARAM;
  if (keyQueryParameter !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(keyQueryParameter)) {
    problems.push(`--key-query-param: "${keyQueryParameter}" must be 1 to 64 letters, digits, "_", "." or "-"`);
  }

  const graceText = pick(flags.shutdownGraceMs, "TOLLGATE_SHUTDOWN_GRACE_MS", "5000");
  const shutdownGraceMs = Number(graceText);
  if (!/^\d+$/.test(graceText) || shutdownGraceMs > 600_000) problems.push(`--shutdown-grace-ms: "${graceText}" must be whole milliseconds from 0 to 600000`);

  const dataDir = pick(flags.data, "TOLLGATE_DATA", "./data");
  if (dataDir.trim() === "") problems.push("--data: the data folder must not be empty");

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: Object.freeze({
      dataDir,
      listen: listen as ListenAddress,
      http: http as ListenAddress,
      logLevel: logLevel as LogLevel,
      keyQueryParameter,
      shutdownGraceMs,
    }),
  };
}
