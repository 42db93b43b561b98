/**
 * The HTTP layer's own Prometheus metrics: answers by route and status, the latency of
 * key-value requests; and the once-a-second sample
 * of requests per second and latency percentiles that the dashboard's chart draws.
 *
 * Counting must cost the request path next to nothing, so answers are tallied in plain
 * maps and handed to prom-client only when `/metrics` is scraped (prom-client's labelled
 * `inc` would build a label key string on every request), and latency goes to histogram
 * children bound once per route.
 *
 * A request is counted by the node the client sent it to: a backup forwards the command
 * over the peer link, never as an HTTP request, so nothing is counted twice.
 */

import { Counter, Histogram, type Registry } from "prom-client";

const RESPONSES = "baton_http_responses_total";
const DURATION = "baton_http_request_duration_seconds";

/** Latency buckets in seconds: from a local in-memory read to a write across a fail-over. */
const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** Latencies kept per sample window; beyond it requests are counted but not timed. */
const SAMPLE_LATENCIES_MAX = 65_536;

/** The tally of one route: answers counted by status code, and its latency when timed. */
export interface RouteTally {
  readonly statuses: Map<number, number>;
  /** The histogram child for client requests on this route, or null if not timed. */
  readonly duration: { observe(seconds: number): void } | null;
}

/** Requests answered during one sample window. */
export interface RequestWindowSample {
  readonly requestsPerSecond: number;
  readonly errorsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number } | null;
}

export class HttpMetrics {
  private readonly routes = new Map<string, RouteTally>();
  private readonly duration: Histogram<"method">;
  private readonly latencies = new Float64Array(SAMPLE_LATENCIES_MAX);
  private timedCount = 0;
  private requestCount = 0;
  private errorCount = 0;
  private windowStartedAt: number;

  /**
   * Registers the metrics on `registry`. A registry serves one HTTP server: metrics of the
   * same names that an earlier server registered there are replaced.
   */
  constructor(
    registry: Registry,
    private readonly now: () => number = () => performance.now(),
  ) {
    registry.removeSingleMetric(RESPONSES);
    registry.removeSingleMetric(DURATION);
    this.windowStartedAt = now();
    const routes = this.routes;
    new Counter({
      name: RESPONSES,
      help: "HTTP answers sent, by route pattern, method and status code.",
      labelNames: ["method", "route", "status"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [methodRoute, tally] of routes) {
          const space = methodRoute.indexOf(" ");
          const method = methodRoute.slice(0, space);
          const route = methodRoute.slice(space + 1);
          for (const [status, count] of tally.statuses) {
            this.inc({ method, route, status: String(status) }, count);
          }
        }
      },
    });
    this.duration = new Histogram({
      name: DURATION,
      help: "Time to answer a key-value request sent by a client to this node (forwarding included), by method.",
      labelNames: ["method"],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    });
  }

  /**
   * The tally for `method` on `route`; a route keeps it and counts with `answered`. Only
   * the key-value routes are timed.
   */
  tally(method: string, route: string): RouteTally {
    const key = `${method} ${route}`;
    let tally = this.routes.get(key);
    if (tally === undefined) {
      const timed = route.startsWith("/v1/kv") && method !== "OTHER";
      tally = { statuses: new Map(), duration: timed ? this.duration.labels(method) : null };
      this.routes.set(key, tally);
    }
    return tally;
  }

  /** Counts one answer with `status` in `tally`. */
  count(tally: RouteTally, status: number): void {
    tally.statuses.set(status, (tally.statuses.get(status) ?? 0) + 1);
  }

  /** Counts one answer and, on a timed route, its latency in milliseconds. */
  answered(tally: RouteTally, status: number, elapsedMs: number): void {
    this.count(tally, status);
    if (tally.duration === null) return;
    tally.duration.observe(elapsedMs / 1000);
    this.requestCount++;
    if (status >= 500) this.errorCount++;
    if (this.timedCount < SAMPLE_LATENCIES_MAX) this.latencies[this.timedCount++] = elapsedMs;
  }

  /** The requests answered since the previous call (or construction), and starts anew. */
  takeSample(): RequestWindowSample {
    const now = this.now();
    const seconds = Math.max(0.001, (now - this.windowStartedAt) / 1000);
    const timed = this.latencies.subarray(0, this.timedCount).sort();
    const pick = (q: number): number =>
      round(timed[Math.min(timed.length - 1, Math.floor(q * timed.length))] ?? 0);
    const sample: RequestWindowSample = {
      requestsPerSecond: round(this.requestCount / seconds),
      errorsPerSecond: round(this.errorCount / seconds),
      latencyMs:
        timed.length === 0
          ? null
          : { p50: pick(0.5), p99: pick(0.99), max: round(timed[timed.length - 1] ?? 0) },
    };
    this.windowStartedAt = now;
    this.timedCount = 0;
    this.requestCount = 0;
    this.errorCount = 0;
    return sample;
  }
}

/** Two decimals are plenty for a chart and keep the events small. */
function round(value: number): number {
  return Math.round(value * 100) / 100;
}
