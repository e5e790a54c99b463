/**
 * Returns the nearest-rank percentile of ascending `sorted` values: the
 * smallest value that at least `fraction` (0 to 1, exclusive of 0) of them
 * do not exceed. Returns undefined for no values.
 */
export function nearestRankPercentile(sorted: readonly number[], fraction: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.max(1, Math.ceil(fraction * sorted.length));
  return sorted[rank - 1];
}
