/**
 * The keys of the store in sorted order, for range reads. It is derived from the key Map
 * and local to the node: never replicated, never hashed, rebuilt after a restore.
 *
 * Writes stay O(1): a new key is appended to an unsorted list and a deleted key is only
 * counted; the next range read sorts the new keys and merges them into the sorted array
 * (O(n + k log k) for k new keys), dropping keys that no longer exist. A range read also
 * checks each key against the Map, so a key deleted since the last merge is never listed.
 * Order is JavaScript's string order (UTF-16 code units), the same on every node.
 */

import { assert } from "../shared/assert.js";

export class KeyIndex {
  private sorted: string[] = [];
  /** Keys inserted since the last merge; some may have been deleted again since. */
  private added: string[] = [];
  /** Deletions since the last merge, an upper bound on dead keys in `sorted`. */
  private removedCount = 0;

  /** @param has whether a key exists now (the key Map's `has`). */
  constructor(private readonly has: (key: string) => boolean) {}

  /** Records a key that was not in the store before. */
  insert(key: string): void {
    this.added.push(key);
  }

  /** Records that a key left the store. */
  remove(): void {
    this.removedCount++;
  }

  /**
   * Up to `countMax` keys that start with `prefix` and sort after `after` (from the first
   * when null), in order, stopping early once `accept` returns false for a key; the last
   * element says whether more keys follow.
   */
  scan(
    prefix: string,
    after: string | null,
    countMax: number,
    accept: (key: string) => boolean,
  ): { keys: string[]; more: boolean } {
    assert(countMax >= 1, "a scan returns at least one key");
    this.settle();
    const { sorted } = this;
    let i =
      after !== null && after >= prefix ? upperBound(sorted, after) : lowerBound(sorted, prefix);
    const keys: string[] = [];
    for (; i < sorted.length; i++) {
      const key = sorted[i]!;
      if (!key.startsWith(prefix)) return { keys, more: false };
      if (!this.has(key)) continue;
      if (keys.length >= countMax || !accept(key)) return { keys, more: true };
      keys.push(key);
    }
    return { keys, more: false };
  }

  private settle(): void {
    if (this.added.length > 0) {
      const added = this.added.sort();
      this.added = [];
      const merged: string[] = [];
      let i = 0;
      let j = 0;
      const { sorted, has } = this;
      while (i < sorted.length || j < added.length) {
        const a = sorted[i];
        const b = added[j];
        const next = b === undefined || (a !== undefined && a <= b) ? a! : b;
        if (next === a) i++;
        if (next === b) j++;
        if (merged[merged.length - 1] !== next && has(next)) merged.push(next);
      }
      this.sorted = merged;
      this.removedCount = 0;
    } else if (this.removedCount > 1024 && this.removedCount * 4 > this.sorted.length) {
      this.sorted = this.sorted.filter(this.has);
      this.removedCount = 0;
    }
  }
}

/** The first index whose key is >= `key`. */
function lowerBound(sorted: readonly string[], key: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]! < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The first index whose key is > `key`. */
function upperBound(sorted: readonly string[], key: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]! <= key) low = mid + 1;
    else high = mid;
  }
  return low;
}
