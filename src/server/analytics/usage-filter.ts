/** A half-open time range, [startMs, endMs), in milliseconds since the Unix epoch. */
export interface UsageRange {
  startMs: number;
  endMs: number;
}

/** Filters on usage rows; an absent field matches every row. `apiId` is an id, never a name. */
export interface UsageFilter {
  apiId?: string;
  keyId?: string;
  ownerId?: string;
}

/** A WHERE clause with its named parameters, for better-sqlite3. */
export interface SqlCondition {
  sql: string;
  parameters: Record<string, string | number>;
}

/**
 * Builds the WHERE clause that selects rows of `range` and `filter`.
 * `timeColumn` is `minute_ms` for rollups and `time_ms` for raw events; both
 * tables name the filter columns alike. Values travel as parameters, and the
 * column name comes from code.
 */
export function usageCondition(timeColumn: "minute_ms" | "time_ms", range: UsageRange, filter: UsageFilter): SqlCondition {
  const conditions = [`${timeColumn} >= @startMs`, `${timeColumn} < @endMs`];
  const parameters: Record<string, string | number> = { startMs: range.startMs, endMs: range.endMs };
  if (filter.apiId !== undefined) {
    conditions.push("api_id = @apiId");
    parameters.apiId = filter.apiId;
  }
  if (filter.keyId !== undefined) {
    conditions.push("key_id = @keyId");
    parameters.keyId = filter.keyId;
  }
  if (filter.ownerId !== undefined) {
    conditions.push("owner_id = @ownerId");
    parameters.ownerId = filter.ownerId;
  }
  return { sql: conditions.join(" AND "), parameters };
}
