/**
 * What the HTTP layer needs from a running node. The node runtime (src/server) implements
 * it; HTTP tests use a fake. Methods throw errors from src/shared/errors.ts: NotMasterError
 * (the HTTP layer then forwards to the master), NoMasterError, TimeoutError, BusyError,
 * IndeterminateError, ShuttingDownError, InvalidInputError, TooLargeError.
 */

import type { NodeId } from "../core/messages.js";
import type { Role } from "../core/replica.js";
import type { KvEntry, KvResult } from "../kv/index.js";

export interface KvWriteOptions {
  /** Compare-and-set: apply only if the key's revision equals this (0: key must not exist). */
  readonly ifRevision?: number;
  /** A retried write with the same key is applied once and answered with the first result. */
  readonly idempotencyKey?: string;
}

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
  /**
   * A digest of the whole replicated state as 16 hex digits, taken at `appliedIndex`: two
   * nodes with the same `appliedIndex` must show the same digest. Present only when asked
   * for (`GET /v1/status?digest=true`), because it costs a pass over every key.
   */
  readonly stateDigest?: string;
}

export interface StatusOptions {
  /** Add `stateDigest`. @default false */
  readonly digest?: boolean;
}

export interface KvNodeApi {
  readonly id: NodeId;
  put(key: string, value: Uint8Array, options: KvWriteOptions): Promise<KvResult>;
  delete(key: string, options: KvWriteOptions): Promise<KvResult>;
  /** Linearizable unless `stale`, which reads this node's local copy. */
  get(key: string, options: { readonly stale: boolean }): Promise<KvEntry | null>;
  status(options?: StatusOptions): NodeStatus;
  /** Whether this node is the master now (cheap: no status snapshot). */
  isMaster(): boolean;
  /** The master's HTTP base URL when this node is not the master and knows it; else null. */
  masterHttpUrl(): string | null;
}
