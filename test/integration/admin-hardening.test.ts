import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storePath } from "../../src/config/sidecar-config.js";
import { startServerHarness, ADMIN_TOKEN, type ServerHarness } from "../helpers/server-harness.js";

let harness: ServerHarness;

beforeAll(async () => {
  harness = await startServerHarness();
});

afterAll(async () => {
  await harness.close();
});

function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${harness.baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
}

describe("admin API hardening", () => {
  it("rejects an anonymous request before reading its body", async () => {
    const response = await post("/tollgate.admin.v1.KeyService/CreateKey", "x".repeat(8 * 1024 * 1024));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: "unauthenticated" });
  });

  it("rejects a body over 1 MiB", async () => {
    const response = await post("/tollgate.admin.v1.ApiService/CreateApi", JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
  });

  it("rejects a misspelt field instead of ignoring it", async () => {
    const response = await post("/tollgate.admin.v1.ApiService/CreateApi", JSON.stringify({ name: "shop", keyPrefx: "shop" }), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/keyPrefx/);
  });

  it("rejects a misspelt enum name", async () => {
    const response = await post("/tollgate.admin.v1.KeyService/ListKeys", JSON.stringify({ state: "KEY_STATE_REVOKD" }), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(response.status).toBe(400);
  });

  it("never shows an operator-chosen token in full", async () => {
    const body = await (await post("/tollgate.admin.v1.TokenService/ListTokens", "{}", { authorization: `Bearer ${ADMIN_TOKEN}` })).text();
    expect(body).not.toContain(ADMIN_TOKEN);
    expect(readFileSync(storePath(harness.dataDir)).toString("latin1")).not.toContain(ADMIN_TOKEN);
  });
});
