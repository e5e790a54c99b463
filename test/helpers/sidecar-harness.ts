import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createManualClock, type ManualClock } from "../../src/clock.js";
import { loadSidecarConfig, storePath, type SidecarFlags } from "../../src/config/sidecar-config.js";
import type { CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { KeyStore } from "../../src/keys/key-store.js";
import { createLogger } from "../../src/log/logger.js";
import { buildEnvoyCheckRequest, createCheckClient, type CheckClient, type EnvoyRequestInput } from "../../src/sidecar/check-client.js";
import { startSidecar, type Sidecar } from "../../src/sidecar/sidecar.js";

/** Creates a folder under the system temp dir; callers remove it when done. */
export function makeTempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `tollgate-${label}-`));
}

export interface SidecarHarness {
  dataDir: string;
  store: KeyStore;
  clock: ManualClock;
  sidecar: Sidecar;
  client: CheckClient;
  /** Every log line the sidecar wrote, parsed. */
  logLines: Record<string, unknown>[];
  /** The raw log text, to search for secrets. */
  logText(): string;
  check(input: Partial<EnvoyRequestInput> & { key?: string }): Promise<CheckResponse>;
  close(): Promise<void>;
}

/**
 * Starts a real sidecar (gRPC on 127.0.0.1 port 0, a real SQLite file) with a
 * manual clock and a log captured in memory, plus a store handle for setup.
 */
export async function startSidecarHarness(flags: SidecarFlags = {}, options: { createStore?: boolean } = {}): Promise<SidecarHarness> {
  const dataDir = makeTempDir("sidecar");
  const clock = createManualClock();
  const store = options.createStore === false ? undefined : KeyStore.open(storePath(dataDir), clock);

  let raw = "";
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += chunk.toString();
      done();
    },
  });
  const logger = createLogger("debug", sink);

  const loaded = loadSidecarConfig({ listen: "127.0.0.1:0", http: "127.0.0.1:0", logLevel: "debug", ...flags, data: dataDir }, {});
  if (!loaded.ok) throw new Error(loaded.problems.join("; "));
  const sidecar = await startSidecar(loaded.config, { logger, clock });
  const client = createCheckClient(`127.0.0.1:${sidecar.grpcPort}`);

  return {
    dataDir,
    get store() {
      if (!store) throw new Error("this harness was started without a store");
      return store;
    },
    clock,
    sidecar,
    client,
    get logLines() {
      return raw.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    logText: () => raw,
    check({ key, ...input }) {
      const headers = { ...(input.headers ?? {}) };
      if (key !== undefined) headers.authorization = `Bearer ${key}`;
      return client.check(buildEnvoyCheckRequest({ method: "GET", path: "/v1/hello", ...input, headers }));
    },
    async close() {
      client.close();
      await sidecar.close();
      store?.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Returns the HTTP status Envoy would send for a CheckResponse. */
export function httpStatusOf(response: CheckResponse): number {
  if (response.httpResponse.case === "deniedResponse") return response.httpResponse.value.status?.code ?? 403;
  return response.status?.code === 0 || response.status === undefined ? 200 : 403;
}

export function reasonOf(response: CheckResponse): string {
  return String(response.dynamicMetadata?.reason);
}

/** Response headers as a plain object: the client's headers for a denial, response_headers_to_add for an allow. */
export function clientHeadersOf(response: CheckResponse): Record<string, string> {
  const options =
    response.httpResponse.case === "deniedResponse"
      ? response.httpResponse.value.headers
      : response.httpResponse.case === "okResponse"
        ? response.httpResponse.value.responseHeadersToAdd
        : [];
  return Object.fromEntries(options.map((option) => [option.header!.key, option.header!.value]));
}

export function upstreamHeadersOf(response: CheckResponse): Record<string, string> {
  if (response.httpResponse.case !== "okResponse") return {};
  return Object.fromEntries(response.httpResponse.value.headers.map((option) => [option.header!.key, option.header!.value]));
}

export function problemOf(response: CheckResponse): Record<string, unknown> {
  if (response.httpResponse.case !== "deniedResponse") throw new Error("not a denial");
  return JSON.parse(response.httpResponse.value.body) as Record<string, unknown>;
}
