/**
 * The store's quota as this node is configured with it (`--quota-keys`, `--quota-bytes`),
 * and the check the HTTP edge makes before it proposes a write. The quota that decides is
 * the replicated one, held by the state machine and set through the log by a `set_quota`
 * command the master proposes when its configuration differs (`KvStore`); every replica
 * therefore refuses the same writes, even while nodes restart with a new quota one by one.
 *
 * The edge check reads this node's copy of the store, so it runs only where that copy is
 * current (`KvStore` asks it on the master alone, and not while the master's own quota is
 * still on its way through the log): a backup's copy may lack an acknowledged delete or a
 * raised quota, and refusing there would refuse a write the log accepts. It only spares
 * the log a write that is sure to be refused; the state machine decides. A write with an
 * idempotency key is never sure to be refused: it may be the retry of one already applied
 * (its answer lost), which the state machine answers from its table with the first result
 * however full the store is now, and this node's copy may not have that record yet (a new
 * master still applying what it committed). Only its size is checked.
 */

import { type KvCommand, type KvStateMachine, utf8ByteLength } from "../kv/index.js";
import { QuotaExceededError, TooLargeError } from "../shared/errors.js";

/** Most keys and most bytes of keys (UTF-8) and values the store holds; 0 for no quota. */
export interface StoreQuota {
  /** @default 1_000_000 */
  readonly keyCountMax: number;
  /** @default 268_435_456 (256 MiB: the store lives in the heap, with about twice that in overheads) */
  readonly bytesMax: number;
}

/** The default quota, frozen. */
export function defaultStoreQuota(): StoreQuota {
  return Object.freeze({ keyCountMax: 1_000_000, bytesMax: 268_435_456 });
}

/**
 * Throws when `command` is a put that the store's replicated quota would refuse as this
 * node's copy stands: `TooLargeError` (413) when the key and value alone exceed the bytes
 * quota, `QuotaExceededError` (507) when the store has no room for them. Deletes, and
 * writes that do not grow the store, always pass, and so does a put with an idempotency key
 * that fits the bytes quota on its own (see above). A put with a precondition or a lease,
 * and transactions, are left to the state machine, which judges those first.
 */
export function checkQuota(command: KvCommand, stateMachine: KvStateMachine): void {
  if (command.type !== "put") return;
  // The state machine judges a precondition and a lease before the quota: a write that
  // names either is left to it, so that a full store answers the same 412 or 404 on
  // every node and with or without an idempotency key.
  if (command.ifRevision !== undefined || command.lease !== undefined) return;
  const { keyCountMax, bytesMax } = stateMachine.quota;
  const current = stateMachine.get(command.key);
  const keyBytes = utf8ByteLength(command.key) ?? 0;
  const entryBytes = keyBytes + command.value.byteLength;
  if (bytesMax > 0 && entryBytes > bytesMax) {
    const limit = Math.max(bytesMax - keyBytes, 0);
    const limitName = "the store's whole bytes quota, --quota-bytes, less the key";
    throw new TooLargeError("value", limit, command.value.byteLength, limitName);
  }
  if (command.idempotencyKey !== undefined) return;
  if (current === null && keyCountMax > 0 && stateMachine.size >= keyCountMax) {
    throw new QuotaExceededError("keys", keyCountMax, stateMachine.size);
  }
  if (bytesMax === 0) return;
  const growth =
    current === null ? entryBytes : command.value.byteLength - current.value.byteLength;
  if (growth > 0 && stateMachine.bytes + growth > bytesMax) {
    throw new QuotaExceededError("bytes", bytesMax, stateMachine.bytes);
  }
}

/**
 * The error for a write the state machine refused for the quota, as the edge check would
 * have described it: `TooLargeError` (413) for a put whose key and value alone exceed the
 * bytes quota it was refused under, else `QuotaExceededError` (507) with `usage`, the
 * store's keys or bytes as this node holds them now (the replicated result carries none).
 */
export function quotaRefusal(
  command: KvCommand,
  refused: { readonly quota: "keys" | "bytes"; readonly limit: number },
  stateMachine: KvStateMachine,
): Error {
  const { quota, limit } = refused;
  if (quota === "bytes" && command.type === "put") {
    const keyBytes = utf8ByteLength(command.key) ?? 0;
    if (keyBytes + command.value.byteLength > limit) {
      const limitName = "the store's whole bytes quota, --quota-bytes, less the key";
      const valueLimit = Math.max(limit - keyBytes, 0);
      return new TooLargeError("value", valueLimit, command.value.byteLength, limitName);
    }
  }
  const usage = quota === "keys" ? stateMachine.size : stateMachine.bytes;
  return new QuotaExceededError(quota, limit, usage);
}

/** Whether the replicated quota differs from `configured`, so the master should propose it. */
export function quotaDiffers(configured: StoreQuota, stateMachine: KvStateMachine): boolean {
  const { keyCountMax, bytesMax } = stateMachine.quota;
  return keyCountMax !== configured.keyCountMax || bytesMax !== configured.bytesMax;
}
