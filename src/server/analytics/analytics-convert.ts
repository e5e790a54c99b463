import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type {
  AdoptionWeekSchema,
  BillingLineSchema,
  ErrorCascadeSchema,
  KeyFirstCallSchema,
  OwnerErrorRatesSchema,
  RetentionCohortSchema,
  RetentionCellSchema,
} from "../../gen/tollgate/analytics/v1/analytics_pb.js";
import type { AdoptionWeek } from "./adoption.js";
import type { BillingLine } from "./billing.js";
import type { OwnerErrorRates } from "./error-rates.js";
import type { KeyFirstCall } from "./first-call.js";
import type { RetentionCell, RetentionCohort } from "./retention.js";
import type { ErrorCascade } from "./usage-queries.js";

/** Messages of the analytics API built from the query results; counts become int64. */

export function keyFirstCallToMessage(key: KeyFirstCall): MessageInitShape<typeof KeyFirstCallSchema> {
  return {
    keyId: key.keyId,
    apiId: key.apiId,
    ownerId: key.ownerId ?? "",
    createTime: timestampFromMs(key.createdAtMs),
    firstCallTime: key.firstCallMs === null ? undefined : timestampFromMs(key.firstCallMs),
    timeToFirstCall: key.timeToFirstCallMs === null ? undefined : durationFromMs(key.timeToFirstCallMs),
  };
}

export function adoptionWeekToMessage(week: AdoptionWeek): MessageInitShape<typeof AdoptionWeekSchema> {
  return {
    weekStartTime: timestampFromMs(week.weekStartMs),
    activeKeys: BigInt(week.activeKeys),
    requests: BigInt(week.requests),
    requestsPerActiveKey: week.requestsPerActiveKey,
    activeKeysChangePercent: week.activeKeysChangePercent ?? undefined,
    requestsChangePercent: week.requestsChangePercent ?? undefined,
  };
}

export function ownerErrorRatesToMessage(owner: OwnerErrorRates): MessageInitShape<typeof OwnerErrorRatesSchema> {
  return {
    ownerId: owner.ownerId,
    requests: BigInt(owner.requests),
    unauthorizedRequests: BigInt(owner.unauthorizedRequests),
    forbiddenRequests: BigInt(owner.forbiddenRequests),
    rateLimitedRequests: BigInt(owner.rateLimitedRequests),
    unauthorizedRate: owner.unauthorizedRate,
    forbiddenRate: owner.forbiddenRate,
    rateLimitedRate: owner.rateLimitedRate,
  };
}

export function errorCascadeToMessage(cascade: ErrorCascade): MessageInitShape<typeof ErrorCascadeSchema> {
  return {
    subject: cascade.kind === "key" ? { case: "keyId", value: cascade.subject } : { case: "clientAddress", value: cascade.subject },
    minuteStartTime: timestampFromMs(cascade.minuteStartMs),
    reasons: cascade.reasons.map((entry) => ({ reason: entry.reason, requests: BigInt(entry.requests) })),
    deniedRequests: BigInt(cascade.deniedRequests),
  };
}

export function retentionCohortToMessage(cohort: RetentionCohort): MessageInitShape<typeof RetentionCohortSchema> {
  return {
    weekStartTime: timestampFromMs(cohort.weekStartMs),
    keys: BigInt(cohort.keys),
    week1: retentionCellToMessage(cohort.cells[1]),
    week4: retentionCellToMessage(cohort.cells[4]),
    week12: retentionCellToMessage(cohort.cells[12]),
  };
}

export function billingLineToMessage(line: BillingLine): MessageInitShape<typeof BillingLineSchema> {
  return {
    ownerId: line.ownerId,
    apiId: line.apiId,
    apiName: line.apiName,
    requests: BigInt(line.requests),
    costUnits: BigInt(line.costUnits),
    overageRequests: BigInt(line.overageRequests),
    overageCostUnits: BigInt(line.overageCostUnits),
  };
}

function retentionCellToMessage(cell: RetentionCell | null): MessageInitShape<typeof RetentionCellSchema> | undefined {
  return cell === null ? undefined : { activeKeys: BigInt(cell.activeKeys), share: cell.share };
}
