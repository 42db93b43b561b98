/**
 * Registering one URL with its methods. Besides the methods it serves, a resource answers
 * every other method fastify knows with 405 and an `Allow` header (fastify alone would say
 * 404, which tells a client its URL is wrong when only its method is), and counts its
 * answers (and times the key-value ones) for the metrics.
 */

import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchema,
  HTTPMethods,
} from "fastify";
import { originAllowed } from "../browser-guard.js";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import type { HttpMetrics } from "../http-metrics.js";

export interface ResourceMethod {
  readonly method: "GET" | "PUT" | "DELETE" | "POST" | "OPTIONS";
  readonly schema?: FastifySchema;
  /**
   * Most bytes of body this method reads; a larger one is answered 413 ERR_TOO_LARGE with
   * `field: "body"` and the limit, before it is read whole.
   * @default the server's body limit, `valueBytesMax`
   */
  readonly bodyLimit?: number;
  readonly handler: (request: FastifyRequest, reply: FastifyReply) => unknown;
}

/**
 * The CORS preflight of a read that a page on another member's origin makes with headers
 * of its own: the dashboard reads every member's status, events and fault state with the
 * API token (`Authorization`) and resumes an event stream with `Last-Event-ID`. A bearer
 * token is not an ambient credential (a page must hold it to send it), so any origin may.
 */
export const READ_PREFLIGHT: ResourceMethod = {
  method: "OPTIONS",
  handler: (_request, reply) =>
    reply
      .code(204)
      .header("access-control-allow-origin", "*")
      .header("access-control-allow-methods", "GET, HEAD")
      .header("access-control-allow-headers", "authorization, last-event-id")
      .header("access-control-max-age", "600")
      .send(),
};

/**
 * The CORS preflight of a read of the keys (`/v1/kv`, `/v1/watch`) that a page on another
 * member's origin makes with the API token: allowed for the cluster's own origins alone
 * (see `originAllowed`), since the keys are what a foreign page must never read.
 */
export function memberReadPreflight(context: HttpContext): ResourceMethod {
  return {
    method: "OPTIONS",
    handler: (request, reply) => {
      const origin = request.headers.origin;
      if (origin === undefined || !originAllowed(request, context)) {
        const answer = errorAnswer(
          "ERR_FORBIDDEN",
          `the keys are read across origins only by this cluster's own dashboards, not by the page at ${origin ?? "(no Origin)"}`,
          { field: "Origin" },
        );
        return sendErrorAnswer(reply.header("vary", "Origin"), answer);
      }
      return reply
        .code(204)
        .header("access-control-allow-origin", origin)
        .header("vary", "Origin")
        .header("access-control-allow-methods", "GET, HEAD")
        .header("access-control-allow-headers", "authorization, last-event-id")
        .header("access-control-max-age", "600")
        .send();
    },
  };
}

/** When each request arrived (performance.now()), for the latency of the timed routes. */
const startedAt = new WeakMap<FastifyRequest, number>();

/**
 * Notes when every request arrives, ahead of every check: a request refused by the token
 * check or the browser guard is timed from its arrival like any other, not as taking no
 * time. Must be the first onRequest hook the server adds, before any route.
 */
export function recordArrivals(app: FastifyInstance): void {
  // fastify's own reply.elapsedTime needs response listeners that cost every request.
  app.addHook("onRequest", (request, _reply, done) => {
    startedAt.set(request, performance.now());
    done();
  });
}

/** The methods a 405 is answered for: every one fastify routes by default. */
const KNOWN_METHODS: readonly HTTPMethods[] = [
  "GET",
  "HEAD",
  "PUT",
  "DELETE",
  "POST",
  "PATCH",
  "OPTIONS",
];

/**
 * The route config of the routes that answer 405: any valid token may hear that a method
 * is not served (auth.ts), whatever role the method would need on another route.
 */
export const METHOD_NOT_ALLOWED = Object.freeze({ methodNotAllowed: true });

/** Whether a route's config marks it as one that only answers 405. */
export function answersMethodNotAllowed(config: unknown): boolean {
  return (config as { methodNotAllowed?: unknown } | undefined)?.methodNotAllowed === true;
}

/** Serves `methods` on `url` (HEAD with GET) and answers the other methods with 405. */
export function registerResource(
  app: FastifyInstance,
  metrics: HttpMetrics,
  url: string,
  methods: readonly ResourceMethod[],
): void {
  const allowed: HTTPMethods[] = [];
  for (const { method, schema, bodyLimit, handler } of methods) {
    allowed.push(method);
    if (method === "GET") allowed.push("HEAD");
    const tally = metrics.tally(method, url);
    // fastify answers HEAD with the GET route (and its hooks): counted as HEAD all the same.
    const headTally = method === "GET" ? metrics.tally("HEAD", url) : tally;
    const timed = tally.duration !== null;
    app.route({
      method,
      url,
      ...(schema === undefined ? {} : { schema }),
      ...(bodyLimit === undefined ? {} : { bodyLimit }),
      // Counting in onSend rather than onResponse: an onResponse hook makes fastify add
      // listeners to every response, and onSend costs one call.
      onSend: (request, reply, payload, done) => {
        const started = timed ? startedAt.get(request) : undefined;
        const elapsedMs = started === undefined ? 0 : performance.now() - started;
        metrics.answered(
          request.method === "HEAD" ? headTally : tally,
          reply.statusCode,
          elapsedMs,
        );
        done(null, payload);
      },
      handler,
    });
  }
  const others = KNOWN_METHODS.filter((method) => !allowed.includes(method));
  const allow = allowed.join(", ");
  const answer = errorAnswer(
    "ERR_METHOD_NOT_ALLOWED",
    `${url.replace("*", "{key}")} serves ${allow}`,
  );
  const tally = metrics.tally("OTHER", url);
  app.route({
    method: others,
    url,
    config: METHOD_NOT_ALLOWED,
    // Answered before the body is read, so a large POST gets 405 rather than 413.
    // Replying from a callback-style hook means not calling its callback.
    onRequest: (_request, reply) => {
      metrics.count(tally, 405);
      reply.header("allow", allow);
      sendErrorAnswer(reply, answer);
    },
    handler: (_request, reply) => reply,
  });
}
