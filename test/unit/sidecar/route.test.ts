import { describe, expect, it } from "vitest";
import { MAX_COST, parseRouteSettings, type RouteSettings } from "../../../src/sidecar/route.js";

describe("parseRouteSettings", () => {
  it.each<[string, Record<string, string>, RouteSettings]>([
    ["no extensions", {}, { api: undefined, scopes: [], cost: 1 }],
    ["api named", { "tollgate.api": "payments" }, { api: "payments", scopes: [], cost: 1 }],
    ["api trimmed", { "tollgate.api": "  payments " }, { api: "payments", scopes: [], cost: 1 }],
    ["blank api accepts any", { "tollgate.api": "  " }, { api: undefined, scopes: [], cost: 1 }],
    ["one scope", { "tollgate.scope": "read" }, { api: undefined, scopes: ["read"], cost: 1 }],
    ["scopes split by spaces", { "tollgate.scope": "read  write" }, { api: undefined, scopes: ["read", "write"], cost: 1 }],
    ["scopes split by commas", { "tollgate.scope": "read,write" }, { api: undefined, scopes: ["read", "write"], cost: 1 }],
    ["scopes split by both", { "tollgate.scope": " read, write ,admin " }, { api: undefined, scopes: ["read", "write", "admin"], cost: 1 }],
    ["empty scope list", { "tollgate.scope": " , " }, { api: undefined, scopes: [], cost: 1 }],
    ["cost 0 is free", { "tollgate.cost": "0" }, { api: undefined, scopes: [], cost: 0 }],
    ["cost 5", { "tollgate.cost": "5" }, { api: undefined, scopes: [], cost: 5 }],
    ["cost trimmed", { "tollgate.cost": " 3 " }, { api: undefined, scopes: [], cost: 3 }],
    ["empty cost defaults to 1", { "tollgate.cost": "" }, { api: undefined, scopes: [], cost: 1 }],
    ["maximum cost", { "tollgate.cost": String(MAX_COST) }, { api: undefined, scopes: [], cost: MAX_COST }],
    [
      "all settings",
      { "tollgate.api": "payments", "tollgate.scope": "read write", "tollgate.cost": "2", vhost: "app" },
      { api: "payments", scopes: ["read", "write"], cost: 2 },
    ],
  ])("%s", (_case, extensions, expected) => {
    expect(parseRouteSettings(extensions)).toEqual({ ok: true, route: expected });
  });

  it.each(["-1", "1.5", "1e3", "0x10", "abc", "two", "+1", "1 2", String(MAX_COST + 1), "99999999999999999999", "Infinity", "NaN"])(
    "cost %j rejected",
    (cost) => {
      const parsed = parseRouteSettings({ "tollgate.cost": cost });

      expect(parsed.ok).toBe(false);
      expect(parsed.ok ? "" : parsed.problem).toContain("tollgate.cost");
    },
  );
});
