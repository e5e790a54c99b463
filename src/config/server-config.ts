import { LOG_LEVELS, type LogLevel } from "../log/levels.js";
import { parseDurationMs } from "../ratelimit/tier.js";
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
  /** How long raw usage events are kept; `--usage-retention`, TOLLGATE_USAGE_RETENTION, default 7 days. */
  readonly usageRetentionMs: number;
  /** How long minute rollups of usage are kept; `--usage-rollup-retention`, TOLLGATE_USAGE_ROLLUP_RETENTION, default 400 days, at least 13 weeks. */
  readonly usageRollupRetentionMs: number;
}

export interface ServerFlags {
  data?: string;
  listen?: string;
  logLevel?: string;
  shutdownGraceMs?: string;
  usageRetention?: string;
  usageRollupRetention?: string;
}

export const DEFAULT_SERVER_LISTEN = "127.0.0.1:8080";
/** Shortest admin token accepted from the environment: 16 characters, about 96 bits if random. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;
export const DEFAULT_USAGE_RETENTION = "7d";
/** About 13 months, so a month can be compared with the same month a year before. */
export const DEFAULT_USAGE_ROLLUP_RETENTION = "400d";
/**
 * Shortest rollup retention: 13 weeks. Retention cohorts report activity in
 * week 1, 4 and 12 after a key's creation, so with less than 13 weeks of
 * rollups the week-1 data of a cohort is gone by the time its week 12 ends.
 */
export const MIN_USAGE_ROLLUP_RETENTION_MS = 91 * 86_400_000;
/** Longest raw or rollup retention: 36500 days (about 100 years), far past any real need but a bound that `--help` and messages can name. */
export const MAX_USAGE_RETENTION_DAYS = 36_500;
const MAX_USAGE_RETENTION_MS = MAX_USAGE_RETENTION_DAYS * 86_400_000;

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

  const retentionText = flags.usageRetention ?? env.TOLLGATE_USAGE_RETENTION ?? DEFAULT_USAGE_RETENTION;
  const usageRetentionMs = parseDurationMs(retentionText);
  const retentionValid = usageRetentionMs !== undefined && usageRetentionMs <= MAX_USAGE_RETENTION_MS;
  if (!retentionValid) {
    problems.push(`--usage-retention: "${retentionText}" must be a duration from 1ms to ${MAX_USAGE_RETENTION_DAYS}d, such as 7d, 12h or 90m`);
  }

  const rollupText = flags.usageRollupRetention ?? env.TOLLGATE_USAGE_ROLLUP_RETENTION ?? DEFAULT_USAGE_ROLLUP_RETENTION;
  const usageRollupRetentionMs = parseDurationMs(rollupText);
  const rollupValid = usageRollupRetentionMs !== undefined && usageRollupRetentionMs >= MIN_USAGE_ROLLUP_RETENTION_MS && usageRollupRetentionMs <= MAX_USAGE_RETENTION_MS;
  if (!rollupValid) {
    problems.push(
      `--usage-rollup-retention: "${rollupText}" must be a duration from 91d (13 weeks) to ${MAX_USAGE_RETENTION_DAYS}d, because retention cohorts look 12 weeks past a key's creation`,
    );
  }

  // Every raw event is also counted in a minute rollup, so the rollups must last at least as long as the events they summarize.
  if (retentionValid && rollupValid && usageRetentionMs > usageRollupRetentionMs) {
    problems.push(`--usage-retention: "${retentionText}" must not be longer than --usage-rollup-retention ("${rollupText}"). Lower --usage-retention or raise --usage-rollup-retention`);
  }

  const dataDir = flags.data ?? env.TOLLGATE_DATA ?? "./data";
  if (dataDir.trim() === "") problems.push("--data: the data folder must not be empty");

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: Object.freeze({
      dataDir,
      listen: listen as ListenAddress,
      logLevel: logLevel as LogLevel,
      adminToken,
      shutdownGraceMs,
      usageRetentionMs: usageRetentionMs!,
      usageRollupRetentionMs: usageRollupRetentionMs!,
    }),
  };
}
