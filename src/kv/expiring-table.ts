/**
 * A bounded table whose entries expire a fixed time after their last use, measured in log
 * time. The client-session table and the idempotency table are both one of these.
 *
 * It owns the order of its entries, which is the order of their last use: a Map keeps
 * insertion order, and using an entry re-inserts it at the end, so the oldest entry is
 * always first and expiry and eviction cost O(1) each, never a scan. Because log time
 * never goes backwards (the state machine clamps it), that order is also ascending time;
 * entries used at the same time are ordered by log index. Every replica applies the same
 * log, so every replica expires and evicts exactly the same entries. It must never read a
 * clock: the caller passes the log time in.
 */

import { assert } from "../shared/assert.js";

/** One entry as stored: the value and the log time of its last use, in milliseconds. */
export interface ExpiringSlot<V> {
  readonly value: V;
  readonly timeMs: number;
}

export class ExpiringTable<V> {
  private readonly slots = new Map<string, ExpiringSlot<V>>();
  private newestTimeMs = 0;

  /**
   * @param countMax most entries kept; inserting one more evicts the oldest.
   * @param ttlMs milliseconds of log time after its last use that an entry expires.
   */
  constructor(
    readonly countMax: number,
    readonly ttlMs: number,
  ) {
    assert(Number.isSafeInteger(countMax) && countMax > 0, "countMax must be positive");
    assert(Number.isSafeInteger(ttlMs) && ttlMs > 0, "ttlMs must be positive");
  }

  /** Number of entries, counting expired ones that are not removed yet. */
  get size(): number {
    return this.slots.size;
  }

  /** The live entry for `id` at log time `nowMs`; an expired entry counts as absent. */
  get(id: string, nowMs: number): V | undefined {
    const slot = this.slots.get(id);
    if (slot === undefined || this.isExpired(slot, nowMs)) return undefined;
    return slot.value;
  }

  /**
   * Stores `value` for `id` as used at `nowMs`, making it the newest entry, and evicts the
   * oldest entries while the table holds more than `countMax`.
   */
  set(id: string, value: V, nowMs: number): void {
    assert(nowMs >= this.newestTimeMs, "log time went backwards");
    this.newestTimeMs = nowMs;
    this.slots.delete(id);
    this.slots.set(id, { value, timeMs: nowMs });
    while (this.slots.size > this.countMax) {
      const oldest = this.slots.keys().next();
      assert(oldest.done !== true);
      this.slots.delete(oldest.value);
    }
  }

  /**
   * Removes up to `countMax` expired entries, oldest first, and returns how many it
   * removed. Stops at the first live entry: every entry after it was used later.
   */
  expire(nowMs: number, countMax: number): number {
    let count = 0;
    for (const [id, slot] of this.slots) {
      if (count >= countMax || !this.isExpired(slot, nowMs)) break;
      this.slots.delete(id);
      count++;
    }
    return count;
  }

  /** The entries, oldest first. Entries are immutable; the caller must not hold the iterator
   * across a change to the table. */
  entries(): IterableIterator<[string, ExpiringSlot<V>]> {
    return this.slots.entries();
  }

  /**
   * Appends an entry while rebuilding a table from a snapshot, oldest first. Returns false,
   * changing nothing, when `id` is already present or `timeMs` is older than the newest
   * entry: a table in that state was not written by `set`, so the snapshot is corrupt.
   */
  load(id: string, value: V, timeMs: number): boolean {
    if (this.slots.has(id) || timeMs < this.newestTimeMs) return false;
    this.newestTimeMs = timeMs;
    this.slots.set(id, { value, timeMs });
    return true;
  }

  private isExpired(slot: ExpiringSlot<V>, nowMs: number): boolean {
    return nowMs - slot.timeMs >= this.ttlMs;
  }
}
