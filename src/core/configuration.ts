/**
 * The cluster's member list as the log carries it: the encoding of a `config` entry's
 * data, its validation, and the rules of a single change. The replica applies a config
 * entry as soon as it is in its log; this file only says what a configuration is and
 * which changes from one to the next are allowed.
 *
 * Changes go one member at a time (Ongaro's dissertation §4.1): add a learner, promote a
 * learner to voter, or remove a member. Any majority of the voters before such a change
 * and any majority after it share a node, so no two masters can be elected in one term
 * across the change; joint consensus is not needed for that. A replacement of a member
 * is three such steps (remove, add as learner, promote), each committed before the next.
 *
 * It must never throw for a peer's bytes: decoding answers null for anything malformed.
 */

import type { Member, NodeId } from "../protocol/messages.js";

/** A configuration: every member, sorted by id, each id once. */
export type Configuration = readonly Member[];

/** One change, as an operator asks for it. */
export type MemberChange =
  | { readonly type: "add"; readonly member: Member }
  | { readonly type: "promote"; readonly id: NodeId }
  | { readonly type: "remove"; readonly id: NodeId };

/** Longest encoded configuration accepted, in bytes. */
export const CONFIG_BYTES_MAX = 64 * 1024;
/** Most members a configuration may list. */
export const MEMBERS_MAX = 64;
/** Incarnations are drawn from 1..INCARNATION_MAX (0: the bootstrap incarnation). */
export const MEMBER_INCARNATION_MAX = 2 ** 48;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The configuration a node starts with from its command line: every id a voter. */
export function initialConfiguration(
  ids: readonly NodeId[],
  addresses: ReadonlyMap<NodeId, { peerAddress: string; httpUrl: string }> = new Map(),
): Configuration {
  return Object.freeze(
    [...ids]
      .sort((a, b) => a - b)
      .map((id) =>
        Object.freeze({
          id,
          incarnation: 0,
          voter: true,
          peerAddress: addresses.get(id)?.peerAddress ?? "",
          httpUrl: addresses.get(id)?.httpUrl ?? "",
        }),
      ),
  );
}

/** Longest cluster id a config entry may carry, in UTF-16 code units. */
export const CLUSTER_ID_CHARS_MAX = 64;

/**
 * A config entry's data: the members, and the cluster id once the cluster has one (drawn
 * by the first master of a bootstrapped cluster, then copied into every later config
 * entry, so that a snapshot's configuration carries it too). Without a cluster id the
 * encoding is the members array alone, as before cluster ids existed.
 */
export function encodeConfiguration(
  config: Configuration,
  clusterId: string | null = null,
): Uint8Array {
  const members = config.map((m) => [
    m.id,
    m.incarnation,
    m.voter ? 1 : 0,
    m.peerAddress,
    m.httpUrl,
  ]);
  return encoder.encode(JSON.stringify(clusterId === null ? members : { clusterId, members }));
}

/** The configuration in a config entry's data, or null when it is malformed. */
export function decodeConfiguration(data: Uint8Array): Configuration | null {
  const raw = decodeRaw(data);
  return raw === null ? null : raw.members;
}

/** The cluster id a config entry's data carries, or null (none, or malformed data). */
export function decodeClusterId(data: Uint8Array): string | null {
  return decodeRaw(data)?.clusterId ?? null;
}

/** Whether `value` may be a cluster id: 1..CLUSTER_ID_CHARS_MAX printable ASCII characters. */
export function isClusterId(value: unknown): value is string {
  return (
    typeof value === "string" &&
    value.length >= 1 &&
    value.length <= CLUSTER_ID_CHARS_MAX &&
    /^[\x21-\x7e]+$/.test(value)
  );
}

function decodeRaw(
  data: Uint8Array,
): { readonly members: Configuration; readonly clusterId: string | null } | null {
  if (data.length === 0 || data.length > CONFIG_BYTES_MAX) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(data));
  } catch {
    return null;
  }
  let clusterId: string | null = null;
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const object = raw as { clusterId?: unknown; members?: unknown };
    if (!isClusterId(object.clusterId)) return null;
    clusterId = object.clusterId;
    raw = object.members;
  }
  const members = decodeMembers(raw);
  return members === null ? null : { members, clusterId };
}

function decodeMembers(raw: unknown): Configuration | null {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MEMBERS_MAX) return null;
  const members: Member[] = [];
  for (const item of raw) {
    if (!Array.isArray(item) || item.length !== 5) return null;
    const [id, incarnation, voter, peerAddress, httpUrl] = item as unknown[];
    if (!isId(id) || !isIncarnation(incarnation)) return null;
    if (voter !== 0 && voter !== 1) return null;
    if (typeof peerAddress !== "string" || typeof httpUrl !== "string") return null;
    if (peerAddress.length > 256 || httpUrl.length > 256) return null;
    members.push(Object.freeze({ id, incarnation, voter: voter === 1, peerAddress, httpUrl }));
  }
  for (let i = 1; i < members.length; i++) {
    if (members[i]!.id <= members[i - 1]!.id) return null;
  }
  if (!members.some((m) => m.voter)) return null;
  return Object.freeze(members);
}

function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 0xffff_ffff;
}

function isIncarnation(value: unknown): value is number {
  return (
    typeof value === "number" &&
    Number.isInteger(value) &&
    value >= 0 &&
    value <= MEMBER_INCARNATION_MAX
  );
}

export function memberOf(config: Configuration, id: NodeId): Member | undefined {
  // A plain loop: the core asks this for every message and every peer, and `find` with a
  // closure was a twentieth of a simulated run.
  for (const m of config) if (m.id === id) return m;
  return undefined;
}

export function votersOf(config: Configuration): NodeId[] {
  return config.filter((m) => m.voter).map((m) => m.id);
}

/**
 * Why `change` cannot be made to `config`, as a short reason code with a sentence, or
 * the configuration after it. Checks only what the configuration alone decides; the
 * master adds what depends on replication (a learner caught up, a quorum alive).
 */
export function applyChange(
  config: Configuration,
  change: MemberChange,
):
  | { readonly ok: true; readonly config: Configuration }
  | { readonly ok: false; readonly reason: ChangeRefusal; readonly detail: string } {
  switch (change.type) {
    case "add": {
      const m = change.member;
      if (!isId(m.id)) return refuse("bad_request", `member id ${m.id} is not a positive integer`);
      if (memberOf(config, m.id) !== undefined) {
        return refuse("exists", `node ${m.id} is already a member: pick another id`);
      }
      if (m.peerAddress !== "" && config.some((x) => x.peerAddress === m.peerAddress)) {
        return refuse("exists", `peer address ${m.peerAddress} is already used by a member`);
      }
      if (m.httpUrl !== "" && config.some((x) => x.httpUrl === m.httpUrl)) {
        return refuse("exists", `HTTP URL ${m.httpUrl} is already used by a member`);
      }
      if (config.length >= MEMBERS_MAX) {
        return refuse("bad_request", `a cluster has at most ${MEMBERS_MAX} members`);
      }
      const added = Object.freeze({ ...m, voter: false });
      return {
        ok: true,
        config: Object.freeze([...config, added].sort((a, b) => a.id - b.id)),
      };
    }
    case "promote": {
      const m = memberOf(config, change.id);
      if (m === undefined) return refuse("unknown_member", `node ${change.id} is not a member`);
      if (m.voter) return refuse("already_voter", `node ${change.id} is already a voter`);
      return {
        ok: true,
        config: Object.freeze(
          config.map((x) => (x.id === change.id ? Object.freeze({ ...x, voter: true }) : x)),
        ),
      };
    }
    case "remove": {
      const m = memberOf(config, change.id);
      if (m === undefined) return refuse("unknown_member", `node ${change.id} is not a member`);
      const rest = config.filter((x) => x.id !== change.id);
      if (!rest.some((x) => x.voter)) {
        return refuse(
          "last_voter",
          `node ${change.id} is the last voter: add and promote another first`,
        );
      }
      return { ok: true, config: Object.freeze(rest) };
    }
  }
}

export type ChangeRefusal =
  | "bad_request"
  | "exists"
  | "unknown_member"
  | "already_voter"
  | "last_voter";

function refuse(reason: ChangeRefusal, detail: string) {
  return { ok: false as const, reason, detail };
}

export function sameConfiguration(a: Configuration, b: Configuration): boolean {
  if (a.length !== b.length) return false;
  return a.every((m, i) => {
    const n = b[i]!;
    return (
      m.id === n.id &&
      m.incarnation === n.incarnation &&
      m.voter === n.voter &&
      m.peerAddress === n.peerAddress &&
      m.httpUrl === n.httpUrl
    );
  });
}
