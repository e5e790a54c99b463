import { hostname } from "node:os";
import { join } from "node:path";
import { LOG_LEVELS, type LogLevel } from "../log/levels.js";
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
  /** The server to replicate keys from, or undefined to serve a local store written by the CLI. */
  readonly replication: ReplicationSettings | undefined;
}

/** The server a sidecar replicates keys from. */
export interface ReplicationSettings {
  /** Origin of the Tollgate server, such as http://127.0.0.1:8080; `--server`, TOLLGATE_SERVER. */
  readonly serverUrl: string;
  /** A sidecar token; `--token`, TOLLGATE_SIDECAR_TOKEN. Never logged. */
  readonly token: string;
  /** Names this sidecar in the server's logs; `--sidecar-id`, TOLLGATE_SIDECAR_ID, default hostname-pid. */
  readonly sidecarId: string;
}

export interface SidecarFlags {
  data?: string;
  listen?: string;
  http?: string;
  logLevel?: string;
  keyQueryParam?: string;
  shutdownGraceMs?: string;
  server?: string;
  token?: string;
  sidecarId?: string;
}

export type LoadedConfig<T> = { ok: true; config: T } | { ok: false; problems: string[] };

export const DEFAULT_LISTEN = "127.0.0.1:9191";
export const DEFAULT_HTTP = "127.0.0.1:9192";

/** Returns the path of the store file inside a data folder. */
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

  const replication = readReplicationSettings(flags, env, problems);

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
      replication,
    }),
  };
}

/**
 * Reads `--server`, `--token` and `--sidecar-id`: all absent for a local
 * store, or a server URL and a token together. Problems name the setting but
 * never repeat the token.
 */
function readReplicationSettings(flags: SidecarFlags, env: Readonly<Record<string, string | undefined>>, problems: string[]): ReplicationSettings | undefined {
  const serverText = flags.server ?? env.TOLLGATE_SERVER;
  const token = flags.token ?? env.TOLLGATE_SIDECAR_TOKEN;
  const sidecarId = flags.sidecarId ?? env.TOLLGATE_SIDECAR_ID ?? `${hostname()}-${process.pid}`;

  if (serverText === undefined) {
    if (token !== undefined) problems.push("--token: a sidecar token needs --server (or TOLLGATE_SERVER) too");
    return undefined;
  }
  const serverUrl = parseServerUrl(serverText);
  if (serverUrl === undefined) {
    problems.push(`--server: "${serverText}" must be an http:// or https:// URL with a host and a port and nothing after them, such as http://127.0.0.1:8080`);
  }
  if (token === undefined || token === "") {
    problems.push("--token: a sidecar token is required with --server; set --token or TOLLGATE_SIDECAR_TOKEN");
  } else if (/\s/.test(token)) {
    problems.push("--token: the sidecar token must not contain spaces or line breaks");
  }
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(sidecarId)) {
    problems.push(`--sidecar-id: "${sidecarId.slice(0, 200)}" must be 1 to 128 letters, digits, "_", ".", ":" or "-"`);
  }
  if (serverUrl === undefined || token === undefined) return undefined;
  return Object.freeze({ serverUrl, token, sidecarId });
}

/** Returns the URL's origin when it is http(s)://host:port with no path, query, fragment or credentials. */
function parseServerUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.hostname === "" || url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") return undefined;
  if (url.pathname !== "/" && url.pathname !== "") return undefined;
  // URL drops a port equal to the scheme's default, so the text itself must name one.
  if (url.port === "" && !/:\d+\/?$/.test(text)) return undefined;
  return url.origin;
}
