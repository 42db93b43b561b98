/**
 * `GET /metrics`: every metric in the registry the server was given (the node's, the HTTP
 * layer's, the process's) in the Prometheus text format, with the registry's content type
 * (`text/plain; version=0.0.4; charset=utf-8` unless the registry is set to OpenMetrics).
 */

import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import type { HttpContext } from "../http-context.js";
import { registerResource } from "./resource.js";

/** Registers `/metrics` on `app`, serving `registry`. */
export function registerMetricsRoute(
  app: FastifyInstance,
  context: HttpContext,
  registry: Registry,
): void {
  registerResource(app, context.metrics, "/metrics", [
    {
      method: "GET",
      handler: async (_request, reply) => {
        const text = await registry.metrics();
        return reply.type(registry.contentType).send(text);
      },
    },
  ]);
}
