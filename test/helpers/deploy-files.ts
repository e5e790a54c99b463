import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import type { ListenAddress } from "../../src/config/listen-address.js";
import { loadServerConfig, type ServerConfig } from "../../src/config/server-config.js";
import { loadSidecarConfig, type SidecarConfig } from "../../src/config/sidecar-config.js";

/**
 * Readers for the deployment files (Dockerfile, compose.yaml, Kustomize
 * folders, Envoy configs), shared by the tests that check them against each
 * other and against the code's defaults.
 */

/** Parsed YAML, walked by path: a wrong path fails the test, which is the point. */
export type Yaml = any;

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function repoPath(...parts: string[]): string {
  return join(REPO_ROOT, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), "utf8");
}

/** Returns a path relative to the repository root, for test names and messages. */
export function fromRoot(path: string): string {
  return relative(REPO_ROOT, path);
}

// ---------------------------------------------------------------- Dockerfile

/** One Dockerfile instruction, with continuation lines joined and comments removed. */
export interface DockerInstruction {
  keyword: string;
  args: string;
}

/** The instructions from one FROM up to the next. */
export interface DockerStage {
  image: string;
  name: string | undefined;
  instructions: DockerInstruction[];
}

export function parseDockerfile(text: string): DockerStage[] {
  const logicalLines: string[] = [];
  let pending = "";
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line)) continue;
    if (line.trimEnd().endsWith("\\")) {
      pending += `${line.trimEnd().slice(0, -1)} `;
      continue;
    }
    logicalLines.push(pending + line);
    pending = "";
  }

  const stages: DockerStage[] = [];
  for (const line of logicalLines.map((text) => text.trim()).filter(Boolean)) {
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const instruction = { keyword: keyword!.toUpperCase(), args: args!.replace(/\s+/g, " ") };
    if (instruction.keyword === "FROM") {
      const [, image, name] = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)!;
      stages.push({ image: image!, name, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

export function instructionsOf(stage: DockerStage, keyword: string): string[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);
}

/** Returns the variables a stage's ENV instructions set, written as `KEY=value` without spaces in values. */
export function dockerEnvironment(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const args of instructionsOf(stage, "ENV")) {
    for (const [, name, value] of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)) env[name!] = value!;
  }
  return env;
}

// ---------------------------------------------------------------- Tollgate settings

/** Collects every TOLLGATE_* variable named in src/config, where the config loaders read them. */
export function tollgateVariablesRead(): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(repoPath("src/config"))) {
    for (const [name] of readRepoFile("src/config", file).matchAll(/\bTOLLGATE_[A-Z0-9_]*[A-Z0-9]\b/g)) names.add(name);
  }
  return names;
}

/** Loads the sidecar's settings as the CLI would from these variables alone, failing with every problem. */
export function sidecarConfigFrom(env: Record<string, string>): SidecarConfig {
  const loaded = loadSidecarConfig({}, env);
  if (!loaded.ok) throw new Error(`invalid sidecar settings: ${loaded.problems.join("; ")}`);
  return loaded.config;
}

/** Loads the server's settings as the CLI would from these variables alone, failing with every problem. */
export function serverConfigFrom(env: Record<string, string>): ServerConfig {
  const loaded = loadServerConfig({}, env);
  if (!loaded.ok) throw new Error(`invalid server settings: ${loaded.problems.join("; ")}`);
  return loaded.config;
}

export function isLoopback(address: ListenAddress): boolean {
  return address.host === "localhost" || address.host === "::1" || address.host.startsWith("127.");
}

export function isAllInterfaces(address: ListenAddress): boolean {
  return address.host === "0.0.0.0" || address.host === "::";
}


// ---------------------------------------------------------------- Envoy

/** Where an Envoy static config listens and where each of its clusters points. */
export interface EnvoyAddresses {
  listener: ListenAddress;
  clusters: Map<string, ListenAddress>;
}

export function envoyAddresses(config: Yaml): EnvoyAddresses {
  const socket = config.static_resources.listeners[0].address.socket_address;
  const clusters = new Map<string, ListenAddress>();
  for (const cluster of config.static_resources.clusters) {
    const endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    clusters.set(cluster.name, { host: endpoint.address, port: endpoint.port_value });
  }
  return { listener: { host: socket.address, port: socket.port_value }, clusters };
}

/** Returns the name of the cluster that the ext_authz filter calls. */
export function extAuthzClusterName(config: Yaml): string {
  const manager = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const filter = manager.http_filters.find((candidate: Yaml) => candidate.name === "envoy.filters.http.ext_authz");
  return filter.typed_config.grpc_service.envoy_grpc.cluster_name;
}

/** Returns the names of the clusters that routes send requests to. */
export function upstreamClusterNames(config: Yaml): Set<string> {
  const manager = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  return new Set(manager.route_config.virtual_hosts.flatMap((host: Yaml) => host.routes.map((route: Yaml) => route.route.cluster)));
}

// ---------------------------------------------------------------- Kustomize

export const KUBERNETES_ROOT = repoPath("deploy/kubernetes");

/** A kustomization.yaml and the paths it names, resolved against its folder. */
export interface Kustomization {
  dir: string;
  raw: Yaml;
  /** Files and folders under `resources`. */
  resources: string[];
  /** Folders under `components`. */
  components: string[];
  /** Files read by configMapGenerator and secretGenerator (`files` and `envs`). */
  generatorFiles: string[];
  /** Names of the ConfigMaps and Secrets the generators make, before Kustomize adds a hash. */
  generatedNames: { configMaps: string[]; secrets: string[] };
}

export function findKustomizations(root = KUBERNETES_ROOT): Kustomization[] {
  const found: Kustomization[] = [];
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) visit(join(dir, entry.name));
      else if (entry.name === "kustomization.yaml") found.push(loadKustomization(dir));
    }
  };
  visit(root);
  return found;
}

export function loadKustomization(dir: string): Kustomization {
  const raw = parse(readFileSync(join(dir, "kustomization.yaml"), "utf8")) as Yaml;
  const generators: Yaml[] = [...(raw.configMapGenerator ?? []), ...(raw.secretGenerator ?? [])];
  // A `files` entry is PATH or KEY=PATH.
  const generatorFiles = generators.flatMap((generator) => [...(generator.files ?? []), ...(generator.envs ?? [])]).map((entry: string) => resolve(dir, entry.split("=").at(-1)!));
  return {
    dir,
    raw,
    resources: (raw.resources ?? []).map((entry: string) => resolve(dir, entry)),
    components: (raw.components ?? []).map((entry: string) => resolve(dir, entry)),
    generatorFiles,
    generatedNames: {
      configMaps: (raw.configMapGenerator ?? []).map((generator: Yaml) => generator.name),
      secrets: (raw.secretGenerator ?? []).map((generator: Yaml) => generator.name),
    },
  };
}

/** One object from a manifest file. */
export interface Manifest {
  file: string;
  object: Yaml;
}

/** Loads every object in the files that some kustomization lists under `resources`. */
export function loadManifests(kustomizations: Kustomization[]): Manifest[] {
  const files = new Set(kustomizations.flatMap((kustomization) => kustomization.resources).filter((path) => existsSync(path) && statSync(path).isFile()));
  return [...files].sort().flatMap((file) =>
    parseAllDocuments(readFileSync(file, "utf8"))
      .map((document) => document.toJS() as Yaml)
      .filter((object) => object !== null)
      .map((object) => ({ file, object })),
  );
}

/** Lists every file under a folder, recursively. */
export function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? listFiles(join(dir, entry.name)) : [join(dir, entry.name)]));
}

/** A container of a pod template, with whether it runs as an init container. */
export interface PodContainer {
  container: Yaml;
  init: boolean;
}

export function containersOf(podSpec: Yaml): PodContainer[] {
  return [...(podSpec.initContainers ?? []).map((container: Yaml) => ({ container, init: true })), ...(podSpec.containers ?? []).map((container: Yaml) => ({ container, init: false }))];
}

/**
 * Returns the environment a container starts with: the image's ENV overlaid
 * with the container's `env`. Values from Secrets and the downward API become
 * placeholders that pass the config loaders' checks.
 */
export function containerEnvironment(container: Yaml, imageEnv: Record<string, string> = {}): Record<string, string> {
  const env = { ...imageEnv };
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = String(variable.value);
    else if (variable.valueFrom?.secretKeyRef) env[variable.name] = `secret-${variable.valueFrom.secretKeyRef.name}-${variable.valueFrom.secretKeyRef.key}`;
    else if (variable.valueFrom?.fieldRef) env[variable.name] = `field-${variable.valueFrom.fieldRef.fieldPath}`;
    else throw new Error(`env ${variable.name} has neither a value nor a supported valueFrom`);
  }
  return env;
}

/** Resolves a probe's or Service's port (a name or a number) against a container's ports. */
export function resolveContainerPort(container: Yaml, port: string | number): number | undefined {
  const ports: Yaml[] = container.ports ?? [];
  const match = typeof port === "number" ? ports.find((candidate) => candidate.containerPort === port) : ports.find((candidate) => candidate.name === port);
  return match?.containerPort;
}

/** Returns a container's probes with their kinds. */
export function probesOf(container: Yaml): [string, Yaml][] {
  return (["startupProbe", "readinessProbe", "livenessProbe"] as const).filter((kind) => container[kind]).map((kind) => [kind, container[kind]]);
}

/** Returns the port a probe targets and, for HTTP probes, its path. */
export function probeTarget(probe: Yaml): { port: string | number; path?: string; kind: "httpGet" | "tcpSocket" | "grpc" } {
  if (probe.httpGet) return { kind: "httpGet", port: probe.httpGet.port, path: probe.httpGet.path };
  if (probe.tcpSocket) return { kind: "tcpSocket", port: probe.tcpSocket.port };
  if (probe.grpc) return { kind: "grpc", port: probe.grpc.port };
  throw new Error(`probe ${JSON.stringify(probe)} has no httpGet, tcpSocket or grpc action`);
}

/** Returns whether every label in a non-empty `selector` has the same value in `labels`. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([name, value]) => labels?.[name] === value);
}

/** Parses a compose or Go duration such as 30s, 1m30s or 500ms into milliseconds. */
export function parseComposeDurationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== text) throw new Error(`"${text}" is not a duration such as 30s or 1m30s`);
  return parts.reduce((total, [, amount, unit]) => total + Number(amount) * units[unit!]!, 0);
}

