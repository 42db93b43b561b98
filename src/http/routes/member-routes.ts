/**
 * The routes that change who is master or list who the members are: `GET /v1/members`
 * and `POST /v1/switchover`. A switchover asked of any node reaches the master over the
 * peer link (the node does that); this file only reads the request and answers.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { InvalidInputError } from "../../shared/errors.js";
import type { HttpContext } from "../http-context.js";
import { withDeadline } from "../request-deadline.js";
import { registerResource } from "./resource.js";

/** Most bytes a switchover request body may have: `{"to":4294967295}` and spaces. */
const SWITCHOVER_BODY_BYTES_MAX = 256;

/** Registers `/v1/members` and `/v1/switchover` on `app`. */
export function registerMemberRoutes(app: FastifyInstance, context: HttpContext): void {
  registerResource(app, context.metrics, "/v1/members", [
    { method: "GET", handler: (_request, reply) => listMembers(context, reply) },
  ]);
  registerResource(app, context.metrics, "/v1/switchover", [
    { method: "POST", handler: (request, reply) => switchover(context, request, reply) },
  ]);
}

/**
 * `GET /v1/members`: `{"members":[{"id","voter","peerAddress","httpUrl"}…]}`, as this node
 * knows them. Every member votes today; learners will not.
 */
function listMembers(context: HttpContext, reply: FastifyReply): FastifyReply {
  const members = context.api.status().members.map((m) => ({
    id: m.id,
    voter: true,
    peerAddress: m.address,
    httpUrl: m.httpUrl,
  }));
  return reply.send({ members });
}

/**
 * `POST /v1/switchover` with `{}` or `{"to": id}`: 200 `{"master","term"}` once the new
 * master serves. 400 ERR_INVALID_INPUT for a bad body or a non-member, 409 ERR_CONFLICT
 * for a target that cannot take over or a switchover already under way, 503
 * ERR_SWITCHOVER_FAILED when no new master took over in time.
 */
async function switchover(
  context: HttpContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const to = readSwitchoverTarget(request.body);
  const outcome = await withDeadline(context.api.switchover(to), context.requestTimeoutMs);
  return reply.send(outcome);
}

/** The `to` of a switchover request body, or null for "the best-placed backup". */
export function readSwitchoverTarget(body: unknown): number | null {
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(0);
  if (bytes.length === 0) return null;
  if (bytes.length > SWITCHOVER_BODY_BYTES_MAX) {
    throw new InvalidInputError("body", `at most ${SWITCHOVER_BODY_BYTES_MAX} bytes of JSON`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new InvalidInputError("body", 'expected JSON: {} or {"to": <member id>}');
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new InvalidInputError("body", 'expected a JSON object: {} or {"to": <member id>}');
  }
  const fields = Object.keys(parsed);
  const unknown = fields.find((field) => field !== "to");
  if (unknown !== undefined) {
    throw new InvalidInputError(unknown, 'unknown field; the body is {} or {"to": <member id>}');
  }
  const to = (parsed as { to?: unknown }).to;
  if (to === undefined || to === null) return null;
  if (typeof to !== "number" || !Number.isSafeInteger(to) || to < 1) {
    throw new InvalidInputError("to", "expected a member id (a positive integer)");
  }
  return to;
}
