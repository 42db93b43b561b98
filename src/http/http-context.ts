/**
 * What every route needs, built once by `createHttpServer` and shared by all requests: the
 * node, the limits requests are checked against, the request deadline and the metrics. Routes read it and never change it.
 */

import type { KvLimits } from "../kv/index.js";
import type { HttpMetrics } from "./http-metrics.js";
import type { KvNodeApi } from "./node-api.js";
import type { StreamBuffers } from "./routes/event-stream.js";

export interface HttpContext {
  readonly api: KvNodeApi;
  readonly limits: KvLimits;
  /** Longest a request may wait for the node (and the master) before 503, in milliseconds. */
  readonly requestTimeoutMs: number;
  readonly metrics: HttpMetrics;
  /** The bytes the server's event streams and watches hold in their sockets, together. */
  readonly streams: StreamBuffers;
  /**
   * Most watch streams open at once: room is left for the event streams and for ordinary
   * requests under the connection cap (a connection carries one stream).
   */
  readonly watchesMax: number;
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
