/**
 * The nearest-rank percentile, written once for the benchmarks, the tests (harness/stats.ts
 * re-exports it) and the fault campaign's verdicts.
 */

/** The nearest-rank percentile `q` (0..1) of ascending `sorted`, or null when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? null;
}
