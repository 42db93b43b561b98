/**
 * What the HTTP layer needs from a running node. The key-value server (src/app) implements
 * it; HTTP tests use a fake. Methods throw errors from src/shared/errors.ts: NotMasterError
 * (the HTTP layer then forwards to the master), NoMasterError, TimeoutError, BusyError,
 * IndeterminateError, ShuttingDownError, InvalidInputError, TooLargeError.
 */

import type { KvEntry, KvResult } from "../kv/index.js";
import type { Member, NodeId } from "../protocol/messages.js";
import type { NodeStatus } from "../protocol/status.js";
import type { KvStoreApi } from "./store-api.js";

export interface KvWriteOptions {
  /** Compare-and-set: apply only if the key's revision equals this (0: key must not exist). */
  readonly ifRevision?: number;
  /** A retried write with the same key is applied once and answered with the first result. */
  readonly idempotencyKey?: string;
  /** A put only: attach the key to this lease (`PUT /v1/kv/{key}?lease=id`). */
  readonly lease?: number;
}

export interface StatusOptions {
  /** Add `stateDigest`. @default false */
  readonly digest?: boolean;
}

export interface KvNodeApi {
  readonly id: NodeId;
  /**
   * Ranges, prefix deletes, transactions, leases and watches; a node without it serves
   * none of those routes (they answer 404 ERR_NO_ROUTE).
   */
  readonly store?: KvStoreApi;
  put(key: string, value: Uint8Array, options: KvWriteOptions): Promise<KvResult>;
  delete(key: string, options: KvWriteOptions): Promise<KvResult>;
  /** Linearizable unless `stale`, which reads this node's local copy. */
  get(key: string, options: { readonly stale: boolean }): Promise<KvEntry | null>;
  status(options?: StatusOptions): NodeStatus;
  /**
   * Why the node no longer runs (a fatal error, or a stop under way), or null while it
   * runs: the health checks then all fail. Absent: the node is taken to run.
   */
  stoppedReason?(): string | null;
  /** Whether this node is the master now (cheap: no status snapshot). */
  isMaster(): boolean;
  /** The master's HTTP base URL when this node is not the master and knows it; else null. */
  masterHttpUrl(): string | null;
  /**
   * Hands the master role to member `to` (null: the best-placed backup) and resolves once
   * the new master serves; on a backup, the node asks the master. Throws InvalidInputError,
   * ConflictError, NoMasterError, SwitchoverFailedError.
   */
  switchover(to: number | null): Promise<{ readonly master: number; readonly term: number }>;
  /**
   * One membership change, answered once it is committed, with the members after it.
   * Throws InvalidInputError (bad input, an id or address that exists, an unknown
   * member), ConflictError (a change in flight, a learner not caught up, no quorum
   * left, the master itself), NotMasterError on a backup, NoMasterError.
   */
  changeMembers?(change: MemberChangeRequest): Promise<{ readonly members: readonly Member[] }>;
  /**
   * What a member added as a learner learns with `baton start --join`: its incarnation
   * and the members. Throws InvalidInputError for a non-member, ConflictError for a
   * voter (replace it first).
   */
  joinInfo?(id: NodeId): {
    readonly incarnation: number;
    readonly members: readonly Member[];
    /** The cluster id, or null while the cluster has none yet (it arrives through the log). */
    readonly clusterId: string | null;
    /** The cluster's name (`--cluster-id`), which peers check at every handshake. */
    readonly clusterName?: string;
  };
}

export type MemberChangeRequest =
  | {
      readonly type: "add";
      readonly id: NodeId;
      readonly peerAddress: string;
      readonly httpUrl: string;
    }
  | { readonly type: "promote"; readonly id: NodeId }
  | { readonly type: "remove"; readonly id: NodeId };
