import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, posix, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { formatListenAddress, parseListenAddress, type ListenAddress } from "../../src/config/listen-address.js";
import { DEFAULT_SERVER_LISTEN } from "../../src/config/server-config.js";
import { DEFAULT_HTTP, DEFAULT_LISTEN } from "../../src/config/sidecar-config.js";
import { hashKey } from "../../src/keys/key-format.js";
import { CLI_PATH } from "../helpers/cli-process.js";
import {
  dockerEnvironment,
  envoyAddresses,
  extAuthzClusterName,
  instructionsOf,
  isAllInterfaces,
  parseComposeDurationMs,
  parseDockerfile,
  readRepoFile,
  REPO_ROOT,
  repoPath,
  serverConfigFrom,
  sidecarConfigFrom,
  tollgateVariablesRead,
  upstreamClusterNames,
  type Yaml,
} from "../helpers/deploy-files.js";
import { ADMIN_TOKEN, startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { makeTempDir, startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

/**
 * Checks of the container image and the compose stack, as far as they go
 * without a Docker daemon. They cover the Dockerfile's stages and runtime
 * settings, and the compose services against envoy/envoy.yaml and the CLI's
 * defaults. The two shell scripts the stack runs are run against a real server.
 */
const stages = parseDockerfile(readRepoFile("Dockerfile"));
const buildStage = stages[0]!;
const runtimeStage = stages.at(-1)!;
const imageEnv = dockerEnvironment(runtimeStage);

const COMPOSE_DIR = repoPath("deploy/compose");
const compose = parse(readRepoFile("deploy/compose/compose.yaml"), { merge: true }) as Yaml;
const services: Record<string, Yaml> = compose.services;
const TOLLGATE_IMAGE = "tollgate:local";
const tollgateServices = Object.entries(services).filter(([, service]) => service.image === TOLLGATE_IMAGE);
const frontProxy = parse(readRepoFile("envoy/envoy.yaml")) as Yaml;
const frontProxyAddresses = envoyAddresses(frontProxy);
/** Time the sidecar's stop grace period leaves for Envoy and Docker beyond the sidecar's own shutdown bounds. */
const STOP_MARGIN_MS = 5000;

let server: ServerHarness;
let sidecar: SidecarHarness;

beforeAll(async () => {
  server = await startServerHarness();
  sidecar = await startSidecarHarness();
});

afterAll(async () => {
  await sidecar?.close();
  await server?.close();
});

describe("Dockerfile", () => {
  it("builds and runs in separate node:20 stages", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(buildStage.name).toBe("build");
    for (const stage of stages) expect(stage.image).toBe("node:20-bookworm-slim");
  });

  it("installs the compilers better-sqlite3 falls back to", () => {
    const installs = instructionsOf(buildStage, "RUN").join(" ");
    for (const tool of ["python3", "make", "g++"]) expect(installs).toContain(tool);
  });

  it("installs, builds and prunes in order", () => {
    const commands = instructionsOf(buildStage, "RUN").join(" && ");
    const positions = ["npm ci", "npm run build", "npm prune --omit=dev"].map((command) => commands.indexOf(command));
    for (const position of positions) expect(position).toBeGreaterThanOrEqual(0);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  it("skips prepare until the sources are copied", () => {
    // package.json's prepare builds from src/, which npm ci would run before COPY src.
    const packageJson = JSON.parse(readRepoFile("package.json")) as { scripts: Record<string, string> };
    expect(packageJson.scripts.prepare).toContain("npm run build");

    const steps = buildStage.instructions.map((instruction) => `${instruction.keyword} ${instruction.args}`);
    const install = steps.findIndex((step) => step.startsWith("RUN npm ci"));
    const copySources = steps.findIndex((step) => /^COPY src\b/.test(step));
    expect(install).toBeLessThan(copySources);
    expect(steps[install]).toContain("--ignore-scripts");
    // Without install scripts, better-sqlite3's native module is built by an explicit rebuild.
    expect(steps.slice(copySources).join(" ")).toContain("npm rebuild better-sqlite3");
  });

  it("copies every folder the build compiles", () => {
    const buildConfig = JSON.parse(readRepoFile("tsconfig.build.json")) as { include: string[] };
    const copied = instructionsOf(buildStage, "COPY").flatMap((args) => args.split(" ").slice(0, -1));
    for (const folder of buildConfig.include) expect(copied).toContain(folder);
    for (const file of ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json"]) expect(copied).toContain(file);
  });

  it("ships only the runtime files", () => {
    const buildDir = instructionsOf(buildStage, "WORKDIR").at(-1)!;
    const fromBuild = instructionsOf(runtimeStage, "COPY")
      .filter((args) => args.startsWith("--from=build "))
      .map((args) => posix.relative(buildDir, args.split(" ")[1]!));
    expect(fromBuild.sort()).toEqual(["bin", "dist/src", "node_modules", "package.json"]);
  });

  it("runs as a numeric non-root user", () => {
    const user = instructionsOf(runtimeStage, "USER").at(-1)!;
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(":")[0])).toBeGreaterThan(0);
  });

  it("starts bin/tollgate.js with its compiled code in place", () => {
    const appDir = instructionsOf(runtimeStage, "WORKDIR").at(-1)!;
    const entrypoint = JSON.parse(instructionsOf(runtimeStage, "ENTRYPOINT").at(-1)!) as string[];
    expect(entrypoint).toEqual(["node", posix.join(appDir, "bin/tollgate.js")]);

    // bin/tollgate.js imports the compiled CLI; that path must be inside a copied folder.
    const [, imported] = /import "([^"]+)"/.exec(readRepoFile("bin/tollgate.js"))!;
    const importedFromApp = posix.join("bin", imported!);
    const copiedTargets = instructionsOf(runtimeStage, "COPY").map((args) => posix.normalize(args.split(" ").at(-1)!));
    expect(copiedTargets.some((target) => importedFromApp.startsWith(`${target}/`))).toBe(true);
  });

  it("keeps data in a volume at TOLLGATE_DATA", () => {
    const volumes = instructionsOf(runtimeStage, "VOLUME").flatMap((args) => (args.startsWith("[") ? (JSON.parse(args) as string[]) : args.split(" ")));
    expect(imageEnv.TOLLGATE_DATA).toBeDefined();
    expect(volumes).toContain(imageEnv.TOLLGATE_DATA);
  });

  it("listens beyond the container except for ext_authz", () => {
    const serverConfig = serverConfigFrom(imageEnv);
    const sidecarConfig = sidecarConfigFrom(imageEnv);
    expect(isAllInterfaces(serverConfig.listen)).toBe(true);
    expect(serverConfig.listen.port).toBe(portOf(DEFAULT_SERVER_LISTEN));
    expect(isAllInterfaces(sidecarConfig.http)).toBe(true);
    expect(sidecarConfig.http.port).toBe(portOf(DEFAULT_HTTP));
    expect(formatListenAddress(sidecarConfig.listen)).toBe(DEFAULT_LISTEN);

    const exposed = instructionsOf(runtimeStage, "EXPOSE").flatMap((args) => args.split(" ").map(Number));
    expect(exposed.sort()).toEqual([serverConfig.listen.port, sidecarConfig.http.port].sort());
  });

  it("sets only variables Tollgate reads", () => {
    const known = tollgateVariablesRead();
    for (const name of Object.keys(imageEnv).filter((variable) => variable.startsWith("TOLLGATE_"))) expect(known).toContain(name);
  });

  it("ignores host builds but not the sources", () => {
    const ignored = readRepoFile(".dockerignore")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#"));
    for (const entry of ["node_modules", "dist", ".git"]) expect(ignored).toContain(entry);
    const copied = instructionsOf(buildStage, "COPY").flatMap((args) => args.split(" ").slice(0, -1));
    for (const source of copied) expect(ignored).not.toContain(source);
  });
});

describe("compose stack", () => {
  it("builds the Tollgate image from the repository root", () => {
    expect(tollgateServices.map(([name]) => name).sort()).toEqual(["server", "sidecar", "sidecar-token"]);
    for (const [, service] of tollgateServices) {
      expect(withTrailingSlash(resolve(COMPOSE_DIR, service.build.context))).toBe(withTrailingSlash(REPO_ROOT));
    }
  });

  it("mounts files that exist", () => {
    for (const [name, service] of Object.entries(services)) {
      for (const mount of bindMounts(service)) expect(existsSync(mount.source), `${name} mounts ${mount.source}`).toBe(true);
      for (const file of service.env_file ?? []) expect(existsSync(resolve(COMPOSE_DIR, file)), `${name} reads ${file}`).toBe(true);
    }
  });

  it("runs Envoy on envoy/envoy.yaml in the app's network namespace", () => {
    const envoy = services.envoy;
    expect(envoy.network_mode).toBe("service:app");
    const configPath = envoy.command[envoy.command.indexOf("-c") + 1];
    const mount = bindMounts(envoy).find((candidate) => candidate.target === configPath);
    expect(mount?.source).toBe(repoPath("envoy/envoy.yaml"));
  });

  it("puts the sidecar where Envoy's ext_authz cluster points", () => {
    expect(services.sidecar.network_mode).toBe(services.envoy.network_mode);
    const config = sidecarConfigFrom(sidecarEnvironment());
    const cluster = frontProxyAddresses.clusters.get(extAuthzClusterName(frontProxy))!;
    expect(formatListenAddress(config.listen)).toBe(formatListenAddress(cluster));
  });

  it("puts the app where Envoy routes requests", () => {
    const app = services.app;
    const appAddress = `${app.environment.HOST}:${app.environment.PORT}`;
    for (const name of upstreamClusterNames(frontProxy)) expect(formatListenAddress(frontProxyAddresses.clusters.get(name)!)).toBe(appAddress);
    expect(app.command).toContain("/demo/demo-upstream.mjs");
  });

  it("publishes the listeners on the host's loopback only", () => {
    const sidecarConfig = sidecarConfigFrom(sidecarEnvironment());
    const serverConfig = serverConfigFrom(environmentOf(services.server));
    // Services in the app's network namespace publish their ports through the app.
    expect(publishedPorts(services.app).map((port) => port.container).sort()).toEqual([frontProxyAddresses.listener.port, sidecarConfig.http.port].sort());
    expect(publishedPorts(services.server).map((port) => port.container)).toEqual([serverConfig.listen.port]);
    for (const service of Object.values(services)) {
      for (const port of publishedPorts(service)) expect(port.hostAddress).toBe("127.0.0.1");
    }
  });

  it("points the sidecar at the server's service", () => {
    const replication = sidecarConfigFrom(sidecarEnvironment()).replication!;
    const url = new URL(replication.serverUrl);
    expect(services[url.hostname]).toBe(services.server);
    expect(Number(url.port)).toBe(serverConfigFrom(environmentOf(services.server)).listen.port);
  });

  it("checks health on paths the services serve", async () => {
    const checks: [string, ListenAddress, string][] = [
      ["server", serverConfigFrom(environmentOf(services.server)).listen, server.baseUrl],
      ["sidecar", sidecarConfigFrom(sidecarEnvironment()).http, `http://127.0.0.1:${sidecar.sidecar.httpPort}`],
    ];
    for (const [name, listen, liveBaseUrl] of checks) {
      const url = new URL(healthCheckUrl(services[name]));
      expect(Number(url.port), `${name} health check port`).toBe(listen.port);
      expect((await fetch(`${liveBaseUrl}${url.pathname}`)).status, `${name} ${url.pathname}`).toBe(200);
    }
    expect(new URL(healthCheckUrl(services.app)).port).toBe(services.app.environment.PORT);
  });

  it("starts the sidecar after its token exists", () => {
    expect(services.sidecar.depends_on["sidecar-token"].condition).toBe("service_completed_successfully");
    expect(services["sidecar-token"].depends_on.server.condition).toBe("service_healthy");
    for (const [name, service] of Object.entries(services)) {
      for (const dependency of Object.keys(service.depends_on ?? {})) expect(services, `${name} depends on ${dependency}`).toHaveProperty(dependency);
    }
  });

  it("passes the token through a shared volume", () => {
    const writer = services["sidecar-token"];
    const reader = services.sidecar;
    expect(writer.environment.SIDECAR_TOKEN_FILE).toBe(reader.environment.SIDECAR_TOKEN_FILE);
    const tokenDir = posix.dirname(writer.environment.SIDECAR_TOKEN_FILE);
    const volumeAt = (service: Yaml) => (service.volumes as string[]).find((volume) => volume.endsWith(`:${tokenDir}`));
    expect(volumeAt(writer)).toBeDefined();
    expect(volumeAt(writer)).toBe(volumeAt(reader));
    expect(compose.volumes).toHaveProperty(volumeAt(writer)!.split(":")[0]!);
  });

  it("gives the sidecar time to drain on stop", () => {
    const config = sidecarConfigFrom(sidecarEnvironment());
    expect(config.usage).toBeDefined();
    const neededMs = config.shutdownGraceMs + config.usage!.drainTimeoutMs + STOP_MARGIN_MS;
    expect(parseComposeDurationMs(services.sidecar.stop_grace_period)).toBeGreaterThanOrEqual(neededMs);
  });

  it("runs every container read-only and unprivileged", () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.read_only, name).toBe(true);
      expect(service.cap_drop, name).toEqual(["ALL"]);
      expect(service.security_opt, name).toContain("no-new-privileges:true");
    }
    for (const [name, service] of tollgateServices) expect(service.tmpfs, name).toContain("/tmp");
  });

  it("pins every other image to a version", () => {
    for (const [name, service] of Object.entries(services).filter(([, candidate]) => candidate.image !== TOLLGATE_IMAGE)) {
      expect(service.image, name).toMatch(/:[^:]+$/);
      expect(service.image, name).not.toMatch(/:latest$/);
    }
  });

  it("sets only variables Tollgate reads", () => {
    const known = tollgateVariablesRead();
    for (const [, service] of tollgateServices) {
      for (const name of Object.keys(environmentOf(service)).filter((variable) => variable.startsWith("TOLLGATE_"))) expect(known).toContain(name);
    }
  });
});

describe("compose scripts", () => {
  const scripts = { createToken: repoPath("deploy/compose/create-sidecar-token.sh"), runSidecar: repoPath("deploy/compose/run-sidecar.sh") };
  let workDir: string;
  let tokenFile: string;

  beforeAll(() => {
    workDir = makeTempDir("compose-scripts");
    tokenFile = join(workDir, "sidecar-token");
  });

  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  const scriptEnv = () => ({ TOLLGATE_SERVER: server.baseUrl, TOLLGATE_CLI: CLI_PATH, SIDECAR_TOKEN_FILE: tokenFile });

  it("create-sidecar-token.sh writes one sidecar token", async () => {
    const first = await runScript(scripts.createToken, { ...scriptEnv(), TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(first.code, first.stderr).toBe(0);
    const secret = readFileSync(tokenFile, "utf8");
    expect(first.stdout + first.stderr).not.toContain(secret);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect((await server.server.store.findToken(hashKey(secret)))?.kind).toBe("sidecar");

    const second = await runScript(scripts.createToken, { ...scriptEnv(), TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(second.code, second.stderr).toBe(0);
    expect(readFileSync(tokenFile, "utf8")).toBe(secret);
    expect(await server.server.store.countTokens("sidecar")).toBe(1);
  });

  it("create-sidecar-token.sh fails without an admin token", async () => {
    const otherFile = join(workDir, "never-written");
    const result = await runScript(scripts.createToken, { ...scriptEnv(), SIDECAR_TOKEN_FILE: otherFile });
    expect(result.code).not.toBe(0);
    expect(existsSync(otherFile)).toBe(false);
  });

  it("run-sidecar.sh replicates and stops on SIGTERM", async () => {
    const child = spawnScript(scripts.runSidecar, { ...scriptEnv(), TOLLGATE_DATA: workDir, TOLLGATE_LISTEN: "127.0.0.1:0", TOLLGATE_HTTP: "127.0.0.1:0" });
    try {
      const [, httpPort] = await child.waitFor(/metrics on http port (\d+)/);
      await waitForStatus(`http://127.0.0.1:${httpPort}/readyz`, 200);
    } catch (error) {
      await child.stop(0);
      throw error;
    }
    // exec makes the sidecar the script's own process, so the signal reaches it and it exits 0.
    expect(await child.stop()).toBe(0);
  });

  it("run-sidecar.sh rejects a missing token file", async () => {
    const result = await runScript(scripts.runSidecar, { ...scriptEnv(), SIDECAR_TOKEN_FILE: join(workDir, "missing") });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing or empty");
  });
});

function portOf(address: string): number {
  return (parseListenAddress(address) as ListenAddress).port;
}

function withTrailingSlash(path: string): string {
  return path.endsWith("/") ? path : `${path}/`;
}

/** Returns a service's variables: its env_file entries and `environment`, over the image's ENV when it runs our image. */
function environmentOf(service: Yaml): Record<string, string> {
  const env: Record<string, string> = service.image === TOLLGATE_IMAGE ? { ...imageEnv } : {};
  for (const file of service.env_file ?? []) {
    for (const line of readFileSync(resolve(COMPOSE_DIR, file), "utf8").split("\n")) {
      const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
      if (match) env[match[1]!] = match[2]!;
    }
  }
  return { ...env, ...(service.environment ?? {}) };
}

/** Returns the sidecar service's variables plus the token that run-sidecar.sh reads from its file. */
function sidecarEnvironment(): Record<string, string> {
  expect(services.sidecar.entrypoint.join(" ")).toContain("run-sidecar.sh");
  return { ...environmentOf(services.sidecar), TOLLGATE_SIDECAR_TOKEN: "token-read-by-run-sidecar" };
}

/** Volumes given as paths (bind mounts), with the host side resolved against the compose folder. */
function bindMounts(service: Yaml): { source: string; target: string }[] {
  return ((service.volumes ?? []) as string[])
    .filter((volume) => volume.startsWith(".") || volume.startsWith("/"))
    .map((volume) => {
      const [source, target] = volume.split(":");
      return { source: resolve(COMPOSE_DIR, source!), target: target! };
    });
}

function publishedPorts(service: Yaml): { hostAddress: string; container: number }[] {
  return ((service.ports ?? []) as string[]).map((port) => {
    const [hostAddress, , container] = port.split(":");
    return { hostAddress: hostAddress!, container: Number(container) };
  });
}

function healthCheckUrl(service: Yaml): string {
  const [url] = /http:\/\/[^'"\s]+/.exec((service.healthcheck.test as string[]).join(" "))!;
  return url;
}

interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for a script: the parent's without TOLLGATE_* settings, plus `env`. */
function scriptEnvironment(env: Record<string, string>): Record<string, string> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("TOLLGATE_"))) as Record<string, string>;
  return { ...base, ...env };
}

function runScript(path: string, env: Record<string, string>): Promise<ScriptResult> {
  const child = spawnScript(path, env);
  return child.exited.then((code) => ({ code, ...child.output() }));
}

function spawnScript(path: string, env: Record<string, string>) {
  // A process group of its own, so that a failed test can kill the sidecar the script started.
  const child = spawn("sh", [path], { env: scriptEnvironment(env), stdio: ["ignore", "pipe", "pipe"], detached: true });
  let stdout = "";
  let stderr = "";
  const listeners = new Set<() => void>();
  child.stdout.on("data", (chunk) => ((stdout += chunk), listeners.forEach((listener) => listener())));
  child.stderr.on("data", (chunk) => ((stderr += chunk), listeners.forEach((listener) => listener())));
  const exited = new Promise<number | null>((resolveExit) => child.on("close", (code) => resolveExit(code)));

  return {
    exited,
    output: () => ({ stdout, stderr }),
    waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
      return new Promise((resolveMatch, reject) => {
        const attempt = () => {
          const match = stdout.match(pattern) ?? stderr.match(pattern);
          if (!match) return;
          clearTimeout(timer);
          listeners.delete(attempt);
          resolveMatch(match);
        };
        const timer = setTimeout(() => {
          listeners.delete(attempt);
          reject(new Error(`timed out waiting for ${pattern}; stderr: ${stderr.slice(-2000)}`));
        }, timeoutMs);
        listeners.add(attempt);
        attempt();
      });
    },
    /** Sends SIGTERM to the script's process alone; kills the whole group if it has not exited within `timeoutMs`. */
    async stop(timeoutMs = 10_000): Promise<number | null | "timed out"> {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timed out">((resolveTimeout) => (timer = setTimeout(() => resolveTimeout("timed out"), timeoutMs)));
      const result = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (result === "timed out") process.kill(-child.pid!, "SIGKILL");
      return result;
    },
  };
}

/** Polls `url` until it returns `status`, because the sidecar becomes ready when its first snapshot arrives, a moment after start. */
async function waitForStatus(url: string, status: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: number | string = "no answer";
  while (Date.now() < deadline) {
    last = await fetch(url).then(
      (response) => response.status,
      (error: Error) => error.message,
    );
    if (last === status) return;
    await new Promise((resolveWait) => setTimeout(resolveWait, 50));
  }
  throw new Error(`${url} did not return ${status} within ${timeoutMs} ms; last: ${last}`);
}
