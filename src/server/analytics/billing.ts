import type { ApiRecord } from "../../keys/records.js";
import type { BillableTotals, UsageFilter, UsageRange } from "./usage-queries.js";
import type { AsyncUsageQueries } from "./usage-query-protocol.js";

/** Billable usage of one owner and API, or of one owner over all APIs when `apiId` is "". */
export interface BillingLine extends BillableTotals {
  apiName: string;
}

export interface BillableUsage {
  period: UsageRange;
  /** One line per owner and API, ordered by owner id, then API id. */
  lines: BillingLine[];
  /** One line per owner, the sum of its lines, with empty API fields. */
  ownerTotals: BillingLine[];
}

/**
 * Totals the billable usage of `period`: allowed requests, their cost units,
 * and the overage part of both. `apis` names the API of each line; an API no
 * longer in the store keeps an empty name.
 */
export async function billableUsage(usage: AsyncUsageQueries, period: UsageRange, filter: UsageFilter, apis: readonly ApiRecord[]): Promise<BillableUsage> {
  const names = new Map(apis.map((api) => [api.id, api.name]));
  const lines = (await usage.billableUsage(period, filter)).map((totals) => ({ ...totals, apiName: names.get(totals.apiId) ?? "" }));

  const ownerTotals: BillingLine[] = [];
  for (const line of lines) {
    let total = ownerTotals.at(-1);
    if (total?.ownerId !== line.ownerId) {
      total = { ownerId: line.ownerId, apiId: "", apiName: "", requests: 0, costUnits: 0, overageRequests: 0, overageCostUnits: 0 };
      ownerTotals.push(total);
    }
    total.requests += line.requests;
    total.costUnits += line.costUnits;
    total.overageRequests += line.overageRequests;
    total.overageCostUnits += line.overageCostUnits;
  }
  return { period, lines, ownerTotals };
}
