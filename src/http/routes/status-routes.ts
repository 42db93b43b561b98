/**
 * The routes that describe the node rather than the data: `GET /v1/status` (the node's view
 * of the cluster, read by the dashboard, the client library and the CLI) and the health
 * checks that load balancers such as HAProxy poll. These answer from this node alone and
 * are never forwarded: their point is what this node thinks.
 */

import type { FastifyInstance, FastifyReply } from "fastify";
import type { NodeStatus } from "../../protocol/status.js";
import { type HealthCheck, healthAnswer } from "../../shared/health.js";
import { errorStatus, retryAfterSeconds } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { READ_PREFLIGHT, registerResource } from "./resource.js";

/** The wait a stopping node asks for, as every ERR_SHUTTING_DOWN answer does (1 s). */
const RETRY_AFTER_MS = 1000;

/** Registers `/v1/status`, `/health`, `/health/master` and `/health/backup` on `app`. */
export function registerStatusRoutes(app: FastifyInstance, context: HttpContext): void {
  const { api, metrics } = context;
  registerResource(app, metrics, "/v1/status", [
    // NodeStatus already has the contract's fields and names; it is sent as it is, so any
    // field the node adds later (lastIndex today) reaches clients without a change here.
    // `?digest=true` adds stateDigest (O(1): the store keeps it as it applies).
    {
      method: "GET",
      handler: (request, reply) => reply.send(api.status({ digest: wantsDigest(request.query) })),
    },
    READ_PREFLIGHT,
  ]);
  // The answers are `src/shared/health.ts`'s, which an embedded node gives too.
  const checks = [
    ["/health", "live"],
    ["/health/master", "master"],
    ["/health/backup", "backup"],
  ] as const;
  for (const [path, check] of checks) {
    registerResource(app, metrics, path, [
      { method: "GET", handler: (_request, reply) => answerHealth(context, check, reply) },
    ]);
  }
}

/**
 * 200 `{"status":"ok","id","role"}`, or for a role check on a node in another role (or a
 * learner, for `backup`) 503 ERR_WRONG_ROLE with the role it is in; 503 ERR_SHUTTING_DOWN
 * for every check once the node has stopped (a fatal error) or is stopping.
 */
function answerHealth(context: HttpContext, check: HealthCheck, reply: FastifyReply) {
  const stopped = context.api.stoppedReason?.() ?? null;
  const answer = healthAnswer(context.api.id, statusOf(context), check, stopped);
  // A stopping node is answered as every other ERR_SHUTTING_DOWN is, with Retry-After;
  // ERR_WRONG_ROLE carries none (the error table says which codes do).
  if ("code" in answer.body && errorStatus(answer.body.code).retry) {
    reply.header("retry-after", retryAfterSeconds(RETRY_AFTER_MS));
  }
  return reply.code(answer.status).send(answer.body);
}

/** This node's status, or null if the node cannot say (the process still serves). */
function statusOf(context: HttpContext): NodeStatus | null {
  try {
    return context.api.status();
  } catch {
    return null;
  }
}

function wantsDigest(query: unknown): boolean {
  return (query as { digest?: unknown } | null)?.digest === "true";
}
