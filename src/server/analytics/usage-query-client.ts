import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { UsageQueries } from "./usage-queries.js";
import { inProcessUsageQueries, USAGE_QUERY_METHODS, type AsyncUsageQueries, type UsageQueryMethod, type UsageQueryReply } from "./usage-query-protocol.js";

export type { AsyncUsageQueries } from "./usage-query-protocol.js";

/** The analytics queries with a close() that ends the worker thread or closes the connection. */
export type UsageQueryClient = AsyncUsageQueries & {
  /** True when the queries run in a worker thread, false when they run on the calling thread. */
  readonly inWorker: boolean;
  /** Ends the worker, rejecting calls still running, or closes the in-process connection. */
  close(): Promise<void>;
};

export interface UsageQueryClientOptions {
  /** The usage database file, which must exist. It is opened read-only. */
  databasePath: string;
  /** The worker entry; default query-worker.js next to this module. */
  workerUrl?: URL;
}

/**
 * Creates the analytics queries on their own read-only connection to the
 * usage database, run in a worker thread so that a long query does not block
 * the event loop.
 *
 * The worker needs the compiled query-worker.js next to this module, which
 * exists when the server runs from dist/. Under vitest this module is the
 * TypeScript source and no .js file sits beside it, so the queries run on the
 * calling thread instead, behind the same async interface.
 */
export function createUsageQueryClient(options: UsageQueryClientOptions): UsageQueryClient {
  const workerUrl = options.workerUrl ?? new URL("./query-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(workerUrl))) return createWorkerClient(options.databasePath, workerUrl);
  return createInProcessClient(options.databasePath);
}

function createInProcessClient(databasePath: string): UsageQueryClient {
  const db = new Database(databasePath, { readonly: true, fileMustExist: true });
  return {
    ...inProcessUsageQueries(new UsageQueries(db)),
    inWorker: false,
    async close() {
      db.close();
    },
  };
}

interface PendingCall {
  resolve(result: unknown): void;
  reject(error: Error): void;
}

/**
 * Sends each call to the worker as a UsageQueryRequest. The worker starts on
 * the first call. If it dies, the calls it was running are rejected, and the
 * next call starts a new worker.
 */
function createWorkerClient(databasePath: string, workerUrl: URL): UsageQueryClient {
  const pending = new Map<number, PendingCall>();
  let nextId = 1;
  let worker: Worker | undefined;
  let closed = false;

  const rejectPending = (error: Error): void => {
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  };

  const startWorker = (): Worker => {
    const started = new Worker(workerUrl, { workerData: { databasePath } });
    started.on("message", (reply: UsageQueryReply) => {
      const call = pending.get(reply.id);
      if (call === undefined) return;
      pending.delete(reply.id);
      if ("error" in reply) call.reject(new Error(reply.error));
      else call.resolve(reply.result);
    });
    started.on("error", (error) => {
      if (worker === started) worker = undefined;
      rejectPending(new Error(`the usage query worker failed: ${error.message}`, { cause: error }));
    });
    started.on("exit", (code) => {
      if (worker === started) worker = undefined;
      rejectPending(new Error(closed ? "the usage query client is closed" : `the usage query worker exited with code ${code}`));
    });
    return started;
  };

  const call = (method: UsageQueryMethod, args: unknown[]): Promise<unknown> => {
    if (closed) return Promise.reject(new Error("the usage query client is closed"));
    worker ??= startWorker();
    const id = nextId++;
    const reply = new Promise<unknown>((resolve, reject) => pending.set(id, { resolve, reject }));
    try {
      worker.postMessage({ id, method, args });
    } catch (error) {
      pending.delete(id);
      return Promise.reject(error);
    }
    return reply;
  };

  const methods = Object.fromEntries(USAGE_QUERY_METHODS.map((method) => [method, (...args: unknown[]) => call(method, args)])) as AsyncUsageQueries;
  return {
    ...methods,
    inWorker: true,
    async close() {
      closed = true;
      const running = worker;
      worker = undefined;
      if (running !== undefined) await running.terminate();
      rejectPending(new Error("the usage query client is closed"));
    },
  };
}
