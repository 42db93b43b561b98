/**
 * The core's view of the replicated log: a snapshot boundary followed by entries in
 * memory. It tracks which entries still have to be handed to storage (`persistFrom`)
 * and which storage has confirmed durable (`durableIndex`), so that the master counts
 * itself towards a commit only for entries on its own disk.
 *
 * It never decides what is committed (the replica does) and it refuses, by assertion,
 * to truncate an entry at or below the commit index.
 */

import type { Entry, SnapshotMeta } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";

export class ReplicaLog {
  /** The snapshot the log starts after; index 0 / term 0 for an empty log. */
  private base: SnapshotMeta;
  private items: Entry[];
  /** Entries at this index and above have not yet been handed to storage. */
  private persistFrom: number;
  /** Highest index storage has confirmed durable (never above lastIndex). */
  private durable: number;
  /** Highest committed index; the log refuses to change anything at or below it. */
  commitIndex: number;
  /** Bytes of entry data above the commit index (see uncommittedBytes). */
  private uncommitted = 0;

  constructor(base: SnapshotMeta, entries: readonly Entry[], commitIndex: number) {
    this.base = base;
    this.items = [...entries];
    entries.forEach((entry, i) => {
      assert(entry.index === base.index + 1 + i, "log: recovered entries are not contiguous");
    });
    this.persistFrom = this.lastIndex() + 1;
    this.durable = this.lastIndex();
    this.commitIndex = Math.max(base.index, Math.min(commitIndex, this.lastIndex()));
    this.uncommitted = this.bytesBetween(this.commitIndex + 1, this.lastIndex());
    this.checkTermsMonotonic(0);
  }

  snapshot(): SnapshotMeta {
    return this.base;
  }

  /** The first index held as an entry (one past the snapshot). */
  firstIndex(): number {
    return this.base.index + 1;
  }

  lastIndex(): number {
    return this.base.index + this.items.length;
  }

  lastTerm(): number {
    return this.termAt(this.lastIndex()) ?? 0;
  }

  durableIndex(): number {
    return this.durable;
  }

  /** The term at `index`, or undefined when the entry is compacted away or absent. */
  termAt(index: number): number | undefined {
    if (index === this.base.index) return this.base.term;
    if (index < this.base.index || index > this.lastIndex()) return undefined;
    return this.items[index - this.base.index - 1]?.term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.base.index) return undefined;
    return this.items[index - this.base.index - 1];
  }

  /** Entries in [from, to], at most `maxCount` of them and about `maxBytes` of data. */
  slice(from: number, to: number, maxCount: number, maxBytes: number): Entry[] {
    assert(from > this.base.index, "log: slice below the snapshot");
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = from; i <= Math.min(to, this.lastIndex()) && out.length < maxCount; i++) {
      const entry = this.items[i - this.base.index - 1]!;
      if (out.length > 0 && bytes + entry.data.length > maxBytes) break;
      bytes += entry.data.length;
      out.push(entry);
    }
    return out;
  }

  matches(index: number, term: number): boolean {
    return this.termAt(index) === term;
  }

  /** Whether a log ending at (lastIndex, lastTerm) is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    // Raft §5.4.1: compare the last terms first, then the lengths.
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Appends entries created by this node as master. */
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1, "log: appended entry is not contiguous");
      assert(entry.term >= this.lastTerm(), "log: appended entry has a lower term");
      this.items.push(entry);
      this.uncommitted += entry.data.length;
    }
  }

  /** Bytes of entry data above the commit index: what a master holds for its backups. */
  uncommittedBytes(): number {
    return this.uncommitted;
  }

  /** Bytes of entry data in [from, to]. */
  private bytesBetween(from: number, to: number): number {
    let bytes = 0;
    for (let index = Math.max(from, this.firstIndex()); index <= to; index++) {
      bytes += this.entry(index)!.data.length;
    }
    return bytes;
  }

  /**
   * Merges entries received from the master after `prevIndex`: entries already present
   * with the same term are kept, the first conflicting one and everything after it are
   * replaced (Raft §5.3). Returns the index of the last entry now known to match.
   */
  merge(prevIndex: number, entries: readonly Entry[]): number {
    let i = 0;
    while (i < entries.length) {
      const entry = entries[i]!;
      assert(entry.index === prevIndex + 1 + i, "log: received entries are not contiguous");
      if (entry.index <= this.base.index) {
        i++;
        continue;
      }
      const term = this.termAt(entry.index);
      if (term === undefined) break;
      if (term !== entry.term) {
        this.truncateFrom(entry.index);
        break;
      }
      i++;
    }
    this.append(entries.slice(i));
    return prevIndex + entries.length;
  }

  /** Drops the entries at `index` and above. Never below or at the commit index. */
  private truncateFrom(index: number): void {
    assert(index > this.commitIndex, `log: truncating committed entry ${index}`);
    assert(index > this.base.index, "log: truncating into the snapshot");
    this.uncommitted -= this.bytesBetween(index, this.lastIndex());
    this.items.length = index - this.base.index - 1;
    this.persistFrom = Math.min(this.persistFrom, index);
    this.durable = Math.min(this.durable, index - 1);
  }

  /** Whether some entries have not yet been handed to storage. */
  hasUnpersisted(): boolean {
    return this.persistFrom <= this.lastIndex();
  }

  /** Entries that storage has not yet been given, and marks them as given. */
  takeUnpersisted(): Entry[] {
    if (this.persistFrom > this.lastIndex()) return [];
    const out = this.items.slice(this.persistFrom - this.base.index - 1);
    this.persistFrom = this.lastIndex() + 1;
    return out;
  }

  /** Storage confirms entries up to (index, term) durable; stale confirmations are ignored. */
  markDurable(index: number, term: number): boolean {
    if (index <= this.durable || this.termAt(index) !== term) return false;
    assert(index < this.persistFrom, "log: durable before being handed to storage");
    this.durable = index;
    return true;
  }

  /** Replaces the whole log with a snapshot received by state transfer. */
  resetToSnapshot(meta: SnapshotMeta): void {
    assert(meta.index > this.commitIndex, "log: state transfer behind the commit index");
    this.base = meta;
    this.items = [];
    this.persistFrom = meta.index + 1;
    this.durable = meta.index;
    this.commitIndex = meta.index;
    this.uncommitted = 0;
  }

  /** Forgets entries up to `meta.index`, which a local snapshot now covers. */
  compact(meta: SnapshotMeta): void {
    assert(meta.index <= this.commitIndex, "log: compacting uncommitted entries");
    assert(this.termAt(meta.index) === meta.term, "log: compaction point term mismatch");
    if (meta.index <= this.base.index) return;
    this.items = this.items.slice(meta.index - this.base.index);
    this.base = meta;
  }

  /** Advances the commit index; it never moves backwards. */
  commitTo(index: number): boolean {
    if (index <= this.commitIndex) return false;
    assert(index <= this.lastIndex(), `log: commit ${index} beyond last index ${this.lastIndex()}`);
    this.uncommitted -= this.bytesBetween(this.commitIndex + 1, index);
    assert(this.uncommitted >= 0, "log: uncommitted bytes went below zero");
    this.commitIndex = index;
    return true;
  }

  /**
   * Fast back-off (Raft §5.3, optimisation of etcd's findConflictByTerm): the largest
   * index at or below `index` whose term is at most `term`.
   */
  lastIndexWithTermAtMost(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    while (i > this.base.index) {
      const t = this.termAt(i);
      if (t !== undefined && t <= term) return i;
      i--;
    }
    return this.base.index;
  }

  private checkTermsMonotonic(from: number): void {
    for (let i = Math.max(1, from); i < this.items.length; i++) {
      assert(this.items[i]!.term >= this.items[i - 1]!.term, "log: terms decrease along the log");
    }
  }
}
