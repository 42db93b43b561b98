/**
 * The simulator's safety checks, run after every step of every node:
 *
 * - election safety: at most one master per term;
 * - log matching: two logs holding an entry with the same index and term hold the same
 *   entry there and agree on everything before it (checked with a hash chain);
 * - state machine safety: a committed entry is never lost or changed, a new master holds
 *   every entry committed before it (leader completeness), and no two nodes apply
 *   different entries at the same index;
 * - the commit index of a running node never goes backwards.
 *
 * The simulator passes entry objects by reference, so "the same entry" is object
 * identity: two masters creating different entries at one (index, term) is caught too.
 * A violation throws SafetyViolation with a message naming the nodes and indexes.
 */

import type { Replica } from "../../core/replica.js";
import type { Entry, NodeId } from "../../protocol/messages.js";

export class SafetyViolation extends Error {
  override readonly name = "SafetyViolation";
}

interface NodeView {
  /** The entries seen at the last check, by index (sparse below the snapshot). */
  entries: (Entry | undefined)[];
  /** chain[i] = hash of the entries' identities up to and including index i. */
  chain: number[];
  commitIndex: number;
  /** Incarnation: a restart resets the monotonic-commit check. */
  incarnation: number;
}

export class SafetyChecker {
  private readonly masters = new Map<number, NodeId>();
  private readonly committed: (Entry | undefined)[] = [];
  /** The term in which each index was first seen committed. */
  private readonly committedInTerm: number[] = [];
  /** The hash chain at each committed index, so a log that starts at a snapshot joins it. */
  private readonly committedChain: number[] = [0];
  private committedMax = 0;
  /** (index, term) -> chain hash at that point, as first seen on any node. */
  private readonly chainAt = new Map<string, { entry: Entry; chain: number }>();
  private readonly views = new Map<NodeId, NodeView>();
  private readonly ids = new WeakMap<Entry, number>();
  private nextId = 1;
  /** Count of checks performed, for the run summary. */
  checks = 0;

  /** Call when a node (re)starts: its view starts afresh from what it recovered. */
  restarted(id: NodeId, incarnation: number): void {
    this.views.set(id, { entries: [], chain: [0], commitIndex: 0, incarnation });
  }

  /** Call after every input a node's replica processed. */
  check(id: NodeId, replica: Replica): void {
    this.checks++;
    const view = this.views.get(id);
    if (view === undefined) throw new SafetyViolation(`node ${id} checked before it started`);
    if (replica.role === "master") this.checkMaster(id, replica);
    this.checkLog(id, replica, view);
    this.checkCommit(id, replica, view);
  }

  /** Call for every entry a node applies to its state machine, in order. */
  applied(id: NodeId, entry: Entry): void {
    const committed = this.committed[entry.index];
    if (committed === undefined) {
      throw new SafetyViolation(
        `node ${id} applied entry ${entry.index} that is not known committed`,
      );
    }
    if (committed !== entry) {
      throw new SafetyViolation(
        `node ${id} applied entry ${entry.index} (term ${entry.term}) but the committed entry there has term ${committed.term}`,
      );
    }
  }

  /** The highest index known committed anywhere. */
  get commitMax(): number {
    return this.committedMax;
  }

  private checkMaster(id: NodeId, replica: Replica): void {
    const known = this.masters.get(replica.term);
    if (known !== undefined && known !== id) {
      throw new SafetyViolation(`two masters in term ${replica.term}: nodes ${known} and ${id}`);
    }
    if (known !== undefined) return;
    this.masters.set(replica.term, id);
    // Leader completeness (Raft §5.4): a master holds every entry committed in an earlier
    // term. (A master elected late, in a term older than the cluster's newest, may lack
    // entries committed in newer terms; it can never commit anything.)
    const base = replica.snapshotIndex;
    for (let i = base + 1; i <= this.committedMax; i++) {
      if (this.committedInTerm[i]! >= replica.term) continue;
      const entry = replica.entryAt(i);
      if (entry !== this.committed[i]) {
        throw new SafetyViolation(
          `node ${id} became master of term ${replica.term} without committed entry ${i}`,
        );
      }
    }
  }

  private checkLog(id: NodeId, replica: Replica, view: NodeView): void {
    const base = replica.snapshotIndex;
    const last = replica.lastIndex;
    this.joinSnapshot(id, view, base);
    // The log only changes at its tail: find the first index that differs from the view.
    let from = Math.min(view.entries.length - 1, last);
    while (from > base && view.entries[from] !== replica.entryAt(from)) from--;
    from = Math.max(from, base) + 1;
    // Setting an array's length is a call into the runtime even when it does not change.
    if (view.entries.length !== from) view.entries.length = from;
    if (view.chain.length !== from) view.chain.length = from;
    for (let i = from; i <= last; i++) {
      const entry = replica.entryAt(i);
      if (entry === undefined) throw new SafetyViolation(`node ${id} has a hole at index ${i}`);
      if (entry.index !== i) {
        throw new SafetyViolation(`node ${id} holds entry ${entry.index} at ${i}`);
      }
      const previous = view.chain[i - 1];
      if (previous === undefined) throw new SafetyViolation(`node ${id}: no chain before ${i}`);
      const chain = mix(previous, this.identity(entry));
      view.entries[i] = entry;
      view.chain[i] = chain;
      this.checkChain(id, entry, chain);
    }
  }

  /**
   * A log that starts at a snapshot (after a state transfer or a restart) continues the
   * committed chain at its base: everything up to the base is committed.
   */
  private joinSnapshot(id: NodeId, view: NodeView, base: number): void {
    const chain = this.committedChain[base];
    if (view.entries[base] === this.committed[base] && view.chain[base] === chain) return;
    if (chain === undefined) {
      throw new SafetyViolation(
        `node ${id} holds a snapshot at ${base}, beyond anything committed`,
      );
    }
    view.entries.length = base + 1;
    view.chain.length = base + 1;
    view.entries[base] = this.committed[base];
    view.chain[base] = chain;
  }

  private checkChain(id: NodeId, entry: Entry, chain: number): void {
    const key = `${entry.index}:${entry.term}`;
    const seen = this.chainAt.get(key);
    if (seen === undefined) {
      this.chainAt.set(key, { entry, chain });
      return;
    }
    if (seen.entry !== entry) {
      throw new SafetyViolation(
        `log matching: node ${id} holds a different entry at index ${entry.index}, term ${entry.term}`,
      );
    }
    if (seen.chain !== chain) {
      throw new SafetyViolation(
        `log matching: node ${id} agrees at index ${entry.index}, term ${entry.term} but differs before it`,
      );
    }
  }

  private checkCommit(id: NodeId, replica: Replica, view: NodeView): void {
    const commit = replica.commitIndex;
    if (commit < view.commitIndex) {
      throw new SafetyViolation(
        `node ${id}: commit index went back from ${view.commitIndex} to ${commit}`,
      );
    }
    const base = replica.snapshotIndex;
    for (let i = Math.max(view.commitIndex, base) + 1; i <= commit; i++) {
      const entry = replica.entryAt(i)!;
      const known = this.committed[i];
      if (known === undefined) {
        this.committed[i] = entry;
        this.committedInTerm[i] = replica.term;
        this.committedChain[i] = view.chain[i]!;
      } else if (known !== entry) {
        throw new SafetyViolation(
          `node ${id} committed entry ${i} of term ${entry.term}; term ${known.term}'s entry was committed there before`,
        );
      }
    }
    if (commit > this.committedMax) {
      for (let i = this.committedMax + 1; i <= commit; i++) {
        if (this.committed[i] === undefined) {
          throw new SafetyViolation(`commit of ${commit} on node ${id} skips unknown entry ${i}`);
        }
      }
      this.committedMax = commit;
    }
    view.commitIndex = commit;
  }

  private identity(entry: Entry): number {
    let id = this.ids.get(entry);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(entry, id);
    }
    return id;
  }
}

function mix(previous: number, value: number): number {
  let h = Math.imul(previous ^ value, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca77);
  return (h ^ (h >>> 13)) >>> 0;
}
