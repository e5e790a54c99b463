import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface, type Interface } from "node:readline";
import type { HandlerKind } from "./handlers.js";
import type { StackName } from "./stacks.js";

/** Resource use a server child reports about itself (see server-child.ts). */
export interface ServerStats {
  rssBytes: number;
  /** Peak resident set size over the child's whole life. */
  maxRssBytes: number;
  /** User plus system CPU time since the child started, in microseconds. */
  cpuUs: number;
}

export interface ServerProcess {
  port: number;
  stats(): Promise<ServerStats>;
  /** Closes the child's stdin so that it shuts down, and kills it if it has not exited within 3 s. */
  stop(): Promise<void>;
}

export interface ServerProcessOptions {
  stack: StackName;
  handler: HandlerKind;
  dataDir: string;
}

const CHILD_SCRIPT = fileURLToPath(new URL("./server-child.js", import.meta.url));
const START_TIMEOUT_MS = 15_000;
const STATS_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;

/** Children still running, killed when the bench exits for any reason. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts `node server-child.js` and resolves once it reports its port. */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CHILD_SCRIPT, "--stack", options.stack, "--handler", options.handler, "--data", options.dataDir], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));
  const lines = createInterface({ input: child.stdout! });

  try {
    const { port } = await nextJsonLine<{ port: number }>(lines, child, START_TIMEOUT_MS);
    return {
      port,
      stats: () => {
        child.stdin!.write("stats\n");
        return nextJsonLine<ServerStats>(lines, child, STATS_TIMEOUT_MS);
      },
      stop: () => stopChild(child, exited),
    };
  } catch (error) {
    await stopChild(child, exited);
    throw error;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.stdin!.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

function nextJsonLine<T>(lines: Interface, child: ChildProcess, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      lines.off("line", onLine);
      child.off("exit", onExit);
    };
    const onLine = (line: string) => {
      cleanup();
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        reject(new Error(`server child printed a line that is not JSON: ${line.slice(0, 200)}`));
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`server child exited early (code ${code}, signal ${signal}); its stderr is above`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`server child did not respond within ${timeoutMs} ms`));
    }, timeoutMs);

    lines.on("line", onLine);
    child.on("exit", onExit);
  });
}
