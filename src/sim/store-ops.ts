/**
 * The store's transactions in the simulated workload. Every other compare-and-set a client
 * makes (chosen by its number, not by a draw, so that the seed's other draws stay put) is
 * sent as a transaction, "if the key's revision is r, put the value", instead of a put
 * with `ifRevision`. Both mean the same to the history (a compare-and-set that did or did
 * not take effect), so the linearizability checker verifies transactions through crashes,
 * fail-overs, torn writes and state transfers with the register model it already has, and
 * the exactly-once checker verifies that a retried transaction is applied once.
 *
 * What it does not cover: transactions over several keys (the checker's registers are
 * independent keys), prefix deletes, leases and watches.
 */

import type { KvCommand, KvResult, SessionTag, TxnCommand } from "../kv/index.js";

/** Whether the compare-and-set numbered `seq` (the client's write count) is a transaction. */
export function casAsTxn(seq: number): boolean {
  return seq % 2 === 0;
}

/** "If `key` is at `ifRevision` (0: absent), put `value`", as one transaction. */
export function casTxn(
  key: string,
  ifRevision: number,
  value: Uint8Array,
  options: { readonly idempotencyKey?: string; readonly session?: SessionTag },
): TxnCommand {
  return {
    type: "txn",
    compare: [{ key, target: "revision", revision: ifRevision }],
    success: [{ type: "put", key, value }],
    failure: [],
    ...options,
  };
}

/** The keys and values a command that changed the store put: a put's, or a transaction's. */
export function putsOf(
  command: KvCommand,
  result: KvResult,
): readonly { readonly key: string; readonly value: Uint8Array }[] {
  if (command.type === "put") return [command];
  if (command.type !== "txn" || !result.ok) return [];
  const ops = result.succeeded === true ? command.success : command.failure;
  return ops.flatMap((op) => (op.type === "put" ? [op] : []));
}
