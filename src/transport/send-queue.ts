/**
 * A bounded FIFO of encoded frames waiting to be written to one peer. It owns the bounds
 * (message count and bytes) and their accounting, and never grows past either bound: an
 * offer that would exceed one is refused, and the caller counts the drop. Dropping the
 * newest message rather than blocking is safe because Raft retransmits what matters.
 */

import { assert } from "../shared/assert.js";

export interface SendQueueLimits {
  /**
   * Most messages queued for one peer.
   * @default 4096
   */
  readonly queueMessagesMax: number;
  /**
   * Most encoded bytes (frame headers included) queued for one peer. Must be at least one
   * largest frame, or a legal message could never be sent.
   * @default 67108864 (64 MiB)
   */
  readonly queueBytesMax: number;
}

export class SendQueue {
  /** Frames in order; entries before `head` are consumed and cleared. */
  private frames: (Uint8Array | undefined)[] = [];
  private head = 0;
  private queuedBytes = 0;

  constructor(private readonly limits: SendQueueLimits) {
    assert(Number.isSafeInteger(limits.queueMessagesMax) && limits.queueMessagesMax > 0);
    assert(Number.isSafeInteger(limits.queueBytesMax) && limits.queueBytesMax > 0);
  }

  get count(): number {
    return this.frames.length - this.head;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  /** Appends `frame` unless a bound would be exceeded; returns whether it was queued. */
  offer(frame: Uint8Array): boolean {
    if (this.count + 1 > this.limits.queueMessagesMax) return false;
    if (this.queuedBytes + frame.length > this.limits.queueBytesMax) return false;
    this.frames.push(frame);
    this.queuedBytes += frame.length;
    return true;
  }

  /** Removes and returns the oldest frame, or undefined when empty. */
  shift(): Uint8Array | undefined {
    if (this.count === 0) return undefined;
    const frame = this.frames[this.head];
    assert(frame !== undefined, "queued frame missing");
    this.frames[this.head] = undefined;
    this.head++;
    this.queuedBytes -= frame.length;
    // Compacting once half the array is consumed keeps shift O(1) amortised.
    if (this.head * 2 >= this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
    assert(this.queuedBytes >= 0 && (this.count > 0 || this.queuedBytes === 0));
    return frame;
  }

  /** Discards every queued frame and returns how many there were. */
  clear(): number {
    const discarded = this.count;
    this.frames = [];
    this.head = 0;
    this.queuedBytes = 0;
    return discarded;
  }
}
