import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
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

/** The first bytes of every HTTP/2 connection (RFC 9113, section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Serves one handler over HTTP/1.1 and cleartext HTTP/2 (h2c) on one port.
 * Node's HTTP/2 server accepts HTTP/1.1 only over TLS, so each connection's
 * first bytes pick the protocol: gRPC clients and sidecars speak h2c, curl
 * and browsers' Connect and gRPC-Web calls speak HTTP/1.1.
 */
export async function startDualProtocolServer(host: string, port: number, handler: RequestHandler, logger: Logger): Promise<DualProtocolServer> {
  const http1 = createHttp1Server(handler);
  const http2 = createHttp2Server({}, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  http2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const server = createNetServer((socket) => {
    // Without it, Nagle's algorithm delays small HTTP/2 frames until the client's delayed ACK, about 40 ms a call.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", (first: Buffer) => {
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
        http1.closeIdleConnections();
        // GOAWAY lets each HTTP/2 client finish its open calls and start no new ones here.
        for (const session of sessions) session.close();
        const timer = setTimeout(() => sockets.forEach((socket) => socket.destroy()), graceMs);
        timer.unref();
        if (sockets.size === 0) clearTimeout(timer);
      }),
  };
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
