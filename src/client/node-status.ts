/**
 * The shape of a node's `GET /v1/status` answer as the client sees it, and the check that
 * turns untrusted JSON into it. The types are the protocol's own (imported as types only,
 * so the client carries no server code at run time). Parsing rejects an answer that lacks
 * a field the client relies on rather than guessing a value for it.
 */

import type { MemberStatus, NodeStatus } from "../protocol/status.js";

export type { MemberStatus, NodeStatus };

const ROLES = new Set(["master", "backup", "candidate"]);
const MEMBER_ROLES = new Set(["master", "backup", "candidate", "unknown"]);

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function countOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function parseMember(input: unknown): MemberStatus | null {
  if (typeof input !== "object" || input === null) return null;
  const m = input as Record<string, unknown>;
  if (!isCount(m.id)) return null;
  return {
    id: m.id,
    address: typeof m.address === "string" ? m.address : "",
    httpUrl: typeof m.httpUrl === "string" && m.httpUrl !== "" ? m.httpUrl : null,
    role:
      typeof m.role === "string" && MEMBER_ROLES.has(m.role)
        ? (m.role as MemberStatus["role"])
        : "unknown",
    connected: m.connected === true,
    matchIndex: countOrNull(m.matchIndex),
    lag: countOrNull(m.lag),
    lastContactMs: countOrNull(m.lastContactMs),
  };
}

/**
 * Checks a parsed `/v1/status` body. Returns the status, or a sentence naming the first
 * field that is missing or malformed. Unknown members' fields default to "not known".
 */
export function parseNodeStatus(input: unknown): NodeStatus | string {
  if (typeof input !== "object" || input === null) return "the status is not a JSON object";
  const s = input as Record<string, unknown>;
  if (!isCount(s.id)) return "status.id is not a node id";
  if (typeof s.role !== "string" || !ROLES.has(s.role)) return "status.role is not a role";
  for (const field of ["term", "commitIndex", "appliedIndex", "lastIndex"] as const) {
    if (!isCount(s[field])) return `status.${field} is not a non-negative integer`;
  }
  if (s.master !== null && !isCount(s.master)) return "status.master is not a node id or null";
  const members = Array.isArray(s.members) ? s.members.map(parseMember) : [];
  return {
    id: s.id,
    role: s.role as NodeStatus["role"],
    term: s.term as number,
    master: s.master,
    commitIndex: s.commitIndex as number,
    appliedIndex: s.appliedIndex as number,
    lastIndex: s.lastIndex as number,
    members: members.filter((m): m is MemberStatus => m !== null),
    // A node of a version without cluster ids leaves it out.
    ...(typeof s.clusterId === "string" || s.clusterId === null ? { clusterId: s.clusterId } : {}),
  };
}
