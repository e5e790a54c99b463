/** Settings that Envoy's per-route `check_settings.context_extensions` set for a request. */
export interface RouteSettings {
  /** API name or id the key must belong to; undefined accepts a key of any API. */
  api?: string;
  /** Scopes the key must hold, all of them. */
  scopes: string[];
  /** Units the request takes from every rate-limit tier. */
  cost: number;
}

export const ROUTE_API = "tollgate.api";
export const ROUTE_SCOPE = "tollgate.scope";
export const ROUTE_COST = "tollgate.cost";

/** Largest cost a route may name; keeps counters far from float precision limits. */
export const MAX_COST = 1_000_000;

export type ParsedRoute = { ok: true; route: RouteSettings } | { ok: false; problem: string };

/**
 * Reads route settings. `tollgate.scope` may list several scopes separated by
 * spaces or commas; `tollgate.cost` is a whole number from 0 (free) up, 1 when
 * absent.
 */
export function parseRouteSettings(extensions: Readonly<Record<string, string>>): ParsedRoute {
  const api = extensions[ROUTE_API]?.trim() || undefined;
  const scopes = (extensions[ROUTE_SCOPE] ?? "").split(/[\s,]+/).filter(Boolean);

  const costText = extensions[ROUTE_COST]?.trim();
  let cost = 1;
  if (costText !== undefined && costText !== "") {
    cost = /^\d+$/.test(costText) ? Number(costText) : NaN;
    if (!Number.isSafeInteger(cost) || cost > MAX_COST) {
      return { ok: false, problem: `context extension ${ROUTE_COST} must be a whole number from 0 to ${MAX_COST}` };
    }
  }
  return { ok: true, route: { api, scopes, cost } };
}
