import { Writable } from "node:stream";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { StoreError } from "../../../../src/keys/key-store.js";
import { createLogger } from "../../../../src/log/logger.js";
import { ACTOR } from "../../../../src/server/auth.js";
import { toConnectError, withErrorMapping } from "../../../../src/server/admin/errors.js";

function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger("debug", sink), lines };
}

function handlerContext(): HandlerContext {
  const values = createContextValues();
  values.set(ACTOR, { id: "tok_1", name: "ops" });
  return { values } as HandlerContext;
}

describe("toConnectError", () => {
  it.each([
    ["not_found", Code.NotFound],
    ["already_exists", Code.AlreadyExists],
    ["invalid_argument", Code.InvalidArgument],
  ] as const)("maps a StoreError %s", (storeCode, code) => {
    const mapped = toConnectError(new StoreError('key "k" not found', storeCode));
    expect(mapped.code).toBe(code);
    expect(mapped.rawMessage).toBe('key "k" not found');
  });

  it("passes a ConnectError unchanged", () => {
    const error = new ConnectError("id: required", Code.InvalidArgument);
    expect(toConnectError(error)).toBe(error);
  });

  it("hides the message of any other error", () => {
    const mapped = toConnectError(new Error("SQLITE_BUSY: database is locked at /var/lib/tollgate"));
    expect(mapped.code).toBe(Code.Internal);
    expect(mapped.rawMessage).not.toContain("SQLITE");
  });
});

describe("withErrorMapping", () => {
  it("logs an unexpected error and returns a generic INTERNAL", async () => {
    const { logger, lines } = capturedLogger();
    const service = withErrorMapping("test.Service", { fail: async (_request: unknown, _context: HandlerContext) => Promise.reject(new Error("disk full")) }, logger);

    const error = await service.fail({}, handlerContext()).catch((caught: unknown) => caught as ConnectError);
    await new Promise((resolve) => setImmediate(resolve));

    expect(error).toBeInstanceOf(ConnectError);
    expect(error.code).toBe(Code.Internal);
    expect(error.rawMessage).not.toContain("disk full");
    expect(error.stack ?? "").not.toContain("disk full");
    const logged = lines.find((line) => line.msg === "admin call failed");
    expect(logged?.level).toBe("error");
    expect((logged?.err as { message: string }).message).toBe("disk full");
    expect(logged?.method).toBe("fail");
    expect(logged?.actorId).toBe("tok_1");
  });

  it("returns results and passes expected errors without an error log", async () => {
    const { logger, lines } = capturedLogger();
    const service = withErrorMapping(
      "test.Service",
      {
        ok: async (_request: unknown, _context: HandlerContext) => ({ value: 1 }),
        missing: async (_request: unknown, _context: HandlerContext) => Promise.reject(new StoreError('key "k" not found', "not_found")),
      },
      logger,
    );

    expect(await service.ok({}, handlerContext())).toEqual({ value: 1 });
    const error = await service.missing({}, handlerContext()).catch((caught: unknown) => caught as ConnectError);
    await new Promise((resolve) => setImmediate(resolve));

    expect(error.code).toBe(Code.NotFound);
    expect(lines.filter((line) => line.level === "error")).toEqual([]);
    expect(lines.map((line) => line.code)).toEqual(["ok", "NotFound"]);
  });
});
