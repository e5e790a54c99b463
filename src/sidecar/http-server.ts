import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import type { Logger } from "../log/logger.js";
import type { Readiness } from "./health.js";

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The operations port: `/metrics` for Prometheus, `/healthz` for liveness
 * (the process responds), `/readyz` for readiness (the key store is loaded and
 * the sidecar is not shutting down).
 */
export async function startHttpServer(host: string, port: number, registry: Registry, readiness: Readiness, logger: Logger): Promise<HttpServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?", 1)[0];
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (path === "/healthz") {
      response.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const problem = readiness.problem;
      response.writeHead(problem ? 503 : 200, { "content-type": "text/plain" }).end(problem ? `not ready: ${problem}\n` : "ready\n");
    } else if (path === "/metrics") {
      registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
        (error: unknown) => {
          logger.error({ err: error }, "metrics collection failed");
          response.writeHead(500, { "content-type": "text/plain" }).end("metrics collection failed\n");
        },
      );
    } else {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /healthz or /readyz\n");
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  logger.info({ host, port: boundPort }, "http server listening");

  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
