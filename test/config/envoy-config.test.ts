import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DEFAULT_LISTEN } from "../../src/config/sidecar-config.js";
import { parseRouteSettings, ROUTE_API, ROUTE_COST, ROUTE_SCOPE } from "../../src/sidecar/route.js";

/**
 * Structure checks of the Envoy configs we ship, as far as they go without an
 * Envoy binary: the fields the sidecar depends on, and references that must
 * line up (clusters, ports, metadata keys).
 */
const EXT_AUTHZ = "envoy.filters.http.ext_authz";
const EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
const ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
/** Dynamic metadata keys the sidecar sets under envoy.filters.http.ext_authz. */
const METADATA_KEYS = new Set(["key_id", "api", "plan", "owner_id", "decision", "reason", "shadow_exceeded", "overage"]);

/** Parsed YAML, walked by path: a wrong path fails the test, which is the point. */
type Yaml = any;

function load(name: string): Yaml {
  return parse(readFileSync(fileURLToPath(new URL(`../../envoy/${name}`, import.meta.url)), "utf8"));
}

function connectionManager(config: Yaml): Yaml {
  return config.static_resources.listeners[0].filter_chains[0].filters.find((filter: Yaml) => filter.name === "envoy.filters.network.http_connection_manager").typed_config;
}

function routesOf(config: Yaml): Yaml[] {
  return connectionManager(config).route_config.virtual_hosts.flatMap((host: Yaml) => host.routes);
}

describe.each(["envoy.yaml", "envoy-pod.yaml"])("%s", (file) => {
  const config = load(file);
  const manager = connectionManager(config);
  const clusters = new Map<string, Yaml>(config.static_resources.clusters.map((cluster: Yaml) => [cluster.name, cluster]));
  const filters: Yaml[] = manager.http_filters;
  const extAuthz = filters.find((filter) => filter.name === EXT_AUTHZ);

  it("runs ext_authz in gRPC mode before the router", () => {
    expect(extAuthz.typed_config["@type"]).toBe(EXT_AUTHZ_TYPE);
    expect(extAuthz.typed_config.transport_api_version).toBe("V3");
    expect(filters.indexOf(extAuthz)).toBeLessThan(filters.length - 1);
    expect(filters.at(-1)["typed_config"]["@type"]).toBe(ROUTER_TYPE);
  });

  it("fails closed with 503 and validates mutations", () => {
    expect(extAuthz.typed_config.failure_mode_allow).toBe(false);
    expect(extAuthz.typed_config.status_on_error.code).toBe("ServiceUnavailable");
    expect(extAuthz.typed_config.validate_mutations).toBe(true);
  });

  it("sets a Check timeout below a second", () => {
    const timeout = extAuthz.typed_config.grpc_service.timeout as string;
    expect(timeout).toMatch(/^\d+(\.\d+)?s$/);
    expect(Number.parseFloat(timeout)).toBeGreaterThan(0);
    expect(Number.parseFloat(timeout)).toBeLessThan(1);
  });

  it("points at the sidecar over HTTP/2 on its default port", () => {
    const cluster = clusters.get(extAuthz.typed_config.grpc_service.envoy_grpc.cluster_name);
    expect(cluster).toBeDefined();
    const options = cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    expect(options.explicit_http_config.http2_protocol_options).toEqual({});
    const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(`${address.address}:${address.port_value}`).toBe(DEFAULT_LISTEN);
    expect(cluster.health_checks[0].grpc_health_check).toBeDefined();
  });

  it("routes only to clusters that exist", () => {
    for (const route of routesOf(config)) expect(clusters.has(route.route.cluster)).toBe(true);
  });

  it("uses only context extensions the sidecar reads, with valid values", () => {
    for (const route of routesOf(config)) {
      const perRoute = route.typed_per_filter_config?.[EXT_AUTHZ];
      if (!perRoute?.check_settings) continue;
      expect(perRoute["@type"]).toBe(PER_ROUTE_TYPE);
      const extensions = perRoute.check_settings.context_extensions as Record<string, string>;
      for (const name of Object.keys(extensions)) expect([ROUTE_API, ROUTE_SCOPE, ROUTE_COST]).toContain(name);
      expect(parseRouteSettings(extensions).ok).toBe(true);
    }
  });

  it("leaves the health route unauthenticated", () => {
    const health = routesOf(config).find((route) => route.match.path === "/healthz" || route.match.prefix === "/healthz");
    expect(health.typed_per_filter_config[EXT_AUTHZ]).toMatchObject({ "@type": PER_ROUTE_TYPE, disabled: true });
  });

  it("logs the key id, decision and reason from dynamic metadata", () => {
    const format = JSON.stringify(manager.access_log[0].typed_config.log_format);
    const keys = [...format.matchAll(/%DYNAMIC_METADATA\(envoy\.filters\.http\.ext_authz:([a-z_]+)\)%/g)].map((match) => match[1]!);
    expect(keys).toEqual(expect.arrayContaining(["key_id", "decision", "reason"]));
    for (const key of keys) expect(METADATA_KEYS.has(key)).toBe(true);
  });
});
