import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { StoreError, type StoreErrorCode } from "../../keys/key-store.js";
import type { Logger } from "../../log/logger.js";
import { ACTOR } from "../auth.js";
import type { FieldProblems } from "./validate.js";

const STORE_CODES: Record<StoreErrorCode, Code> = {
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  invalid_argument: Code.InvalidArgument,
};

/** Raises INVALID_ARGUMENT listing every problem of the request, when there are any. */
export function throwIfInvalid(problems: FieldProblems): void {
  if (!problems.empty) throw new ConnectError(problems.messages.join("; "), Code.InvalidArgument);
}

/** NOT_FOUND naming the field and the id or name that matched nothing. */
export function notFound(field: string, kind: string, reference: string): ConnectError {
  return new ConnectError(`${field}: ${kind} ${JSON.stringify(reference)} not found`, Code.NotFound);
}

/** FAILED_PRECONDITION: the request is valid but the resource's state does not allow it. */
export function failedPrecondition(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.FailedPrecondition);
}

/**
 * Wraps every method of a unary service implementation so that the caller
 * always sees a ConnectError. ConnectErrors pass unchanged, and a StoreError
 * keeps its message under the matching code. Anything else becomes INTERNAL
 * with a generic message, and the error itself goes to the log.
 *
 * Wrapping the methods, not a per-service interceptor, is deliberate: in
 * connect 2.1 the interceptors passed to `router.service` replace the
 * adapter's, which would drop authentication.
 */
export function withErrorMapping<T extends object>(serviceName: string, implementation: T, logger: Logger): T {
  const wrapped: Record<string, unknown> = {};
  for (const [method, handler] of Object.entries(implementation) as [string, (request: unknown, context: HandlerContext) => Promise<unknown>][]) {
    wrapped[method] = async (request: unknown, context: HandlerContext) => {
      const startedMs = performance.now();
      let code = "ok";
      try {
        return await handler(request, context);
      } catch (error) {
        const mapped = toConnectError(error);
        code = Code[mapped.code];
        if (mapped.code === Code.Internal) logger.error({ err: error, service: serviceName, method, actorId: context.values.get(ACTOR).id }, "admin call failed");
        throw mapped;
      } finally {
        logger.debug({ service: serviceName, method, actorId: context.values.get(ACTOR).id, code, durationMs: performance.now() - startedMs }, "admin call");
      }
    };
  }
  return wrapped as T;
}

/** Maps any error to the ConnectError a caller may see, without exposing an unexpected error's message. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof StoreError) return new ConnectError(error.message, STORE_CODES[error.code]);
  return new ConnectError("internal error: see the server log for details", Code.Internal);
}
