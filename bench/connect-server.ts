import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Authorization } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import type { CheckHandler } from "../src/sidecar/check-service.js";

export interface ConnectServer {
  port: number;
  /** Stops accepting connections and waits for open HTTP/2 sessions to finish their streams. */
  close(): Promise<void>;
}

/**
 * Serves Envoy's Authorization/Check over plaintext HTTP/2 (h2c) with
 * connect-node, speaking only the gRPC protocol, as a candidate for the
 * sidecar's gRPC stack. The message size limit matches startGrpcServer's
 * 4 MiB. Compression is left at connect-node's defaults: Check responses
 * are under its 1 KiB `compressMinBytes`, so neither stack compresses them.
 *
 * NOTE: connect-node fails a request that does not decode with gRPC status
 * INTERNAL before the handler runs, where startGrpcServer returns a 400
 * denial, so Envoy would apply `status_on_error` instead.
 */
export async function startConnectServer(host: string, check: CheckHandler): Promise<ConnectServer> {
  const handler = connectNodeAdapter({
    routes: (router) => router.service(Authorization, { check: (request) => check(request) }),
    grpc: true,
    grpcWeb: false,
    connect: false,
    readMaxBytes: 4 * 1024 * 1024,
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });

  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.close();
      }),
  };
}
