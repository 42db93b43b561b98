/**
 * What the master knows of one backup's log, and how it replicates to it (the flow
 * control of etcd's Progress, in this project's words):
 *
 * - `probe`: the master does not know where the backup's log matches its own. It sends
 *   one append at a time and waits for the answer (or the next heartbeat answer).
 * - `replicate`: the logs match up to `match`; appends are pipelined, up to a bounded
 *   number in flight, each optimistically advancing `next`.
 * - `transfer`: the entries the backup needs are compacted away; a state transfer
 *   (snapshot) is under way and appends wait for it.
 */

import { assert } from "../shared/assert.js";

export type ProgressState = "probe" | "replicate" | "transfer";

export class Progress {
  state: ProgressState = "probe";
  /** Highest index known to match the master's log on this backup. */
  match = 0;
  /** Next index to send. */
  next: number;
  /** In `probe`: an append was sent and not yet answered. */
  probeSent = false;
  /**
   * In `probe`: probe without entries, and from the log's start when the entries after the
   * probe point are compacted away, rather than start a state transfer. Set after a state
   * transfer, while the backup may take minutes to install it: each heartbeat answer lets
   * another probe go, and entries or states sent meanwhile would only pile up, unanswered,
   * behind the install. Cleared by the backup's answer to such a probe.
   */
  probeEmpty = false;
  /** In `replicate`: last index of each append in flight, oldest first. */
  readonly inflight: number[] = [];
  /** In `transfer`: the snapshot index being transferred. */
  transferIndex = 0;
  /** The commit index carried by the last append sent to this backup. */
  commitSent = 0;
  /** The master's tick count (its electionElapsed) when the backup last answered. */
  lastActive = 0;
  /** The incarnation the configuration listed for this member when this was made. */
  listedIncarnation = 0;
  /** The incarnation this member's first answer in this term came from (0: none yet). */
  incarnation = 0;
  /** Whether this member has answered this master at all. */
  heard = false;
  /**
   * Set when a configuration removed this member: the master keeps replicating to it
   * (counting it for nothing) until it holds the removal and knows it committed, so that
   * it learns it was removed and stops. The master's tick count when it was removed.
   */
  leavingSince: number | null = null;

  constructor(next: number) {
    this.next = next;
  }

  becomeProbe(): void {
    // After a state transfer the backup's answer has moved `match` past the snapshot.
    this.next = this.match + 1;
    this.state = "probe";
    this.probeSent = false;
    this.inflight.length = 0;
    this.transferIndex = 0;
  }

  becomeReplicate(): void {
    this.state = "replicate";
    this.probeEmpty = false;
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflight.length = 0;
  }

  becomeTransfer(index: number): void {
    this.state = "transfer";
    this.transferIndex = index;
    this.probeSent = false;
    this.inflight.length = 0;
    this.probeEmpty = false;
  }

  /** Whether the master may send another append now. */
  isPaused(inflightMax: number): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflight.length >= inflightMax;
      case "transfer":
        return true;
    }
  }

  /** Records an append ending at `lastIndex` as sent. */
  sent(lastIndex: number, entryCount: number): void {
    if (this.state === "replicate") {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflight.push(lastIndex);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /** The backup matches up to `index`. Returns whether this was news. */
  acknowledge(index: number): boolean {
    while (this.inflight.length > 0 && this.inflight[0]! <= index) this.inflight.shift();
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    this.probeSent = false;
    return true;
  }

  /**
   * The backup rejected an append at `rejected`; `hint` is where to try next. Returns
   * false when the rejection is stale (an answer to an append sent before a newer one).
   */
  reject(rejected: number, hint: number, backupLast: number): boolean {
    if (rejected <= this.match) {
      // A rejection at or below the match is a delayed duplicate, unless the backup now
      // holds less than it acknowledged: its data was lost (a wiped data directory).
      // Start over from what it holds; lowering `match` never un-commits anything.
      if (backupLast >= this.match || this.state === "transfer") return false;
      this.becomeProbe();
      this.match = 0;
      this.next = Math.max(1, Math.min(rejected, hint + 1));
      return true;
    }
    if (this.state === "replicate") {
      this.becomeProbe();
      this.next = Math.max(this.match + 1, Math.min(rejected, hint + 1));
      return true;
    }
    if (this.state !== "probe" || this.next - 1 !== rejected) return false;
    this.next = Math.max(this.match + 1, Math.min(rejected, hint + 1));
    this.probeSent = false;
    assert(this.next >= 1, "progress: next below 1");
    return true;
  }
}
