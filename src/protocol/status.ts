/**
 * What a node says about itself and the members it knows: the shape of `GET /v1/status`,
 * shared by the runtime that produces it, the HTTP layer that serves it and the client
 * that parses it. Plain data, no logic.
 */

import type { NodeId } from "./messages.js";

/** A node's role in its current term. */
export type Role = "master" | "backup" | "candidate";

export interface MemberStatus {
  readonly id: NodeId;
  /** Node-to-node address, host:port. */
  readonly address: string;
  /** HTTP API base URL when known (e.g. "http://127.0.0.1:8101"), else null. */
  readonly httpUrl: string | null;
  /** Role as this node knows it: "master", "backup", "candidate" or "unknown". */
  readonly role: Role | "unknown";
  /** Whether this node currently has a live connection to the member (itself: true). */
  readonly connected: boolean;
  /** Master only: highest log index known replicated on the member, else null. */
  readonly matchIndex: number | null;
  /** Master only: entries the member is behind the master's last index, else null. */
  readonly lag: number | null;
  /**
   * Master only: bytes of command data in the entries the member is behind, estimated from
   * the newest 4096 of them when it is further behind; null when the entries it lacks were
   * compacted away (it needs a state transfer) and on a backup.
   */
  readonly lagBytes?: number | null;
  /** Master only: milliseconds since the member last answered, else null. */
  readonly lastContactMs: number | null;
  /** Whether the configuration in effect lists the member as a voter (false: a learner). */
  readonly voter?: boolean;
  /**
   * The member incarnation the configuration lists (0: the one that bootstrapped the
   * cluster, not written down yet); votes and acknowledgements count only from it.
   */
  readonly incarnation?: number;
}

export interface NodeStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  /** The master this node knows of in its term, or null. */
  readonly master: NodeId | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly members: readonly MemberStatus[];
  /** This node's data directory's member incarnation. */
  readonly incarnation?: number;
  /**
   * The cluster id drawn when the cluster bootstrapped, or null until this node knows it
   * (an empty node waiting for its peers, or the moments before the first master's entry).
   */
  readonly clusterId?: string | null;
  /**
   * The cluster's name (`--cluster-id`, which peers and certificates check), as this node
   * was started with; set by the key-value server, absent from an embedded node's status.
   */
  readonly clusterName?: string;
  /** Whether a membership change is in the log and not committed yet. */
  readonly changeInProgress?: boolean;
  /**
   * A digest of the whole replicated state as 16 hex digits, taken at `appliedIndex`: two
   * nodes with the same `appliedIndex` must show the same digest. Present only when asked
   * for (`GET /v1/status?digest=true`); the key-value store keeps it as it applies, so it
   * costs O(1).
   */
  readonly stateDigest?: string;
}
