/**
 * The health routes for a program that embeds a node in its own HTTP server: a request
 * handler that answers `GET`/`HEAD` `/health`, `/health/master` and `/health/backup` as a
 * `baton start` node does (src/shared/health.ts) and leaves every other request alone.
 *
 * It is written against the few members of a request and a response that Node's `http`,
 * Express and anything built on them share, so the runtime imports no HTTP library.
 * Frameworks with their own reply objects (fastify, Koa, Hono) call `node.health(check)`
 * and send its `status` and `body` themselves.
 */

import { type HealthAnswer, type HealthCheck, healthCheckOf } from "../shared/health.js";

/** What the handler reads of a request (`http.IncomingMessage` has it). */
export interface HealthRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
}

/** What the handler uses of a response (`http.ServerResponse` has it). */
export interface HealthResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

/** A node that can answer health checks (`BatonNode`). */
export interface HealthSource {
  health(check: HealthCheck): HealthAnswer;
}

/**
 * Returns a handler that answers the health routes and returns true, or returns false
 * without touching the response for any other request (so the caller's own routing goes
 * on). A check answers 200 or 503 with a JSON body; `HEAD` gets the status alone.
 *
 *   const health = healthHandler(node);
 *   http.createServer((req, res) => health(req, res) || app(req, res));
 */
export function healthHandler(
  node: HealthSource,
): (request: HealthRequest, response: HealthResponse) => boolean {
  return (request, response) => {
    const method = request.method ?? "GET";
    const check = healthCheckOf(request.url ?? "");
    if (check === null || (method !== "GET" && method !== "HEAD")) return false;
    const answer = node.health(check);
    const body = JSON.stringify(answer.body);
    response.statusCode = answer.status;
    response.setHeader("content-type", "application/json; charset=utf-8");
    response.setHeader("cache-control", "no-store");
    response.end(method === "HEAD" ? undefined : body);
    return true;
  };
}
