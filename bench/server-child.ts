import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import type { ServerStats } from "./server-process.js";
import { createFloorHandler, createRealHandler, HANDLER_KINDS, type HandlerKind } from "./handlers.js";
import { STACKS, startStack, type StackName } from "./stacks.js";

/**
 * A Check server for one measurement, run in its own process so that its
 * memory and CPU time are its own. It prints `{"port":N}` on stdout once it
 * listens, replies to each `stats` line on stdin with one JSON line of
 * ServerStats, and exits when stdin closes, so it never outlives the bench.
 *
 * Usage: node dist/bench/server-child.js --stack grpc-js|connect --handler real|floor [--data DIR]
 */
const { values } = parseArgs({
  options: {
    stack: { type: "string" },
    handler: { type: "string" },
    data: { type: "string" },
  },
});

const stack = values.stack as StackName;
const kind = values.handler as HandlerKind;
if (!STACKS.includes(stack)) fail(`invalid --stack "${values.stack}": use ${STACKS.join(" or ")}`);
if (!HANDLER_KINDS.includes(kind)) fail(`invalid --handler "${values.handler}": use ${HANDLER_KINDS.join(" or ")}`);
if (kind === "real" && !values.data) fail("missing --data: the real handler needs the key store's data folder");

const handler = kind === "real" ? createRealHandler(values.data!) : createFloorHandler();
const server = await startStack(stack, handler);
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);

const commands = createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (line.trim() === "stats") process.stdout.write(`${JSON.stringify(readStats())}\n`);
});
commands.on("close", () => {
  void server.close().finally(() => {
    handler.close();
    process.exit(0);
  });
});

function readStats(): ServerStats {
  const cpu = process.cpuUsage();
  return {
    rssBytes: process.memoryUsage.rss(),
    // resourceUsage reports the peak in KiB.
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    cpuUs: cpu.user + cpu.system,
  };
}

function fail(message: string): never {
  process.stderr.write(`server-child: ${message}\n`);
  process.exit(2);
}
