/**
 * What the store routes (ranges, prefix deletes, transactions, leases, watches) need from a
 * node, beyond `KvNodeApi`. It is an optional capability of a node: `createHttpServer`
 * checks once whether `api.store` is there and registers these routes only then, so that
 * a node (or a test double) without it keeps serving the rest of the API unchanged.
 *
 * Methods throw errors from src/shared/errors.ts like `KvNodeApi`'s; `propose` also throws
 * InvalidInputError (naming the field) and TooLargeError for a command that fails
 * `validateCommand`, before anything reaches the log.
 */

import type {
  ChangeListener,
  KvCommand,
  KvRange,
  KvRangeOptions,
  KvResult,
  KvWatchStart,
} from "../kv/index.js";

export interface KvStoreApi {
  /**
   * Validates `command` and proposes it (a backup forwards it to the master); resolves with
   * its result once applied. Exactly-once comes from the command's idempotency key.
   */
  propose(command: KvCommand): Promise<KvResult>;
  /** A page of keys; linearizable unless `stale` (then this node's local copy). */
  range(options: KvRangeOptions, read: { readonly stale: boolean }): Promise<KvRange>;
  /** Lease `id` as this node has applied it, after a read barrier; null when not held. */
  lease(id: number): Promise<{ id: number; ttlMs: number; remainingMs: number } | null>;
  /** The revision of this node's applied state: where a watch from now starts (plus 1). */
  revision(): number;
  /**
   * Watches this node's changes from `fromRevision` on (its own history, so no master is
   * needed: every node holds the same changes at the same revisions).
   */
  watch(fromRevision: number, listener: ChangeListener): KvWatchStart;
  /** The oldest revision this node's history holds: a watch from before it is compacted. */
  watchStartRevision(): number;
}
