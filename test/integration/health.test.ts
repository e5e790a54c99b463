import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { storePath } from "../../src/config/sidecar-config.js";
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { KeyStore } from "../../src/keys/key-store.js";
import { protobufMethod } from "../../src/sidecar/grpc-server.js";
import { startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

const checkMethod = protobufMethod("/grpc.health.v1.Health/Check", HealthCheckRequestSchema, HealthCheckResponseSchema);
const watchMethod = protobufMethod("/grpc.health.v1.Health/Watch", HealthCheckRequestSchema, HealthCheckResponseSchema, true);

let harness: SidecarHarness | undefined;
let client: grpc.Client | undefined;

afterEach(async () => {
  client?.close();
  await harness?.close();
});

function healthCheck(service: string): Promise<HealthCheckResponse> {
  return new Promise((resolve, reject) =>
    client!.makeUnaryRequest(checkMethod.path, checkMethod.requestSerialize, checkMethod.responseDeserialize, create(HealthCheckRequestSchema, { service }), (error, value) =>
      error ? reject(error) : resolve(value!),
    ),
  );
}

async function readyzStatus(): Promise<number> {
  return (await fetch(`http://127.0.0.1:${harness!.sidecar.httpPort}/readyz`)).status;
}

describe("grpc health and readiness", () => {
  it("reports NOT_SERVING until the store exists, then SERVING", async () => {
    harness = await startSidecarHarness({}, { createStore: false });
    client = new grpc.Client(`127.0.0.1:${harness.sidecar.grpcPort}`, grpc.credentials.createInsecure());

    const watched: ServingStatus[] = [];
    const watch = client.makeServerStreamRequest(watchMethod.path, watchMethod.requestSerialize, watchMethod.responseDeserialize, create(HealthCheckRequestSchema, { service: "" }));
    watch.on("data", (response: HealthCheckResponse) => watched.push(response.status));
    watch.on("error", () => {});

    expect((await healthCheck("")).status).toBe(ServingStatus.NOT_SERVING);
    expect(await readyzStatus()).toBe(503);

    KeyStore.open(storePath(harness.dataDir), harness.clock).close();
    const deadline = Date.now() + 2_000;
    while ((await healthCheck("")).status !== ServingStatus.SERVING) {
      if (Date.now() > deadline) throw new Error("the sidecar never became SERVING");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await healthCheck("envoy.service.auth.v3.Authorization")).status).toBe(ServingStatus.SERVING);
    expect(await readyzStatus()).toBe(200);
    expect(watched).toEqual([ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    watch.cancel();
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    harness = await startSidecarHarness();
    client = new grpc.Client(`127.0.0.1:${harness.sidecar.grpcPort}`, grpc.credentials.createInsecure());
    await expect(healthCheck("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});
