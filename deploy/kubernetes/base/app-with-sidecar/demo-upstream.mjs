// A stand-in for your application. It responds to every request with the
// method, the path and the x-tollgate-* headers it received, which the sidecar
// added after it allowed the request. It listens on loopback, so only Envoy in
// the same pod (or network namespace) can reach it.
import { createServer } from "node:http";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? "3000");

const server = createServer((request, response) => {
  const tollgateHeaders = Object.fromEntries(Object.entries(request.headers).filter(([name]) => name.startsWith("x-tollgate-")));
  const body = JSON.stringify({ method: request.method, path: request.url, tollgateHeaders });
  response.writeHead(200, { "content-type": "application/json" }).end(`${body}\n`);
});

server.listen(port, host, () => console.log(`demo upstream listening on ${host}:${port}`));
// As PID 1 in a container, Node has no default SIGTERM action, so without this the runtime waits out its grace period.
process.once("SIGTERM", () => process.exit(0));
