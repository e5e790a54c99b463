import { createLogger } from "../src/log/logger.js";
import { startGrpcServer } from "../src/sidecar/grpc-server.js";
import { startConnectServer } from "./connect-server.js";
import type { BenchHandler } from "./handlers.js";

export const STACKS = ["grpc-js", "connect"] as const;
export type StackName = (typeof STACKS)[number];

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Starts `handler` behind one of the candidate gRPC stacks on 127.0.0.1 and
 * a free port: the sidecar's own startGrpcServer for grpc-js, and the
 * connect-node adapter for connect.
 */
export async function startStack(stack: StackName, handler: BenchHandler): Promise<RunningServer> {
  if (stack === "grpc-js") {
    const server = await startGrpcServer("127.0.0.1:0", handler.check, handler.readiness, createLogger("silent"));
    return { port: server.port, close: () => server.close(1_000) };
  }
  return startConnectServer("127.0.0.1", handler.check);
}
