import { describe, expect, it } from "vitest";
import {
  BASE58_ALPHABET,
  CHECKSUM_LENGTH,
  DISPLAY_START_LENGTH,
  redactKeys,
  RANDOM_LENGTH,
  displayStart,
  generateKey,
  hashKey,
  parseKey,
} from "../../../src/keys/key-format.js";

// Every printable ASCII character, as substitutes for one character of a key.
const PRINTABLE_ASCII = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i));

function problemOf(key: string): string | undefined {
  const parsed = parseKey(key);
  return parsed.ok ? undefined : parsed.problem;
}

function withCharAt(text: string, index: number, char: string): string {
  return text.slice(0, index) + char + text.slice(index + 1);
}

describe("generateKey", () => {
  it.each(["tg", "a", "pay2", "abcdefghijkl"])("generated %s key parses", (prefix) => {
    const key = generateKey(prefix);
    const parsed = parseKey(key);

    expect(parsed).toEqual({ ok: true, prefix, random: key.slice(prefix.length + 1, prefix.length + 1 + RANDOM_LENGTH) });
    expect(key).toHaveLength(prefix.length + 1 + RANDOM_LENGTH + CHECKSUM_LENGTH);
  });

  it("random part carries 128 bits", () => {
    expect(RANDOM_LENGTH).toBeGreaterThanOrEqual(24);
    expect(RANDOM_LENGTH * Math.log2(BASE58_ALPHABET.length)).toBeGreaterThanOrEqual(128);

    const parsed = parseKey(generateKey("tg"));
    if (!parsed.ok) throw new Error(`generated key rejected: ${parsed.problem}`);
    expect(parsed.random).toHaveLength(24);
    expect(parsed.random).toMatch(/^[1-9A-HJ-NP-Za-km-z]{24}$/);
  });

  it("random parts differ and use every symbol", () => {
    const randoms = Array.from({ length: 2_000 }, () => generateKey("tg").slice(3, 3 + RANDOM_LENGTH));

    expect(new Set(randoms).size).toBe(randoms.length);
    // 48,000 draws over 58 symbols: a symbol missing by chance has probability far below 1e-300.
    const seen = new Set(randoms.join(""));
    expect([...BASE58_ALPHABET].filter((char) => !seen.has(char))).toEqual([]);
  });

  it.each(["", "TG", "Tg", "1tg", "t_g", "t-g", "tg ", " tg", "abcdefghijklm", "tgé"])(
    "invalid prefix %j rejected",
    (prefix) => {
      expect(() => generateKey(prefix)).toThrow(RangeError);
    },
  );
});

describe("parseKey", () => {
  const key = generateKey("tg");

  it("every substituted character rejected", () => {
    const accepted: string[] = [];
    for (let index = 0; index < key.length; index++) {
      for (const char of PRINTABLE_ASCII) {
        if (char === key[index]) continue;
        const changed = withCharAt(key, index, char);
        if (parseKey(changed).ok) accepted.push(changed);
      }
    }
    expect(accepted).toEqual([]);
  });

  it("well-formed substitutions fail the checksum", () => {
    const prefixEnd = key.indexOf("_");
    const notByChecksum: { index: number; char: string; problem: string | undefined }[] = [];

    for (let index = 0; index < key.length; index++) {
      if (index === prefixEnd) continue;
      // Characters that keep the key well formed at this position, so only the checksum can catch the change.
      const substitutes = index < prefixEnd ? "abcdefghijklmnopqrstuvwxyz0123456789" : BASE58_ALPHABET;
      for (const char of substitutes) {
        if (char === key[index] || (index === 0 && /\d/.test(char))) continue;
        const problem = problemOf(withCharAt(key, index, char));
        if (problem !== "checksum mismatch") notByChecksum.push({ index, char, problem });
      }
    }
    expect(notByChecksum).toEqual([]);
  });

  it("adjacent transpositions fail the checksum", () => {
    const accepted: string[] = [];
    for (let index = 0; index + 1 < key.length; index++) {
      if (key[index] === key[index + 1]) continue;
      const swapped = key.slice(0, index) + key[index + 1] + key[index] + key.slice(index + 2);
      if (parseKey(swapped).ok) accepted.push(swapped);
    }
    expect(accepted).toEqual([]);
  });

  const random = key.slice(3);
  it.each([
    ["no separator", `tg${random}`, "no prefix"],
    ["empty prefix", `_${random}`, "no prefix"],
    ["upper-case prefix", `TG_${random}`, "invalid prefix"],
    ["prefix starting with a digit", `1tg_${random}`, "invalid prefix"],
    ["prefix of 13 characters", `abcdefghijklm_${random}`, "invalid prefix"],
    ["one character short", key.slice(0, -1), "wrong length"],
    ["one character long", `${key}A`, "wrong length"],
    ["empty key", "", "no prefix"],
    ["prefix only", "tg_", "wrong length"],
    ["zero in the body", withCharAt(key, 5, "0"), "invalid character"],
    ["capital O in the body", withCharAt(key, 5, "O"), "invalid character"],
    ["capital I in the body", withCharAt(key, 5, "I"), "invalid character"],
    ["lower-case l in the body", withCharAt(key, 5, "l"), "invalid character"],
    ["space in the body", withCharAt(key, 5, " "), "invalid character"],
    ["non-ASCII letter in the body", withCharAt(key, 5, "é"), "invalid character"],
  ])("%s rejected", (_case, input, expectedProblem) => {
    expect(problemOf(input)).toBe(expectedProblem);
  });

  it.each([
    ["upper-case prefix", `TG_${random}`],
    ["one character short", key.slice(0, -1)],
    ["invalid character", withCharAt(key, 5, "0")],
    ["checksum mismatch", withCharAt(key, 5, key[5] === "A" ? "B" : "A")],
  ])("problem for %s omits key", (_case, input) => {
    const problem = problemOf(input);

    expect(problem).toBeDefined();
    expect(problem).not.toContain(input);
    expect(problem).not.toContain(input.slice(3, 11));
  });
});

describe("hashKey", () => {
  it.each([
    ["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
  ])("hash of %j is SHA-256 hex", (input, expected) => {
    expect(hashKey(input)).toBe(expected);
  });

  it("hash of a key is 64 hex characters", () => {
    const key = generateKey("tg");

    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(key)).not.toBe(hashKey(generateKey("tg")));
  });
});

describe("displayStart", () => {
  it.each(["tg", "a", "abcdefghijkl"])("shows %s prefix and 4 characters", (prefix) => {
    const key = generateKey(prefix);
    const start = displayStart(key);

    expect(DISPLAY_START_LENGTH).toBe(4);
    expect(start).toBe(`${prefix}_${key.slice(prefix.length + 1, prefix.length + 5)}`);
    expect(start).toHaveLength(prefix.length + 1 + 4);
  });
});

describe("redactKeys", () => {
  it("redacts a key anywhere in a path", () => {
    const key = generateKey("shop");
    expect(redactKeys(`/v1/x%3Fapi_key=${key}`)).toBe("/v1/x%3Fapi_key=shop_[redacted]");
    expect(redactKeys(`/v1/x;k=${key}/y`)).toBe("/v1/x;k=shop_[redacted]/y");
  });

  it("redacts a key glued to other letters", () => {
    expect(redactKeys(`/xx${generateKey("tg")}`)).toBe("/xxtg_[redacted]");
  });

  it("keeps text without a valid key", () => {
    const key = generateKey("shop");
    const broken = `${key.slice(0, -1)}${key.endsWith("1") ? "2" : "1"}`;
    expect(redactKeys(`/v1/orders/${broken}`)).toBe(`/v1/orders/${broken}`);
    expect(redactKeys("/v1/user_profile")).toBe("/v1/user_profile");
  });
});
