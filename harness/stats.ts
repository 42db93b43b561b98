/**
 * Statistics for the tests and the benchmarks, written once: nearest-rank percentiles, the
 * median, a median/p90/max summary of a list of figures (fail-over windows), and latency
 * recording. Latencies are kept exactly (one float per request in a growing Float64Array,
 * sorted once at the end) rather than in buckets: a 10-second run at tens of thousands of
 * requests per second is a few MB, and exact percentiles need no library and no
 * bucket-precision caveat.
 */

import { percentile } from "../src/shared/percentile.js";

export class LatencyRecorder {
  private values = new Float64Array(1 << 16);
  private size = 0;

  get count(): number {
    return this.size;
  }

  record(ms: number): void {
    if (this.size === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.size++] = ms;
  }

  /** p50, p90, p99 and max in ms (null when nothing was recorded). */
  summary(): LatencySummary {
    const sorted = this.values.slice(0, this.size).sort();
    return {
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: this.size === 0 ? null : (sorted[this.size - 1] ?? null),
    };
  }
}

export interface LatencySummary {
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly max: number | null;
}

export { percentile };

/** The median of `values` (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? null)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Median, p90 and max of a list of figures, for fail-over windows. */
export function summarize(values: readonly number[]): {
  count: number;
  median: number | null;
  p90: number | null;
  max: number | null;
} {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: values.length,
    median: median(values),
    p90: percentile(sorted, 0.9),
    max: sorted.length === 0 ? null : (sorted[sorted.length - 1] ?? null),
  };
}
