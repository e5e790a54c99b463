import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import {
  CheckRequestSchema,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { CHECK_PATH, protobufMethod } from "./grpc-server.js";

export interface EnvoyRequestInput {
  method: string;
  /** Path with query string, as the client sent it. */
  path: string;
  /** Extra request headers; names are lower-cased as Envoy does. */
  headers?: Record<string, string>;
  /** Per-route context_extensions, such as tollgate.api. */
  contextExtensions?: Record<string, string>;
  authority?: string;
  sourceAddress?: string;
  sourcePort?: number;
  nowMs?: number;
}

/**
 * Builds a CheckRequest the way Envoy's HTTP ext_authz filter does in gRPC
 * mode: lower-case header names including the pseudo-headers, the path
 * with its query string, an x-request-id. Repeated headers arrive joined by
 * ",", so callers pass them joined.
 */
export function buildEnvoyCheckRequest(input: EnvoyRequestInput): CheckRequest {
  const authority = input.authority ?? "localhost:8080";
  const headers: Record<string, string> = {
    ":authority": authority,
    ":method": input.method,
    ":path": input.path,
    ":scheme": "http",
    "x-request-id": randomUUID(),
    "x-forwarded-proto": "http",
  };
  // Given headers replace the defaults, as a client's own x-request-id does when Envoy trusts it.
  for (const [name, value] of Object.entries(input.headers ?? {})) headers[name.toLowerCase()] = value;

  return create(CheckRequestSchema, {
    attributes: {
      source: { address: { address: { case: "socketAddress", value: { address: input.sourceAddress ?? "127.0.0.1", portSpecifier: { case: "portValue", value: input.sourcePort ?? 50000 } } } } },
      destination: { address: { address: { case: "socketAddress", value: { address: "127.0.0.1", portSpecifier: { case: "portValue", value: 8080 } } } } },
      request: {
        time: timestampFromMs(input.nowMs ?? Date.now()),
        http: {
          id: String(Math.floor(Math.random() * 2 ** 53)),
          method: input.method,
          headers,
          path: input.path,
          host: authority,
          scheme: "http",
          protocol: "HTTP/1.1",
          size: -1n,
        },
      },
      contextExtensions: input.contextExtensions ?? {},
    },
  });
}

/** A gRPC client for Authorization/Check, over plaintext HTTP/2 like Envoy's. */
export interface CheckClient {
  check(request: CheckRequest, timeoutMs?: number): Promise<CheckResponse>;
  close(): void;
}

const checkMethod = protobufMethod(CHECK_PATH, CheckRequestSchema, CheckResponseSchema);
const CheckClientConstructor = grpc.makeGenericClientConstructor({ Check: checkMethod }, "Authorization");

export function createCheckClient(target: string, channelOptions: grpc.ChannelOptions = {}): CheckClient {
  const client = new CheckClientConstructor(target, grpc.credentials.createInsecure(), channelOptions);
  return {
    check: (request, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          CHECK_PATH,
          checkMethod.requestSerialize,
          checkMethod.responseDeserialize,
          request,
          new grpc.Metadata(),
          { deadline: Date.now() + timeoutMs },
          (error: grpc.ServiceError | null, response?: CheckResponse) => (error ? reject(error) : resolve(response!)),
        );
      }),
    close: () => client.close(),
  };
}
