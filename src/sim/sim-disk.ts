/**
 * A simulated node's disk: what survived the last completed write. Writes complete in
 * order, after a latency; a crash loses every write that had not completed, and may tear
 * the one in progress (part of its entries land, as a torn tail that recovery trims). The
 * hard state is written before the entries of the same write, as the real runtime does,
 * so a log never holds a term above the recovered term. Snapshots are kept as opaque
 * state captured from the node's state machine.
 */

import type { Configuration } from "../core/configuration.js";
import { EMPTY_STATE, type RestoredState } from "../core/replica.js";
import type { Entry, HardState, SnapshotMeta } from "../protocol/messages.js";

export interface DiskWrite {
  readonly hardState: HardState | null;
  /** Entries to store; the first replaces any stored entry at its index and above. */
  readonly entries: readonly Entry[];
  /** The commit index to record as a recovery hint. */
  readonly commitIndex: number;
}

export interface StoredSnapshot<S> {
  readonly meta: SnapshotMeta;
  readonly state: S;
}

/** Recovery found a record that fails its checksum: the node must not start. */
export class SimCorruptionError extends Error {
  override readonly name = "SimCorruptionError";
}

/** The checksum a real log record carries, over what identifies the entry. */
function checksum(entry: Entry): number {
  let h = Math.imul(entry.index ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(entry.term, 0xc2b2ae35);
  h ^= entry.kind === "noop" ? 0x27d4eb2f : 0x165667b1;
  for (const byte of entry.data) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

export class SimDisk<S> {
  /** Checksum of each stored entry, computed when it was written. */
  private sums: number[] = [];
  flipped = 0;
  private hardState: HardState = EMPTY_STATE.hardState;
  /** The log starts after this index. */
  private base: SnapshotMeta = EMPTY_STATE.snapshot;
  private entries: Entry[] = [];
  private stored: StoredSnapshot<S> | null = null;
  writes = 0;
  torn = 0;

  /** Makes a write durable, or only its first `keep` entries when torn. */
  write(write: DiskWrite, keep = write.entries.length): void {
    this.writes++;
    if (write.hardState !== null) this.hardState = write.hardState;
    const first = write.entries[0];
    if (first !== undefined && keep > 0) {
      if (first.index <= this.base.index) throw new Error("sim disk: write below the snapshot");
      this.entries.length = first.index - this.base.index - 1;
      this.sums.length = this.entries.length;
      for (const entry of write.entries.slice(0, keep)) {
        this.entries.push(entry);
        this.sums.push(checksum(entry));
      }
    }
    if (keep < write.entries.length) this.torn++;
    const commitIndex = Math.min(
      Math.max(this.hardState.commitIndex, write.commitIndex),
      this.lastIndex,
    );
    this.hardState = { ...this.hardState, commitIndex };
  }

  /** Stores a snapshot of applied state; the log is kept (the core compacts separately). */
  saveSnapshot(snapshot: StoredSnapshot<S>): void {
    if (this.stored !== null && snapshot.meta.index <= this.stored.meta.index) return;
    this.stored = snapshot;
  }

  /** State transfer: the snapshot replaces the whole log. */
  installSnapshot(snapshot: StoredSnapshot<S>): void {
    this.stored = snapshot;
    this.base = snapshot.meta;
    this.entries = [];
    this.sums = [];
    const commitIndex = Math.max(this.hardState.commitIndex, snapshot.meta.index);
    this.hardState = { ...this.hardState, commitIndex };
  }

  snapshot(): StoredSnapshot<S> | null {
    return this.stored;
  }

  /**
   * Flips one bit of a stored record that is not the last one (a flip in the last record
   * is indistinguishable from a torn write, which recovery trims). Returns the index hit,
   * or null when the disk holds fewer than two records.
   */
  flipBit(pick: (count: number) => number): number | null {
    if (this.entries.length < 2) return null;
    const at = pick(this.entries.length - 1);
    const entry = this.entries[at]!;
    const data = entry.data.length > 0 ? entry.data.slice() : entry.data;
    const corrupt =
      data.length > 0
        ? (() => {
            data[0] = data[0]! ^ 1;
            return { ...entry, data };
          })()
        : { ...entry, term: entry.term ^ 1 };
    this.entries[at] = corrupt;
    this.flipped++;
    return entry.index;
  }

  /**
   * Set once the node's data was wiped: from then on its operator starts it with
   * `--join`, which a node ignores once its data directory holds state again.
   */
  wiped = false;

  /** The data directory's member incarnation; 0 until the directory is initialised. */
  memberIncarnation = 0;
  /** The configuration a member added to a running cluster learned with `--join`. */
  joinedConfig: Configuration | null = null;

  /**
   * Loses everything, as an operator wiping the node's data directory; `keepIdentity` is
   * the negative control in which the directory's identity survives (it must be caught).
   */
  wipe(options: { readonly keepIdentity?: boolean } = {}): void {
    this.wiped = true;
    if (options.keepIdentity !== true) {
      this.memberIncarnation = 0;
      this.joinedConfig = null;
    }
    this.sums = [];
    this.flipped = 0;
    this.hardState = EMPTY_STATE.hardState;
    this.base = EMPTY_STATE.snapshot;
    this.entries = [];
    this.stored = null;
  }

  /** The node lost its data and has not caught up yet (its hard state says so). */
  /** The term of the last hard state written (durable once its write completed). */
  get durableTerm(): number {
    return this.hardState.term;
  }

  get joining(): boolean {
    return this.hardState.joining === true;
  }

  recover(): RestoredState {
    const snap = this.stored?.meta ?? EMPTY_STATE.snapshot;
    // Every record is checked on the way in, as the real write-ahead log does.
    this.entries.forEach((entry, i) => {
      if (checksum(entry) !== this.sums[i]) {
        throw new SimCorruptionError(`record of entry ${entry.index} fails its checksum`);
      }
    });
    // Recovery starts right after the newest snapshot, as the real storage does.
    const entries = this.entries.slice(Math.max(0, snap.index - this.base.index));
    const first = entries[0];
    if (first !== undefined && first.index !== snap.index + 1) {
      throw new Error(`sim disk: log starts at ${first.index} after snapshot ${snap.index}`);
    }
    return { hardState: this.hardState, snapshot: snap, entries };
  }

  get lastIndex(): number {
    return this.base.index + this.entries.length;
  }
}
