import { describe, expect, it } from "vitest";
import { loadSidecarConfig } from "../../../src/config/sidecar-config.js";

const TOKEN = "tgsidecar_secret-value-123";

describe("sidecar replication settings", () => {
  it("are absent without --server", () => {
    const loaded = loadSidecarConfig({}, {});
    expect(loaded.ok).toBe(true);
    if (loaded.ok) expect(loaded.config.replication).toBeUndefined();
  });

  it("read flags before environment variables", () => {
    const loaded = loadSidecarConfig(
      { server: "http://127.0.0.1:8080/", token: TOKEN, sidecarId: "pod-7" },
      { TOLLGATE_SERVER: "http://10.0.0.1:1", TOLLGATE_SIDECAR_TOKEN: "other", TOLLGATE_SIDECAR_ID: "env-id" },
    );
    expect(loaded).toEqual({ ok: true, config: expect.objectContaining({ replication: { serverUrl: "http://127.0.0.1:8080", token: TOKEN, sidecarId: "pod-7" } }) });
  });

  it("read TOLLGATE_SERVER, TOLLGATE_SIDECAR_TOKEN and TOLLGATE_SIDECAR_ID", () => {
    const loaded = loadSidecarConfig({}, { TOLLGATE_SERVER: "https://tollgate.internal:443", TOLLGATE_SIDECAR_TOKEN: TOKEN, TOLLGATE_SIDECAR_ID: "env-id" });
    expect(loaded.ok).toBe(true);
    if (loaded.ok) expect(loaded.config.replication).toEqual({ serverUrl: "https://tollgate.internal", token: TOKEN, sidecarId: "env-id" });
  });

  it("default the sidecar id to hostname and pid", () => {
    const loaded = loadSidecarConfig({ server: "http://[::1]:8080", token: TOKEN }, {});
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    expect(loaded.config.replication?.sidecarId).toMatch(new RegExp(`-${process.pid}$`));
    expect(loaded.config.replication?.serverUrl).toBe("http://[::1]:8080");
  });

  it.each([
    [{ server: "http://127.0.0.1:8080" }, /--token: a sidecar token is required with --server/],
    [{ token: TOKEN }, /--token: a sidecar token needs --server/],
    [{ server: "127.0.0.1:8080", token: TOKEN }, /--server: "127.0.0.1:8080" must be an http:\/\/ or https:\/\/ URL/],
    [{ server: "http://127.0.0.1", token: TOKEN }, /--server: "http:\/\/127.0.0.1" must be/],
    [{ server: "grpc://127.0.0.1:8080", token: TOKEN }, /--server: "grpc:/],
    [{ server: "http://127.0.0.1:8080/tollgate", token: TOKEN }, /--server: "http:\/\/127.0.0.1:8080\/tollgate"/],
    [{ server: "http://user:pw@127.0.0.1:8080", token: TOKEN }, /--server: /],
    [{ server: "http://127.0.0.1:8080", token: "two words" }, /--token: the sidecar token must not contain spaces/],
    [{ server: "http://127.0.0.1:8080", token: TOKEN, sidecarId: "has space" }, /--sidecar-id: "has space" must be/],
  ])("reject %j", (flags, problem) => {
    const loaded = loadSidecarConfig(flags, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.join("\n")).toMatch(problem);
  });

  it.each([
    ["http://user:s3cretpass@127.0.0.1:18080", '"http://***@127.0.0.1:18080" must not contain a user name or password'],
    ["https://:s3cretpass@tollgate.internal:443", '"https://***@tollgate.internal:443" must not contain a user name or password'],
    ["http://user:s3cretpass@127.0.0.1:18080/path", '"http://***@127.0.0.1:18080/path" must not contain a user name or password'],
    ["user:s3cretpass@127.0.0.1:18080", '"***@127.0.0.1:18080" must be an http:// or https:// URL'],
    ["http://user:s3cret pass@127.0.0.1:18080", '"http://***@127.0.0.1:18080" must not contain a user name or password'],
    ["http://user:s3cret@pass@127.0.0.1", '"http://***@127.0.0.1" must not contain a user name or password'],
    ["http://user:s3cretpass@", '"http://***@" must be an http:// or https:// URL'],
  ])("never repeat the password of --server %s", (server, problem) => {
    const loaded = loadSidecarConfig({ server, token: TOKEN }, {});

    expect(loaded.ok).toBe(false);
    const text = loaded.ok ? "" : loaded.problems.join("\n");
    expect(text).not.toContain("s3cret");
    expect(text).toContain(`--server: ${problem}`);
  });

  it("show a --server path containing @ without the host", () => {
    const loaded = loadSidecarConfig({ server: "http://127.0.0.1:8080/a@b", token: TOKEN }, {});

    expect(loaded.ok).toBe(false);
    expect(loaded.ok ? "" : loaded.problems.join("\n")).toContain('--server: "http://***@b" must be an http:// or https:// URL');
  });

  it("never repeat the token in a problem", () => {
    const loaded = loadSidecarConfig({ server: "nope", token: "secret with space" }, {});
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.problems.join("\n")).not.toContain("secret with space");
  });
});
