import { describe, expect, it } from "vitest";
import { generateKey } from "../../../src/keys/key-format.js";
import { extractCredential, type CredentialOptions } from "../../../src/sidecar/credential.js";

const KEY = generateKey("tg");
const OTHER_KEY = generateKey("tg");
const WITH_QUERY: CredentialOptions = { queryParameter: "api_key" };

function extract(headers: Record<string, string>, path = "/v1/items", options: CredentialOptions = {}) {
  return extractCredential(new Map(Object.entries(headers)), path, options);
}

describe("extractCredential", () => {
  it.each([
    ["Bearer", `Bearer ${KEY}`],
    ["lower-case scheme", `bearer ${KEY}`],
    ["upper-case scheme", `BEARER ${KEY}`],
    ["mixed-case scheme", `bEaReR ${KEY}`],
    ["several spaces", `Bearer    ${KEY}`],
    ["tab after scheme", `Bearer\t${KEY}`],
    ["trailing spaces", `Bearer ${KEY}   `],
    ["leading spaces", `  Bearer ${KEY}`],
  ])("bearer key found: %s", (_case, authorization) => {
    expect(extract({ authorization })).toEqual({ kind: "present", key: KEY, sources: ["authorization"] });
  });

  it("x-api-key found", () => {
    expect(extract({ "x-api-key": KEY })).toEqual({ kind: "present", key: KEY, sources: ["x-api-key"] });
  });

  it("x-api-key spaces trimmed", () => {
    expect(extract({ "x-api-key": `  ${KEY} ` })).toEqual({ kind: "present", key: KEY, sources: ["x-api-key"] });
  });

  it.each([
    ["Basic", "Basic dXNlcjpwYXNz"],
    ["Digest", 'Digest username="user"'],
    ["bearer without separator", `Bearer${KEY}`],
    ["key without scheme", KEY],
  ])("%s authorization ignored", (_case, authorization) => {
    expect(extract({ authorization })).toEqual({ kind: "none" });
  });

  it("Basic beside x-api-key ignored", () => {
    const credential = extract({ authorization: "Basic dXNlcjpwYXNz", "x-api-key": KEY });

    expect(credential).toEqual({ kind: "present", key: KEY, sources: ["x-api-key"] });
  });

  it("no credential is none", () => {
    expect(extract({ accept: "application/json" })).toEqual({ kind: "none" });
  });

  it.each([
    ["bearer and x-api-key", { authorization: `Bearer ${KEY}`, "x-api-key": OTHER_KEY }],
    ["two bearer keys joined", { authorization: `Bearer ${KEY},Bearer ${OTHER_KEY}` }],
    ["two bearer keys joined with space", { authorization: `Bearer ${KEY}, Bearer ${OTHER_KEY}` }],
    ["two x-api-key values joined", { "x-api-key": `${KEY},${OTHER_KEY}` }],
  ])("different keys ambiguous: %s", (_case, headers) => {
    expect(extract(headers)).toEqual({ kind: "ambiguous" });
  });

  it("same key twice present", () => {
    const credential = extract({ authorization: `Bearer ${KEY}`, "x-api-key": KEY });

    expect(credential).toEqual({ kind: "present", key: KEY, sources: ["authorization", "x-api-key"] });
  });

  it("same key joined twice present", () => {
    expect(extract({ "x-api-key": `${KEY}, ${KEY}` })).toEqual({ kind: "present", key: KEY, sources: ["x-api-key"] });
  });

  it("query parameter read when enabled", () => {
    expect(extract({}, `/v1/items?api_key=${KEY}`, WITH_QUERY)).toEqual({ kind: "present", key: KEY, sources: ["query"] });
  });

  it("query parameter among others", () => {
    const credential = extract({}, `/v1/items?page=2&api_key=${KEY}&sort=name`, WITH_QUERY);

    expect(credential).toEqual({ kind: "present", key: KEY, sources: ["query"] });
  });

  it("query value percent-decoded", () => {
    const encoded = KEY.replace("_", "%5F");

    expect(extract({}, `/v1/items?api_key=${encoded}`, WITH_QUERY)).toEqual({ kind: "present", key: KEY, sources: ["query"] });
  });

  it("query parameter ignored when disabled", () => {
    expect(extract({}, `/v1/items?api_key=${KEY}`)).toEqual({ kind: "none" });
  });

  it("disabled query never makes ambiguity", () => {
    const credential = extract({ "x-api-key": KEY }, `/v1/items?api_key=${OTHER_KEY}`);

    expect(credential).toEqual({ kind: "present", key: KEY, sources: ["x-api-key"] });
  });

  it("query name matched exactly", () => {
    expect(extract({}, `/v1/items?api_keys=${KEY}&xapi_key=${KEY}&API_KEY=${KEY}`, WITH_QUERY)).toEqual({ kind: "none" });
  });

  it("query key differing from header ambiguous", () => {
    const credential = extract({ authorization: `Bearer ${KEY}` }, `/v1/items?api_key=${OTHER_KEY}`, WITH_QUERY);

    expect(credential).toEqual({ kind: "ambiguous" });
  });

  it("query key equal to header present", () => {
    const credential = extract({ authorization: `Bearer ${KEY}` }, `/v1/items?api_key=${KEY}`, WITH_QUERY);

    expect(credential).toEqual({ kind: "present", key: KEY, sources: ["authorization", "query"] });
  });

  it("broken percent escape kept raw", () => {
    const credential = extract({}, "/v1/items?api_key=tg_%ZZ", WITH_QUERY);

    expect(credential).toEqual({ kind: "present", key: "tg_%ZZ", sources: ["query"] });
  });
});
