import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CheckRequestSchema, type CheckRequest } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { ROUTE_API } from "../src/sidecar/route.js";
import { BENCH_API } from "./seed.js";

const AUTHORITY = "api.example.com";
const PATH = "/v1/orders?status=open&limit=20";

/**
 * Builds the CheckRequest Envoy's HTTP ext_authz filter sends for a GET with
 * the key as a bearer token: peer addresses, the stream id, and a headers map
 * with lower-case names, the pseudo-headers and what the connection manager
 * adds (`x-request-id`, `x-forwarded-proto`). The addresses are documentation
 * ranges and only travel as data inside the message.
 */
export function buildCheckRequest(key: string, streamId: number): CheckRequest {
  return create(CheckRequestSchema, {
    attributes: {
      source: { address: socketAddress("203.0.113.7", 40_000 + (streamId % 20_000)) },
      destination: { address: socketAddress("192.0.2.10", 8443) },
      request: {
        time: timestampFromMs(Date.now()),
        http: {
          id: String(streamId),
          method: "GET",
          path: PATH,
          host: AUTHORITY,
          scheme: "https",
          protocol: "HTTP/2",
          size: -1n,
          headers: {
            ":authority": AUTHORITY,
            ":method": "GET",
            ":path": PATH,
            ":scheme": "https",
            accept: "application/json",
            "user-agent": "bench-client/1.0",
            "x-forwarded-proto": "https",
            "x-request-id": randomUUID(),
            authorization: `Bearer ${key}`,
          },
        },
      },
      contextExtensions: { [ROUTE_API]: BENCH_API },
    },
  });
}

/**
 * Encodes one request per key ahead of the run, so that the load generator,
 * which shares the machine with the server, spends no CPU on encoding.
 */
export function encodeCheckRequests(keys: readonly string[]): Buffer[] {
  return keys.map((key, index) => Buffer.from(toBinary(CheckRequestSchema, buildCheckRequest(key, index + 1))));
}

function socketAddress(address: string, port: number) {
  return { address: { case: "socketAddress" as const, value: { address, portSpecifier: { case: "portValue" as const, value: port } } } };
}
