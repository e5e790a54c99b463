import { Option, type Command } from "commander";
import { parseDurationMs, parseTier, type Tier } from "../ratelimit/tier.js";
import { UsageError } from "./errors.js";

/** Adds the `--data` option that every command touching the local store takes, described as `folderDescription`. */
export function addDataOption(command: Command, folderDescription = "folder of the local key store"): Command {
  return command.addOption(new Option("--data <dir>", `${folderDescription}; default $TOLLGATE_DATA, else ./data`));
}

/** Returns the data folder: `--data`, else TOLLGATE_DATA, else ./data. */
export function dataDirOf(options: { data?: string }, env: Environment): string {
  return options.data ?? env.TOLLGATE_DATA ?? "./data";
}

export type Environment = Readonly<Record<string, string | undefined>>;

export function addJsonOption(command: Command): Command {
  return command.option("--json", "print records as JSON");
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseTiersOption(texts: string[]): Tier[] {
  const tiers: Tier[] = [];
  const problems: string[] = [];
  for (const text of texts) {
    const parsed = parseTier(text);
    if (parsed.ok) tiers.push(parsed.tier);
    else problems.push(parsed.problem);
  }
  if (problems.length > 0) throw new UsageError(`--tier: ${problems.join("; ")}`);
  return tiers;
}

export function parseScopesOption(text: string): string[] {
  const scopes = text.split(",").map((scope) => scope.trim()).filter(Boolean);
  const invalid = scopes.filter((scope) => !/^[A-Za-z0-9:._/-]{1,64}$/.test(scope));
  if (invalid.length > 0) {
    throw new UsageError(`--scopes: invalid scope ${invalid.map((scope) => `"${scope}"`).join(", ")}: use 1 to 64 letters, digits or ":._/-"`);
  }
  return [...new Set(scopes)];
}

/** Maximum expiry the CLI accepts: 100 years, far beyond any key's useful life and within Date's range. */
const MAX_EXPIRES_IN_MS = 36_500 * 86_400_000;

export function parseExpiresInOption(text: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined) throw new UsageError(`--expires-in: "${text}" is not a positive duration such as 90s, 12h or 30d`);
  if (ms > MAX_EXPIRES_IN_MS) throw new UsageError(`--expires-in: "${text}" is longer than 36500d`);
  return ms;
}

/** Free text such as a key's name or an owner id: no control characters, at most 200 characters. */
export function parseLabelOption(flag: string, text: string): string {
  if (text.length === 0 || text.length > 200 || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new UsageError(`${flag}: must be 1 to 200 printable characters`);
  }
  return text;
}
