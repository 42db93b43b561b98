/**
 * A simulated node's disk: what survived the last completed write. Writes complete in
 * order, after a latency; a crash loses every write that had not completed, and may tear
 * the one in progress (part of its entries land, as a torn tail that recovery trims). The
 * hard state is written before the entries of the same write, as the real runtime does,
 * so a log never holds a term above the recovered term.
 */

import type { Entry, HardState } from "../core/messages.js";
import { EMPTY_STATE, type RestoredState } from "../core/replica.js";

export interface DiskWrite {
  readonly hardState: HardState | null;
  /** Entries to store; the first replaces any stored entry at its index and above. */
  readonly entries: readonly Entry[];
  /** The commit index to record as a recovery hint. */
  readonly commitIndex: number;
}

export class SimDisk {
  private hardState: HardState = EMPTY_STATE.hardState;
  private entries: Entry[] = [];
  writes = 0;
  torn = 0;

  /** Makes a write durable, or only its first `keep` entries when torn. */
  write(write: DiskWrite, keep = write.entries.length): void {
    this.writes++;
    if (write.hardState !== null) this.hardState = write.hardState;
    const first = write.entries[0];
    if (first !== undefined && keep > 0) {
      this.entries.length = first.index - 1;
      for (const entry of write.entries.slice(0, keep)) this.entries.push(entry);
    }
    if (keep < write.entries.length) this.torn++;
    const commitIndex = Math.min(
      Math.max(this.hardState.commitIndex, write.commitIndex),
      this.entries.length,
    );
    this.hardState = { ...this.hardState, commitIndex };
  }

  recover(): RestoredState {
    return {
      hardState: this.hardState,
      snapshot: EMPTY_STATE.snapshot,
      entries: [...this.entries],
    };
  }

  get lastIndex(): number {
    return this.entries.length;
  }
}
