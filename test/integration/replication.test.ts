import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { storePath } from "../../src/config/sidecar-config.js";
import { TierMode, TokenKind } from "../../src/gen/tollgate/admin/v1/resources_pb.js";
import { KeyStore } from "../../src/keys/key-store.js";
import {
  adminClients,
  createFleet,
  decide,
  decideUntil,
  eventually,
  freePort,
  metricValue,
  seedServerData,
  type Fleet,
  type SidecarChild,
} from "../helpers/fleet.js";

let fleet: Fleet;

beforeEach(() => {
  fleet = createFleet("replication");
});

afterEach(async () => {
  await fleet.close();
});

async function readyzStatus(sidecar: SidecarChild): Promise<number> {
  return (await fetch(`http://127.0.0.1:${sidecar.httpPort}/readyz`)).status;
}

describe("replication between processes", () => {
  it("keeps a new sidecar not ready until its first sync", async () => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 3);
    const port = await freePort();
    const sidecar = await fleet.startSidecar("sidecar-a", `http://127.0.0.1:${port}`, seed.sidecarToken);

    expect(await decide(sidecar, seed.keys[0]!.secret)).toMatchObject({ status: 503, reason: "not_ready" });
    expect(await readyzStatus(sidecar)).toBe(503);
    await sidecar.process.waitFor(/replication connection failed/);

    await fleet.startServer(serverData, port);
    await decideUntil(sidecar, seed.keys[0]!.secret, "ok", 10_000);

    expect(await readyzStatus(sidecar)).toBe(200);
    expect(await decide(sidecar, "shop_1111111111111111111111111111")).toMatchObject({ status: 401 });
    // The log line may reach this process after the Check answer, so it is awaited.
    await sidecar.process.waitFor(/"msg":"replica synced"/);
  });

  it("enforces a revocation on both sidecars within 1 s", async () => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 3);
    const server = await fleet.startServer(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => fleet.startSidecar(name, server.baseUrl, seed.sidecarToken)));
    const [revoked, kept] = seed.keys;
    for (const sidecar of sidecars) await decideUntil(sidecar, revoked!.secret, "ok", 10_000);

    await adminClients(server.baseUrl).keys.revokeKey({ id: revoked!.id });
    const delaysMs = await Promise.all(sidecars.map((sidecar) => decideUntil(sidecar, revoked!.secret, "revoked_key", 1_000)));

    for (const delayMs of delaysMs) expect(delayMs).toBeLessThan(1_000);
    for (const sidecar of sidecars) {
      expect(await decide(sidecar, revoked!.secret)).toMatchObject({ status: 401, reason: "revoked_key" });
      expect(await decide(sidecar, kept!.secret)).toMatchObject({ status: 200, reason: "ok" });
    }
  });

  it("survives a server crash and restart", { timeout: 45_000 }, async () => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 4);
    let server = await fleet.startServer(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => fleet.startSidecar(name, server.baseUrl, seed.sidecarToken)));
    const [allowed, revokedBefore, revokedAfter] = seed.keys;
    await adminClients(server.baseUrl).keys.revokeKey({ id: revokedBefore!.id });
    for (const sidecar of sidecars) await decideUntil(sidecar, revokedBefore!.secret, "revoked_key", 10_000);

    await server.process.stop("SIGKILL");

    for (const sidecar of sidecars) {
      await eventually(async () => expect(await metricValue(sidecar, "tollgate_replica_connected")).toBe(0), 5_000);
      expect(await decide(sidecar, allowed!.secret)).toMatchObject({ status: 200, reason: "ok" });
      expect(await decide(sidecar, revokedBefore!.secret)).toMatchObject({ status: 401, reason: "revoked_key" });
      expect(await readyzStatus(sidecar)).toBe(200);
      await sidecar.process.waitFor(/"msg":"replication (stream lost|connection failed)"/);
    }

    server = await fleet.startServer(serverData, server.port);
    await adminClients(server.baseUrl).keys.revokeKey({ id: revokedAfter!.id });

    // Sidecars retry with backoff of at most 10 s, so they reconnect within about that.
    for (const sidecar of sidecars) {
      await decideUntil(sidecar, revokedAfter!.secret, "revoked_key", 15_000);
      expect(await decide(sidecar, allowed!.secret)).toMatchObject({ status: 200, reason: "ok" });
      await eventually(async () => expect(await metricValue(sidecar, "tollgate_replica_connected")).toBe(1), 5_000);
      expect(await metricValue(sidecar, "tollgate_replica_sync_errors_total")).toBeGreaterThan(0);
    }
  });

  it("resumes a snapshot cut by SIGKILL and ends complete", { timeout: 60_000 }, async () => {
    const serverData = join(fleet.root, "server");
    const keyCount = 6_000;
    const seed = await seedServerData(serverData, keyCount);
    const server = await fleet.startServer(serverData);

    const first = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken, { logLevel: "debug" });
    await first.process.waitFor(/"msg":"replication batch applied"/, 15_000);
    await first.process.stop("SIGKILL");
    const cut = KeyStore.openExisting(storePath(first.dataDir), systemClock)!;
    const cutState = { serving: cut.isServing(), version: cut.currentVersion() };
    cut.close();
    expect(cutState.serving).toBe(false);
    expect(cutState.version).toBeGreaterThan(0);

    const restarted = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken, { dataDir: first.dataDir });
    await decideUntil(restarted, seed.keys.at(-1)!.secret, "ok", 20_000);

    const replica = KeyStore.openExisting(storePath(first.dataDir), systemClock)!;
    try {
      expect(replica.isServing()).toBe(true);
      expect(replica.listKeys()).toHaveLength(keyCount);
    } finally {
      replica.close();
    }
    expect(await decide(restarted, seed.keys[0]!.secret)).toMatchObject({ status: 200, reason: "ok" });
    await restarted.process.waitFor(/"snapshot":true,"msg":"replica synced"/);
    expect(await metricValue(restarted, "tollgate_replica_version")).toBe(await metricValue(restarted, "tollgate_replica_server_version"));
  });

  it("applies a plan change on the sidecars", async () => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 1);
    const server = await fleet.startServer(serverData);
    const sidecars = await Promise.all(["sidecar-a", "sidecar-b"].map((name) => fleet.startSidecar(name, server.baseUrl, seed.sidecarToken)));
    const key = seed.keys[0]!;
    for (const sidecar of sidecars) await decideUntil(sidecar, key.secret, "ok", 10_000);

    await adminClients(server.baseUrl).plans.setPlan({ apiId: seed.apiId, name: "free", tiers: [{ limit: 2n, windowMs: 60_000n, mode: TierMode.REJECT }] });

    for (const sidecar of sidecars) {
      await decideUntil(sidecar, key.secret, "rate_limited", 1_000);
      const decision = await decide(sidecar, key.secret);
      expect(decision).toMatchObject({ status: 429, reason: "rate_limited" });
      expect(decision.headers["x-ratelimit-limit"]).toBe("2");
    }
  });

  it("accepts a rotated key's old secret during the grace period", async () => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 2);
    const server = await fleet.startServer(serverData);
    const sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, seed.sidecarToken);
    const [graced, cut] = seed.keys;
    await decideUntil(sidecar, graced!.secret, "ok", 10_000);
    const admin = adminClients(server.baseUrl);

    const rotatedWithGrace = await admin.keys.rotateKey({ id: graced!.id, gracePeriod: durationFromMs(60_000) });
    const rotatedAtOnce = await admin.keys.rotateKey({ id: cut!.id, gracePeriod: durationFromMs(0) });
    await decideUntil(sidecar, rotatedAtOnce.secret, "ok", 1_000);
    await decideUntil(sidecar, rotatedWithGrace.secret, "ok", 1_000);

    expect(await decide(sidecar, graced!.secret)).toMatchObject({ status: 200, reason: "ok" });
    expect(await decide(sidecar, cut!.secret)).toMatchObject({ status: 401, reason: "unknown_key" });
  });

  it.each([
    ["a wrong token", async () => "tgsidecar_0000000000000000000000000000"],
    [
      "a revoked token",
      async (baseUrl: string) => {
        const admin = adminClients(baseUrl);
        const { token, secret } = await admin.tokens.createToken({ name: "short-lived", kind: TokenKind.SIDECAR });
        await admin.tokens.revokeToken({ id: token!.id });
        return secret;
      },
    ],
  ])("keeps a sidecar with %s not ready", async (_name, tokenFor) => {
    const serverData = join(fleet.root, "server");
    const seed = await seedServerData(serverData, 1);
    const server = await fleet.startServer(serverData);
    const token = await tokenFor(server.baseUrl);
    const sidecar = await fleet.startSidecar("sidecar-a", server.baseUrl, token);

    await sidecar.process.waitFor(/"msg":"replication rejected by the server: check the sidecar token/);
    await sidecar.process.waitFor(/"attempt":2/);

    expect(await decide(sidecar, seed.keys[0]!.secret)).toMatchObject({ status: 503, reason: "not_ready" });
    expect(await readyzStatus(sidecar)).toBe(503);
    expect(sidecar.process.child.exitCode).toBeNull();
    expect(sidecar.process.output().stderr).toMatch(/"code":"Unauthenticated"/);
    expect(sidecar.process.output().stderr).not.toContain(token);
    expect(await metricValue(sidecar, "tollgate_replica_sync_errors_total")).toBeGreaterThanOrEqual(2);
  });
});
