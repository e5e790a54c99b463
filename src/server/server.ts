import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import { systemClock, type Clock } from "../clock.js";
import type { ServerConfig } from "../config/server-config.js";
import { storePath } from "../config/sidecar-config.js";
import { hashKey } from "../keys/key-format.js";
import { StoreError } from "../keys/key-store.js";
import type { Logger } from "../log/logger.js";
import { registerProcessMetrics } from "../metrics/process-metrics.js";
import { createUsageIngestMetrics } from "../usage/ingest-metrics.js";
import { registerUsageIngestService } from "../usage/ingest-service.js";
import { startUsagePruner } from "../usage/usage-pruner.js";
import { usageDatabasePath } from "../usage/usage-schema.js";
import { SqliteUsageStore } from "../usage/usage-store.js";
import { registerAdminServices } from "./admin/register.js";
import { createUsageQueryClient, registerAnalyticsService } from "./analytics/register.js";
import { createAuthInterceptor } from "./auth.js";
import { startDualProtocolServer, type RequestHandler } from "./http-server.js";
import { registerReplicationService } from "./replication/replication-service.js";
import { SqliteServerStore } from "./store/sqlite-server-store.js";
import type { ServerStore } from "./store/server-store.js";

export interface TollgateServer {
  port: number;
  store: ServerStore;
  /** The usage database that sidecars' events are ingested into, for analytics to read. */
  usage: SqliteUsageStore;
  registry: Registry;
  /** The admin token generated at this start, when there was none; shown once, never stored. */
  generatedAdminToken: string | undefined;
  /** Ends replication and usage streams, lets open calls finish within the grace time, and closes the stores. */
  close(): Promise<void>;
}

export interface ServerDependencies {
  logger: Logger;
  clock?: Clock;
  /** Time between prunes of expired usage; default one hour. */
  usagePruneIntervalMs?: number;
}

/**
 * Starts the store of record with its admin API (Connect, gRPC and gRPC-Web),
 * the replication stream and usage ingest, all on one port, plus /healthz,
 * /readyz and /metrics on the same port.
 */
export async function startServer(config: ServerConfig, dependencies: ServerDependencies): Promise<TollgateServer> {
  const { logger } = dependencies;
  const clock = dependencies.clock ?? systemClock;
  const store = SqliteServerStore.open(storePath(config.dataDir), clock);
  const usage = SqliteUsageStore.open(usageDatabasePath(config.dataDir), clock);
  const analytics = createUsageQueryClient({ databasePath: usageDatabasePath(config.dataDir) });

  const registry = new Registry();
  registerProcessMetrics(registry, "tollgate_server_");
  const usageMetrics = createUsageIngestMetrics(registry);
  const shutdown = new AbortController();

  const connectHandler = connectNodeAdapter({
    interceptors: [createAuthInterceptor(store)],
    // Connect reads the body before interceptors run, so its size is bounded here; no admin request comes near 1 MiB.
    readMaxBytes: MAX_REQUEST_BYTES,
    // A misspelt field or enum name is an error, not a silent default: "expiresTime" must not create a key that never expires.
    jsonOptions: { ignoreUnknownFields: false },
    routes: (router) => {
      registerAdminServices(router, { store, clock, logger });
      registerReplicationService(router, { store, clock, logger, registry, shutdown: shutdown.signal });
      registerUsageIngestService(router, { usage, store, logger, metrics: usageMetrics, shutdown: shutdown.signal });
      registerAnalyticsService(router, { store, usage: analytics, clock, logger });
    },
    fallback: (request, response) => operationsEndpoint(request.url ?? "/", registry, response),
  });

  let http: Awaited<ReturnType<typeof startDualProtocolServer>> | undefined;
  let generatedAdminToken: string | undefined;
  try {
    http = await startDualProtocolServer(config.listen.host, config.listen.port, rejectWithoutToken(connectHandler as RequestHandler), logger);
    // Only once the port is bound: a start that fails must not create a token whose secret was never shown.
    generatedAdminToken = await bootstrapAdminToken(store, config.adminToken);
  } catch (error) {
    await http?.close(0);
    await analytics.close();
    await usage.close();
    await store.close();
    throw error;
  }
  const listening = http;
  logger.info({ host: config.listen.host, port: listening.port, store: storePath(config.dataDir) }, "server listening");
  const pruner = startUsagePruner({
    usage,
    clock,
    logger,
    metrics: usageMetrics,
    rawRetentionMs: config.usageRetentionMs,
    rollupRetentionMs: config.usageRollupRetentionMs,
    intervalMs: dependencies.usagePruneIntervalMs,
  });

  return {
    port: listening.port,
    store,
    usage,
    registry,
    generatedAdminToken,
    async close() {
      logger.info({ graceMs: config.shutdownGraceMs }, "server shutting down");
      shutdown.abort();
      await listening.close(config.shutdownGraceMs);
      await pruner.close();
      await analytics.close();
      await usage.close();
      await store.close();
      logger.info("server stopped");
    },
  };
}

/**
 * Makes sure an admin token exists: the one from TOLLGATE_ADMIN_TOKEN, or a
 * generated one on first start. Returns the generated secret, to print once.
 */
async function bootstrapAdminToken(store: ServerStore, fromEnvironment: string | undefined): Promise<string | undefined> {
  if (fromEnvironment !== undefined) {
    if (await store.findToken(hashKey(fromEnvironment))) return undefined;
    try {
      await store.createToken(null, { name: "bootstrap (TOLLGATE_ADMIN_TOKEN)", kind: "admin", secret: fromEnvironment });
    } catch (error) {
      if (error instanceof StoreError && error.code === "already_exists") {
        throw new Error("TOLLGATE_ADMIN_TOKEN names a token that was revoked: set a new value or unset it", { cause: error });
      }
      throw error;
    }
    return undefined;
  }
  if ((await store.countTokens("admin")) > 0) return undefined;
  return (await store.createToken(null, { name: "bootstrap", kind: "admin" })).secret;
}

const MAX_REQUEST_BYTES = 1024 * 1024;

/**
 * Returns 401 before reading the body of an RPC that carries no bearer
 * token at all, so that an anonymous client cannot make the server buffer
 * and parse a request. The token itself is checked by the auth interceptor.
 */
function rejectWithoutToken(handler: RequestHandler): RequestHandler {
  return (request, response) => {
    const isRpc = (request.url ?? "").startsWith("/tollgate.");
    const authorization = request.headers["authorization"];
    if (isRpc && (typeof authorization !== "string" || !/^bearer\s+\S/i.test(authorization.trim()))) {
      (response as PlainResponse).writeHead(401, { "content-type": "application/json" });
      (response as PlainResponse).end(JSON.stringify({ code: "unauthenticated", message: "missing token: send 'Authorization: Bearer <token>'" }));
      return;
    }
    handler(request, response);
  };
}

/** The part of a Node HTTP/1.1 or HTTP/2 response that the operations endpoints use. */
interface PlainResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

function operationsEndpoint(url: string, registry: Registry, response: PlainResponse): void {
  const path = url.split("?", 1)[0];
  const reply = (status: number, contentType: string, body: string) => {
    response.writeHead(status, { "content-type": contentType });
    response.end(body);
  };
  if (path === "/healthz" || path === "/readyz") return reply(200, "text/plain", "ok\n");
  if (path !== "/metrics") return reply(404, "text/plain", "not found\n");
  registry.metrics().then(
    (text) => reply(200, registry.contentType, text),
    () => reply(500, "text/plain", "metrics collection failed\n"),
  );
}
