/**
 * One segment file of the write-ahead log as the process sees it: the open handle, the
 * size of its valid bytes, and where each entry's record starts. The byte layout lives in
 * `wal-format.ts`; the decisions (when to roll, what to delete) live in `wal.ts`.
 *
 * A segment must never be closed while a read is using its handle: deletion marks it
 * retired and the last reader closes it. Unlinking an open file is safe on POSIX, so a
 * retired segment stays readable until then.
 */

import { assert } from "../shared/assert.js";
import { closeQuietly, type FileHandleLike } from "./file-system.js";

export class Segment {
  /** Next write position: everything before it is valid records (or the header). */
  bytes: number;
  /** Byte offset of the record of entry `first + k`, for each entry the segment holds. */
  readonly offsets: number[] = [];
  /** Size in bytes (frame included) of the record at the same position in `offsets`. */
  readonly sizes: number[] = [];
  /** Bytes written since the last fdatasync of this segment. */
  unsyncedBytes = 0;
  private readers = 0;
  private retired = false;

  constructor(
    readonly first: number,
    readonly path: string,
    readonly handle: FileHandleLike,
    bytes: number,
  ) {
    assert(Number.isSafeInteger(first) && first >= 1, "segment first index must be positive");
    this.bytes = bytes;
  }

  /** Last index held (first - 1 when the segment holds no entry). */
  lastIndex(): number {
    return this.first + this.offsets.length - 1;
  }

  /** Records an entry written at `offset`; entries must arrive in index order. */
  addEntry(index: number, offset: number, size: number): void {
    assert(index === this.lastIndex() + 1, `segment ${this.path}: entry ${index} out of order`);
    assert(offset > 0 && size > 0, "entry record position must be inside the segment");
    this.offsets.push(offset);
    this.sizes.push(size);
  }

  /** Forgets entries at `index` and above (their records stay on disk behind a truncation). */
  truncateFrom(index: number): void {
    assert(index >= this.first && index <= this.lastIndex() + 1, "truncation outside segment");
    this.offsets.length = index - this.first;
    this.sizes.length = index - this.first;
  }

  /** Marks a read in progress; pair with `release`. */
  acquire(): void {
    assert(!this.retired, `segment ${this.path} read after deletion`);
    this.readers++;
  }

  async release(): Promise<void> {
    assert(this.readers > 0, "segment released more often than acquired");
    this.readers--;
    if (this.retired && this.readers === 0) await closeQuietly(this.handle);
  }

  /** The file is gone (or going): close the handle once no read uses it. */
  async retire(): Promise<void> {
    assert(!this.retired, `segment ${this.path} retired twice`);
    this.retired = true;
    if (this.readers === 0) await closeQuietly(this.handle);
  }

  isRetired(): boolean {
    return this.retired;
  }
}
