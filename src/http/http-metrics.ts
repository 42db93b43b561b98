/**
 * The HTTP layer's own Prometheus metrics: answers by route and status, and forwards to
 * the master by outcome. Counting must cost the request path next to nothing, so answers
 * are tallied in plain maps and handed to prom-client only when `/metrics` is scraped;
 * prom-client's labelled `inc` would build a label key string on every request.
 */

import { Counter, type Registry } from "prom-client";
import type { ForwardOutcome } from "./master-forwarder.js";

const RESPONSES = "baton_http_responses_total";
const FORWARDS = "baton_http_forwards_total";

/** The tally of one route: answers counted by status code. */
export type RouteTally = Map<number, number>;

export class HttpMetrics {
  private readonly routes = new Map<string, RouteTally>();
  private readonly forwards: Counter<"outcome">;

  /**
   * Registers the metrics on `registry`. A registry serves one HTTP server: metrics of the
   * same names that an earlier server registered there are replaced.
   */
  constructor(registry: Registry) {
    registry.removeSingleMetric(RESPONSES);
    registry.removeSingleMetric(FORWARDS);
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
          for (const [status, count] of tally) {
            this.inc({ method, route, status: String(status) }, count);
          }
        }
      },
    });
    this.forwards = new Counter({
      name: FORWARDS,
      help: "Requests this node could not serve as a backup, by how forwarding them ended.",
      labelNames: ["outcome"],
      registers: [registry],
    });
  }

  /** The tally for `method` on `route`; a route keeps it and counts with `count`. */
  tally(method: string, route: string): RouteTally {
    const key = `${method} ${route}`;
    let tally = this.routes.get(key);
    if (tally === undefined) {
      tally = new Map();
      this.routes.set(key, tally);
    }
    return tally;
  }

  /** Counts one answer with `status` in `tally`. */
  count(tally: RouteTally, status: number): void {
    tally.set(status, (tally.get(status) ?? 0) + 1);
  }

  /** Counts one forward that ended with `outcome`. */
  forwarded(outcome: ForwardOutcome): void {
    this.forwards.inc({ outcome });
  }
}
