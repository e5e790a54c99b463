/**
 * Entry of the worker thread that runs the analytics queries, so that a long
 * scan of the usage database does not block the server's event loop. It opens
 * its own read-only connection to the database file in `workerData.databasePath`
 * (WAL mode lets it read while the main thread writes), and sends one
 * UsageQueryReply for each UsageQueryRequest it receives on its port.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { UsageQueries } from "./usage-queries.js";
import { runUsageQuery, type UsageQueryRequest } from "./usage-query-protocol.js";

if (parentPort === null) throw new Error("query-worker.js must run as a worker thread, not as a script");
const port = parentPort;

const { databasePath } = workerData as { databasePath: string };
const queries = openQueries(databasePath);

port.on("message", (request: UsageQueryRequest) => {
  const reply = runUsageQuery(queries, request);
  try {
    port.postMessage(reply);
  } catch (error) {
    // A result that structured clone cannot copy must still settle the caller's promise.
    port.postMessage({ id: request.id, error: `the result of ${request.method} could not be sent to the main thread: ${(error as Error).message}` });
  }
});

function openQueries(path: string): UsageQueries {
  try {
    return new UsageQueries(new Database(path, { readonly: true, fileMustExist: true }));
  } catch (error) {
    // Rethrown as a plain Error, because the main thread received a SqliteError thrown here without its message (seen on Node 20).
    throw new Error(`cannot open the usage database ${path}: ${(error as Error).message}`);
  }
}
