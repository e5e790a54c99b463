import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { basename, join, posix } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { formatListenAddress } from "../../src/config/listen-address.js";
import {
  containerEnvironment,
  containersOf,
  dockerEnvironment,
  envoyAddresses,
  extAuthzClusterName,
  findKustomizations,
  fromRoot,
  isAllInterfaces,
  isLoopback,
  KUBERNETES_ROOT,
  listFiles,
  loadManifests,
  parseDockerfile,
  probesOf,
  probeTarget,
  readRepoFile,
  repoPath,
  resolveContainerPort,
  selects,
  serverConfigFrom,
  sidecarConfigFrom,
  tollgateVariablesRead,
  upstreamClusterNames,
  type Manifest,
  type Yaml,
} from "../helpers/deploy-files.js";
import { startServerHarness, type ServerHarness } from "../helpers/server-harness.js";
import { startSidecarHarness, type SidecarHarness } from "../helpers/sidecar-harness.js";

/**
 * Structure checks of the Kustomize folders in deploy/kubernetes, without a
 * cluster. Every file a kustomization names must exist. Ports, probes and
 * addresses must match envoy/envoy-pod.yaml and the settings the Tollgate
 * containers start with, as the real config loaders read them. Probe and
 * scrape paths must return 200 on a live server and sidecar. When kubectl is
 * installed, the overlays are also rendered with `kubectl kustomize`.
 */
const kustomizations = findKustomizations();
const manifests = loadManifests(kustomizations);
const workloads = manifests.filter(({ object }) => object.kind === "Deployment" || object.kind === "StatefulSet");
const services = manifests.filter(({ object }) => object.kind === "Service");
const podEnvoy = parse(readRepoFile("envoy/envoy-pod.yaml")) as Yaml;
const podEnvoyAddresses = envoyAddresses(podEnvoy);
const imageEnv = dockerEnvironment(parseDockerfile(readRepoFile("Dockerfile")).at(-1)!);
const packageVersion = (JSON.parse(readRepoFile("package.json")) as { version: string }).version;
const TOLLGATE_IMAGE = "tollgate";
const ENVOY_IMAGE = "envoyproxy/envoy";
/** Time terminationGracePeriodSeconds leaves for Envoy and the app to stop, beyond the sidecar's own shutdown bounds. */
const TERMINATION_MARGIN_MS = 5000;
/** IANA service names, which Kubernetes requires of port names: at most 15 characters. */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

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

/** Returns the HTTP status of a GET of `path` on a live Tollgate server or sidecar. */
async function liveStatus(component: "server" | "sidecar", path: string): Promise<number> {
  const baseUrl = component === "server" ? server.baseUrl : `http://127.0.0.1:${sidecar.sidecar.httpPort}`;
  return (await fetch(`${baseUrl}${path}`)).status;
}

function nameOf(manifest: Manifest): string {
  return `${fromRoot(manifest.file)} ${manifest.object.kind}/${manifest.object.metadata?.name}`;
}

function imageName(image: string): string {
  return image.replace(/:[^:/]+$/, "");
}

function tollgateCommand(container: Yaml): "server" | "sidecar" | undefined {
  if (imageName(container.image) !== TOLLGATE_IMAGE) return undefined;
  return container.args[0];
}

function podSpecOf(workload: Manifest): Yaml {
  return workload.object.spec.template.spec;
}

describe("kustomizations", () => {
  it.each(kustomizations.map((kustomization) => [fromRoot(kustomization.dir), kustomization] as const))("%s names files that exist", (_dir, kustomization) => {
    for (const resource of kustomization.resources) {
      expect(existsSync(resource), `resource ${fromRoot(resource)}`).toBe(true);
      if (statSync(resource).isDirectory()) expect(existsSync(join(resource, "kustomization.yaml")), `${fromRoot(resource)}/kustomization.yaml`).toBe(true);
    }
    for (const component of kustomization.components) {
      const componentKustomization = parse(readRepoFile(fromRoot(component), "kustomization.yaml")) as Yaml;
      expect(componentKustomization.kind, fromRoot(component)).toBe("Component");
    }
    for (const file of kustomization.generatorFiles) expect(existsSync(file), `generator input ${fromRoot(file)}`).toBe(true);
  });

  it("builds every overlay on the base", () => {
    const overlays = kustomizations.filter((kustomization) => kustomization.dir.includes(`${posix.sep}overlays${posix.sep}`));
    expect(overlays.map((overlay) => basename(overlay.dir)).sort()).toEqual(["dev", "production"]);
    for (const overlay of overlays) expect(overlay.resources).toContain(join(KUBERNETES_ROOT, "base"));
  });

  it("uses every file in deploy/kubernetes", () => {
    const used = new Set(kustomizations.flatMap((kustomization) => [join(kustomization.dir, "kustomization.yaml"), ...kustomization.resources, ...kustomization.generatorFiles]));
    for (const file of listFiles(KUBERNETES_ROOT)) expect(used, fromRoot(file)).toContain(file);
  });

  it("ships envoy/envoy-pod.yaml unchanged", () => {
    const copy = join(KUBERNETES_ROOT, "base/app-with-sidecar/envoy-pod.yaml");
    const message = `${fromRoot(copy)} differs from envoy/envoy-pod.yaml; run: cp envoy/envoy-pod.yaml ${fromRoot(copy)}`;
    expect(readRepoFile(fromRoot(copy)), message).toBe(readRepoFile("envoy/envoy-pod.yaml"));
  });

  it("generates the ConfigMaps that pods mount", () => {
    const generated = new Set(kustomizations.flatMap((kustomization) => kustomization.generatedNames.configMaps));
    for (const workload of workloads) {
      for (const volume of podSpecOf(workload).volumes ?? []) {
        if (volume.configMap) expect(generated, `${nameOf(workload)} volume ${volume.name}`).toContain(volume.configMap.name);
      }
    }
  });

  it("documents every Secret that pods read", () => {
    const deploySection = readRepoFile("README.md").split(/^## /m).find((section) => section.startsWith("Deploy"));
    expect(deploySection, "README.md has a Deploy section").toBeDefined();
    for (const workload of workloads) {
      for (const { container } of containersOf(podSpecOf(workload))) {
        for (const variable of container.env ?? []) {
          const secret = variable.valueFrom?.secretKeyRef?.name;
          if (secret) expect(deploySection, `${nameOf(workload)} reads Secret ${secret}`).toContain(secret);
        }
      }
    }
  });
});

describe.each(manifests.map((manifest) => [nameOf(manifest), manifest] as const))("%s", (_name, { object }) => {
  it("has an apiVersion, a kind and a valid name", () => {
    expect(object.apiVersion).toMatch(/^([a-z0-9.-]+\/)?v\d+(alpha\d+|beta\d+)?$/);
    expect(object.kind).toMatch(/^[A-Z][A-Za-z]+$/);
    expect(object.metadata.name).toMatch(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
  });

  it("leaves the namespace to the overlay", () => {
    if (object.kind === "Namespace") return;
    expect(object.metadata.namespace).toBeUndefined();
  });
});

describe.each(workloads.map((workload) => [nameOf(workload), workload] as const))("%s", (_name, workload) => {
  const spec = workload.object.spec;
  const podSpec = podSpecOf(workload);
  const containers = containersOf(podSpec);

  it("selects its own pods", () => {
    expect(selects(spec.selector.matchLabels, spec.template.metadata.labels)).toBe(true);
  });

  it("pins every image, ours to the package version", () => {
    for (const { container } of containers) {
      expect(container.image, container.name).toMatch(/:[^:/]+$/);
      expect(container.image, container.name).not.toMatch(/:latest$/);
      if (imageName(container.image) === TOLLGATE_IMAGE) expect(container.image).toBe(`${TOLLGATE_IMAGE}:${packageVersion}`);
    }
  });

  it("names its ports uniquely and validly", () => {
    const ports: Yaml[] = containers.flatMap(({ container }) => container.ports ?? []);
    for (const port of ports) expect(port.name).toMatch(PORT_NAME);
    expect(new Set(ports.map((port) => port.name)).size).toBe(ports.length);
    expect(new Set(ports.map((port) => port.containerPort)).size).toBe(ports.length);
  });

  it("probes only ports its containers declare", () => {
    for (const { container } of containers) {
      for (const [kind, probe] of probesOf(container)) {
        expect(resolveContainerPort(container, probeTarget(probe).port), `${container.name} ${kind}`).toBeDefined();
      }
    }
  });

  it("runs every container unprivileged on a read-only root", () => {
    expect(podSpec.securityContext.runAsNonRoot).toBe(true);
    expect(podSpec.securityContext.seccompProfile.type).toBe("RuntimeDefault");
    expect(podSpec.automountServiceAccountToken).toBe(false);
    for (const { container } of containers) {
      const context = container.securityContext;
      expect(context.runAsUser ?? podSpec.securityContext.runAsUser, container.name).toBeGreaterThan(0);
      expect(context.readOnlyRootFilesystem, container.name).toBe(true);
      expect(context.allowPrivilegeEscalation, container.name).toBe(false);
      expect(context.capabilities.drop, container.name).toEqual(["ALL"]);
    }
  });

  it("sets requests and a memory limit", () => {
    for (const { container } of containers) {
      expect(container.resources.requests.cpu, container.name).toBeDefined();
      expect(container.resources.requests.memory, container.name).toBeDefined();
      expect(container.resources.limits.memory, container.name).toBeDefined();
    }
  });

  it("mounts only volumes it defines", () => {
    const volumes = new Set([...(podSpec.volumes ?? []), ...(spec.volumeClaimTemplates ?? []).map((claim: Yaml) => claim.metadata)].map((volume: Yaml) => volume.name));
    for (const { container } of containers) {
      for (const mount of container.volumeMounts ?? []) expect(volumes, `${container.name} mounts ${mount.name}`).toContain(mount.name);
    }
  });

  it("scrapes a port and path that serve metrics", async () => {
    const annotations = spec.template.metadata.annotations ?? {};
    expect(annotations["prometheus.io/scrape"]).toBe("true");
    const port = Number(annotations["prometheus.io/port"]);
    const owner = containers.find(({ container }) => resolveContainerPort(container, port) !== undefined)?.container;
    expect(owner, `no container declares port ${port}`).toBeDefined();
    const command = tollgateCommand(owner);
    expect(command, `${owner.name} is not a Tollgate container`).toBeDefined();
    expect(await liveStatus(command!, annotations["prometheus.io/path"])).toBe(200);
  });
});

describe.each(workloads.flatMap((workload) => containersOf(podSpecOf(workload)).filter(({ container }) => tollgateCommand(container)).map(({ container, init }) => [`${nameOf(workload)} container ${container.name}`, workload, container, init] as const)))(
  "%s",
  (_name, workload, container, init) => {
    const podSpec = podSpecOf(workload);
    const command = tollgateCommand(container)!;
    const env = containerEnvironment(container, imageEnv);

    it("configures Tollgate through known variables", () => {
      expect(container.args).toEqual([command]);
      const known = tollgateVariablesRead();
      for (const { name } of container.env) if (name.startsWith("TOLLGATE_")) expect(known, name).toContain(name);
    });

    it("writes only to mounted volumes", () => {
      const mounted = (container.volumeMounts as Yaml[]).map((mount) => mount.mountPath);
      const dataDir = command === "server" ? serverConfigFrom(env).dataDir : sidecarConfigFrom(env).dataDir;
      expect(mounted).toContain(dataDir);
      expect(mounted).toContain("/tmp");
    });

    it("probes paths it serves on its HTTP port", async () => {
      const httpPort = command === "server" ? serverConfigFrom(env).listen.port : sidecarConfigFrom(env).http.port;
      const probes = probesOf(container);
      expect(probes.map(([kind]) => kind)).toEqual(expect.arrayContaining(["readinessProbe", "livenessProbe"]));
      for (const [kind, probe] of probes) {
        const target = probeTarget(probe);
        expect(target.kind, kind).toBe("httpGet");
        expect(resolveContainerPort(container, target.port), kind).toBe(httpPort);
        expect(await liveStatus(command, target.path!), `${kind} ${target.path}`).toBe(200);
      }
    });

    if (command === "server") {
      it("serves the admin API on every interface of its declared port", () => {
        const { listen } = serverConfigFrom(env);
        expect(isAllInterfaces(listen)).toBe(true);
        expect(resolveContainerPort(container, "http")).toBe(listen.port);
      });

      it("runs alone on a persistent volume", () => {
        expect(workload.object.kind).toBe("StatefulSet");
        expect(workload.object.spec.replicas).toBe(1);
        const dataMount = (container.volumeMounts as Yaml[]).find((mount) => mount.mountPath === serverConfigFrom(env).dataDir);
        const claims = (workload.object.spec.volumeClaimTemplates as Yaml[]).map((claim) => claim.metadata.name);
        expect(claims).toContain(dataMount.name);
        expect(services.map(({ object }) => object.metadata.name)).toContain(workload.object.spec.serviceName);
      });
    }

    if (command === "sidecar") {
      const config = sidecarConfigFrom(env);

      it("runs as a native sidecar", () => {
        expect(init).toBe(true);
        expect(container.restartPolicy).toBe("Always");
      });

      it("listens for Check where Envoy's ext_authz cluster points", () => {
        const cluster = podEnvoyAddresses.clusters.get(extAuthzClusterName(podEnvoy))!;
        expect(formatListenAddress(config.listen)).toBe(formatListenAddress(cluster));
        expect(isLoopback(config.listen)).toBe(true);
      });

      it("serves its HTTP port on every interface", () => {
        expect(isAllInterfaces(config.http)).toBe(true);
        expect(resolveContainerPort(container, config.http.port)).toBe(config.http.port);
      });

      it("replicates from the server's Service", () => {
        const url = new URL(config.replication!.serverUrl);
        const service = services.find(({ object }) => object.metadata.name === url.hostname)?.object;
        expect(service, `Service ${url.hostname}`).toBeDefined();
        const servicePort = (service.spec.ports as Yaml[]).find((port) => port.port === Number(url.port));
        expect(servicePort, `port ${url.port} of Service ${url.hostname}`).toBeDefined();

        const serverWorkload = workloads.find((candidate) => selects(service.spec.selector, candidate.object.spec.template.metadata.labels))!;
        const serverContainer = podSpecOf(serverWorkload).containers.find((candidate: Yaml) => tollgateCommand(candidate) === "server");
        const serverListen = serverConfigFrom(containerEnvironment(serverContainer, imageEnv)).listen;
        expect(resolveContainerPort(serverContainer, servicePort.targetPort)).toBe(serverListen.port);
      });

      it("keeps the pod long enough to drain on shutdown", () => {
        expect(config.usage, "usage metering is on with --server").toBeDefined();
        const neededMs = config.shutdownGraceMs + config.usage!.drainTimeoutMs + TERMINATION_MARGIN_MS;
        expect(podSpec.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(neededMs);
      });
    }
  },
);

describe("example app pod", () => {
  const workload = workloads.find(({ object }) => object.metadata.name === "demo-app")!;
  const podSpec = podSpecOf(workload);
  const envoy = podSpec.containers.find((container: Yaml) => imageName(container.image) === ENVOY_IMAGE);
  const app = podSpec.containers.find((container: Yaml) => container.name === "app");

  it("runs Envoy on the config generated from envoy-pod.yaml", () => {
    const configPath: string = envoy.args[envoy.args.indexOf("-c") + 1];
    const mount = (envoy.volumeMounts as Yaml[]).find((candidate) => candidate.mountPath === posix.dirname(configPath));
    const volume = (podSpec.volumes as Yaml[]).find((candidate) => candidate.name === mount.name);
    const kustomization = kustomizations.find((candidate) => candidate.resources.includes(workload.file))!;
    const generator = (kustomization.raw.configMapGenerator as Yaml[]).find((candidate) => candidate.name === volume.configMap.name);
    expect(generator.files).toContain(`${posix.basename(configPath)}=envoy-pod.yaml`);
  });

  it("declares Envoy's listener port", () => {
    expect(resolveContainerPort(envoy, "http")).toBe(podEnvoyAddresses.listener.port);
    expect(isAllInterfaces(podEnvoyAddresses.listener)).toBe(true);
  });

  it("puts the app where Envoy routes requests", () => {
    const appEnv = containerEnvironment(app);
    for (const name of upstreamClusterNames(podEnvoy)) expect(formatListenAddress(podEnvoyAddresses.clusters.get(name)!)).toBe(`${appEnv.HOST}:${appEnv.PORT}`);
  });

  it("sends Service traffic to Envoy only", () => {
    const service = services.find(({ object }) => selects(object.spec.selector, workload.object.spec.template.metadata.labels))!.object;
    for (const port of service.spec.ports) expect(resolveContainerPort(envoy, port.targetPort)).toBe(podEnvoyAddresses.listener.port);
  });
});

describe.each(services.map((service) => [nameOf(service), service] as const))("%s", (_name, { object }) => {
  it("targets ports of the pods it selects", () => {
    const selected = workloads.filter((workload) => selects(object.spec.selector, workload.object.spec.template.metadata.labels));
    expect(selected).toHaveLength(1);
    const containers = containersOf(podSpecOf(selected[0]!)).map(({ container }) => container);
    for (const port of object.spec.ports) {
      expect(containers.some((container) => resolveContainerPort(container, port.targetPort) !== undefined), `targetPort ${port.targetPort}`).toBe(true);
    }
  });
});

describe("Prometheus Operator monitors", () => {
  const podMonitors = manifests.filter(({ object }) => object.kind === "PodMonitor");
  const serviceMonitors = manifests.filter(({ object }) => object.kind === "ServiceMonitor");

  it("scrape the sidecars' metrics port", async () => {
    expect(podMonitors).toHaveLength(1);
    const monitor = podMonitors[0]!.object;
    const selected = workloads.filter((workload) => selects(monitor.spec.selector.matchLabels, workload.object.spec.template.metadata.labels));
    expect(selected.length).toBeGreaterThan(0);
    for (const workload of selected) {
      for (const endpoint of monitor.spec.podMetricsEndpoints) {
        const owner = containersOf(podSpecOf(workload)).find(({ container }) => resolveContainerPort(container, endpoint.port) !== undefined)?.container;
        expect(owner, `${nameOf(workload)} declares no port ${endpoint.port}`).toBeDefined();
        expect(tollgateCommand(owner)).toBe("sidecar");
        expect(await liveStatus("sidecar", endpoint.path)).toBe(200);
      }
    }
  });

  it("scrape the server's Service", async () => {
    expect(serviceMonitors).toHaveLength(1);
    const monitor = serviceMonitors[0]!.object;
    const selected = services.filter(({ object }) => selects(monitor.spec.selector.matchLabels, object.metadata.labels));
    expect(selected).toHaveLength(1);
    for (const endpoint of monitor.spec.endpoints) {
      expect((selected[0]!.object.spec.ports as Yaml[]).map((port) => port.name)).toContain(endpoint.port);
      expect(await liveStatus("server", endpoint.path)).toBe(200);
    }
  });
});

const kubectlFound = spawnSync("kubectl", ["version", "--client"], { stdio: "ignore" }).status === 0;

describe.skipIf(!kubectlFound)("kubectl kustomize", () => {
  it.each(["dev", "production"])("renders overlays/%s consistently", (overlay) => {
    const rendered = spawnSync("kubectl", ["kustomize", repoPath("deploy/kubernetes/overlays", overlay)], { encoding: "utf8", timeout: 30_000 });
    expect(rendered.status, rendered.stderr).toBe(0);
    const objects = parseAllDocuments(rendered.stdout).map((document) => document.toJS() as Yaml);
    const overlayKustomization = parse(readRepoFile("deploy/kubernetes/overlays", overlay, "kustomization.yaml")) as Yaml;
    const names = (kind: string) => new Set(objects.filter((object) => object.kind === kind).map((object) => object.metadata.name));

    for (const object of objects.filter((candidate) => candidate.kind !== "Namespace")) {
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe(overlayKustomization.namespace);
    }
    for (const object of objects.filter((candidate) => candidate.kind === "Deployment" || candidate.kind === "StatefulSet")) {
      const podSpec = object.spec.template.spec;
      for (const volume of podSpec.volumes ?? []) if (volume.configMap) expect(names("ConfigMap"), volume.configMap.name).toContain(volume.configMap.name);
      for (const { container } of containersOf(podSpec)) {
        if (imageName(container.image).endsWith(TOLLGATE_IMAGE)) expect(container.image).not.toBe(`${TOLLGATE_IMAGE}:${packageVersion}`);
      }
    }
    // A generated Secret gets a hash suffix, which Kustomize must also write into every reference.
    for (const generated of overlayKustomization.secretGenerator ?? []) {
      const rendered = [...names("Secret")].find((name) => name.startsWith(`${generated.name}-`));
      expect(rendered, `Secret ${generated.name}`).toBeDefined();
      expect(JSON.stringify(objects)).not.toMatch(new RegExp(`"name":"${generated.name}"`));
    }
  });
});
