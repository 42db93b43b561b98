/**
 * Every write's word against the log. A client's history says what each write was told;
 * exactly-once's record (exactly-once.ts) says at which log index each write changed the
 * store, if it did. The two must agree:
 *
 * - a write acknowledged as done (a put, a delete of a key that existed, a compare-and-set
 *   or transaction that held) changed the store at some index: an acknowledgement of a
 *   write no node ever applied is a lost write, which the per-key search sees only when a
 *   read happens to fall between it and the next write of its key;
 * - a write every answer of which said "not applied" (docs/embedding.md's table: busy, no
 *   master, shutting down…), and that was never sent again under a key it could not
 *   vouch for, changed the store nowhere.
 */

import type { HistoryOp } from "./linearizability.js";

/** What the check needs of the run besides its history. */
export interface AppliedWitness {
  /** The log index at which the write named `name` changed the store, if it did. */
  executedIndex(name: string): number | undefined;
}

/** Whether an ok operation says it changed the store. */
function acknowledgedChange(op: HistoryOp): boolean {
  switch (op.op.kind) {
    case "write":
      return true;
    case "delete":
      return op.output === true;
    case "cas":
      return op.output === true;
    case "read":
      return false;
  }
}

/** A description of the first disagreement, or null. */
export function checkAcknowledged(
  history: readonly HistoryOp[],
  witness: AppliedWitness,
): string | null {
  for (const op of history) {
    if (op.writeName === undefined) continue;
    const index = witness.executedIndex(op.writeName);
    const what = `op ${op.id} (client ${op.client}, ${op.op.kind} ${op.key}, ${op.writeName})`;
    if (op.outcome === "ok" && acknowledgedChange(op) && index === undefined) {
      return `${what} was acknowledged, but no node applied it`;
    }
    if (op.refusedNotApplied === true && index !== undefined) {
      return `${what} was refused as not applied by every answer, but changed the store at index ${index}`;
    }
  }
  return null;
}
