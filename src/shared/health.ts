/**
 * The health checks load balancers poll (HAProxy's `httpchk`, Kubernetes probes), as plain
 * values: which check a path asks for, and the status and JSON body that answer it. The
 * HTTP API's `/health` routes and an embedded node (`BatonNode.health()`, `healthHandler`)
 * both answer from here, so a program that embeds Baton in its own web server answers its
 * load balancer exactly as a `baton start` node does. Nothing here does I/O.
 *
 * - `live` (`/health`): 200 while the process can answer and its node runs (not after a
 *   fatal error or once it is stopping).
 * - `master` (`/health/master`): 200 only on the master.
 * - `backup` (`/health/backup`): 200 only on a voting backup (a learner is catching up and
 *   cannot take over, so no load balancer should count on it). A candidate passes neither.
 */

import type { NodeStatus, Role } from "../protocol/status.js";

export type HealthCheck = "live" | "master" | "backup";

/** What a failed role check tells the caller to do (the HTTP error table's advice too). */
export const WRONG_ROLE_ADVICE = "this check passes only on a node in the named role";

export type HealthBody =
  | { readonly status: "ok"; readonly id: number; readonly role: Role | "unknown" }
  | {
      readonly error: string;
      readonly code: "ERR_WRONG_ROLE" | "ERR_SHUTTING_DOWN";
      readonly id: number;
      readonly role: Role | "unknown";
    };

/** A check's answer: the HTTP status (200 or 503) and the JSON body to send with it. */
export interface HealthAnswer {
  readonly status: 200 | 503;
  readonly body: HealthBody;
}

/** The check a request path asks for (`/health`, `/health/master`, `/health/backup`), or null. */
export function healthCheckOf(path: string): HealthCheck | null {
  const bare = path.split("?")[0]!.replace(/\/+$/, "");
  if (bare === "/health") return "live";
  if (bare === "/health/master") return "master";
  if (bare === "/health/backup") return "backup";
  return null;
}

/**
 * The answer to `check` for node `id` whose status is `status` (null when the node could
 * not say, which fails every role check but not liveness: the process still answers).
 * `stopped` says why the node no longer runs (a fatal error, or a stop under way): every
 * check fails then, liveness included, whatever role the node last had, so that no load
 * balancer keeps sending to a master that has stopped.
 */
export function healthAnswer(
  id: number,
  status: Pick<NodeStatus, "role" | "members"> | null,
  check: HealthCheck,
  stopped: string | null = null,
): HealthAnswer {
  if (stopped !== null) {
    const error = `node ${id} has stopped: ${stopped}`;
    return { status: 503, body: { error, code: "ERR_SHUTTING_DOWN", id, role: "unknown" } };
  }
  const role = status?.role ?? "unknown";
  if (check === "live") return { status: 200, body: { status: "ok", id, role } };
  if (role === check && check === "backup" && isLearner(id, status)) {
    return wrongRole(id, role, "this node is a learner, not a voting backup");
  }
  if (role === check) return { status: 200, body: { status: "ok", id, role } };
  return wrongRole(id, role, `this node is ${role}, not ${check}`);
}

function wrongRole(id: number, role: Role | "unknown", message: string): HealthAnswer {
  return {
    status: 503,
    body: { error: `${message}; ${WRONG_ROLE_ADVICE}`, code: "ERR_WRONG_ROLE", id, role },
  };
}

/** Whether the configuration in `status` lists node `id` as a learner (not a voter). */
function isLearner(id: number, status: Pick<NodeStatus, "members"> | null): boolean {
  return status?.members.find((m) => m.id === id)?.voter === false;
}
