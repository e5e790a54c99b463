import { connect as connectHttp2, type ClientHttp2Session } from "node:http2";
import { connect as connectTcp, type Socket } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/logger.js";
import { startDualProtocolServer, type ConnectionTimeouts, type DualProtocolServer, type RequestHandler } from "../../src/server/http-server.js";

/** Answers "/hang" never, so its stream stays open; answers anything else at once. */
const handler: RequestHandler = (request, response) => {
  if (request.url === "/hang") {
    response.writeHead(200);
    return;
  }
  response.end("ok");
};

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the milliseconds until `socket` closes, or undefined if it is still open after `withinMs`. */
function closedWithin(socket: Socket | ClientHttp2Session, withinMs: number): Promise<number | undefined> {
  const startedMs = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), withinMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - startedMs);
    });
  });
}

describe("dual protocol server connections", () => {
  let server: DualProtocolServer | undefined;
  let logText = "";
  const clients: Array<Socket | ClientHttp2Session> = [];

  async function start(timeouts: ConnectionTimeouts): Promise<number> {
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logText += chunk.toString();
        done();
      },
    });
    server = await startDualProtocolServer("127.0.0.1", 0, handler, createLogger("debug", sink), timeouts);
    return server.port;
  }

  async function openTcp(port: number): Promise<Socket> {
    const socket = connectTcp(port, "127.0.0.1");
    clients.push(socket);
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.once("connect", resolve));
    return socket;
  }

  async function openHttp2(port: number): Promise<ClientHttp2Session> {
    const session = connectHttp2(`http://127.0.0.1:${port}`);
    clients.push(session);
    session.on("error", () => undefined);
    await new Promise((resolve) => session.once("connect", resolve));
    return session;
  }

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await server?.close(0);
    server = undefined;
    logText = "";
  });

  it("destroys connections that send nothing", async () => {
    const port = await start({ firstByteTimeoutMs: 100 });
    const sockets = await Promise.all(Array.from({ length: 50 }, () => openTcp(port)));

    const closeTimes = await Promise.all(sockets.map((socket) => closedWithin(socket, 3_000)));

    for (const closeMs of closeTimes) expect(closeMs).toBeDefined();
    expect(logText).toContain("client connection closed: timed out waiting for its first bytes");
  });

  it("keeps a connection that sends before the first-byte timeout", async () => {
    const port = await start({ firstByteTimeoutMs: 100, http1KeepAliveTimeoutMs: 60_000 });
    const socket = await openTcp(port);
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));

    socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");

    expect(await closedWithin(socket, 500)).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1.1 200 OK/);
  });

  it("closes an idle HTTP/1.1 keep-alive connection", async () => {
    const port = await start({ http1KeepAliveTimeoutMs: 200 });
    const socket = await openTcp(port);
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));

    socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const closeMs = await closedWithin(socket, 3_000);

    expect(received).toMatch(/^HTTP\/1.1 200 OK/);
    expect(closeMs).toBeDefined();
  });

  it("closes an HTTP/1.1 connection with unfinished headers", async () => {
    const port = await start({ http1HeadersTimeoutMs: 200 });
    const socket = await openTcp(port);
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));

    socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    const closeMs = await closedWithin(socket, 3_000);

    expect(closeMs).toBeDefined();
    expect(received).toMatch(/^HTTP\/1.1 408 Request Timeout/);
  });

  it("closes an HTTP/2 session with no stream", async () => {
    const port = await start({ http2IdleTimeoutMs: 200 });
    const session = await openHttp2(port);

    const closeMs = await closedWithin(session, 3_000);

    expect(closeMs).toBeDefined();
    expect(logText).toContain("HTTP/2 session closed: idle with no open stream");
  });

  it("keeps an HTTP/2 session while a quiet stream is open", async () => {
    const port = await start({ http2IdleTimeoutMs: 200 });
    const session = await openHttp2(port);
    const stream = session.request({ ":path": "/hang", ":method": "POST" });
    stream.on("error", () => undefined);
    await new Promise((resolve) => stream.once("response", resolve));

    expect(await closedWithin(session, 1_000)).toBeUndefined();

    stream.close();
    expect(await closedWithin(session, 3_000)).toBeDefined();
  });

  it("keeps an HTTP/2 session that starts a stream before the idle timeout", async () => {
    const port = await start({ http2IdleTimeoutMs: 300 });
    const session = await openHttp2(port);
    await delay(200);

    const stream = session.request({ ":path": "/healthz" });
    stream.resume();
    await new Promise((resolve) => stream.once("close", resolve));

    // The timer restarts when the stream closes, so 200 ms later the session is still open.
    expect(await closedWithin(session, 200)).toBeUndefined();
  });
});
