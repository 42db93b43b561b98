/**
 * Fault injection over HTTP, for demos and teaching: kill this node, pause it, cut it off
 * from its peers, and heal it, so that a newcomer can watch a fail-over from the dashboard.
 *
 *   GET  /v1/faults                  {"enabled", "partitioned"} (always served)
 *   POST /v1/faults/kill             202, then the process dies with SIGKILL
 *   POST /v1/faults/pause?ms=5000    202, then the whole process freezes for ms
 *   POST /v1/faults/partition        200, peer traffic is dropped both ways until heal
 *   POST /v1/faults/heal             200, peer traffic flows again
 *
 * The POSTs are served only on a node started with `--allow-fault-injection`; elsewhere
 * they answer 403 ERR_FAULTS_DISABLED and do nothing. Since a web page on any site can
 * send a simple cross-site POST to a local port, every POST must carry the header
 * `X-Baton-Fault` (which a cross-site page can only send after a CORS preflight), and
 * preflights and requests are allowed only from this cluster's own dashboards: this node
 * and the members' advertised HTTP URLs.
 *
 * DNS rebinding (a hostile page whose name is made to resolve to this node) is defeated by
 * the Host check: a fault request must name this node by an allowed host (127.0.0.1,
 * localhost, [::1], the address it listens on, or a member's advertised host), and its
 * Origin, when it has one, must be exactly one of the allowed origins. `Origin` equal to
 * "http://" + Host proves nothing, since the page controls both.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { registerResource } from "./resource.js";

/** What a node does when told to fail; src/server implements it. */
export interface FaultInjector {
  /** Ends the process at once with SIGKILL, as a crash would. */
  kill(): void;
  /** Freezes the whole process (timers, peers, HTTP) for `ms` milliseconds. */
  pause(ms: number): void;
  /** Drops every message to and from peers until `heal`. */
  partition(): void;
  heal(): void;
  partitioned(): boolean;
}

/** The request header every fault POST carries. */
export const FAULT_HEADER = "x-baton-fault";
export const PAUSE_MS_DEFAULT = 5000;
export const PAUSE_MS_MIN = 100;
export const PAUSE_MS_MAX = 60_000;

/** Registers the fault routes; `faults` null means the node refuses every fault. */
export function registerFaultRoutes(
  app: FastifyInstance,
  context: HttpContext,
  faults: FaultInjector | null,
): void {
  const { metrics } = context;
  registerResource(app, metrics, "/v1/faults", [
    {
      method: "GET",
      handler: (_request, reply) =>
        reply
          .header("access-control-allow-origin", "*")
          .send({ enabled: faults !== null, partitioned: faults?.partitioned() ?? false }),
    },
  ]);
  const actions: Record<string, (request: FastifyRequest, reply: FastifyReply) => unknown> = {
    kill: (_request, reply) => {
      afterAnswer(reply, () => faults?.kill());
      return reply.code(202).send({ fault: "kill", id: context.api.id });
    },
    pause: (request, reply) => {
      const ms = pauseMs(request);
      if (ms === null) {
        const answer = errorAnswer(
          "ERR_INVALID_INPUT",
          `ms must be an integer from ${PAUSE_MS_MIN} to ${PAUSE_MS_MAX}`,
          { field: "ms" },
        );
        return sendErrorAnswer(reply, answer);
      }
      afterAnswer(reply, () => faults?.pause(ms));
      return reply.code(202).send({ fault: "pause", id: context.api.id, ms });
    },
    partition: (_request, reply) => {
      faults?.partition();
      return reply.send({ fault: "partition", id: context.api.id, partitioned: true });
    },
    heal: (_request, reply) => {
      faults?.heal();
      return reply.send({ fault: "heal", id: context.api.id, partitioned: false });
    },
  };
  for (const [name, action] of Object.entries(actions)) {
    registerResource(app, metrics, `/v1/faults/${name}`, [
      {
        method: "POST",
        handler: (request, reply) => {
          const refused = refusal(request, context, faults);
          if (refused !== null) return sendErrorAnswer(reply, refused);
          allowOrigin(request, reply);
          return action(request, reply);
        },
      },
      { method: "OPTIONS", handler: (request, reply) => preflight(request, reply, context) },
    ]);
  }
}

/** Why a fault POST is refused, or null when it may go ahead. */
function refusal(request: FastifyRequest, context: HttpContext, faults: FaultInjector | null) {
  if (faults === null) {
    return errorAnswer("ERR_FAULTS_DISABLED", "fault injection is off on this node", {
      id: context.api.id,
    });
  }
  if (!hostAllowed(request, context)) {
    return errorAnswer(
      "ERR_INVALID_INPUT",
      "fault requests must name this node by 127.0.0.1, localhost or its configured or advertised address",
      { field: "Host" },
    );
  }
  if (!originAllowed(request, context)) {
    return errorAnswer(
      "ERR_INVALID_INPUT",
      "fault requests are accepted only from this cluster's own dashboards",
      { field: "Origin" },
    );
  }
  if (request.headers[FAULT_HEADER] === undefined) {
    return errorAnswer(
      "ERR_INVALID_INPUT",
      "a fault request must carry the header X-Baton-Fault: 1 (a guard against cross-site requests)",
      { field: FAULT_HEADER },
    );
  }
  return null;
}

/** The host names (without port) a fault request may use for this node. */
function allowedHostnames(context: HttpContext): Set<string> {
  const names = new Set(["127.0.0.1", "localhost", "[::1]"]);
  const listening = context.listening();
  if (listening !== null && listening.host !== "0.0.0.0" && listening.host !== "::") {
    names.add(listening.host.includes(":") ? `[${listening.host}]` : listening.host);
  }
  for (const origin of memberOrigins(context)) names.add(new URL(origin).hostname);
  return names;
}

/** The origins of the members' advertised HTTP URLs (this node's own among them). */
function memberOrigins(context: HttpContext): string[] {
  try {
    return context.api
      .status()
      .members.flatMap((m) => (m.httpUrl === null ? [] : [new URL(m.httpUrl).origin]));
  } catch {
    return [];
  }
}

/** Whether the Host header names this node by an allowed name (its port is not checked). */
function hostAllowed(request: FastifyRequest, context: HttpContext): boolean {
  const host = request.headers.host;
  if (host === undefined) return false;
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  return allowedHostnames(context).has(hostname);
}

/**
 * No Origin (curl, scripts), or exactly one of: this node's origin under an allowed host
 * and its own port, or a member's advertised origin.
 */
function originAllowed(request: FastifyRequest, context: HttpContext): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return true;
  if (memberOrigins(context).includes(origin)) return true;
  const listening = context.listening();
  if (listening === null) return false;
  for (const name of allowedHostnames(context)) {
    if (origin === `${listening.scheme}://${name}:${listening.port}`) return true;
  }
  return false;
}

function allowOrigin(request: FastifyRequest, reply: FastifyReply): void {
  const origin = request.headers.origin;
  if (origin !== undefined)
    reply.header("access-control-allow-origin", origin).header("vary", "Origin");
}

function preflight(request: FastifyRequest, reply: FastifyReply, context: HttpContext) {
  if (!hostAllowed(request, context) || !originAllowed(request, context)) {
    return reply.code(403).send();
  }
  allowOrigin(request, reply);
  return reply
    .code(204)
    .header("access-control-allow-methods", "POST")
    .header("access-control-allow-headers", FAULT_HEADER)
    .header("access-control-max-age", "600")
    .send();
}

function pauseMs(request: FastifyRequest): number | null {
  const raw = (request.query as Record<string, string | undefined>).ms;
  if (raw === undefined) return PAUSE_MS_DEFAULT;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < PAUSE_MS_MIN || ms > PAUSE_MS_MAX) return null;
  return ms;
}

/** Runs `action` once the answer has left, so that the caller hears back before the fault. */
function afterAnswer(reply: FastifyReply, action: () => void): void {
  reply.raw.once("finish", () => setTimeout(action, 20));
}
