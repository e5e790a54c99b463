import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runTollgate, startTollgate, type CliProcess } from "../helpers/cli-process.js";
import { makeTempDir } from "../helpers/sidecar-harness.js";

const ADMIN_TOKEN = "cli-test-admin-token-0123456789";

let dataDir: string;
let server: CliProcess;
let serverUrl: string;

beforeAll(async () => {
  dataDir = makeTempDir("cli-server");
  server = startTollgate(["server", "--data", dataDir, "--listen", "127.0.0.1:0"], { TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
  const [, port] = await server.waitFor(/listening on port (\d+)/);
  serverUrl = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Runs the CLI against the test server with the admin token. */
function remote(...args: string[]) {
  return runTollgate(["--server", serverUrl, "--token", ADMIN_TOKEN, ...args]);
}

describe("CLI against a server", () => {
  it("manages APIs, plans and keys through the admin API", async () => {
    expect((await remote("apis", "create", "shop")).code).toBe(0);
    expect((await remote("plans", "set", "shop", "free", "--tier", "5/1s", "--tier", "100/1d:shadow")).code).toBe(0);

    const created = await remote("keys", "create", "--api", "shop", "--owner", "acme", "--scopes", "read", "--json");
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; key: string; state: string; scopes: string[] };
    expect(key.key).toMatch(/^shop_/);
    expect(key.state).toBe("active");
    expect(key.scopes).toEqual(["read"]);

    const listed = JSON.parse((await remote("keys", "list", "--api", "shop", "--json")).stdout) as { id: string }[];
    expect(listed.map((entry) => entry.id)).toContain(key.id);

    expect(JSON.parse((await remote("keys", "disable", key.id, "--json")).stdout).state).toBe("disabled");
    expect(JSON.parse((await remote("keys", "update", key.id, "--name", "renamed", "--json")).stdout).name).toBe("renamed");
    const rotated = JSON.parse((await remote("keys", "rotate", key.id, "--grace", "10m", "--json")).stdout) as { key: string; previousSecretExpiresAt: string };
    expect(rotated.key).not.toBe(key.key);
    expect(rotated.previousSecretExpiresAt).not.toBeNull();
    expect(JSON.parse((await remote("keys", "revoke", key.id, "--json")).stdout).state).toBe("revoked");

    const audit = await remote("audit", "--resource", key.id, "--json");
    const actions = (JSON.parse(audit.stdout) as { action: string }[]).map((event) => event.action);
    expect(actions).toEqual(["key.create", "key.update", "key.update", "key.rotate", "key.revoke"]);
    expect(audit.stdout).not.toContain(key.key);
    expect(audit.stdout).not.toContain(rotated.key);
  });

  it("reads the server and token from the environment", async () => {
    const result = await runTollgate(["apis", "list", "--json"], { TOLLGATE_SERVER: serverUrl, TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: "shop" })]));
  });

  it("creates sidecar tokens and lists them without secrets", async () => {
    const created = JSON.parse((await remote("tokens", "create", "edge-1", "--kind", "sidecar", "--json")).stdout) as { token: string; id: string };
    expect(created.token).toMatch(/^tgsidecar_/);
    const listed = await remote("tokens", "list", "--json");
    expect(listed.stdout).toContain(created.id);
    expect(listed.stdout).not.toContain(created.token);

    // A sidecar token cannot manage records.
    const denied = await runTollgate(["--server", serverUrl, "--token", created.token, "apis", "list"]);
    expect(denied.code).toBe(2);
    expect(denied.stderr.trim()).toMatch(/^tollgate: the server rejected the token/);
  });

  it.each([
    [["--token", "wrong-token-0123456789", "apis", "list"], 2, /rejected the token/],
    [["apis", "list"], 2, /--token: an admin token is required/],
    [["keys", "revoke", "key_missing"], 1, /key_missing/],
    [["plans", "set", "shop", "bad", "--tier", "0/1s"], 2, /limit must be at least 1/],
  ])("fails in one line for %j", async (args, code, message) => {
    const withToken = args.includes("--token") || args[0] === "apis" ? args : ["--token", ADMIN_TOKEN, ...args];
    const result = await runTollgate(["--server", serverUrl, ...withToken]);
    expect(result.code).toBe(code);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });

  it("reports an unreachable server", async () => {
    const result = await runTollgate(["--server", "http://127.0.0.1:1", "--token", ADMIN_TOKEN, "apis", "list"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unreachable/);
  });

  it("says audit logs need a server", async () => {
    const result = await runTollgate(["audit", "--data", dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/only on a server/);
  });
});
