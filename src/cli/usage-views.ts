import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationMs, timestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  GetBillableUsageResponseSchema,
  GetDecisionBreakdownResponseSchema,
  GetErrorPatternsResponseSchema,
  GetRequestsOverTimeResponseSchema,
  GetRetentionResponseSchema,
  GetTimeToFirstCallResponseSchema,
  GetWeeklyAdoptionResponseSchema,
  ListTopKeysResponseSchema,
  type BillingLine,
  type GetBillableUsageResponse,
  type GetDecisionBreakdownResponse,
  type GetErrorPatternsResponse,
  type GetRequestsOverTimeResponse,
  type GetRetentionResponse,
  type GetTimeToFirstCallResponse,
  type GetWeeklyAdoptionResponse,
  type ListTopKeysResponse,
  type RetentionCell,
} from "../gen/tollgate/analytics/v1/analytics_pb.js";
import { formatBillingCsv } from "../server/analytics/billing-csv.js";
import { formatTime, printTable, type Output } from "./output.js";
import type { UsageGrouping } from "./usage-client.js";

/**
 * Printers of the `usage` commands. Each prints a table for people or, with
 * `json`, the response as the Connect API returns it: proto3 JSON, where
 * int64 counts are strings. Zero fields are written out, so every field is present.
 */

export function printRequestsOverTime(output: Output, response: GetRequestsOverTimeResponse, grouping: UsageGrouping, json: boolean): void {
  if (json) return printMessageJson(output, GetRequestsOverTimeResponseSchema, response);
  const grouped = grouping !== "total";
  const rows = response.series
    .flatMap((series) => series.points.map((point) => ({ series, point, startMs: msOf(point.bucketStartTime) })))
    .sort((a, b) => a.startMs - b.startMs);
  const header = ["TIME", ...(grouped ? [grouping.toUpperCase()] : []), "REQUESTS", "ALLOWED", "DENIED", "COST"];
  printTable(
    output,
    header,
    rows.map(({ series, point, startMs }) => [
      formatTime(startMs),
      ...(grouped ? [series.group || "-"] : []),
      String(point.requests),
      String(point.allowed),
      String(point.denied),
      String(point.cost),
    ]),
  );
}

export function printDecisionBreakdown(output: Output, response: GetDecisionBreakdownResponse, json: boolean): void {
  if (json) return printMessageJson(output, GetDecisionBreakdownResponseSchema, response);
  printTable(
    output,
    ["DECISION", "REASON", "STATUS", "REQUESTS", "SHARE"],
    response.decisions.map((entry) => [entry.decision, entry.reason, entry.httpStatus === 0 ? "-" : String(entry.httpStatus), String(entry.requests), percent(entry.share)]),
  );
  output.out(`${response.requests} requests`);
}

export function printTopKeys(output: Output, response: ListTopKeysResponse, json: boolean): void {
  if (json) return printMessageJson(output, ListTopKeysResponseSchema, response);
  printTable(
    output,
    ["KEY", "NAME", "OWNER", "REQUESTS", "ALLOWED", "DENIED", "COST"],
    response.keys.map((key) => [key.keyId, key.name || "-", key.ownerId || "-", String(key.requests), String(key.allowed), String(key.denied), String(key.cost)]),
  );
}

export function printTimeToFirstCall(output: Output, response: GetTimeToFirstCallResponse, json: boolean): void {
  if (json) return printMessageJson(output, GetTimeToFirstCallResponseSchema, response);
  printTable(
    output,
    ["KEY", "OWNER", "CREATED", "FIRST CALL", "AFTER"],
    response.keys.map((key) => [
      key.keyId,
      key.ownerId || "-",
      formatTime(msOf(key.createTime)),
      key.firstCallTime ? formatTime(msOf(key.firstCallTime)) : "-",
      formatDuration(key.timeToFirstCall),
    ]),
  );
  const summary = response.summary;
  if (!summary) return;
  output.out(
    `${summary.keys} keys: ${summary.keysWithFirstCall} with a first call, ${summary.keysWithoutFirstCall} without; ` +
      `median ${formatDuration(summary.medianTimeToFirstCall)}, p90 ${formatDuration(summary.p90TimeToFirstCall)}`,
  );
}

export function printWeeklyAdoption(output: Output, response: GetWeeklyAdoptionResponse, json: boolean): void {
  if (json) return printMessageJson(output, GetWeeklyAdoptionResponseSchema, response);
  printTable(
    output,
    ["WEEK", "ACTIVE KEYS", "REQUESTS", "PER KEY", "KEYS CHANGE", "REQUESTS CHANGE"],
    response.weeks.map((week) => [
      formatDate(week.weekStartTime),
      String(week.activeKeys),
      String(week.requests),
      week.requestsPerActiveKey.toFixed(1),
      signedPercent(week.activeKeysChangePercent),
      signedPercent(week.requestsChangePercent),
    ]),
  );
}

export function printErrorPatterns(output: Output, response: GetErrorPatternsResponse, json: boolean): void {
  if (json) return printMessageJson(output, GetErrorPatternsResponseSchema, response);
  printTable(
    output,
    ["OWNER", "REQUESTS", "401", "403", "429"],
    response.owners.map((owner) => [owner.ownerId || "-", String(owner.requests), percent(owner.unauthorizedRate), percent(owner.forbiddenRate), percent(owner.rateLimitedRate)]),
  );
  output.out("");
  if (response.cascades.length === 0) return output.out("No error cascades.");
  printTable(
    output,
    ["MINUTE", "KEY OR ADDRESS", "DENIED", "REASONS"],
    response.cascades.map((cascade) => [
      formatTime(msOf(cascade.minuteStartTime)),
      cascade.subject.case === "keyId" ? `key ${cascade.subject.value}` : `address ${cascade.subject.value ?? ""}`,
      String(cascade.deniedRequests),
      cascade.reasons.map((entry) => `${entry.reason}=${entry.requests}`).join(" "),
    ]),
  );
  if (response.cascadesTruncated) output.out(`Only the oldest ${response.cascades.length} cascades are listed; raise --max-cascades or shorten the range.`);
}

export function printRetention(output: Output, response: GetRetentionResponse, json: boolean): void {
  if (json) return printMessageJson(output, GetRetentionResponseSchema, response);
  printTable(
    output,
    ["COHORT", "KEYS", "WEEK 1", "WEEK 4", "WEEK 12"],
    response.cohorts.map((cohort) => [formatDate(cohort.weekStartTime), String(cohort.keys), retentionCell(cohort.week1), retentionCell(cohort.week4), retentionCell(cohort.week12)]),
  );
  output.out("A cell is - until every key of the cohort has lived through that week.");
}

export type BillingFormat = "table" | "json" | "csv";

export function printBillableUsage(output: Output, response: GetBillableUsageResponse, format: BillingFormat): void {
  if (format === "json") return printMessageJson(output, GetBillableUsageResponseSchema, response);

  const periodStart = formatTime(msOf(response.periodStartTime));
  const periodEnd = formatTime(msOf(response.periodEndTime));
  if (format === "csv") {
    const rows = response.lines.map((line) => ({
      period_start: periodStart,
      period_end: periodEnd,
      owner_id: line.ownerId,
      api_id: line.apiId,
      api_name: line.apiName,
      requests: line.requests,
      cost_units: line.costUnits,
      overage_requests: line.overageRequests,
      overage_cost_units: line.overageCostUnits,
    }));
    return output.out(formatBillingCsv(rows));
  }

  output.out(`Billable usage from ${periodStart} to ${periodEnd} (allowed requests only)`);
  const row = (line: BillingLine, api: string) => [line.ownerId || "-", api, String(line.requests), String(line.costUnits), String(line.overageRequests), String(line.overageCostUnits)];
  printTable(output, ["OWNER", "API", "REQUESTS", "COST UNITS", "OVERAGE REQUESTS", "OVERAGE COST UNITS"], [
    ...response.lines.map((line) => row(line, line.apiName || line.apiId)),
    ...response.ownerTotals.map((line) => row(line, "(all)")),
  ]);
}

/** Formats a duration as days, hours, minutes and seconds, such as 2h5m or 45s; "-" when unset. */
export function formatDuration(duration: Duration | undefined): string {
  if (duration === undefined) return "-";
  const totalMs = durationMs(duration);
  if (totalMs < 1000) return `${totalMs}ms`;
  let seconds = Math.round(totalMs / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    const count = Math.floor(seconds / size);
    seconds -= count * size;
    if (count > 0) parts.push(`${count}${unit}`);
  }
  return parts.join("");
}

function printMessageJson<Desc extends DescMessage>(output: Output, schema: Desc, message: MessageShape<Desc>): void {
  output.out(JSON.stringify(toJson(schema, message, { alwaysEmitImplicit: true }), null, 2));
}

function msOf(timestamp: Timestamp | undefined): number {
  return timestamp === undefined ? 0 : timestampMs(timestamp);
}

function formatDate(timestamp: Timestamp | undefined): string {
  return formatTime(msOf(timestamp)).slice(0, 10);
}

function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function signedPercent(value: number | undefined): string {
  if (value === undefined) return "-";
  return `${value > 0 ? "+" : ""}${value.toFixed(1)}%`;
}

function retentionCell(cell: RetentionCell | undefined): string {
  return cell === undefined ? "-" : `${percent(cell.share)} (${cell.activeKeys})`;
}
