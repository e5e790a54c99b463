import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { hashKey } from "../keys/key-format.js";
import type { Actor, TokenKind } from "./store/records.js";
import type { ServerStore } from "./store/server-store.js";

/** The token a request was made with, set by the auth interceptor for the handlers. */
export const ACTOR = createContextKey<Actor>({ id: "anonymous", name: "anonymous" }, { description: "the caller's token" });

/**
 * The SHA-256 of the request's token, the form in which the store keeps
 * tokens, so that a long stream can check that its token was not revoked.
 */
export const TOKEN_HASH = createContextKey<string>("", { description: "the SHA-256 of the caller's token" });

/** Services a sidecar token may call; every other service needs an admin token. */
export const SIDECAR_SERVICES = new Set(["tollgate.replication.v1.ReplicationService", "tollgate.usage.v1.UsageService"]);

/**
 * Rejects calls without a valid `Authorization: Bearer <token>`, and calls to
 * a service the token's kind may not use. Tokens are looked up by hash; the
 * error never repeats the token.
 */
export function createAuthInterceptor(store: ServerStore): Interceptor {
  return (next) => async (request) => {
    const header = request.header.get("authorization") ?? "";
    const match = /^bearer\s+(\S+)\s*$/i.exec(header.trim());
    if (!match) throw new ConnectError("missing token: send 'Authorization: Bearer <token>'", Code.Unauthenticated);

    const tokenHash = hashKey(match[1]!);
    const token = await store.findToken(tokenHash);
    if (!token) throw new ConnectError("invalid or revoked token", Code.Unauthenticated);
    if (!allowedFor(token.kind, request.service.typeName)) {
      throw new ConnectError(`a ${token.kind} token may not call ${request.service.typeName}`, Code.PermissionDenied);
    }

    request.contextValues.set(ACTOR, { id: token.id, name: token.name });
    request.contextValues.set(TOKEN_HASH, tokenHash);
    return next(request);
  };
}

function allowedFor(kind: TokenKind, service: string): boolean {
  return kind === "admin" || SIDECAR_SERVICES.has(service);
}
