/**
 * What the HTTP layer needs from a running node. The key-value server (src/app) implements
 * it; HTTP tests use a fake. Methods throw errors from src/shared/errors.ts: NotMasterError
 * (the HTTP layer then forwards to the master), NoMasterError, TimeoutError, BusyError,
 * IndeterminateError, ShuttingDownError, InvalidInputError, TooLargeError.
 */

import type { KvEntry, KvResult } from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
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
}
