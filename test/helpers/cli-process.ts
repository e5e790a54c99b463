import { execFile, spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The built CLI entry; `npm test` builds before running the tests. */
export const CLI_PATH = fileURLToPath(new URL("../../bin/tollgate.js", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `tollgate ARGS` in a child process and waits for it to exit. */
export function runTollgate(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_PATH, ...args], { env: { ...cleanEnv(), ...env }, timeout: 15_000 }, (error, stdout, stderr) => {
      let code = 0;
      if (error) code = typeof error.code === "number" ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface CliProcess {
  child: ChildProcess;
  /** Everything written so far. */
  output(): { stdout: string; stderr: string };
  /** Resolves with the first match of `pattern` in stdout or stderr, waiting up to `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running `tollgate ARGS` (a sidecar, dev) in a child process. */
export function startTollgate(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...cleanEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((waiter) => waiter());
  child.stdout!.on("data", (chunk) => ((stdout += chunk), notify()));
  child.stderr!.on("data", (chunk) => ((stderr += chunk), notify()));
  // "close" waits for stdout and stderr to end as well, so output() is complete afterwards.
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));

  return {
    child,
    output: () => ({ stdout, stderr }),
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const attempt = () => {
          const match = stdout.match(pattern) ?? stderr.match(pattern);
          if (!match) return false;
          clearTimeout(timer);
          waiters.delete(attempt);
          resolve(match);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(attempt);
          reject(new Error(`timed out waiting for ${pattern}; stdout: ${stdout}; stderr: ${stderr.slice(-2000)}`));
        }, timeoutMs);
        if (!attempt()) waiters.add(attempt);
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Returns the parent's environment without TOLLGATE_* settings, so a developer's shell cannot change a test. */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("TOLLGATE_"))) as Record<string, string>;
}
