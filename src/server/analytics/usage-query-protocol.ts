import type { UsageQueries } from "./usage-queries.js";

/** Name of a public method of UsageQueries. */
export type UsageQueryMethod = keyof UsageQueries;

/**
 * The methods of UsageQueries, each returning a Promise of its result, so
 * that callers work the same whether the queries run in a worker thread or
 * on the calling thread.
 */
export type AsyncUsageQueries = {
  [M in UsageQueryMethod]: (...args: Parameters<UsageQueries[M]>) => Promise<ReturnType<UsageQueries[M]>>;
};

/** A call sent to the query worker; `id` pairs it with its reply. */
export interface UsageQueryRequest {
  id: number;
  method: UsageQueryMethod;
  args: unknown[];
}

/** The worker's reply to one call: the result, or the message of the error it raised. */
export type UsageQueryReply = { id: number; result: unknown } | { id: number; error: string };

/** Every method of UsageQueries. The Record type makes the compiler report a method missing here. */
const METHODS: Readonly<Record<UsageQueryMethod, true>> = {
  requestsOverTime: true,
  decisionBreakdown: true,
  topKeys: true,
  firstAllowedTimes: true,
  weeklyActivity: true,
  hasAllowedRequest: true,
  reasonsByOwner: true,
  errorCascades: true,
  billableUsage: true,
};

/** The names of the UsageQueries methods a caller may request. */
export const USAGE_QUERY_METHODS = Object.keys(METHODS) as UsageQueryMethod[];

/** Returns whether `name` is a UsageQueries method, so that a request cannot call anything else. */
export function isUsageQueryMethod(name: unknown): name is UsageQueryMethod {
  return typeof name === "string" && Object.hasOwn(METHODS, name);
}

/**
 * Runs one request on `queries` and returns the reply. An unknown method or
 * an error the query raises becomes an error reply, never an exception.
 */
export function runUsageQuery(queries: UsageQueries, request: UsageQueryRequest): UsageQueryReply {
  if (!isUsageQueryMethod(request.method)) return { id: request.id, error: `unknown usage query method: ${String(request.method)}` };
  try {
    const method = queries[request.method] as (...args: unknown[]) => unknown;
    return { id: request.id, result: method.apply(queries, request.args) };
  } catch (error) {
    return { id: request.id, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Wraps `queries` in the async interface, running each query on the calling
 * thread. A query's error becomes a rejected promise, as from the worker.
 */
export function inProcessUsageQueries(queries: UsageQueries): AsyncUsageQueries {
  const wrapped: Partial<Record<UsageQueryMethod, (...args: unknown[]) => Promise<unknown>>> = {};
  for (const method of USAGE_QUERY_METHODS) {
    const run = queries[method] as (...args: unknown[]) => unknown;
    wrapped[method] = async (...args) => run.apply(queries, args);
  }
  return wrapped as AsyncUsageQueries;
}
