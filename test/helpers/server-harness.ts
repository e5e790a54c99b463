import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { createManualClock, type ManualClock } from "../../src/clock.js";
import { loadServerConfig } from "../../src/config/server-config.js";
import { createLogger } from "../../src/log/logger.js";
import { startServer, type TollgateServer } from "../../src/server/server.js";
import { makeTempDir } from "./sidecar-harness.js";

/** The admin token every harness server is started with. */
export const ADMIN_TOKEN = "test-admin-token-0123456789";

export interface ServerHarness {
  dataDir: string;
  server: TollgateServer;
  clock: ManualClock;
  baseUrl: string;
  /** A Connect (JSON over HTTP/1.1) client sending `token` (default: the admin token). */
  connectClient<S extends DescService>(service: S, token?: string | null): Client<S>;
  /** A gRPC (HTTP/2) client sending `token` (default: the admin token). */
  grpcClient<S extends DescService>(service: S, token?: string | null): Client<S>;
  logText(): string;
  close(): Promise<void>;
}

/** Starts a real server (SQLite file, port 0 on 127.0.0.1) with a manual clock and a captured log. */
export async function startServerHarness(options: { clock?: ManualClock } = {}): Promise<ServerHarness> {
  const dataDir = makeTempDir("server");
  const clock = options.clock ?? createManualClock(Date.now());
  let raw = "";
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += chunk.toString();
      done();
    },
  });

  const loaded = loadServerConfig({ data: dataDir, listen: "127.0.0.1:0", logLevel: "debug", shutdownGraceMs: "500" }, { TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
  if (!loaded.ok) throw new Error(loaded.problems.join("; "));
  const server = await startServer(loaded.config, { logger: createLogger("debug", sink), clock });
  const baseUrl = `http://127.0.0.1:${server.port}`;

  // null sends no Authorization header at all.
  const tokenInterceptor = (token: string | null | undefined): Interceptor => (next) => (request) => {
    if (token !== null) request.header.set("authorization", `Bearer ${token ?? ADMIN_TOKEN}`);
    return next(request);
  };

  return {
    dataDir,
    server,
    clock,
    baseUrl,
    connectClient(service, token) {
      return createClient(service, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [tokenInterceptor(token)] }));
    },
    grpcClient(service, token) {
      return createClient(service, createGrpcTransport({ baseUrl, interceptors: [tokenInterceptor(token)] }));
    },
    logText: () => raw,
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
