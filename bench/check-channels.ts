import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { CheckResponseSchema, type CheckResponse } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { CHECK_PATH } from "../src/sidecar/grpc-server.js";

/** The HTTP status Envoy would act on: 200 for allow, the denial's status otherwise. */
export type HttpStatus = number;

/** One grpc-js channel, and so one HTTP/2 connection, to a Check server. */
export interface CheckChannel {
  /** Sends an encoded CheckRequest and passes the call's error or the decision's HTTP status to `callback`. */
  check(request: Buffer, timeoutMs: number, callback: (error: grpc.ServiceError | null, status?: HttpStatus) => void): void;
  close(): void;
}

const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Opens `count` channels to 127.0.0.1:`port` and waits until each is
 * connected. Each channel keeps its own subchannel pool, because grpc-js
 * channels with equal options otherwise share one connection.
 */
export async function openCheckChannels(port: number, count: number): Promise<CheckChannel[]> {
  const clients = Array.from(
    { length: count },
    () => new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
  );
  try {
    await Promise.all(clients.map((client) => waitForReady(client)));
  } catch (error) {
    for (const client of clients) client.close();
    throw error;
  }
  return clients.map(toCheckChannel);
}

function toCheckChannel(client: grpc.Client): CheckChannel {
  return {
    check(request, timeoutMs, callback) {
      client.makeUnaryRequest(
        CHECK_PATH,
        (bytes: Buffer) => bytes,
        decodeHttpStatus,
        request,
        new grpc.Metadata(),
        // Envoy sends its ext_authz timeout as a gRPC deadline too.
        { deadline: Date.now() + timeoutMs },
        callback,
      );
    },
    close: () => client.close(),
  };
}

function decodeHttpStatus(bytes: Buffer): HttpStatus {
  const response: CheckResponse = fromBinary(CheckResponseSchema, bytes);
  if (response.httpResponse.case === "deniedResponse") return response.httpResponse.value.status?.code || 403;
  // Envoy reads an unset status as code 0, which allows.
  return (response.status?.code ?? 0) === 0 ? 200 : 403;
}

function waitForReady(client: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + CONNECT_TIMEOUT_MS, (error) => (error ? reject(error) : resolve()));
  });
}
