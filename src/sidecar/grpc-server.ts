import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { CheckRequestSchema, CheckResponseSchema, type CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListRequestSchema,
  HealthListResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import type { Logger } from "../log/logger.js";
import type { CheckHandler } from "./check-service.js";
import type { Readiness } from "./health.js";

export const CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";
/** Service names the health service reports on; "" is the whole server. */
export const HEALTH_SERVICES = ["", "envoy.service.auth.v3.Authorization"] as const;

export interface GrpcServer {
  port: number;
  /** Stops accepting calls, lets in-flight ones finish for up to `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * Serves Envoy's Authorization/Check and grpc.health.v1.Health with
 * @grpc/grpc-js, which measured faster than connect-node for this unary
 * workload (see bench/). Messages are encoded with the protobuf-es code in
 * src/gen, so the handler does not depend on the transport.
 */
export async function startGrpcServer(address: string, check: CheckHandler, readiness: Readiness, logger: Logger): Promise<GrpcServer> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  server.addService(authorizationService, {
    Check(call: grpc.ServerUnaryCall<CheckRequest | typeof UNDECODABLE, unknown>, callback: grpc.sendUnaryData<unknown>) {
      const request = call.request;
      callback(null, check(isUndecodable(request) ? null : request));
    },
  });
  server.addService(healthService, healthHandlers(readiness));

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  logger.info({ address, port }, "grpc server listening");

  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/**
 * Marker a server method receives for bytes that do not decode. grpc-js
 * treats `undefined` as "no message" and fails the call, so an object is used.
 */
export const UNDECODABLE = Object.freeze({ undecodable: true as const });

export function isUndecodable(message: object): message is typeof UNDECODABLE {
  return message === UNDECODABLE;
}

/** A unary or server-streaming method whose messages are protobuf-es messages. */
export function protobufMethod<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
  responseStream = false,
): grpc.MethodDefinition<MessageShape<I> | typeof UNDECODABLE, MessageShape<O>> {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (message) => Buffer.from(toBinary(input, message as MessageShape<I>)),
    requestDeserialize: (bytes) => {
      try {
        return fromBinary(input, bytes);
      } catch {
        return UNDECODABLE;
      }
    },
    responseSerialize: (message) => Buffer.from(toBinary(output, message)),
    responseDeserialize: (bytes) => fromBinary(output, bytes),
  };
}

const authorizationService = {
  Check: protobufMethod(CHECK_PATH, CheckRequestSchema, CheckResponseSchema),
} satisfies grpc.ServiceDefinition;

const healthService = {
  Check: protobufMethod("/grpc.health.v1.Health/Check", HealthCheckRequestSchema, HealthCheckResponseSchema),
  Watch: protobufMethod("/grpc.health.v1.Health/Watch", HealthCheckRequestSchema, HealthCheckResponseSchema, true),
  List: protobufMethod("/grpc.health.v1.Health/List", HealthListRequestSchema, HealthListResponseSchema),
} satisfies grpc.ServiceDefinition;

function healthHandlers(readiness: Readiness): grpc.UntypedServiceImplementation {
  const statusOf = () => (readiness.serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const known = (service: string | undefined) => (HEALTH_SERVICES as readonly string[]).includes(service ?? "");

  return {
    Check(call: grpc.ServerUnaryCall<{ service?: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
      if (!known(call.request.service)) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        return;
      }
      callback(null, create(HealthCheckResponseSchema, { status: statusOf() }));
    },

    Watch(call: grpc.ServerWritableStream<{ service?: string }, unknown>) {
      if (!known(call.request.service)) {
        call.write(create(HealthCheckResponseSchema, { status: ServingStatus.SERVICE_UNKNOWN }));
        return;
      }
      call.write(create(HealthCheckResponseSchema, { status: statusOf() }));
      const stop = readiness.onChange(() => call.write(create(HealthCheckResponseSchema, { status: statusOf() })));
      call.on("cancelled", stop);
      call.on("close", stop);
    },

    List(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      const statuses = Object.fromEntries(HEALTH_SERVICES.map((name) => [name, create(HealthCheckResponseSchema, { status: statusOf() })]));
      callback(null, create(HealthListResponseSchema, { statuses }));
    },
  };
}
