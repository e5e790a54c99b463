/** Settings of one bench run, read once from BENCH_* environment variables. */
export interface BenchSettings {
  /** Measured time per server run, from BENCH_SECONDS (default 6). */
  readonly measureSeconds: number;
  /** Unmeasured calls before each measurement so that both stacks are JIT-compiled, from BENCH_WARMUP_SECONDS (default 2). */
  readonly warmupSeconds: number;
  /** How many times each stack and workload is measured, alternating, from BENCH_ROUNDS (default 3). */
  readonly rounds: number;
  /** HTTP/2 connections from the load generator, each its own grpc-js channel. */
  readonly connections: number;
  /** Calls in flight across all connections. */
  readonly inFlight: number;
  /** gRPC deadline per call, long enough that a slow call is measured rather than cut off. */
  readonly callTimeoutMs: number;
  /** Envoy's documented default ext_authz timeout. Calls slower than this are counted apart. */
  readonly envoyTimeoutMs: number;
  /** Keys in the store: `validKeys` on a generous plan, `limitedKeys` on a one-per-hour plan. */
  readonly validKeys: number;
  readonly limitedKeys: number;
  /** Well-formed keys that are never stored. */
  readonly unknownKeys: number;
}

export type LoadedSettings = { ok: true; settings: BenchSettings } | { ok: false; problems: string[] };

/** Reads BENCH_SECONDS, BENCH_WARMUP_SECONDS and BENCH_ROUNDS, reporting every invalid value at once. */
export function loadBenchSettings(env: Readonly<Record<string, string | undefined>>): LoadedSettings {
  const problems: string[] = [];
  const read = (name: string, fallback: number, min: number, max: number) => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max) problems.push(`${name}="${text}" must be a number from ${min} to ${max}`);
    return value;
  };

  const measureSeconds = read("BENCH_SECONDS", 6, 0.1, 600);
  const warmupSeconds = read("BENCH_WARMUP_SECONDS", 2, 0, 60);
  const rounds = read("BENCH_ROUNDS", 3, 1, 20);
  if (Number.isFinite(rounds) && !Number.isInteger(rounds)) problems.push(`BENCH_ROUNDS="${env.BENCH_ROUNDS}" must be a whole number`);
  if (problems.length > 0) return { ok: false, problems };

  return {
    ok: true,
    settings: Object.freeze({
      measureSeconds,
      warmupSeconds,
      rounds,
      connections: 4,
      inFlight: 64,
      callTimeoutMs: 5_000,
      envoyTimeoutMs: 200,
      validKeys: 99_000,
      limitedKeys: 1_000,
      unknownKeys: 20_000,
    }),
  };
}
