/**
 * The live dashboard every node serves: the page at `GET /` and its files under
 * `/dashboard/`. The page reads this node's `/v1/status` and `/v1/events`, and those of the
 * other members at their advertised HTTP URLs; its Content-Security-Policy allows exactly
 * those origins and nothing else, so it never makes a request outside the cluster.
 */

import type { FastifyInstance, FastifyReply } from "fastify";
import { type DashboardAsset, dashboardDir, loadDashboardAssets } from "../../dashboard/assets.js";
import { httpOrigin, isWebHost } from "../browser-guard.js";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { registerResource } from "./resource.js";

/** Registers `/` and `/dashboard/<file>` on `app`, the files read from `dir`. */
export function registerDashboardRoutes(
  app: FastifyInstance,
  context: HttpContext,
  dir = dashboardDir(),
): void {
  const assets = loadDashboardAssets(dir);
  registerResource(app, context.metrics, "/", [
    {
      method: "GET",
      handler: (_request, reply) => {
        const page = assets?.get("index.html");
        if (page === undefined) {
          return sendErrorAnswer(
            reply,
            errorAnswer("ERR_DASHBOARD_MISSING", "this node has no dashboard files"),
          );
        }
        return sendAsset(reply.header("content-security-policy", policy(context)), page);
      },
    },
  ]);
  for (const [name, asset] of assets ?? []) {
    if (name === "index.html") continue;
    registerResource(app, context.metrics, `/dashboard/${name}`, [
      { method: "GET", handler: (_request, reply) => sendAsset(reply, asset) },
    ]);
  }
}

function sendAsset(reply: FastifyReply, asset: DashboardAsset): FastifyReply {
  // The files change only with a new version of the node, which restarts it; a short
  // cache keeps a reload after an upgrade honest.
  return reply
    .header("cache-control", "max-age=60")
    .header("x-content-type-options", "nosniff")
    .type(asset.contentType)
    .send(asset.body);
}

/**
 * Scripts and styles from this node only; connections to this node and the members. A
 * member's HTTP URL is known only once it has connected, which may be after the page
 * loads, so each member's host is allowed on any port as well as its advertised URL.
 */
function policy(context: HttpContext): string {
  const origins = new Set<string>(["'self'"]);
  try {
    for (const member of context.api.status().members) {
      // A URL that does not parse (an older version's configuration may hold one) leaves
      // that member out, not the members after it.
      const origin = member.httpUrl === null ? null : httpOrigin(member.httpUrl);
      // Only an origin that is one source expression: a configuration written before
      // member URLs were checked may hold a host with `;` or a space in it, which would
      // add directives of its own to the policy.
      if (origin !== null && isWebHost(new URL(origin).hostname)) origins.add(origin);
      const host = hostOf(member.address);
      if (host !== null) origins.add(`http://${host}:*`).add(`https://${host}:*`);
    }
  } catch {
    // The page still works against this node alone.
  }
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src ${[...origins].join(" ")}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** The host of a "host:port" address, in the form a CSP source takes, or null. */
function hostOf(address: string): string | null {
  const colon = address.lastIndexOf(":");
  if (colon <= 0) return null;
  const host = address.slice(0, colon);
  return isWebHost(host) ? host : null;
}
