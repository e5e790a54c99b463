import { createHash } from "node:crypto";

/**
 * Opaque page tokens: base64url JSON holding where the last page ended and a
 * fingerprint of the request's filters. A token is valid only with the same
 * filters it was issued for, so changing a filter mid-listing is rejected
 * instead of skipping or repeating rows. Tokens are not signed: a forged one
 * can only move the start of a listing the caller may read anyway.
 */
export interface PageToken<Position> {
  position: Position;
  filters: string;
}

/** Encodes where the next page starts, bound to `filters` (any JSON value). */
export function encodePageToken<Position>(position: Position, filters: unknown): string {
  const token: PageToken<Position> = { position, filters: fingerprint(filters) };
  return Buffer.from(JSON.stringify(token), "utf8").toString("base64url");
}

/**
 * Decodes a token issued for `filters`, checking the position with
 * `isPosition`. Returns undefined for any other text.
 */
export function decodePageToken<Position>(text: string, filters: unknown, isPosition: (value: unknown) => value is Position): Position | undefined {
  let token: unknown;
  try {
    token = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (token === null || typeof token !== "object") return undefined;
  const { position, filters: stamp } = token as Partial<PageToken<unknown>>;
  if (stamp !== fingerprint(filters) || !isPosition(position)) return undefined;
  return position;
}

function fingerprint(filters: unknown): string {
  return createHash("sha256").update(JSON.stringify(filters)).digest("base64url").slice(0, 16);
}
