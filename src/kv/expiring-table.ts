/**
 * A bounded table whose entries expire a fixed time after their last use, measured in log
 * time. The client-session table and the idempotency table are both one of these.
 *
 * It never forgets a live entry to make room: a table that holds `countMax` live entries
 * has no room, and the caller refuses whatever would add one more (`hasRoom`). Forgetting
 * a live idempotency key or session would let a retry of its request be applied a second
 * time, silently; refusing a new request is visible and safe to retry.
 *
 * It owns the order of its entries, which is the order of their last use: a Map keeps
 * insertion order, and using an entry re-inserts it at the end, so the oldest entry is
 * always first and expiry costs O(1) per entry, never a scan. Because log time never goes
 * backwards (the state machine guarantees it), that order is also ascending time; entries
 * used at the same time are ordered by log index. Every replica applies the same log, so
 * every replica expires and refuses exactly the same entries. It must never read a clock:
 * the caller passes the log time in.
 */

import { assert } from "../shared/assert.js";
import { addDigests, type Digest64, subtractDigests, ZERO_DIGEST } from "./hash64.js";

/** Most expired entries one `hasRoom` removes from a table loaded past its limit. */
const ROOM_EXPIRY_MAX = 64;

/** One entry as stored: the value and the log time of its last use, in milliseconds. */
export interface ExpiringSlot<V> {
  readonly value: V;
  readonly timeMs: number;
}

/** The digest of one entry, for the order-independent digest of a table. */
export type SlotDigest<V> = (id: string, slot: ExpiringSlot<V>) => Digest64;

export class ExpiringTable<V> {
  private readonly slots = new Map<string, ExpiringSlot<V>>();
  private newestTimeMs = 0;
  private digestSum: Digest64 = ZERO_DIGEST;

  /**
   * @param countMax most entries kept; a new entry needs room (see `hasRoom`).
   * @param ttlMs milliseconds of log time after its last use that an entry expires.
   * @param slotDigest the digest of one entry; `digest` is their sum, kept as entries
   *   change, so that the state digest costs O(1) however large the table is.
   */
  constructor(
    readonly countMax: number,
    readonly ttlMs: number,
    private readonly slotDigest: SlotDigest<V> = () => ZERO_DIGEST,
  ) {
    assert(Number.isSafeInteger(countMax) && countMax > 0, "countMax must be positive");
    assert(Number.isSafeInteger(ttlMs) && ttlMs > 0, "ttlMs must be positive");
  }

  /** Number of entries, counting expired ones that are not removed yet. */
  get size(): number {
    return this.slots.size;
  }

  /** The sum of every entry's digest (expired ones not yet removed included). */
  get digest(): Digest64 {
    return this.digestSum;
  }

  /** The live entry for `id` at log time `nowMs`; an expired entry counts as absent. */
  get(id: string, nowMs: number): V | undefined {
    const slot = this.slots.get(id);
    if (slot === undefined || this.isExpired(slot, nowMs)) return undefined;
    return slot.value;
  }

  /**
   * Whether a new entry fits at log time `nowMs`. A full table makes room only by removing
   * its oldest entries, and only those that have expired; a live entry is never removed.
   * A table at its limit removes one; a table loaded past `countMax` (see `load`) removes
   * expired entries until it is under it, at most ROOM_EXPIRY_MAX per call, so it regains
   * room over a few calls without any one call doing unbounded work.
   */
  hasRoom(nowMs: number): boolean {
    if (this.slots.size < this.countMax) return true;
    const excess = this.slots.size - this.countMax + 1;
    this.expire(nowMs, Math.min(excess, ROOM_EXPIRY_MAX));
    return this.slots.size < this.countMax;
  }

  /**
   * Log time at which the oldest entry expires, or null when the table is empty: the
   * earliest time at which a full table can have room again.
   */
  oldestExpiryMs(): number | null {
    const oldest = this.slots.values().next();
    return oldest.done === true ? null : oldest.value.timeMs + this.ttlMs;
  }

  /**
   * Stores `value` for `id` as used at `nowMs`, making it the newest entry. A new `id`
   * needs room: the caller checks `hasRoom` first, and storing into a full table is a bug.
   */
  set(id: string, value: V, nowMs: number): void {
    assert(nowMs >= this.newestTimeMs, "log time went backwards");
    const previous = this.slots.get(id);
    if (previous !== undefined) this.forget(id, previous);
    assert(
      previous !== undefined || this.slots.size < this.countMax,
      "a new entry in a full table",
    );
    this.newestTimeMs = nowMs;
    this.remember(id, { value, timeMs: nowMs });
  }

  /**
   * Removes up to `countMax` expired entries, oldest first, and returns how many it
   * removed. Stops at the first live entry: every entry after it was used later.
   */
  expire(nowMs: number, countMax: number): number {
    let count = 0;
    for (const [id, slot] of this.slots) {
      if (count >= countMax || !this.isExpired(slot, nowMs)) break;
      this.forget(id, slot);
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
   * entry: a table in that state was not written by `set`, so the snapshot is corrupt. It
   * does not check `countMax`: a snapshot taken under a larger limit keeps its entries, and
   * the table has no room until enough of them expire.
   */
  load(id: string, value: V, timeMs: number): boolean {
    if (this.slots.has(id) || timeMs < this.newestTimeMs) return false;
    this.newestTimeMs = timeMs;
    this.remember(id, { value, timeMs });
    return true;
  }

  private remember(id: string, slot: ExpiringSlot<V>): void {
    this.slots.set(id, slot);
    this.digestSum = addDigests(this.digestSum, this.slotDigest(id, slot));
  }

  private forget(id: string, slot: ExpiringSlot<V>): void {
    this.slots.delete(id);
    this.digestSum = subtractDigests(this.digestSum, this.slotDigest(id, slot));
  }

  private isExpired(slot: ExpiringSlot<V>, nowMs: number): boolean {
    return nowMs - slot.timeMs >= this.ttlMs;
  }
}
