/**
 * Linearizability of the whole store, keys together, witnessed by the log. The per-key
 * checker (linearizability.ts) searches each key's history alone, so it cannot see an
 * anomaly that spans keys (a read of one key that shows a transaction's write, then a
 * read of its other key that does not), and it must treat a write whose answer was lost
 * as one that may or may not have happened. The simulator knows more than a client: the
 * log index at which every write changed the store (exactly-once's record) and the store
 * revision at which every read was served. With those the order is fixed, and checking it
 * is a single pass:
 *
 * - a read served at revision R returns, for every key it read, the value of the newest
 *   committed change of that key at or below R (the committed history, as first applied);
 * - a read is served at a revision at or above every write acknowledged, and every read
 *   completed, before it was invoked;
 * - a write changes the store at an index above every write acknowledged, and every read
 *   completed, before it was invoked;
 * - a write that changed nothing by its answer (a compare-and-set that did not hold, a
 *   delete of a key that was absent) was decided at the log index where it was first
 *   answered: on the store as it stood just below that index, which must not hold what the
 *   compare-and-set expected (or must not hold the key), and which must be at or above
 *   every write acknowledged, and read completed, before it was invoked; and what is
 *   invoked after it completed must see that store or a newer one.
 *
 * Writes in index order and each read at its revision then form one legal order that
 * respects real time. "Before" is the order of events in the run (a sequence number), not
 * virtual time, in which two events may share an instant: an operation invoked in the
 * same instant its predecessor completed still comes after it.
 */

import type { HistoryOp } from "./linearizability.js";

/** What the check needs of the run besides its history. */
export interface RevisionWitness {
  /** The log index at which the write named `name` changed the store, if it did. */
  executedIndex(name: string): number | undefined;
  /** The value `key` held at `revision` by the committed history (null: absent). */
  valueAt(key: string, revision: number): string | null;
  /**
   * The log index at which the write named `name` was first answered, whether or not it
   * changed the store (not for refusals such as a full table), if it was.
   */
  answeredIndex?(name: string): number | undefined;
  /**
   * The store's revision once the entries up to `index` were applied (the last index at or
   * below it that changed a key); `index` itself when not given.
   */
  revisionAt?(index: number): number;
}

/** Counts of what was checked, for the run's summary. */
export interface RevisionOrderStats {
  readonly reads: number;
  readonly writes: number;
}

/**
 * Returns a description of the first violation, or null; `stats` counts the reads and the
 * writes (with a known index) it checked.
 */
export function checkRevisionOrder(
  history: readonly HistoryOp[],
  witness: RevisionWitness,
): { readonly violation: string | null; readonly stats: RevisionOrderStats } {
  interface Event {
    readonly seq: number;
    readonly op: HistoryOp;
    readonly kind: "invoke" | "complete";
  }
  const events: Event[] = [];
  const indexOf = new Map<HistoryOp, number>();
  let reads = 0;
  let writes = 0;
  /** Writes that changed nothing by their answer, and the store revision they saw. */
  const decidedAt = new Map<HistoryOp, number>();
  for (const op of history) {
    if (op.invokedSeq === undefined) continue;
    if (op.servedRevision !== undefined && op.outcome === "ok" && op.op.kind === "read") {
      reads++;
      const expected = witness.valueAt(op.key, op.servedRevision);
      if (op.output !== expected) {
        return {
          violation: `op ${op.id} (client ${op.client}) read ${op.key} = ${JSON.stringify(op.output)} at revision ${op.servedRevision}, where the committed history has ${JSON.stringify(expected)}`,
          stats: { reads, writes },
        };
      }
    }
    if (op.writeName !== undefined) {
      const index = witness.executedIndex(op.writeName);
      if (index !== undefined) {
        writes++;
        indexOf.set(op, index);
      } else if (op.outcome === "ok" && changedNothing(op)) {
        const decided = witness.answeredIndex?.(op.writeName);
        if (decided !== undefined) {
          const problem = decidedWrongly(op, witness.valueAt(op.key, decided - 1), decided);
          if (problem !== null) return { violation: problem, stats: { reads, writes } };
          reads++;
          decidedAt.set(op, witness.revisionAt?.(decided - 1) ?? decided - 1);
        }
      }
    }
    events.push({ seq: op.invokedSeq, op, kind: "invoke" });
    if (op.outcome === "ok" && op.completedSeq !== undefined) {
      events.push({ seq: op.completedSeq, op, kind: "complete" });
    }
  }
  events.sort((a, b) => a.seq - b.seq);
  // The highest index acknowledged, and revision read, by operations completed so far.
  let acked: { index: number; op: HistoryOp } | null = null;
  let read: { revision: number; op: HistoryOp } | null = null;
  const describe = (op: HistoryOp) => `op ${op.id} (client ${op.client}, ${op.op.kind} ${op.key})`;
  for (const event of events) {
    const { op } = event;
    const index = indexOf.get(op);
    // What an operation saw: the revision a read was served at, the store just below the
    // index where a write that changed nothing was decided.
    const revision = op.outcome !== "ok" ? undefined : (decidedAt.get(op) ?? op.servedRevision);
    if (event.kind === "complete") {
      if (index !== undefined && (acked === null || index > acked.index)) acked = { index, op };
      if (revision !== undefined && (read === null || revision > read.revision)) {
        read = { revision, op };
      }
      continue;
    }
    if (revision !== undefined) {
      if (acked !== null && revision < acked.index) {
        return {
          violation: `${describe(op)} was served at revision ${revision}, though ${describe(acked.op)}, acknowledged before it was invoked, changed the store at index ${acked.index}`,
          stats: { reads, writes },
        };
      }
      if (read !== null && revision < read.revision) {
        return {
          violation: `${describe(op)} was served at revision ${revision}, though ${describe(read.op)}, completed before it was invoked, was served at revision ${read.revision}`,
          stats: { reads, writes },
        };
      }
    }
    if (index !== undefined) {
      if (acked !== null && index <= acked.index && acked.op !== op) {
        return {
          violation: `${describe(op)} changed the store at index ${index}, though ${describe(acked.op)}, acknowledged before it was invoked, changed it at index ${acked.index}`,
          stats: { reads, writes },
        };
      }
      if (read !== null && index <= read.revision) {
        return {
          violation: `${describe(op)} changed the store at index ${index}, though ${describe(read.op)}, completed before it was invoked, was served at revision ${read.revision}`,
          stats: { reads, writes },
        };
      }
    }
  }
  return { violation: null, stats: { reads, writes } };
}

/** Whether an ok write said it changed nothing: a failed compare-and-set, an absent key's delete. */
function changedNothing(op: HistoryOp): boolean {
  return (op.op.kind === "cas" || op.op.kind === "delete") && op.output === false;
}

/** Why a write that changed nothing was answered wrongly by the store below `index`, or null. */
function decidedWrongly(op: HistoryOp, value: string | null, index: number): string | null {
  const what = `op ${op.id} (client ${op.client}, ${op.op.kind} ${op.key})`;
  if (op.op.kind === "cas" && value === op.op.expected) {
    return `${what} was refused at index ${index}, where ${op.key} held ${JSON.stringify(value)}, the value it expected`;
  }
  if (op.op.kind === "delete" && value !== null) {
    return `${what} found no key at index ${index}, where ${op.key} held ${JSON.stringify(value)}`;
  }
  return null;
}
