import { hostname } from "node:os";
import { join } from "node:path";
import { LOG_LEVELS, type LogLevel } from "../log/levels.js";
import { parseDurationMs } from "../ratelimit/tier.js";
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
  /**
   * Proxies in front of Envoy whose x-forwarded-for entries are trusted; the
   * client address is the entry this far from the right. 0 takes Envoy's
   * downstream peer address. `--trusted-proxy-hops`, TOLLGATE_TRUSTED_PROXY_HOPS, default 0.
   */
  readonly trustedProxyHops: number;
  /** Usage metering; undefined without `--server` (no server to send events to) or with `--no-usage`. */
  readonly usage: UsageSettings | undefined;
}

/** The sidecar's action when the usage spool contains its maximum number of events. */
export type SpoolFullPolicy = "drop-oldest" | "drop-newest";
export const SPOOL_FULL_POLICIES: readonly SpoolFullPolicy[] = ["drop-oldest", "drop-newest"];

/** Settings for spooling usage events and sending them to the server. */
export interface UsageSettings {
  /** Events the spool keeps before the full policy drops some; `--usage-spool-max-events`, default 1000000. */
  readonly spoolMaxEvents: number;
  /** `--usage-spool-full`, default drop-oldest: keep the newest events. */
  readonly spoolFullPolicy: SpoolFullPolicy;
  /** How often buffered events are written to the spool; `--usage-flush-interval`, default 10 ms. */
  readonly flushIntervalMs: number;
  /** How long shutdown waits for the server to acknowledge spooled events; `--usage-drain-timeout`, default 10 s. */
  readonly drainTimeoutMs: number;
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
  trustedProxyHops?: string;
  /** False for `--no-usage`; commander sets true when the flag is absent, so only false overrides TOLLGATE_USAGE. */
  usage?: boolean;
  usageSpoolMaxEvents?: string;
  usageSpoolFull?: string;
  usageFlushInterval?: string;
  usageDrainTimeout?: string;
}

export type LoadedConfig<T> = { ok: true; config: T } | { ok: false; problems: string[] };

export const DEFAULT_LISTEN = "127.0.0.1:9191";
export const DEFAULT_HTTP = "127.0.0.1:9192";

export const DEFAULT_USAGE_SPOOL_MAX_EVENTS = 1_000_000;
export const MAX_USAGE_SPOOL_MAX_EVENTS = 100_000_000;
export const DEFAULT_USAGE_FLUSH_INTERVAL_MS = 10;
export const MAX_USAGE_FLUSH_INTERVAL_MS = 10_000;
export const DEFAULT_USAGE_DRAIN_TIMEOUT_MS = 10_000;
export const MAX_USAGE_DRAIN_TIMEOUT_MS = 600_000;
export const MAX_TRUSTED_PROXY_HOPS = 32;

/** Returns the path of the store file inside a data folder. */
export function storePath(dataDir: string): string {
  return join(dataDir, "tollgate.db");
}

/** Returns the path of the usage spool inside a data folder. */
export function usageSpoolPath(dataDir: string): string {
  return join(dataDir, "usage-spool.db");
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

  const hopsText = pick(flags.trustedProxyHops, "TOLLGATE_TRUSTED_PROXY_HOPS", "0");
  const trustedProxyHops = Number(hopsText);
  if (!/^\d+$/.test(hopsText) || trustedProxyHops > MAX_TRUSTED_PROXY_HOPS) {
    problems.push(`--trusted-proxy-hops: "${hopsText}" must be a whole number from 0 to ${MAX_TRUSTED_PROXY_HOPS}`);
  }

  // Usage settings are checked even when metering is off, so a mistyped value is reported before it matters.
  const usageSettings = readUsageSettings(flags, env, problems);
  const usageEnabled = readUsageSwitch(flags, env, problems);

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
      trustedProxyHops,
      usage: replication && usageEnabled ? usageSettings : undefined,
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
    const shown = hideUserinfo(serverText);
    problems.push(
      hasUserinfo(serverText)
        ? `--server: "${shown}" must not contain a user name or password. Give only the origin, such as http://127.0.0.1:8080, and the sidecar token with --token`
        : `--server: "${shown}" must be an http:// or https:// URL with a host and a port and nothing after them, such as http://127.0.0.1:8080`,
    );
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

/** Reads `--no-usage` and TOLLGATE_USAGE (on or off); metering is on unless one turns it off. */
function readUsageSwitch(flags: SidecarFlags, env: Readonly<Record<string, string | undefined>>, problems: string[]): boolean {
  if (flags.usage === false) return false;
  const text = env.TOLLGATE_USAGE ?? "on";
  if (text !== "on" && text !== "off") problems.push(`TOLLGATE_USAGE: "${text}" must be on or off`);
  return text !== "off";
}

/** Reads the spool bound, its full policy, the flush interval and the drain timeout. */
function readUsageSettings(flags: SidecarFlags, env: Readonly<Record<string, string | undefined>>, problems: string[]): UsageSettings {
  const pick = (flag: string | undefined, variable: string, fallback: string) => flag ?? env[variable] ?? fallback;

  const maxEventsText = pick(flags.usageSpoolMaxEvents, "TOLLGATE_USAGE_SPOOL_MAX_EVENTS", String(DEFAULT_USAGE_SPOOL_MAX_EVENTS));
  const spoolMaxEvents = Number(maxEventsText);
  if (!/^\d+$/.test(maxEventsText) || spoolMaxEvents < 1 || spoolMaxEvents > MAX_USAGE_SPOOL_MAX_EVENTS) {
    problems.push(`--usage-spool-max-events: "${maxEventsText}" must be a whole number from 1 to ${MAX_USAGE_SPOOL_MAX_EVENTS}`);
  }

  const policyText = pick(flags.usageSpoolFull, "TOLLGATE_USAGE_SPOOL_FULL", "drop-oldest");
  if (!(SPOOL_FULL_POLICIES as readonly string[]).includes(policyText)) {
    problems.push(`--usage-spool-full: "${policyText}" must be one of ${SPOOL_FULL_POLICIES.join(", ")}`);
  }

  const flushText = pick(flags.usageFlushInterval, "TOLLGATE_USAGE_FLUSH_INTERVAL", `${DEFAULT_USAGE_FLUSH_INTERVAL_MS}ms`);
  const flushIntervalMs = parseDurationMs(flushText);
  if (flushIntervalMs === undefined || flushIntervalMs > MAX_USAGE_FLUSH_INTERVAL_MS) {
    problems.push(`--usage-flush-interval: "${flushText}" must be a duration from 1ms to 10s, such as 10ms or 1s`);
  }

  const drainText = pick(flags.usageDrainTimeout, "TOLLGATE_USAGE_DRAIN_TIMEOUT", `${DEFAULT_USAGE_DRAIN_TIMEOUT_MS / 1000}s`);
  // 0 is allowed, with or without a unit: shutdown then leaves every unacknowledged event in the spool for the next start.
  const drainTimeoutMs = /^0+(?:ms|s|m|h|d)?$/.test(drainText.trim()) ? 0 : parseDurationMs(drainText);
  if (drainTimeoutMs === undefined || drainTimeoutMs > MAX_USAGE_DRAIN_TIMEOUT_MS) {
    problems.push(`--usage-drain-timeout: "${drainText}" must be 0 or a duration up to 10m, such as 500ms or 10s`);
  }

  return Object.freeze({
    spoolMaxEvents,
    spoolFullPolicy: policyText as SpoolFullPolicy,
    flushIntervalMs: flushIntervalMs ?? DEFAULT_USAGE_FLUSH_INTERVAL_MS,
    drainTimeoutMs: drainTimeoutMs ?? DEFAULT_USAGE_DRAIN_TIMEOUT_MS,
  });
}

/**
 * Replaces everything between the scheme and the last "@" with "***", so a
 * problem message never repeats a password. Cutting at the last "@" of the
 * whole text may hide more than the userinfo, but never less.
 */
function hideUserinfo(text: string): string {
  const at = text.lastIndexOf("@");
  if (at === -1) return text;
  const schemeEnd = text.indexOf("://");
  const start = schemeEnd === -1 || schemeEnd > at ? 0 : schemeEnd + 3;
  return `${text.slice(0, start)}***${text.slice(at)}`;
}

function hasUserinfo(text: string): boolean {
  try {
    const url = new URL(text);
    return url.username !== "" || url.password !== "";
  } catch {
    return false;
  }
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
