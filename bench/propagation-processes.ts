import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The built CLI; `npm run bench:propagation` builds first. */
const CLI_PATH = fileURLToPath(new URL("../../bin/tollgate.js", import.meta.url));
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 3_000;

/** Children still running, killed when the bench exits for any reason. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export interface TollgateProcess {
  /** The capture groups of `readyPattern` from the child's stderr. */
  ready: string[];
  /** The last 4 KB of the child's stderr, for error messages. */
  stderrTail(): string;
  /** Sends SIGTERM and waits for the exit, killing the child if it takes longer than 3 s. */
  stop(): Promise<void>;
}

/**
 * Starts `tollgate ARGS` and resolves once its stderr matches `readyPattern`
 * (the line each long-running command prints with its ports). The child's
 * environment is `env` alone plus PATH, so no TOLLGATE_* variable of the
 * calling shell changes the run.
 */
export async function startTollgateProcess(args: string[], env: Record<string, string>, readyPattern: RegExp): Promise<TollgateProcess> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));
  let stderr = "";

  const ready = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tollgate ${args[0]} did not start within ${START_TIMEOUT_MS} ms; stderr: ${stderr.slice(-4000)}`)), START_TIMEOUT_MS);
    child.stderr!.on("data", (chunk: Buffer) => {
      // Only the tail is kept, so a long run's log does not grow without bound.
      stderr = (stderr + chunk.toString()).slice(-4096);
      const match = readyPattern.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match.slice(1));
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tollgate ${args[0]} exited early (code ${code}, signal ${signal}); stderr: ${stderr.slice(-4000)}`));
    });
  });

  return {
    ready,
    stderrTail: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
