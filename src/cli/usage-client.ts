import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AnalyticsService, Bucket, GroupBy, TopKeysOrder } from "../gen/tollgate/analytics/v1/analytics_pb.js";
import { translateError } from "./remote-backend.js";

export type UsageBucket = "minute" | "hour" | "day" | "week";
export type UsageGrouping = "total" | "key" | "owner" | "api";
export type UsageOrder = "requests" | "cost";

/** Filters of a usage query as the CLI takes them; `api` is a name or an id. */
export interface UsageFilterOptions {
  api?: string;
  key?: string;
  owner?: string;
}

/** A half-open range [startMs, endMs) with filters. */
export interface UsageRangeQuery extends UsageFilterOptions {
  startMs: number;
  endMs: number;
}

/**
 * Opens a client of the server's AnalyticsService over the Connect protocol
 * with an admin token. Each method takes the CLI's plain values, and a
 * failed call rejects with the same errors as the other commands' server calls.
 */
export function openAnalyticsClient(baseUrl: string, token: string) {
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors: [authorize] });
  const client = createClient(AnalyticsService, transport);
  const call = <T>(work: () => Promise<T>) => work().catch((error: unknown) => Promise.reject(translateError(error, baseUrl)));

  return {
    requestsOverTime: (query: UsageRangeQuery & { bucket: UsageBucket; by: UsageGrouping }) =>
      call(() => client.getRequestsOverTime({ ...rangeFields(query), ...filterFields(query), bucket: BUCKETS[query.bucket], groupBy: GROUPINGS[query.by] })),
    decisionBreakdown: (query: UsageRangeQuery) => call(() => client.getDecisionBreakdown({ ...rangeFields(query), ...filterFields(query) })),
    topKeys: (query: UsageRangeQuery & { order: UsageOrder; limit: number }) =>
      call(() => client.listTopKeys({ ...rangeFields(query), apiId: query.api ?? "", ownerId: query.owner ?? "", orderBy: ORDERS[query.order], limit: query.limit })),
    timeToFirstCall: (query: UsageRangeQuery & { limit: number }) =>
      call(() =>
        client.getTimeToFirstCall({
          createStartTime: timestampFromMs(query.startMs),
          createEndTime: timestampFromMs(query.endMs),
          apiId: query.api ?? "",
          ownerId: query.owner ?? "",
          limit: query.limit,
        }),
      ),
    weeklyAdoption: (query: UsageFilterOptions & { weeks: number; endMs: number }) =>
      call(() => client.getWeeklyAdoption({ weeks: query.weeks, endTime: timestampFromMs(query.endMs), apiId: query.api ?? "", ownerId: query.owner ?? "" })),
    errorPatterns: (query: UsageRangeQuery & { minReasons: number; maxCascades: number }) =>
      call(() => client.getErrorPatterns({ ...rangeFields(query), ...filterFields(query), minReasons: query.minReasons, maxCascades: query.maxCascades })),
    retention: (query: UsageFilterOptions & { cohorts: number; asOfMs: number }) =>
      call(() => client.getRetention({ cohorts: query.cohorts, asOfTime: timestampFromMs(query.asOfMs), apiId: query.api ?? "", ownerId: query.owner ?? "" })),
    billableUsage: (query: UsageRangeQuery) => call(() => client.getBillableUsage({ ...rangeFields(query), apiId: query.api ?? "", ownerId: query.owner ?? "" })),
  };
}

export type AnalyticsClient = ReturnType<typeof openAnalyticsClient>;

const BUCKETS: Record<UsageBucket, Bucket> = { minute: Bucket.MINUTE, hour: Bucket.HOUR, day: Bucket.DAY, week: Bucket.WEEK };
const GROUPINGS: Record<UsageGrouping, GroupBy> = { total: GroupBy.UNSPECIFIED, key: GroupBy.KEY, owner: GroupBy.OWNER, api: GroupBy.API };
const ORDERS: Record<UsageOrder, TopKeysOrder> = { requests: TopKeysOrder.REQUESTS, cost: TopKeysOrder.COST };

function rangeFields(query: UsageRangeQuery) {
  return { startTime: timestampFromMs(query.startMs), endTime: timestampFromMs(query.endMs) };
}

function filterFields(query: UsageFilterOptions) {
  return { apiId: query.api ?? "", keyId: query.key ?? "", ownerId: query.owner ?? "" };
}
