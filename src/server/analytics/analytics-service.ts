import type { ServiceImpl } from "@connectrpc/connect";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Bucket, GroupBy, TopKeysOrder as TopKeysOrderProto, type AnalyticsService } from "../../gen/tollgate/analytics/v1/analytics_pb.js";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../log/logger.js";
import { throwIfInvalid } from "../admin/errors.js";
import { checkEnum, FieldProblems } from "../admin/validate.js";
import type { ServerStore } from "../store/server-store.js";
import { adoptionReadStartMs, weeklyAdoption } from "./adoption.js";
import {
  adoptionWeekToMessage,
  billingLineToMessage,
  errorCascadeToMessage,
  keyFirstCallToMessage,
  ownerErrorRatesToMessage,
  retentionCohortToMessage,
} from "./analytics-convert.js";
import { billableUsage } from "./billing.js";
import { errorRatesByOwner, statusOfReason } from "./error-rates.js";
import { timeToFirstCall } from "./first-call.js";
import { checkBucketCount, checkComputedStart, checkCount, checkFilterFields, checkOptionalTime, checkRange, resolveFilter } from "./request-checks.js";
import { firstCohortStartMs, retentionCohorts } from "./retention.js";
import type { BucketUnit } from "./time-buckets.js";
import type { SeriesGrouping, TopKeysOrder } from "./usage-queries.js";
import type { AsyncUsageQueries } from "./usage-query-protocol.js";

/** Dependencies of the analytics service. */
export interface AnalyticsContext {
  /** The store of record, for key creation times, owners and API names. */
  store: ServerStore;
  /** Queries on the usage database, run off the event loop where a worker is available. */
  usage: AsyncUsageQueries;
  clock: Clock;
  logger: Logger;
}

/** Maximum points GetRequestsOverTime returns: an estimated 10 MB of JSON at about 100 bytes a point. */
export const MAX_SERIES_POINTS = 100_000;

/**
 * Serves usage analytics and billable usage from the usage database. Every
 * method only reads. Validation reports every bad field at once, before any
 * query runs.
 */
export function createAnalyticsService({ store, usage, clock }: AnalyticsContext): ServiceImpl<typeof AnalyticsService> {
  return {
    async getRequestsOverTime(request) {
      const problems = new FieldProblems();
      const range = checkRange(problems, RANGE_FIELDS, request.startTime, request.endTime);
      const unit = checkEnum(problems, "bucket", request.bucket, BUCKETS, "BUCKET_MINUTE, BUCKET_HOUR, BUCKET_DAY or BUCKET_WEEK");
      const grouping = checkEnum(problems, "group_by", request.groupBy, GROUPINGS, "GROUP_BY_KEY, GROUP_BY_OWNER, GROUP_BY_API or unspecified (one series)");
      checkFilterFields(problems, request);
      if (problems.empty && unit !== undefined) checkBucketCount(problems, "bucket", range, unit);
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, request);
      const { series, truncated } = await usage.requestsOverTime(range, filter, unit!, grouping!, MAX_SERIES_POINTS);
      if (truncated) {
        problems.add("bucket", `the result has more than ${MAX_SERIES_POINTS} points: use a larger bucket, a shorter range or a filter`);
        throwIfInvalid(problems);
      }
      return {
        series: series.map((entry) => ({
          group: entry.group,
          points: entry.points.map((point) => ({
            bucketStartTime: timestampFromMs(point.bucketStartMs),
            requests: BigInt(point.requests),
            allowed: BigInt(point.allowed),
            denied: BigInt(point.denied),
            cost: BigInt(point.cost),
          })),
        })),
      };
    },

    async getDecisionBreakdown(request) {
      const problems = new FieldProblems();
      const range = checkRange(problems, RANGE_FIELDS, request.startTime, request.endTime);
      checkFilterFields(problems, request);
      throwIfInvalid(problems);

      const counts = await usage.decisionBreakdown(range, await resolveFilter(store, request));
      const requests = counts.reduce((sum, count) => sum + count.requests, 0);
      return {
        requests: BigInt(requests),
        decisions: counts.map((count) => ({
          decision: count.decision,
          reason: count.reason,
          httpStatus: statusOfReason(count.reason) ?? 0,
          requests: BigInt(count.requests),
          share: count.requests / requests,
        })),
      };
    },

    async listTopKeys(request) {
      const problems = new FieldProblems();
      const range = checkRange(problems, RANGE_FIELDS, request.startTime, request.endTime);
      checkFilterFields(problems, { apiId: request.apiId, ownerId: request.ownerId });
      const order = checkEnum(problems, "order_by", request.orderBy, TOP_KEYS_ORDERS, "TOP_KEYS_ORDER_REQUESTS, TOP_KEYS_ORDER_COST or unspecified (requests)");
      const limit = checkCount(problems, "limit", request.limit, { defaultValue: 10, min: 1, max: 1000 });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, { apiId: request.apiId, ownerId: request.ownerId });
      const top = await usage.topKeys(range, filter, order!, limit);
      const keys = await Promise.all(top.map((totals) => store.getKey(totals.keyId)));
      return {
        keys: top.map((totals, i) => ({
          keyId: totals.keyId,
          apiId: totals.apiId,
          ownerId: keys[i] === undefined ? totals.ownerId : (keys[i]!.ownerId ?? ""),
          name: keys[i]?.name ?? "",
          requests: BigInt(totals.requests),
          allowed: BigInt(totals.allowed),
          denied: BigInt(totals.denied),
          cost: BigInt(totals.cost),
        })),
      };
    },

    async getTimeToFirstCall(request) {
      const problems = new FieldProblems();
      // The range selects keys by creation time and scans no rollups, so it has no maximum span.
      const created = checkRange(problems, { start: "create_start_time", end: "create_end_time" }, request.createStartTime, request.createEndTime, null);
      checkFilterFields(problems, { apiId: request.apiId, ownerId: request.ownerId });
      const limit = checkCount(problems, "limit", request.limit, { defaultValue: 100, min: 1, max: 1000 });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, { apiId: request.apiId, ownerId: request.ownerId });
      const { keys, summary } = await timeToFirstCall(store, usage, { created, ...filter, limit });
      return {
        keys: keys.map(keyFirstCallToMessage),
        summary: {
          keys: BigInt(summary.keys),
          keysWithFirstCall: BigInt(summary.keysWithFirstCall),
          keysWithoutFirstCall: BigInt(summary.keysWithoutFirstCall),
          medianTimeToFirstCall: summary.medianMs === null ? undefined : durationFromMs(summary.medianMs),
          p90TimeToFirstCall: summary.p90Ms === null ? undefined : durationFromMs(summary.p90Ms),
        },
      };
    },

    async getWeeklyAdoption(request) {
      const problems = new FieldProblems();
      // 52 weeks, plus the week before them for the change, stay close to the 366-day limit of ranges.
      const weeks = checkCount(problems, "weeks", request.weeks, { defaultValue: 8, min: 1, max: 52 });
      const endMs = checkOptionalTime(problems, "end_time", request.endTime, clock.wallMs());
      if (problems.empty) checkComputedStart(problems, "end_time", adoptionReadStartMs(weeks, endMs), "weeks");
      checkFilterFields(problems, { apiId: request.apiId, ownerId: request.ownerId });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, { apiId: request.apiId, ownerId: request.ownerId });
      return { weeks: (await weeklyAdoption(usage, { weeks, endMs, filter })).map(adoptionWeekToMessage) };
    },

    async getErrorPatterns(request) {
      const problems = new FieldProblems();
      const range = checkRange(problems, RANGE_FIELDS, request.startTime, request.endTime);
      checkFilterFields(problems, request);
      const minReasons = checkCount(problems, "min_reasons", request.minReasons, { defaultValue: 2, min: 2, max: 20 });
      const maxCascades = checkCount(problems, "max_cascades", request.maxCascades, { defaultValue: 100, min: 1, max: 1000 });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, request);
      const [{ cascades, truncated }, ownerReasons] = await Promise.all([usage.errorCascades(range, filter, minReasons, maxCascades), usage.reasonsByOwner(range, filter)]);
      return {
        owners: errorRatesByOwner(ownerReasons).map(ownerErrorRatesToMessage),
        cascades: cascades.map(errorCascadeToMessage),
        cascadesTruncated: truncated,
      };
    },

    async getRetention(request) {
      const problems = new FieldProblems();
      const cohorts = checkCount(problems, "cohorts", request.cohorts, { defaultValue: 12, min: 1, max: 52 });
      const asOfMs = checkOptionalTime(problems, "as_of_time", request.asOfTime, clock.wallMs());
      if (problems.empty) checkComputedStart(problems, "as_of_time", firstCohortStartMs(cohorts, asOfMs), "cohorts");
      checkFilterFields(problems, { apiId: request.apiId, ownerId: request.ownerId });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, { apiId: request.apiId, ownerId: request.ownerId });
      return { cohorts: (await retentionCohorts(store, usage, { cohorts, asOfMs, ...filter })).map(retentionCohortToMessage) };
    },

    async getBillableUsage(request) {
      const problems = new FieldProblems();
      const period = checkRange(problems, RANGE_FIELDS, request.startTime, request.endTime);
      checkFilterFields(problems, { apiId: request.apiId, ownerId: request.ownerId });
      throwIfInvalid(problems);

      const filter = await resolveFilter(store, { apiId: request.apiId, ownerId: request.ownerId });
      const billing = await billableUsage(usage, period, filter, await store.listApis());
      return {
        periodStartTime: timestampFromMs(period.startMs),
        periodEndTime: timestampFromMs(period.endMs),
        lines: billing.lines.map(billingLineToMessage),
        ownerTotals: billing.ownerTotals.map(billingLineToMessage),
      };
    },
  };
}

const RANGE_FIELDS = { start: "start_time", end: "end_time" };

const BUCKETS: ReadonlyMap<number, BucketUnit> = new Map([
  [Bucket.MINUTE, "minute"],
  [Bucket.HOUR, "hour"],
  [Bucket.DAY, "day"],
  [Bucket.WEEK, "week"],
]);

const GROUPINGS: ReadonlyMap<number, SeriesGrouping> = new Map([
  [GroupBy.UNSPECIFIED, "total"],
  [GroupBy.KEY, "key"],
  [GroupBy.OWNER, "owner"],
  [GroupBy.API, "api"],
]);

const TOP_KEYS_ORDERS: ReadonlyMap<number, TopKeysOrder> = new Map([
  [TopKeysOrderProto.UNSPECIFIED, "requests"],
  [TopKeysOrderProto.REQUESTS, "requests"],
  [TopKeysOrderProto.COST, "cost"],
]);
