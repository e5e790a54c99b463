/** Latency percentiles of one measurement, in microseconds. */
export interface LatencySummary {
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/** Sorts a copy of `latenciesUs` and reads the percentiles by nearest rank. */
export function summarizeLatencies(latenciesUs: Float64Array): LatencySummary {
  const sorted = Float64Array.from(latenciesUs).sort();
  return {
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    p999Us: percentile(sorted, 99.9),
  };
}

/** Nearest-rank percentile of ascending `sorted`, or NaN when it is empty. */
export function percentile(sorted: ArrayLike<number>, percent: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((percent / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Median of `values`, averaging the middle two for an even count, or NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
