/**
 * The routes that change who is master or who the members are: `GET /v1/members`,
 * `POST /v1/members` (add a learner), `POST /v1/members/{id}/promote`,
 * `DELETE /v1/members/{id}`, `GET /v1/members/{id}/join` (what `--join` learns) and
 * `POST /v1/switchover`. A switchover asked of any node reaches the master over the peer
 * link (the node does that); a membership change is made by the master, and a backup
 * answers 503 ERR_NOT_MASTER naming it. This file only reads requests and answers.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  InvalidInputError,
  NoMasterError,
  NotMasterError,
  TimeoutError,
  TooLargeError,
} from "../../shared/errors.js";
import { parseAddress } from "../../transport/address.js";
import { isWebHost } from "../browser-guard.js";
import type { HttpContext } from "../http-context.js";
import type { MemberChangeRequest } from "../node-api.js";
import { withDeadline } from "../request-deadline.js";
import { registerResource } from "./resource.js";

/** Most bytes a switchover request body may have: `{"to":4294967295}` and spaces. */
const SWITCHOVER_BODY_BYTES_MAX = 256;
/** Most bytes an add request body may have. */
const ADD_BODY_BYTES_MAX = 1024;

/** Registers `/v1/members` and `/v1/switchover` on `app`. */
export function registerMemberRoutes(app: FastifyInstance, context: HttpContext): void {
  registerResource(app, context.metrics, "/v1/members", [
    { method: "GET", handler: (_request, reply) => listMembers(context, reply) },
    {
      method: "POST",
      bodyLimit: ADD_BODY_BYTES_MAX,
      handler: (request, reply) => changeMembers(context, reply, readAddBody(request.body)),
    },
  ]);
  registerResource(app, context.metrics, "/v1/members/:id", [
    {
      method: "DELETE",
      handler: (request, reply) =>
        changeMembers(context, reply, { type: "remove", id: readMemberId(request) }),
    },
  ]);
  registerResource(app, context.metrics, "/v1/members/:id/promote", [
    {
      method: "POST",
      handler: (request, reply) =>
        changeMembers(context, reply, { type: "promote", id: readMemberId(request) }),
    },
  ]);
  registerResource(app, context.metrics, "/v1/members/:id/join", [
    { method: "GET", handler: (request, reply) => joinInfo(context, request, reply) },
  ]);
  registerResource(app, context.metrics, "/v1/switchover", [
    {
      method: "POST",
      bodyLimit: SWITCHOVER_BODY_BYTES_MAX,
      handler: (request, reply) => switchover(context, request, reply),
    },
  ]);
}

/**
 * `GET /v1/members`: `{"members":[{"id","voter","peerAddress","httpUrl"}…]}`, as this node
 * knows them (the configuration in effect: a learner has `voter` false).
 */
function listMembers(context: HttpContext, reply: FastifyReply): FastifyReply {
  const members = context.api.status().members.map((m) => ({
    id: m.id,
    voter: m.voter ?? true,
    peerAddress: m.address,
    httpUrl: m.httpUrl,
  }));
  return reply.send({ members });
}

/**
 * A membership change: 200 `{"members":[…]}` (as GET lists them) once it is committed.
 * 400 ERR_INVALID_INPUT for bad input, an id or address that exists, an unknown member;
 * 409 ERR_CONFLICT for a change or switchover still in flight after an election timeout,
 * a learner that has not caught up, a removal that leaves no quorum or removes the master;
 * 503 ERR_NOT_MASTER on a backup.
 */
async function changeMembers(
  context: HttpContext,
  reply: FastifyReply,
  change: MemberChangeRequest,
): Promise<FastifyReply> {
  const api = context.api;
  if (api.changeMembers === undefined) throw new NotMasterError(null);
  // Not committed within the request's deadline: ERR_NO_MASTER, as the node's own wait
  // ends (docs/api.md: read the members before retrying). ERR_TIMEOUT's advice (retry
  // with the same Idempotency-Key) does not apply: a membership change takes no key.
  const outcome = await withDeadline(api.changeMembers(change), context.requestTimeoutMs).catch(
    (error: unknown) => {
      if (!(error instanceof TimeoutError)) throw error;
      throw new NoMasterError(
        undefined,
        `the change was not committed within ${context.requestTimeoutMs} ms (no master, or no majority reachable): read GET /v1/members to see whether it took effect before retrying`,
      );
    },
  );
  const known = new Map(context.api.status().members.map((m) => [m.id, m]));
  return reply.send({
    members: outcome.members.map((m) => ({
      id: m.id,
      voter: m.voter,
      peerAddress: m.peerAddress !== "" ? m.peerAddress : (known.get(m.id)?.address ?? ""),
      httpUrl: m.httpUrl !== "" ? m.httpUrl : (known.get(m.id)?.httpUrl ?? null),
    })),
  });
}

/**
 * `GET /v1/members/{id}/join`: `{"id","clusterId","clusterName","incarnation","members":[{"id",
 * "voter","incarnation","peerAddress","httpUrl"}…]}` for a member added as a learner, which
 * `baton start --join` reads; 409 for a voter (replace it first), 400 for a non-member.
 * Needs the admin role: the answer lets its holder speak as that member.
 */
function joinInfo(
  context: HttpContext,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const id = readMemberId(request);
  if (context.api.joinInfo === undefined) throw new NotMasterError(null);
  const info = context.api.joinInfo(id);
  return reply.send({
    id,
    clusterId: info.clusterId,
    ...(info.clusterName === undefined ? {} : { clusterName: info.clusterName }),
    incarnation: info.incarnation,
    members: info.members,
  });
}

function readMemberId(request: FastifyRequest): number {
  const text = (request.params as { id?: string }).id ?? "";
  const id = /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(id) || id > 0xffff_ffff) {
    throw new InvalidInputError("id", "expected a member id (a positive integer) in the path");
  }
  return id;
}

/** The body of `POST /v1/members`: `{"id","peerAddress","httpUrl"}`, exactly those fields. */
export function readAddBody(body: unknown): MemberChangeRequest {
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(0);
  const shape =
    '{"id": <new member id>, "peerAddress": "<host>:<port>", "httpUrl": "http://<host>:<port>"}';
  if (bytes.length === 0) throw new InvalidInputError("body", `expected JSON: ${shape}`);
  if (bytes.length > ADD_BODY_BYTES_MAX) {
    throw new TooLargeError("body", ADD_BODY_BYTES_MAX, bytes.length);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new InvalidInputError("body", `expected JSON: ${shape}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new InvalidInputError("body", `expected a JSON object: ${shape}`);
  }
  const record = parsed as Record<string, unknown>;
  const unknown = Object.keys(record).find((f) => !["id", "peerAddress", "httpUrl"].includes(f));
  if (unknown !== undefined)
    throw new InvalidInputError(unknown, `unknown field; the body is ${shape}`);
  const { id, peerAddress, httpUrl } = record;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 1 || id > 0xffff_ffff) {
    throw new InvalidInputError("id", "expected a new member id (a positive integer)");
  }
  // What every node's transport will parse to dial it: a bad one would stop them.
  const parsedAddress = typeof peerAddress === "string" ? parseAddress(peerAddress) : null;
  if (typeof peerAddress !== "string" || peerAddress.length > 256 || parsedAddress?.ok !== true) {
    throw new InvalidInputError(
      "peerAddress",
      `expected "<host>:<port>" ("[<IPv6>]:<port>"), the new node's --listen${parsedAddress?.ok === false ? `: ${parsedAddress.reason}` : ""}`,
    );
  }
  // Port 0 is for listening ("any free port"): no one can dial it.
  if (parsedAddress.address.port === 0) {
    throw new InvalidInputError(
      "peerAddress",
      `port 0 cannot be dialled: give the port the new node listens on (its --listen)`,
    );
  }
  if (typeof httpUrl !== "string" || !isBaseUrl(httpUrl)) {
    throw new InvalidInputError(
      "httpUrl",
      'expected "http://<host>:<port>" or "https://<host>:<port>", the new node\'s --http',
    );
  }
  return { type: "add", id, peerAddress, httpUrl };
}

/**
 * Whether `text` is the base URL of a node's HTTP API: http or https, a host, a port from 1
 * to 65535 (or none), and nothing else (no user, path, query or fragment). It goes into the
 * replicated configuration, and every member parses it to allow its dashboard's origin.
 */
function isBaseUrl(text: string): boolean {
  // Visible ASCII only, no escape (a URL decodes `%41` to a host that is not the text's),
  // and no path, query or fragment (a trailing slash is no path).
  if (!/^[\x21-\x7e]{1,248}$/.test(text) || !/^https?:\/\/[^/?#%\\]+\/?$/.test(text)) {
    return false;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // A port past 65535, a bad percent-escape or IPv6 literal, a forbidden host character.
    return false;
  }
  return (
    // A name, an IPv4 address or a bracketed IPv6 one: WHATWG URLs take `;`, `'`, `*` and
    // more in a host, and the origin goes into every member's Content-Security-Policy.
    isWebHost(url.hostname) &&
    url.port !== "0" &&
    url.username === "" &&
    url.password === "" &&
    url.pathname === "/"
  );
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
    throw new TooLargeError("body", SWITCHOVER_BODY_BYTES_MAX, bytes.length);
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
