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
 *   completed, before it was invoked.
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
    const revision = op.outcome === "ok" ? op.servedRevision : undefined;
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
