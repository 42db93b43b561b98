/**
 * The recent changes of the store, kept in memory on every node for watches: each put and
 * delete with its key, value and revision, in the order they were applied. Every replica
 * applies the same log, so every node holds the same changes for the same revisions, and a
 * watch can resume on any node from the last revision it saw.
 *
 * It is bounded by `watchHistoryCountMax` changes and `watchHistoryBytesMax` bytes; the
 * oldest revisions are dropped whole, and `startRevision` says from which revision on every
 * change is held. A restore (state transfer, or a restart from a snapshot) starts it over
 * after the snapshot's revision and ends every subscription, since the changes in between
 * are not known here. It is local to the node: never replicated, hashed or snapshotted.
 * Listeners are called after each command is applied, with that command's changes, and
 * must not call back into the state machine.
 */

import { assert } from "../shared/assert.js";

export interface KvChange {
  readonly type: "put" | "delete";
  readonly key: string;
  /** The new value of a put; null for a delete. Shared with the store: do not modify. */
  readonly value: Uint8Array | null;
  /** The revision (log index) of the command that made the change. */
  readonly revision: number;
}

export interface ChangeListener {
  /** The changes of one applied command, in order (several share its revision). */
  changes(changes: readonly KvChange[]): void;
  /** The history was started over (a restore); this subscription has ended. */
  reset(): void;
}

/** What a change costs the byte bound: its key, value and bookkeeping. */
function changeBytes(change: KvChange): number {
  return change.key.length * 2 + (change.value?.byteLength ?? 0) + 64;
}

export class ChangeHistory {
  private changes: KvChange[] = [];
  private head = 0;
  private bytes = 0;
  private pending: KvChange[] = [];
  private readonly listeners = new Set<ChangeListener>();
  /** Every change with a revision at or after this one is held. */
  private start = 1;

  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number,
  ) {
    assert(countMax >= 1 && bytesMax >= 1, "history bounds must be positive");
  }

  /** The first revision from which every change is held; older ones are compacted. */
  get startRevision(): number {
    return this.start;
  }

  /** Number of changes held. */
  get size(): number {
    return this.changes.length - this.head;
  }

  /** Number of subscriptions open. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Records a change made by the command being applied (delivered at `flush`). */
  record(change: KvChange): void {
    const last = this.pending.at(-1) ?? this.changes.at(-1);
    assert(last === undefined || change.revision >= last.revision, "changes in revision order");
    this.pending.push(change);
  }

  /** Ends the command being applied: keeps its changes and tells the listeners. */
  flush(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    for (const change of batch) {
      this.changes.push(change);
      this.bytes += changeBytes(change);
    }
    this.evict(batch[0]!.revision);
    for (const listener of this.listeners) listener.changes(batch);
  }

  /**
   * The changes from `fromRevision` on, or null when some of them are no longer held
   * (`fromRevision` < `startRevision`).
   */
  since(fromRevision: number): KvChange[] | null {
    if (fromRevision < this.start) return null;
    let low = this.head;
    let high = this.changes.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.changes[mid]!.revision < fromRevision) low = mid + 1;
      else high = mid;
    }
    return this.changes.slice(low);
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Starts over after a restore: changes from `startRevision` on will be recorded. */
  reset(startRevision: number): void {
    this.changes = [];
    this.head = 0;
    this.bytes = 0;
    this.pending = [];
    this.start = startRevision;
    const listeners = [...this.listeners];
    this.listeners.clear();
    for (const listener of listeners) listener.reset();
  }

  /** Drops whole revisions, oldest first, while over a bound, never `keepRevision`. */
  private evict(keepRevision: number): void {
    const { changes } = this;
    while (this.size > this.countMax || this.bytes > this.bytesMax) {
      const oldest = changes[this.head]!;
      if (oldest.revision >= keepRevision) break;
      const revision = oldest.revision;
      while (this.head < changes.length && changes[this.head]!.revision === revision) {
        this.bytes -= changeBytes(changes[this.head]!);
        this.head++;
      }
      this.start = revision + 1;
    }
    if (this.head > 1024 && this.head * 2 > changes.length) {
      this.changes = changes.slice(this.head);
      this.head = 0;
    }
  }
}
