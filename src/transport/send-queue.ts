/**
 * A bounded queue of encoded frames waiting to be written to one peer, in two lanes:
 * control frames (heartbeats, votes, acknowledgements) leave before bulk frames (appends
 * carrying entries, snapshot chunks), each lane in FIFO order. Under a heavy write load
 * the bulk lane can hold megabytes; a heartbeat queued behind them would reach the
 * backup too late, and the backup would elect a new master while the old one is busy,
 * not dead. Overtaking is safe: the protocol tolerates reordered messages (the core
 * simulator reorders them; the whole-node simulator's links keep their order), and
 * appends keep their order among themselves.
 *
 * It owns the bounds (message count and bytes) and their accounting, and never grows
 * past them: an offer that would exceed one is refused, and the caller counts the drop.
 * Dropping the newest message rather than blocking is safe because Raft retransmits
 * what matters. Control frames may use CONTROL_RESERVE_BYTES beyond the byte bound, and
 * bulk frames may not take the last CONTROL_RESERVE_MESSAGES of the count, so that a queue
 * full of appends or forwarded proposals still takes a heartbeat.
 */

import { assert } from "../shared/assert.js";

export interface SendQueueLimits {
  /**
   * Most messages queued for one peer; bulk frames may take all but a reserve of it
   * (CONTROL_RESERVE_MESSAGES, at most a quarter).
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

/** Whether a message of this type goes in the bulk lane (control frames overtake it). */
export function isBulk(type: string): boolean {
  return type === "append" || type === "snapshot_chunk" || type === "forward_proposal";
}

/** Bytes beyond `queueBytesMax` that control frames alone may use. */
export const CONTROL_RESERVE_BYTES = 1024 * 1024;
/**
 * Messages of `queueMessagesMax` that bulk frames may not take (at most a quarter of it), so
 * that the count bound holds and yet control frames always have room.
 */
export const CONTROL_RESERVE_MESSAGES = 256;

/**
 * `frame`, or a copy of it when it is a small view of a much larger buffer. The encoder
 * hands out views into msgpackr's shared buffer, which is four times the largest frame
 * encoded lately (a snapshot chunk of a mebibyte makes it 4 MiB): a queued heartbeat of a
 * hundred bytes kept its whole buffer alive, and a queue of them for a peer that is down
 * held gigabytes outside the heap while it counted kilobytes. A frame that waits here
 * holds the bytes the queue counts, no more.
 */
function ownedFrame(frame: Uint8Array): Uint8Array {
  return frame.buffer.byteLength > 2 * frame.byteLength ? new Uint8Array(frame) : frame;
}

/** One FIFO lane; entries before `head` are consumed and cleared. */
class Lane {
  private frames: (Uint8Array | undefined)[] = [];
  private head = 0;

  get count(): number {
    return this.frames.length - this.head;
  }

  push(frame: Uint8Array): void {
    this.frames.push(frame);
  }

  shift(): Uint8Array | undefined {
    if (this.count === 0) return undefined;
    const frame = this.frames[this.head];
    assert(frame !== undefined, "queued frame missing");
    this.frames[this.head] = undefined;
    this.head++;
    // Compacting once half the array is consumed keeps shift O(1) amortised.
    if (this.head * 2 >= this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
    return frame;
  }

  clear(): void {
    this.frames = [];
    this.head = 0;
  }
}

export class SendQueue {
  private readonly control = new Lane();
  private readonly bulk = new Lane();
  private queuedBytes = 0;

  constructor(private readonly limits: SendQueueLimits) {
    assert(Number.isSafeInteger(limits.queueMessagesMax) && limits.queueMessagesMax > 0);
    assert(Number.isSafeInteger(limits.queueBytesMax) && limits.queueBytesMax > 0);
  }

  get count(): number {
    return this.control.count + this.bulk.count;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  /**
   * Queues `frame` in its lane unless a bound would be exceeded; returns whether it was
   * queued. `bulk`: an append carrying entries or a snapshot chunk.
   */
  offer(frame: Uint8Array, bulk = false): boolean {
    // Both bounds keep room for control frames: many small bulk frames (forwarded
    // proposals) would otherwise fill the count and refuse a heartbeat's answer.
    const { queueMessagesMax } = this.limits;
    const reserve = Math.min(CONTROL_RESERVE_MESSAGES, Math.floor(queueMessagesMax / 4));
    const messagesMax = bulk ? queueMessagesMax - reserve : queueMessagesMax;
    if (this.count + 1 > messagesMax) return false;
    const bytesMax = this.limits.queueBytesMax + (bulk ? 0 : CONTROL_RESERVE_BYTES);
    if (this.queuedBytes + frame.length > bytesMax) return false;
    (bulk ? this.bulk : this.control).push(ownedFrame(frame));
    this.queuedBytes += frame.length;
    return true;
  }

  /** Removes and returns the next frame to write (control frames first), or undefined. */
  shift(): Uint8Array | undefined {
    const frame = this.control.shift() ?? this.bulk.shift();
    if (frame === undefined) return undefined;
    this.queuedBytes -= frame.length;
    assert(this.queuedBytes >= 0 && (this.count > 0 || this.queuedBytes === 0));
    return frame;
  }

  /** Discards every queued frame and returns how many there were. */
  clear(): number {
    const discarded = this.count;
    this.control.clear();
    this.bulk.clear();
    this.queuedBytes = 0;
    return discarded;
  }
}
