import { createServer as createHttp1Server, type IncomingMessage, type ServerOptions, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import type { Logger } from "../log/logger.js";

export type RequestHandler = (request: IncomingMessage | Http2ServerRequest, response: ServerResponse | Http2ServerResponse) => void;

export interface DualProtocolServer {
  port: number;
  /** Stops accepting connections and closes open ones after `graceMs`. */
  close(graceMs: number): Promise<void>;
}

export interface ConnectionTimeouts {
  /** Time a new connection has to send its first bytes before it is destroyed. */
  firstByteTimeoutMs?: number;
  /** Time an HTTP/1.1 connection may stay idle between requests (Node's keepAliveTimeout). */
  http1KeepAliveTimeoutMs?: number;
  /** Time an HTTP/1.1 client has to send a request's headers (Node's headersTimeout, default 60 s). */
  http1HeadersTimeoutMs?: number;
  /** Time an HTTP/2 session may stay without any open stream before it is closed. */
  http2IdleTimeoutMs?: number;
}

/** Clients send their first bytes right after connecting, so a connection that stays silent this long is stuck or hostile. */
const DEFAULT_FIRST_BYTE_TIMEOUT_MS = 10_000;
/** Node's own default keepAliveTimeout, stated here so that it is explicit. */
const DEFAULT_HTTP1_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Long enough for a client to reuse its session between calls. gRPC clients reconnect when they need to. */
const DEFAULT_HTTP2_IDLE_TIMEOUT_MS = 60_000;
/** Time a closing HTTP/2 session gets to send its GOAWAY before its socket is destroyed. */
const HTTP2_CLOSE_GRACE_MS = 1_000;

/** The first bytes of every HTTP/2 connection (RFC 9113, section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Serves one handler over HTTP/1.1 and cleartext HTTP/2 (h2c) on one port.
 * Node's HTTP/2 server accepts HTTP/1.1 only over TLS, so each connection's
 * first bytes pick the protocol: gRPC clients and sidecars speak h2c, curl
 * and browsers' Connect and gRPC-Web calls speak HTTP/1.1.
 */
export async function startDualProtocolServer(host: string, port: number, handler: RequestHandler, logger: Logger, timeouts: ConnectionTimeouts = {}): Promise<DualProtocolServer> {
  const firstByteTimeoutMs = timeouts.firstByteTimeoutMs ?? DEFAULT_FIRST_BYTE_TIMEOUT_MS;
  const http2IdleTimeoutMs = timeouts.http2IdleTimeoutMs ?? DEFAULT_HTTP2_IDLE_TIMEOUT_MS;
  const http1 = createHttp1Server(http1Options(timeouts), handler);
  // Node 20 checks headersTimeout and requestTimeout only on servers that emitted "listening", and this one never listens itself.
  http1.emit("listening");
  const http2 = createHttp2Server({}, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  http2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    closeWhenIdle(session, http2IdleTimeoutMs, logger);
  });

  const server = createNetServer((socket) => {
    // Without it, Nagle's algorithm delays small HTTP/2 frames until the client's delayed ACK, about 40 ms a call.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));

    const onSilent = () => {
      logger.debug({ remoteAddress: socket.remoteAddress, timeoutMs: firstByteTimeoutMs }, "client connection closed: timed out waiting for its first bytes");
      socket.destroy();
    };
    socket.setTimeout(firstByteTimeoutMs);
    socket.once("timeout", onSilent);
    socket.once("data", (first: Buffer) => {
      // From here on the HTTP/1.1 or HTTP/2 server owns the connection's timeouts.
      socket.setTimeout(0);
      socket.off("timeout", onSilent);
      const prefix = first.subarray(0, HTTP2_PREFACE.length);
      if (HTTP2_PREFACE.subarray(0, prefix.length).equals(prefix)) {
        http2.emit("connection", replayingStream(socket, first));
      } else {
        socket.pause();
        socket.unshift(first);
        http1.emit("connection", socket);
        socket.resume();
      }
    });
    socket.on("error", (error) => logger.debug({ err: error }, "client connection failed"));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;

  return {
    port: boundPort,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Closes idle HTTP/1.1 connections and stops the headers and request timeout checks.
        http1.close();
        // GOAWAY lets each HTTP/2 client finish its open calls and start no new ones here.
        for (const session of sessions) session.close();
        const timer = setTimeout(() => sockets.forEach((socket) => socket.destroy()), graceMs);
        timer.unref();
        if (sockets.size === 0) clearTimeout(timer);
      }),
  };
}

function http1Options(timeouts: ConnectionTimeouts): ServerOptions {
  const options: ServerOptions = { keepAliveTimeout: timeouts.http1KeepAliveTimeoutMs ?? DEFAULT_HTTP1_KEEP_ALIVE_TIMEOUT_MS };
  if (timeouts.http1HeadersTimeoutMs !== undefined) {
    options.headersTimeout = timeouts.http1HeadersTimeoutMs;
    // Node checks the timeouts every 30 s by default, which would hide a shorter timeout.
    options.connectionsCheckingInterval = Math.min(30_000, timeouts.http1HeadersTimeoutMs);
  }
  return options;
}

/**
 * Closes `session` once it has had no open stream for `idleMs`. Node's own
 * session timeout counts only frames, so it would also cut a gRPC stream
 * that is open but quiet, such as the usage stream of an idle sidecar.
 * This timer runs only while no stream is open.
 */
function closeWhenIdle(session: ServerHttp2Session, idleMs: number, logger: Logger): void {
  let openStreams = 0;
  let timer: NodeJS.Timeout | undefined;
  const startTimer = () => {
    timer = setTimeout(() => {
      logger.debug({ idleMs }, "HTTP/2 session closed: idle with no open stream");
      session.close();
      // A client that does not read the GOAWAY must not keep the socket.
      setTimeout(() => session.destroy(), HTTP2_CLOSE_GRACE_MS).unref();
    }, idleMs);
    timer.unref();
  };

  session.on("stream", (stream) => {
    openStreams += 1;
    clearTimeout(timer);
    stream.once("close", () => {
      openStreams -= 1;
      if (openStreams === 0 && !session.closed) startTimer();
    });
  });
  session.once("close", () => clearTimeout(timer));
  startTimer();
}

/**
 * Wraps a socket whose first chunk was already read, replaying that chunk.
 * Node's HTTP/2 session reads a plain socket from its native handle, which
 * bypasses data pushed back with unshift(); through a JavaScript stream it
 * reads every byte.
 */
function replayingStream(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, done) {
      socket.write(chunk, done);
    },
    final(done) {
      socket.end(done);
    },
    destroy(error, done) {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  stream.push(first);
  socket.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once("end", () => stream.push(null));
  socket.once("close", () => stream.destroy());
  return stream;
}
