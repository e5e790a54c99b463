import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

/**
 * API key format: `<prefix>_<random><checksum>`.
 *
 * - prefix: names the API, 1 to 12 lower-case letters or digits, starting
 *   with a letter, so keys of different APIs are told apart at a glance.
 * - random: 24 base58 characters from a CSPRNG, about 140 bits.
 * - checksum: CRC-32 of `<prefix>_<random>` as 6 base58 characters, which
 *   lets the sidecar reject typos and junk without a store lookup and lets
 *   secret scanners recognise a leaked key with few false positives.
 *
 * Base58 leaves out 0, O, I and l, so a key read aloud or retyped survives.
 */
export const BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
export const RANDOM_LENGTH = 24;
export const CHECKSUM_LENGTH = 6;
/** Characters of the random part kept in the display start, after the prefix. */
export const DISPLAY_START_LENGTH = 4;

const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,11}$/;
const BASE58_INDEX = new Map([...BASE58_ALPHABET].map((char, index) => [char, index]));

export type ParsedKey =
  | { ok: true; prefix: string; random: string }
  | { ok: false; problem: string };

/** Returns why `prefix` cannot name an API, or undefined when it can. */
export function validatePrefix(prefix: string): string | undefined {
  if (PREFIX_PATTERN.test(prefix)) return undefined;
  return "a key prefix is 1 to 12 lower-case letters or digits, starting with a letter";
}

/** Derives a key prefix from an API name: its letters and digits, lower-cased, at most 12; "tg" when none fit. */
export function prefixFromName(name: string): string {
  const prefix = name.toLowerCase().replace(/[^a-z0-9]/g, "").replace(/^[0-9]+/, "").slice(0, 12);
  return prefix || "tg";
}

/** Creates a new secret key. The caller shows it once and stores only its hash. */
export function generateKey(prefix: string): string {
  const problem = validatePrefix(prefix);
  if (problem) throw new RangeError(`invalid key prefix "${prefix}": ${problem}`);
  const body = `${prefix}_${randomBase58(RANDOM_LENGTH)}`;
  return body + checksumOf(body);
}

/**
 * Checks a presented key's shape and checksum. The result never repeats the
 * key itself, so it is safe to log.
 */
export function parseKey(key: string): ParsedKey {
  const separator = key.indexOf("_");
  if (separator < 1) return { ok: false, problem: "no prefix" };

  const prefix = key.slice(0, separator);
  const rest = key.slice(separator + 1);
  if (!PREFIX_PATTERN.test(prefix)) return { ok: false, problem: "invalid prefix" };
  if (rest.length !== RANDOM_LENGTH + CHECKSUM_LENGTH) return { ok: false, problem: "wrong length" };
  for (const char of rest) {
    if (!BASE58_INDEX.has(char)) return { ok: false, problem: "invalid character" };
  }

  const random = rest.slice(0, RANDOM_LENGTH);
  const checksum = rest.slice(RANDOM_LENGTH);
  if (checksumOf(`${prefix}_${random}`) !== checksum) return { ok: false, problem: "checksum mismatch" };
  return { ok: true, prefix, random };
}

/** SHA-256 of the whole key, hex: the only form in which a key is stored. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Returns the part of a key that may be shown again: prefix and first characters. */
export function displayStart(key: string): string {
  const separator = key.indexOf("_");
  return key.slice(0, separator + 1 + DISPLAY_START_LENGTH);
}

/** Random identifier for records, such as `key_` + 16 base58 characters. */
export function generateId(kind: string): string {
  return `${kind}_${randomBase58(16)}`;
}

function checksumOf(body: string): string {
  let value = crc32(body);
  let encoded = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    encoded = BASE58_ALPHABET[value % 58] + encoded;
    value = Math.floor(value / 58);
  }
  return encoded;
}

function randomBase58(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // Bytes from 232 up are dropped so every character is equally likely (232 = 4 * 58).
      if (byte < 232) out += BASE58_ALPHABET[byte % 58];
      if (out.length === length) break;
    }
  }
  return out;
}

const KEY_BODY_PATTERN = new RegExp(`_[${BASE58_ALPHABET}]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}(?![${BASE58_ALPHABET}])`, "g");
const REDACTED = "[redacted]";

/**
 * Replaces every well-formed key in `text` (valid prefix, length and
 * checksum) with its prefix and "[redacted]". For text a client chooses and
 * we keep, such as a path: a client may put a key where no credential is
 * read, and it must not reach a log or a usage event.
 */
export function redactKeys(text: string): string {
  if (!text.includes("_")) return text;
  return text.replace(KEY_BODY_PATTERN, (body: string, offset: number) => {
    for (let prefixLength = 1; prefixLength <= 12 && prefixLength <= offset; prefixLength++) {
      if (parseKey(text.slice(offset - prefixLength, offset) + body).ok) return `_${REDACTED}`;
    }
    return body;
  });
}
