import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildEnvoyCheckRequest, createCheckClient } from "../../src/sidecar/check-client.js";
import { httpStatusOf, makeTempDir } from "../helpers/sidecar-harness.js";
import { runTollgate, startTollgate, type CliProcess } from "../helpers/cli-process.js";

const COMMANDS = [
  [],
  ["apis"],
  ["apis", "create"],
  ["apis", "list"],
  ["plans"],
  ["plans", "set"],
  ["plans", "list"],
  ["keys"],
  ["keys", "create"],
  ["keys", "list"],
  ["keys", "revoke"],
  ["keys", "disable"],
  ["keys", "enable"],
  ["sidecar"],
  ["check"],
  ["dev"],
];

let root: string;
const running: CliProcess[] = [];

beforeAll(() => {
  root = makeTempDir("cli");
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((process) => process.stop("SIGKILL")));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function dataDir(name: string): string {
  return join(root, name);
}

/** Starts a sidecar child on free ports and returns it with its ext_authz target. */
async function startSidecar(data: string, ...extra: string[]): Promise<{ sidecar: CliProcess; target: string; httpPort: string }> {
  const sidecar = startTollgate(["sidecar", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", ...extra]);
  running.push(sidecar);
  const [, grpcPort, httpPort] = await sidecar.waitFor(/ext_authz on port (\d+), metrics on http port (\d+)/);
  return { sidecar, target: `127.0.0.1:${grpcPort}`, httpPort: httpPort! };
}

/**
 * Repeats a Check from this process until its HTTP status is `expected`, for
 * up to `withinMs`; returns the time it took. The time starts after the CLI
 * command that made the change has exited.
 */
async function checkUntil(target: string, key: string, expected: number, withinMs: number): Promise<number> {
  const client = createCheckClient(target);
  const started = Date.now();
  try {
    for (;;) {
      const response = await client.check(buildEnvoyCheckRequest({ method: "GET", path: "/v1/hello", headers: { authorization: `Bearer ${key}` } }));
      if (httpStatusOf(response) === expected) return Date.now() - started;
      if (Date.now() - started > withinMs) throw new Error(`the check still answers ${httpStatusOf(response)} after ${withinMs} ms`);
    }
  } finally {
    client.close();
  }
}

describe("help and usage errors", () => {
  it.each(COMMANDS.map((command) => [command.join(" ") || "tollgate", command] as const))("answers --help for %s", async (_name, command) => {
    const result = await runTollgate([...command, "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: tollgate/);
  });

  it.each([
    [["keys", "create"], /--api/],
    [["plans", "set", "shop", "free", "--tier", "5/1x"], /invalid tier "5\/1x"/],
    [["keys", "create", "--api", "shop", "--expires-in", "soon"], /--expires-in: "soon"/],
    [["keys", "list", "--state", "sleepy"], /--state: "sleepy"/],
    [["apis", "create", "shop", "--prefix", "Bad_Prefix"], /invalid prefix "Bad_Prefix"/],
    [["check", "GET", "/", "--target", "nowhere"], /--target: "nowhere"/],
    [["check", "GET", "no-slash"], /PATH: "no-slash"/],
    [["bogus"], /unknown command 'bogus'/],
  ])("rejects %j in one line", async (args, message) => {
    const result = await runTollgate(args, { TOLLGATE_DATA: dataDir("usage") });
    expect(result.code).not.toBe(0);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tollgate: /);
    expect(lines[0]).toMatch(message);
  });

  it("lists every configuration problem at once", async () => {
    const result = await runTollgate(["sidecar", "--data", dataDir("config"), "--listen", "nope", "--http", "127.0.0.1:99999", "--log-level", "loud"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--listen: "nope"');
    expect(result.stderr).toContain("--http: port 99999");
    expect(result.stderr).toContain('--log-level: "loud"');
  });
});

describe("standalone store and sidecar", () => {
  it("creates, lists and changes keys", async () => {
    const data = dataDir("crud");
    expect((await runTollgate(["apis", "create", "shop", "--data", data])).code).toBe(0);
    expect((await runTollgate(["plans", "set", "shop", "free", "--tier", "5/1s", "--tier", "8/1m", "--data", data])).code).toBe(0);

    const created = await runTollgate(["keys", "create", "--api", "shop", "--scopes", "read,write", "--owner", "acme", "--name", "ci", "--expires-in", "30d", "--json", "--data", data]);
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; key: string; scopes: string[]; state: string; expiresAt: string };
    expect(key.key).toMatch(/^shop_[1-9A-HJ-NP-Za-km-z]{30}$/);
    expect(key.scopes).toEqual(["read", "write"]);
    expect(key.state).toBe("active");

    const listed = await runTollgate(["keys", "list", "--json", "--data", data]);
    expect(listed.stdout).not.toContain(key.key);
    expect(JSON.parse(listed.stdout)).toHaveLength(1);

    expect(JSON.parse((await runTollgate(["keys", "disable", key.id, "--json", "--data", data])).stdout).state).toBe("disabled");
    expect(JSON.parse((await runTollgate(["keys", "list", "--state", "disabled", "--json", "--data", data])).stdout)).toHaveLength(1);
    expect(JSON.parse((await runTollgate(["keys", "enable", key.id, "--json", "--data", data])).stdout).state).toBe("active");
    expect(JSON.parse((await runTollgate(["keys", "revoke", key.id, "--json", "--data", data])).stdout).state).toBe("revoked");

    const missing = await runTollgate(["keys", "revoke", "key_nope", "--data", data]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe('tollgate: key "key_nope" not found');
  });

  it("refuses to list a store that does not exist", async () => {
    const result = await runTollgate(["keys", "list", "--data", dataDir("typo")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no key store at .*typo/);
    expect(existsSync(dataDir("typo"))).toBe(false);
  });

  it("prefers an explicit --data over TOLLGATE_SERVER", async () => {
    const data = dataDir("explicit");
    const result = await runTollgate(["apis", "create", "local", "--data", data], { TOLLGATE_SERVER: "http://127.0.0.1:1" });
    expect(result.code).toBe(0);
  });

  it("keeps the store file private to its owner", async () => {
    const data = dataDir("private");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    expect(statSync(join(data, "tollgate.db")).mode & 0o777).toBe(0o600);
  });

  it("reads the data folder from TOLLGATE_DATA", async () => {
    const data = dataDir("env");
    expect((await runTollgate(["apis", "create", "envapi"], { TOLLGATE_DATA: data })).code).toBe(0);
    expect((await runTollgate(["apis", "list", "--data", data])).stdout).toContain("envapi");
  });

  it("enforces CLI changes on a running sidecar within a second", async () => {
    const data = dataDir("live");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    const { target } = await startSidecar(data);

    const created = JSON.parse((await runTollgate(["keys", "create", "--api", "shop", "--json", "--data", data])).stdout) as { id: string; key: string };
    expect(await checkUntil(target, created.key, 200, 1_000)).toBeLessThan(1_000);

    await runTollgate(["keys", "disable", created.id, "--data", data]);
    expect(await checkUntil(target, created.key, 403, 1_000)).toBeLessThan(1_000);
    const disabled = await runTollgate(["check", "--target", target, "--key", created.key, "GET", "/v1/hello"]);
    expect(disabled.stdout).toMatch(/^DENY 403 disabled_key/);

    await runTollgate(["keys", "enable", created.id, "--data", data]);
    expect(await checkUntil(target, created.key, 200, 1_000)).toBeLessThan(1_000);

    await runTollgate(["keys", "revoke", created.id, "--data", data]);
    expect(await checkUntil(target, created.key, 401, 1_000)).toBeLessThan(1_000);
  });

  it("answers not_ready until the store exists", async () => {
    const data = dataDir("late");
    const { target, httpPort } = await startSidecar(data);

    const early = await runTollgate(["check", "--target", target, "GET", "/"]);
    expect(early.stdout).toMatch(/^DENY 503 not_ready/);
    expect(early.stdout).toMatch(/retry-after: 1/);
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(503);

    await runTollgate(["apis", "create", "shop", "--data", data]);
    const deadline = Date.now() + 1_000;
    while ((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status !== 200) {
      if (Date.now() > deadline) throw new Error("the sidecar did not become ready within a second");
    }
    expect((await runTollgate(["check", "--target", target, "GET", "/"])).stdout).toMatch(/^DENY 401 missing_key/);
  });

  it("drains and exits cleanly on SIGTERM", async () => {
    const { sidecar } = await startSidecar(dataDir("term"));
    expect(await sidecar.stop("SIGTERM")).toBe(0);
    expect(sidecar.output().stderr).toContain('"msg":"sidecar stopped"');
  });

  it("check --repeat shows a burst hitting the limit", async () => {
    const data = dataDir("repeat");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    await runTollgate(["plans", "set", "shop", "free", "--tier", "3/1m", "--default", "--data", data]);
    const key = JSON.parse((await runTollgate(["keys", "create", "--api", "shop", "--json", "--data", data])).stdout) as { key: string };
    const { target } = await startSidecar(data);

    const burst = await runTollgate(["check", "--target", target, "--key", key.key, "--repeat", "5", "GET", "/v1/hello"]);

    expect(burst.stdout.trim().split("\n")).toEqual(["ALLOW ok", "ALLOW ok", "ALLOW ok", "DENY 429 rate_limited", "DENY 429 rate_limited"]);
    expect(burst.code).toBe(1);
  });

  it("serves Prometheus metrics and liveness", async () => {
    const data = dataDir("metrics");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    const { target, httpPort } = await startSidecar(data);
    await runTollgate(["check", "--target", target, "GET", "/"]);

    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metrics).toMatch(/tollgate_check_decisions_total\{decision="deny",reason="missing_key"\} 1/);
    expect(metrics).toMatch(/tollgate_check_duration_seconds_bucket/);
    expect(metrics).toMatch(/tollgate_process_resident_memory_bytes/);
    expect((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status).toBe(200);
  });
});

describe("dev", () => {
  it("creates a demo key once and serves it", async () => {
    const data = dataDir("dev");
    const dev = startTollgate(["dev", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server-listen", "127.0.0.1:0"]);
    running.push(dev);
    const [, target, key] = await dev.waitFor(/check --target (\S+) --key (demo_\S+) GET \/v1\/hello/);
    const [, serverUrl, adminToken] = await dev.waitFor(/TOLLGATE_SERVER=(\S+) TOLLGATE_ADMIN_TOKEN=(\S+)/);

    // The sidecar serves once its replica has synced from the server.
    await checkUntil(target!, key!, 200, 5_000);
    const allowed = await runTollgate(["check", "--target", target!, "--key", key!, "GET", "/v1/hello"]);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toMatch(/^ALLOW ok/);
    expect(allowed.stdout).toContain('ratelimit-policy: "5/1s";q=5;w=1');

    // The printed admin token manages the server, and a key made there reaches the sidecar.
    const created = await runTollgate(["--server", serverUrl!, "--token", adminToken!, "keys", "create", "--api", "demo", "--json"]);
    expect(created.code).toBe(0);
    await checkUntil(target!, (JSON.parse(created.stdout) as { key: string }).key, 200, 1_000);
    expect(await dev.stop()).toBe(0);
    // The debug decision log never carries the key.
    expect(dev.output().stderr).toContain('"msg":"check"');
    expect(dev.output().stderr).not.toContain(key);

    const again = startTollgate(["dev", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server-listen", "127.0.0.1:0"]);
    running.push(again);
    await again.waitFor(/created on an earlier run/);
    expect(again.output().stdout).not.toMatch(/demo_[1-9A-Za-z]{30}/);
  });
});

describe("version", () => {
  it("prints the package version", async () => {
    const result = await runTollgate(["--version"]);
    const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });
});

describe("failed starts", () => {
  /** Holds a loopback port until the returned function is called. */
  async function takePort(): Promise<{ port: number; release(): Promise<void> }> {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as { port: number };
    return { port, release: () => new Promise((resolve) => blocker.close(() => resolve())) };
  }

  it("server keeps no unseen admin token", async () => {
    const data = dataDir("server-port-taken");
    const taken = await takePort();
    const failed = await runTollgate(["server", "--data", data, "--listen", `127.0.0.1:${taken.port}`]);
    await taken.release();
    expect(failed.code).toBe(1);
    expect(failed.stdout).not.toContain("Admin token");

    const server = startTollgate(["server", "--data", data, "--listen", "127.0.0.1:0"]);
    running.push(server);
    await server.waitFor(/Admin token, shown only now/);
  });

  it("dev exits and keeps no unseen demo key", async () => {
    const data = dataDir("dev-port-taken");
    const taken = await takePort();
    const failed = await runTollgate(["dev", "--data", data, "--listen", `127.0.0.1:${taken.port}`, "--http", "127.0.0.1:0", "--server-listen", "127.0.0.1:0"]);
    await taken.release();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/failed to start the sidecar/);

    const dev = startTollgate(["dev", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--server-listen", "127.0.0.1:0"]);
    running.push(dev);
    await dev.waitFor(/Demo key, shown only now/);
  });
});

describe("sidecar resilience", () => {
  it("exits when its http port is taken", async () => {
    const blocker = await runTollgate(["apis", "create", "shop", "--data", dataDir("taken")]);
    expect(blocker.code).toBe(0);
    const { httpPort } = await startSidecar(dataDir("taken"));
    const second = await runTollgate(["sidecar", "--data", dataDir("taken"), "--listen", "127.0.0.1:0", "--http", `127.0.0.1:${httpPort}`]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/failed to start the sidecar/);
  });

  it("reopens a store replaced underneath it", async () => {
    const data = dataDir("replaced");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    const before = JSON.parse((await runTollgate(["keys", "create", "--api", "shop", "--json", "--data", data])).stdout) as { key: string };
    const { target, sidecar } = await startSidecar(data);
    expect(await checkUntil(target, before.key, 200, 1_000)).toBeLessThan(1_000);

    rmSync(data, { recursive: true, force: true });
    await runTollgate(["apis", "create", "shop", "--data", data]);
    const after = JSON.parse((await runTollgate(["keys", "create", "--api", "shop", "--json", "--data", data])).stdout) as { key: string };
    expect(await checkUntil(target, after.key, 200, 2_000)).toBeLessThan(2_000);
    expect(await checkUntil(target, before.key, 401, 1_000)).toBeLessThan(1_000);
    expect(sidecar.child.exitCode).toBeNull();
  });

  it("survives a store that turns to garbage", async () => {
    const data = dataDir("garbage");
    await runTollgate(["apis", "create", "shop", "--data", data]);
    const { target, sidecar } = await startSidecar(data);
    const store = join(data, "tollgate.db");
    rmSync(store);
    writeFileSync(store, "this is not a database".repeat(100));

    const checked = await runTollgate(["check", "--target", target, "GET", "/"]);
    expect(checked.stdout).toMatch(/^DENY (503 not_ready|401 missing_key)/);
    await sidecar.waitFor(/key store cannot be opened|replaced or unreadable/);
    expect(sidecar.child.exitCode).toBeNull();
    expect((await runTollgate(["check", "--target", target, "GET", "/"])).stdout).toMatch(/^DENY 503 not_ready/);
  });
});
