# syntax=docker/dockerfile:1
#
# The Tollgate image: one image for `tollgate server`, `tollgate sidecar` and
# the record commands. Build from the repository root:
#
#   docker build -t tollgate:local .
#
# The runtime stage writes only to /var/lib/tollgate (a volume) and /tmp, so it
# runs with a read-only root filesystem.

# Build stage: compiles the TypeScript and installs the production
# dependencies. better-sqlite3 downloads a prebuilt native module when one
# matches, and compiles it otherwise, which needs python3, make and g++.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, so that a source change reuses this layer.
# --ignore-scripts skips the package's `prepare` script, which builds from
# sources not copied yet and links a development shortcut into
# node_modules/.bin; the one install script the runtime needs is
# better-sqlite3's, run below by `npm rebuild`.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
COPY bin ./bin
RUN npm rebuild better-sqlite3 \
 && npm run build \
 && npm prune --omit=dev --ignore-scripts

# Runtime stage: the compiled CLI, production node_modules and nothing else.
FROM node:20-bookworm-slim AS runtime

# The server and the sidecar's /metrics, /healthz and /readyz port listen on
# every interface, so that other containers, the kubelet and Prometheus reach
# them. ext_authz (TOLLGATE_LISTEN) keeps its default, 127.0.0.1:9191: Envoy
# reaches it over the pod's (or shared network namespace's) loopback, and no
# other host can send Checks that bypass Envoy's route settings.
ENV NODE_ENV=production \
    TOLLGATE_DATA=/var/lib/tollgate \
    TOLLGATE_SERVER_LISTEN=0.0.0.0:8080 \
    TOLLGATE_HTTP=0.0.0.0:9192

# A numeric UID lets Kubernetes verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 tollgate \
 && useradd --system --uid 10001 --gid tollgate --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tollgate \
 && mkdir -p /var/lib/tollgate \
 && chown 10001:10001 /var/lib/tollgate

# Application files stay owned by root, so the running process cannot change them.
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/bin ./bin

USER 10001:10001
VOLUME ["/var/lib/tollgate"]
# 8080: `tollgate server`. 9192: the sidecar's /metrics, /healthz and /readyz.
EXPOSE 8080 9192

# No HEALTHCHECK: the same image runs the server (health on 8080) and the
# sidecar (health on 9192), so compose.yaml and the Kubernetes probes name the
# right port for each.
ENTRYPOINT ["node", "/app/bin/tollgate.js"]
CMD ["--help"]
