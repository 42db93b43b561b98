/**
 * Who may call which route, when the node has a tokens file: every request must carry
 * `Authorization: Bearer <token>` with a token whose role allows it, except the health
 * checks (load balancers probe them) and the dashboard's static files (they hold no data).
 *
 *   read       GET and HEAD: /v1/kv, /v1/status, /v1/members, /v1/events, /metrics, …
 *   readwrite  PUT and DELETE on /v1/kv, POST /v1/txn, POST and DELETE on /v1/leases
 *   admin      POST /v1/switchover, POST /v1/faults/*, membership changes, any other write,
 *              and GET /v1/members/{id}/join (its answer hands out a member incarnation)
 *
 * A missing or unknown token is 401 ERR_UNAUTHENTICATED with `WWW-Authenticate: Bearer`;
 * a token whose role is too low is 403 ERR_FORBIDDEN. Both are answered before the body
 * is read. Without a tokens file none of this runs (a loopback demo needs no tokens).
 */

import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { ForbiddenError, UnauthenticatedError } from "../shared/errors.js";
import { describeError, sendErrorAnswer } from "./error-status.js";
import { answersMethodNotAllowed } from "./routes/resource.js";
import { roleAllows, type TokenRole, type TokenStore } from "./tokens.js";

/** Routes anyone may call: health checks, and the dashboard's page and files. */
function isOpen(url: string): boolean {
  return (
    url === "/health" || url.startsWith("/health/") || url === "/" || url.startsWith("/dashboard/")
  );
}

/**
 * The role a request needs, from the route's method and URL pattern; null when the route
 * is open. Reads need `read`; key-value writes `readwrite`; every other write `admin`, so
 * that a route added later is closed to lesser tokens until it is given a role here.
 */
export function requiredRole(method: string, url: string): TokenRole | null {
  if (isOpen(url)) return null;
  // Whoever holds the answer can speak as that member: it is an administrator's act.
  if (url === "/v1/members/:id/join") return "admin";
  if (method === "GET" || method === "HEAD") return "read";
  // A CORS preflight carries no credentials; the request it announces is checked.
  if (method === "OPTIONS") return null;
  if (url.startsWith("/v1/kv") && (method === "PUT" || method === "DELETE")) return "readwrite";
  if (url === "/v1/txn" && method === "POST") return "readwrite";
  if (url.startsWith("/v1/leases") && (method === "POST" || method === "DELETE")) {
    return "readwrite";
  }
  return "admin";
}

const CHALLENGE = 'Bearer realm="baton"';
const INVALID_CHALLENGE = 'Bearer realm="baton", error="invalid_token"';

/**
 * Checks the bearer token of every request to a route registered after this call (so it
 * must run before the routes are added). `tokens` is read at each request, so replacing
 * its contents takes effect at once.
 */
export function requireTokens(app: FastifyInstance, tokens: TokenStore): void {
  app.addHook("onRoute", (route) => {
    // A CORS preflight carries no credentials, so OPTIONS is let through at each request;
    // it must not open the other methods of a route that also answers it (the 405 answer
    // of a resource lists every method it does not serve, OPTIONS included).
    const methods = [route.method].flat().filter((method) => method !== "OPTIONS");
    const roles = methods.map((method) => requiredRole(method, route.url));
    if (roles.length === 0 || roles.includes(null)) return;
    // The 405 answer tells only which methods a route serves: any valid token may hear it
    // (a readwrite token's PATCH on a key is 405, not 403 for a role PATCH would need).
    const needed = answersMethodNotAllowed(route.config)
      ? "read"
      : roles.includes("read")
        ? "read"
        : roles.includes("readwrite")
          ? "readwrite"
          : "admin";
    const check: onRequestHookHandler = (request, reply, done) => {
      if (request.method === "OPTIONS" || authorize(request, reply, tokens, needed)) done();
    };
    const existing = route.onRequest;
    route.onRequest = existing === undefined ? [check] : [check, ...[existing].flat()];
  });
}

/**
 * True when the request may go on; otherwise answers it 401 or 403 and returns false. The
 * refusal may be read by a page of any origin (the dashboard reads every member), so that
 * it can ask its user for a token rather than see a network error; it holds no data.
 */
function authorize(
  request: FastifyRequest,
  reply: FastifyReply,
  tokens: TokenStore,
  needed: TokenRole,
): boolean {
  const token = bearerToken(request.headers.authorization);
  if (token === null) {
    refuse(reply, new UnauthenticatedError("this node requires a token"), CHALLENGE);
    return false;
  }
  const record = tokens.find(token);
  if (record === null) {
    const error = new UnauthenticatedError("the token is not one this node accepts");
    refuse(reply, error, INVALID_CHALLENGE);
    return false;
  }
  if (!roleAllows(record.role, needed)) {
    const path = (request.routeOptions.url ?? request.url).replace("*", "{key}");
    const error = new ForbiddenError(
      `token "${record.name}" has role ${record.role}, and ${request.method} ${path} needs ${needed}`,
    );
    refuse(reply, error, null);
    return false;
  }
  grants.set(request, { tokens, sha256: record.sha256, needed });
  return true;
}

function refuse(reply: FastifyReply, error: Error, challenge: string | null): void {
  reply.header("access-control-allow-origin", "*");
  if (challenge !== null) reply.header("www-authenticate", challenge);
  sendErrorAnswer(reply, describeError(error));
}

/** What let a request in: the token (by its hash), the role it needed, and the store. */
export interface Grant {
  readonly tokens: TokenStore;
  readonly sha256: string;
  readonly needed: TokenRole;
}

const grants = new WeakMap<FastifyRequest, Grant>();

/**
 * The grant a request was let in with, or null on a node without tokens (and for the
 * routes anyone may call). A stream kept open after its request asks it whether the token
 * still holds once the tokens are replaced.
 */
export function grantOf(request: FastifyRequest): Grant | null {
  return grants.get(request) ?? null;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  return match === null ? null : (match[1] as string);
}
