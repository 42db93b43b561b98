/**
 * The routes that describe the node rather than the data: `GET /v1/status` (the node's view
 * of the cluster, read by the dashboard, the client library and the CLI) and the health
 * checks that load balancers such as HAProxy poll. These answer from this node alone and
 * are never forwarded: their point is what this node thinks.
 */

import type { FastifyInstance, FastifyReply } from "fastify";
import type { Role } from "../../protocol/status.js";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { registerResource } from "./resource.js";

/** Registers `/v1/status`, `/health`, `/health/master` and `/health/backup` on `app`. */
export function registerStatusRoutes(app: FastifyInstance, context: HttpContext): void {
  const { api, metrics } = context;
  registerResource(app, metrics, "/v1/status", [
    // NodeStatus already has the contract's fields and names; it is sent as it is, so any
    // field the node adds later (lastIndex today) reaches clients without a change here.
    // `?digest=true` adds stateDigest, which costs a pass over the whole state.
    {
      method: "GET",
      handler: (request, reply) => reply.send(api.status({ digest: wantsDigest(request.query) })),
    },
  ]);
  registerResource(app, metrics, "/health", [
    {
      method: "GET",
      handler: (_request, reply) => reply.send({ status: "ok", id: api.id, role: roleOf(context) }),
    },
  ]);
  for (const role of ["master", "backup"] as const) {
    registerResource(app, metrics, `/health/${role}`, [
      { method: "GET", handler: (_request, reply) => roleCheck(context, role, reply) },
    ]);
  }
}

/**
 * 200 `{"status":"ok","id","role"}` when this node is in `role`, else 503 ERR_WRONG_ROLE
 * with the role it is in. A candidate passes neither check.
 */
function roleCheck(context: HttpContext, role: Role, reply: FastifyReply): FastifyReply {
  const current = roleOf(context);
  if (current === role && role === "backup" && isLearner(context)) {
    // A learner is catching up and cannot take over: no load balancer should count on it.
    const answer = errorAnswer("ERR_WRONG_ROLE", "this node is a learner, not a voting backup", {
      id: context.api.id,
      role: current,
    });
    return sendErrorAnswer(reply, answer);
  }
  if (current === role) return reply.send({ status: "ok", id: context.api.id, role });
  const answer = errorAnswer("ERR_WRONG_ROLE", `this node is ${current}, not ${role}`, {
    id: context.api.id,
    role: current,
  });
  return sendErrorAnswer(reply, answer);
}

/** Whether this node's configuration lists it as a learner (not a voter). */
function isLearner(context: HttpContext): boolean {
  try {
    const status = context.api.status();
    return status.members.find((m) => m.id === context.api.id)?.voter === false;
  } catch {
    return false;
  }
}

function wantsDigest(query: unknown): boolean {
  return (query as { digest?: unknown } | null)?.digest === "true";
}

/** This node's role, or "unknown" if the node cannot say (the process still serves). */
function roleOf(context: HttpContext): Role | "unknown" {
  try {
    return context.api.status().role;
  } catch {
    return "unknown";
  }
}
