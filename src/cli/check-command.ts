import type { Command } from "commander";
import type { CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { parseListenAddress } from "../config/listen-address.js";
import { DEFAULT_LISTEN } from "../config/sidecar-config.js";
import { UsageError } from "./errors.js";
import { collect } from "./options.js";
import type { CommandContext } from "./store-commands.js";

/** Exit codes of `tollgate check`, so scripts can branch on the decision; an unreachable sidecar exits 1 too. */
export const CHECK_EXIT = { allowed: 0, denied: 1 } as const;

export function addCheckCommand(program: Command, context: CommandContext): void {
  const { output } = context;
  program
    .command("check <method> <path>")
    .description("send the sidecar a CheckRequest built as Envoy builds it, and print the decision (exit 0 allowed, 1 denied)")
    .option("--target <host:port>", "the sidecar's ext_authz address; default $TOLLGATE_LISTEN, else 127.0.0.1:9191")
    .option("--key <key>", "send this API key as 'Authorization: Bearer <key>'")
    .option("-H, --header <'name: value'>", "add a request header; repeatable", collect)
    .option("--ext <k=v>", "add a route context extension, such as tollgate.scope=read; repeatable", collect)
    .option("--timeout-ms <ms>", "how long to wait for the answer", "2000")
    .option("--repeat <n>", "send the request n times in a row and print one line per decision (exit 0 only if all were allowed)", "1")
    .option("--json", "print the whole CheckResponse as JSON")
    .action(async (method: string, path: string, options: { target?: string; key?: string; header?: string[]; ext?: string[]; timeoutMs: string; repeat: string; json?: boolean }) => {
      const target = options.target ?? context.env.TOLLGATE_LISTEN ?? DEFAULT_LISTEN;
      if (typeof parseListenAddress(target) === "string") throw new UsageError(`--target: "${target}" is not HOST:PORT`);
      if (!path.startsWith("/")) throw new UsageError(`PATH: "${path}" must start with "/"`);
      const timeoutMs = Number(options.timeoutMs);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new UsageError(`--timeout-ms: "${options.timeoutMs}" is not a positive whole number`);
      const repeat = Number(options.repeat);
      if (!Number.isInteger(repeat) || repeat < 1 || repeat > 10_000) throw new UsageError(`--repeat: "${options.repeat}" must be a whole number from 1 to 10000`);

      const headers: Record<string, string> = { "user-agent": "tollgate-check" };
      if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
      for (const text of options.header ?? []) {
        const [name, value] = splitPair(text, ":", "-H");
        headers[name.toLowerCase()] = headers[name.toLowerCase()] ? `${headers[name.toLowerCase()]},${value}` : value;
      }
      const contextExtensions = Object.fromEntries((options.ext ?? []).map((text) => splitPair(text, "=", "--ext")));

      // Loaded here rather than at the top, so other commands do not pay for the gRPC client at start.
      const [{ toJson }, { CheckResponseSchema }, { buildEnvoyCheckRequest, createCheckClient }] = await Promise.all([
        import("@bufbuild/protobuf"),
        import("../gen/envoy/service/auth/v3/external_auth_pb.js"),
        import("../sidecar/check-client.js"),
      ]);
      const client = createCheckClient(target);
      const responses: CheckResponse[] = [];
      try {
        // One after the other in one process, so a burst reaches the sidecar within milliseconds, as a rate limit demo needs.
        for (let i = 0; i < repeat; i++) {
          responses.push(await client.check(buildEnvoyCheckRequest({ method: method.toUpperCase(), path, headers, contextExtensions }), timeoutMs));
        }
      } catch (error) {
        // grpc-js prefixes the status code and appends resolution notes, so only the details are shown.
        const details = (error as { details?: string }).details || (error as Error).message;
        throw new Error(`the sidecar at ${target} did not respond: ${details}`);
      } finally {
        client.close();
      }

      for (const response of responses) {
        if (options.json) output.out(JSON.stringify(toJson(CheckResponseSchema, response), null, 2));
        else output.out(repeat > 1 ? describeResponse(response).split("\n", 1)[0]! : describeResponse(response));
      }
      context.exitCode = responses.some((response) => response.status?.code) ? CHECK_EXIT.denied : CHECK_EXIT.allowed;
    });
}

/** Formats a CheckResponse for people: decision, status, headers, body. */
export function describeResponse(response: CheckResponse): string {
  const lines: string[] = [];
  const metadata = response.dynamicMetadata ?? {};
  if (response.httpResponse.case === "deniedResponse") {
    const denied = response.httpResponse.value;
    lines.push(`DENY ${denied.status?.code ?? 403} ${metadata.reason ?? ""}`.trimEnd());
    for (const option of denied.headers) lines.push(`  < ${option.header?.key}: ${option.header?.value}`);
    if (denied.body) lines.push("", denied.body);
    return lines.join("\n");
  }

  lines.push(`ALLOW ${metadata.reason ?? "ok"}`);
  const ok = response.httpResponse.case === "okResponse" ? response.httpResponse.value : undefined;
  for (const option of ok?.headers ?? []) lines.push(`  > upstream ${option.header?.key}: ${option.header?.value}`);
  for (const name of ok?.headersToRemove ?? []) lines.push(`  > upstream removed ${name}`);
  for (const name of ok?.queryParametersToRemove ?? []) lines.push(`  > upstream query removed ${name}`);
  for (const option of ok?.responseHeadersToAdd ?? []) lines.push(`  < ${option.header?.key}: ${option.header?.value}`);
  return lines.join("\n");
}

function splitPair(text: string, separator: string, flag: string): [string, string] {
  const index = text.indexOf(separator);
  const name = index < 0 ? "" : text.slice(0, index).trim();
  if (!name) throw new UsageError(`${flag}: "${text}" is not name${separator}value`);
  return [name, text.slice(index + 1).trim()];
}
