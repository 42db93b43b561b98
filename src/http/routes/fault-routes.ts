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
 * they answer 403 ERR_FAULTS_DISABLED and do nothing. When on, four guards stand in front
 * of every POST, each checked before the injector is called:
 *
 * 1. **Loopback callers only.** The connection must come from 127.0.0.0/8 or ::1: a fault
 *    request from another machine is refused (403 ERR_FAULTS_LOOPBACK_ONLY), whatever
 *    address the node listens on.
 * 2. **The Host allow-list** defeats DNS rebinding (a hostile page whose name is made to
 *    resolve to this node): the request must name this node as 127.0.0.1, localhost,
 *    [::1], the address it listens on, or a member's advertised host.
 * 3. **Origin**, when present, must be exactly one of this cluster's dashboards (this node
 *    under an allowed host, or a member's advertised origin). `Origin` equal to "http://"
 *    + Host proves nothing, since a rebinding page controls both.
 * 4. **A per-run token** in the header `X-Baton-Fault`, drawn when the server is created
 *    (128 random bits) and compared in constant time. `GET /v1/faults` hands it only to a
 *    caller that passes guards 1 to 3 (the dashboards, curl on the node's machine), and
 *    then allows only that caller's origin to read the answer: a cross-site page cannot
 *    read it, and a custom header makes its POST need a CORS preflight, which guards 2 and
 *    3 refuse. A token from an earlier run of the node is refused.
 */

import { randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hostAllowed, originAllowed } from "../browser-guard.js";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { READ_PREFLIGHT, registerResource } from "./resource.js";

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

/** A fresh fault token: 128 random bits as 32 hex digits. */
export function newFaultToken(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Registers the fault routes; `faults` null means the node refuses every fault. `token` is
 * the value `X-Baton-Fault` must carry (a new one when absent).
 */
export function registerFaultRoutes(
  app: FastifyInstance,
  context: HttpContext,
  faults: FaultInjector | null,
  token: string = newFaultToken(),
): void {
  const { metrics } = context;
  registerResource(app, metrics, "/v1/faults", [
    {
      method: "GET",
      handler: (request, reply) => {
        const state = { enabled: faults !== null, partitioned: faults?.partitioned() ?? false };
        if (faults === null || guardRefusal(request, context) !== null) {
          // Anyone may see whether faults are on; only a trusted caller gets the token.
          return reply.header("access-control-allow-origin", "*").send(state);
        }
        allowOrigin(request, reply);
        return reply.header("cache-control", "no-store").send({ ...state, token });
      },
    },
    READ_PREFLIGHT,
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
          const refused = refusal(request, context, faults, token);
          if (refused !== null) {
            // A page the guards let in (a dashboard of this cluster) may read why: a stale
            // fault token, faults off. Without it the browser hid the node's reason.
            if (guardRefusal(request, context) === null) allowOrigin(request, reply);
            return sendErrorAnswer(reply, refused);
          }
          allowOrigin(request, reply);
          return action(request, reply);
        },
      },
      { method: "OPTIONS", handler: (request, reply) => preflight(request, reply, context) },
    ]);
  }
}

/** Why a fault POST is refused, or null when it may go ahead. */
function refusal(
  request: FastifyRequest,
  context: HttpContext,
  faults: FaultInjector | null,
  token: string,
) {
  if (faults === null) {
    return errorAnswer("ERR_FAULTS_DISABLED", "fault injection is off on this node", {
      id: context.api.id,
    });
  }
  const refused = guardRefusal(request, context);
  if (refused !== null) return refused;
  if (!tokenMatches(request.headers[FAULT_HEADER], token)) {
    return errorAnswer(
      "ERR_INVALID_INPUT",
      "a fault request must carry the header X-Baton-Fault: <this run's fault token>, which GET /v1/faults gives on the node's own machine",
      { field: FAULT_HEADER },
    );
  }
  return null;
}

/** Guards 1 to 3 (loopback, Host, Origin): the refusal, or null when they all pass. */
function guardRefusal(request: FastifyRequest, context: HttpContext) {
  if (!callerIsLoopback(request)) {
    return errorAnswer(
      "ERR_FAULTS_LOOPBACK_ONLY",
      `fault requests are accepted only from this node's own machine, not from ${request.socket.remoteAddress ?? "an unknown address"}`,
    );
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
  return null;
}

/** Whether the connection comes from a loopback address (127.0.0.0/8 or ::1). */
function callerIsLoopback(request: FastifyRequest): boolean {
  const address = request.socket.remoteAddress;
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice("::ffff:".length) : address;
  return address === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** Compares the header with the token in constant time (one header, the token's length). */
function tokenMatches(header: string | string[] | undefined, token: string): boolean {
  if (typeof header !== "string") return false;
  const given = Buffer.from(header, "utf8");
  const expected = Buffer.from(token, "utf8");
  return given.byteLength === expected.byteLength && timingSafeEqual(given, expected);
}

function allowOrigin(request: FastifyRequest, reply: FastifyReply): void {
  const origin = request.headers.origin;
  if (origin !== undefined)
    reply.header("access-control-allow-origin", origin).header("vary", "Origin");
}

function preflight(request: FastifyRequest, reply: FastifyReply, context: HttpContext) {
  const refusal = guardRefusal(request, context);
  if (refusal !== null) {
    // The refusal as the request itself would get it (any status but 2xx fails a
    // preflight), so its code keeps the status the API's error table gives it.
    return reply.code(refusal.status).type("application/json; charset=utf-8").send(refusal.body);
  }
  allowOrigin(request, reply);
  return reply
    .code(204)
    .header("access-control-allow-methods", "POST")
    .header("access-control-allow-headers", `${FAULT_HEADER}, authorization`)
    .header("access-control-max-age", "600")
    .send();
}

function pauseMs(request: FastifyRequest): number | null {
  const raw = (request.query as Record<string, string | undefined>).ms;
  if (raw === undefined) return PAUSE_MS_DEFAULT;
  // Digits only: Number() took "1e3" and "0x1f4" too.
  if (!/^[0-9]{1,9}$/.test(raw)) return null;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < PAUSE_MS_MIN || ms > PAUSE_MS_MAX) return null;
  return ms;
}

/** Runs `action` once the answer has left, so that the caller hears back before the fault. */
function afterAnswer(reply: FastifyReply, action: () => void): void {
  reply.raw.once("finish", () => setTimeout(action, 20));
}
