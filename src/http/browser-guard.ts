/**
 * What a browser may ask of a node, decided from the headers it cannot forge: `Host` (a page
 * that rebinds its own host name to this machine still sends that name) and `Origin` (sent
 * with every cross-origin request, and with every same-origin one that is not a GET or HEAD).
 * The fault routes use these checks always; `guardBrowsers` applies them to the whole API of
 * a node without tokens, where nothing else stops a page:
 *
 * - any page the user has open can send a "simple" cross-origin POST, PUT or DELETE (no
 *   preflight, and the node reads a body whatever its Content-Type): a switchover, a
 *   membership change, a transaction; so a request that changes anything and carries an
 *   Origin must come from this node's or a member's origin (the cluster's dashboards);
 *   programs (curl, the client library) send no Origin and are not affected;
 * - a page that rebinds its name to 127.0.0.1 is same-origin with a loopback node and can
 *   read everything; so on a loopback listener the Host must be one of the node's names.
 *
 * A node with tokens needs neither: a browser never attaches a bearer token by itself.
 *
 * A member advertised under a loopback name (127.0.0.1, localhost, [::1]) is reached by a
 * browser on the same machine under any of the three: its page opened as
 * `http://localhost:8101/` sends `Origin: http://localhost:8101` to the other members, and
 * that origin is the same member's dashboard. Only a process on the browser's own machine
 * can serve a page under a loopback name, and such a process can already ask the nodes
 * anything without an Origin, so the equivalence lets in no page that was kept out. A
 * rebinding page keeps its own name in its Origin, and is refused as before.
 */

import type { FastifyInstance, FastifyRequest } from "fastify";
import { errorAnswer, sendErrorAnswer } from "./error-status.js";
import type { HttpContext } from "./http-context.js";

/** Whether the listener's host is this machine's alone (127.0.0.0/8, ::1, localhost). */
function loopbackListener(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Methods that change nothing, which a cross-origin page may send (it cannot read the answer). */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Refuses, on a node without tokens, what a foreign or rebinding page sends (see above). */
export function guardBrowsers(app: FastifyInstance, context: HttpContext): void {
  app.addHook("onRequest", async (request, reply) => {
    // The fault routes make their own, stricter checks and answers; health checks tell
    // nothing and come from load balancers with Host headers of their own, or none.
    if (request.url.startsWith("/v1/faults") || request.url.startsWith("/health")) return;
    const listening = context.listening();
    // A request without a Host (an HTTP/1.0 health checker, a script) is no browser's.
    const rebound =
      request.headers.host !== undefined &&
      listening !== null &&
      loopbackListener(listening.host) &&
      !hostAllowed(request, context);
    if (rebound) {
      return sendErrorAnswer(
        reply,
        errorAnswer(
          "ERR_FORBIDDEN",
          `the Host header names this node ${JSON.stringify(request.headers.host ?? "")}, which is not one of its names (127.0.0.1, localhost, its listen address or a member's advertised host): a page that rebinds its name to this machine is refused`,
          { field: "Host" },
        ),
      );
    }
    if (!SAFE_METHODS.has(request.method) && !originAllowed(request, context)) {
      return sendErrorAnswer(
        reply,
        errorAnswer(
          "ERR_FORBIDDEN",
          `a request from the web page at ${request.headers.origin} is refused: this node has no API tokens, so it takes changes only from its own cluster's dashboards and from programs that send no Origin; to let other pages in, give the nodes --tokens and the page a token`,
          { field: "Origin" },
        ),
      );
    }
    return undefined;
  });
}

/** A Host header naming one of the names every node answers to, with or without a port. */
const ALWAYS_ALLOWED_HOST = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$/i;

/** The host names (without port) a browser's request may use for this node. */
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
  let members: readonly { readonly httpUrl: string | null }[];
  try {
    members = context.api.status().members;
  } catch {
    return [];
  }
  return members.flatMap((m) => {
    const origin = m.httpUrl === null ? null : httpOrigin(m.httpUrl);
    return origin === null ? [] : [origin];
  });
}

/**
 * The origin of an http or https URL, or null. A member's URL that does not parse (one a
 * configuration written by an older version may hold) is skipped alone: the others' origins
 * are still allowed.
 */
export function httpOrigin(url: string): string | null {
  try {
    const parsed = new URL(url);
    const web = parsed.protocol === "http:" || parsed.protocol === "https:";
    return web && parsed.hostname !== "" ? parsed.origin : null;
  } catch {
    return null;
  }
}

/**
 * Whether `host` is a DNS name, an IPv4 address or an IPv6 one in brackets: what a member's
 * URL may name, and what may stand in a Content-Security-Policy source (WHATWG URLs also
 * take `;`, quotes and `*` in a host).
 */
export function isWebHost(host: string): boolean {
  return /^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(host);
}

/** The loopback names a browser may use for one listener on its own machine. */
const LOOPBACK_NAMES = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * An origin under a loopback name, written with one name for all three (scheme and port
 * kept), or null for any other origin: two origins with the same result reach the same
 * port on the browser's machine.
 */
function loopbackOrigin(origin: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return null;
  }
  if (!LOOPBACK_NAMES.has(parsed.hostname) || parsed.origin !== origin) return null;
  return `${parsed.protocol}//loopback:${parsed.port}`;
}

/** Whether the Host header names this node by an allowed name (its port is not checked). */
export function hostAllowed(request: FastifyRequest, context: HttpContext): boolean {
  const host = request.headers.host;
  if (host === undefined) return false;
  // Every request to a loopback node passes here: the names always allowed are checked
  // without parsing a URL or asking the node for its members.
  if (ALWAYS_ALLOWED_HOST.test(host)) return true;
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
 * and its own port, a member's advertised origin, or a member's loopback origin under
 * another loopback name (see the file's comment).
 */
export function originAllowed(request: FastifyRequest, context: HttpContext): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return true;
  const members = memberOrigins(context);
  if (members.includes(origin)) return true;
  const asLoopback = loopbackOrigin(origin);
  if (asLoopback !== null && members.some((m) => loopbackOrigin(m) === asLoopback)) return true;
  const listening = context.listening();
  if (listening === null) return false;
  for (const name of allowedHostnames(context)) {
    if (origin === `${listening.scheme}://${name}:${listening.port}`) return true;
  }
  return false;
}
