/** Location of a credential in the request; the same names are removed before the request goes upstream. */
export type CredentialSource = "authorization" | "x-api-key" | "query";

export type Credential =
  | { kind: "none" }
  /** Two or more different values: denied rather than guessing which one is meant. */
  | { kind: "ambiguous" }
  | { kind: "present"; key: string; sources: CredentialSource[] };

export interface CredentialOptions {
  /** Query parameter that may carry the key; undefined disables it. */
  queryParameter?: string;
}

const BEARER = /^bearer(?:\s+(.*))?$/i;

/**
 * Finds the API key in lower-cased request headers and, when enabled, the
 * query string. An `Authorization` header with another scheme (Basic, say)
 * is left for the upstream and does not count. Envoy joins repeated headers
 * with ",", which no key contains, so each comma-separated part counts alone.
 */
export function extractCredential(
  headers: ReadonlyMap<string, string>,
  path: string,
  options: CredentialOptions,
): Credential {
  const found: { value: string; source: CredentialSource }[] = [];

  for (const part of splitJoined(headers.get("authorization"))) {
    const match = BEARER.exec(part);
    if (match) found.push({ value: (match[1] ?? "").trim(), source: "authorization" });
  }
  for (const part of splitJoined(headers.get("x-api-key"))) {
    found.push({ value: part, source: "x-api-key" });
  }
  if (options.queryParameter) {
    for (const value of queryValues(path, options.queryParameter)) found.push({ value: value.trim(), source: "query" });
  }

  if (found.length === 0) return { kind: "none" };
  const key = found[0]!.value;
  if (found.some((entry) => entry.value !== key)) return { kind: "ambiguous" };
  return { kind: "present", key, sources: [...new Set(found.map((entry) => entry.source))] };
}

/** Splits a header Envoy joined with ","; empty parts carry no credential and are dropped. */
function splitJoined(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "");
}

function queryValues(path: string, name: string): string[] {
  const start = path.indexOf("?");
  if (start < 0) return [];
  const values: string[] = [];
  for (const pair of path.slice(start + 1).split("&")) {
    const equals = pair.indexOf("=");
    // Compared undecoded, because Envoy removes query parameters by their name as written.
    const rawName = equals < 0 ? pair : pair.slice(0, equals);
    if (rawName !== name) continue;
    values.push(equals < 0 ? "" : safeDecode(pair.slice(equals + 1).replace(/\+/g, " ")));
  }
  return values;
}

/** Decodes percent-escapes; a broken escape yields the raw text, which then fails the key checks. */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
