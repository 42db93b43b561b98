/**
 * What every route needs, built once by `createHttpServer` and shared by all requests: the
 * node, the limits requests are checked against, the request deadline and the metrics. Routes read it and never change it.
 */

import type { KvLimits } from "../kv/index.js";
import type { HttpMetrics } from "./http-metrics.js";
import type { KvNodeApi } from "./node-api.js";

export interface HttpContext {
  readonly api: KvNodeApi;
  readonly limits: KvLimits;
  /** Longest a request may wait for the node (and the master) before 503, in milliseconds. */
  readonly requestTimeoutMs: number;
  readonly metrics: HttpMetrics;
  /**
   * Where this server listens (the host it was given, which may be a wildcard, and the
   * port it got) and its scheme, or null before `listen` (and under `inject`).
   */
  readonly listening: () => {
    readonly scheme: string;
    readonly host: string;
    readonly port: number;
  } | null;
}
