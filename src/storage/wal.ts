/**
 * The write-ahead log on real files: entries and truncations appended to segment files,
 * made durable with fdatasync in group commits. It owns the segment files, the in-memory
 * index of where each entry's record starts, and the queue of writes not yet on disk.
 *
 * Shape for the node runtime: `append`, `truncateFrom`, `compact` and `reset` change the
 * log at once in memory (so `lastIndex`, `termAt` and `entries` see the change) and queue
 * the write; `sync()` resolves once everything queued before it is durable. A single
 * writer takes everything queued so far as one batch, writes it and calls fdatasync once;
 * whatever is queued while that fdatasync runs forms the next batch (group commit), so
 * concurrent writers share fsyncs instead of paying one each.
 *
 * It must never acknowledge (resolve `sync`) before fdatasync returned, never retry a
 * failed write or fsync (the first failure poisons the log, and every later call fails
 * with it), and never leave the segments in a state that recovery would read as a gap:
 * segments are created under a temporary name and renamed, and deleted newest first.
 */

import { join } from "node:path";
import type { Entry, SnapshotMeta } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { type Clock, realClock } from "../shared/clock.js";
import { WalCorruptError, WalMissingSegmentError } from "./errors.js";
import {
  createDirDurably,
  type FileSystem,
  io,
  nodeFileSystem,
  readFully,
  writeFully,
} from "./file-system.js";
import { walQueuedBytesMax, walScanWindowBytes } from "./limits.js";
import {
  checkFrame,
  decodeRecord,
  encodeEntryRecord,
  encodeSegmentHeader,
  encodeTruncateRecord,
  entryRecordBytes,
  recordHeaderBytes,
  segmentFileName,
  segmentHeaderBytes,
  truncatePayloadBytes,
} from "./wal-format.js";
import { scanLog } from "./wal-recovery.js";
import { Segment } from "./wal-segment.js";

export interface WalOptions {
  /** The file system; tests inject one that counts fsyncs or fails. @default nodeFileSystem */
  readonly fs: FileSystem;
  /** Batching turns and fsync timing; the simulator passes its virtual clock. @default realClock */
  readonly clock: Clock;
  /** A segment is closed and a new one started once it would grow past this many bytes. */
  readonly segmentBytes: number;
}

/** Counters for metrics and the benchmark. */
export interface WalStats {
  /** Group commits completed. */
  batches: number;
  /** fdatasync calls on segment files. */
  fdatasyncs: number;
  /** fsync calls on the log directory (segment creation and deletion). */
  dirSyncs: number;
  bytesWritten: number;
  entriesWritten: number;
}

type WalOp =
  | { readonly type: "append"; readonly entries: readonly Entry[] }
  | { readonly type: "truncate"; readonly index: number }
  | { readonly type: "compact"; readonly upToIndex: number }
  | { readonly type: "reset"; readonly after: SnapshotMeta };

/**
 * Records for the active segment, not yet written: encoded into one buffer when they are
 * (a record per entry, concatenated, copied each entry twice).
 */
interface PendingWrite {
  readonly segment: Segment;
  bytes: number;
  readonly placements: ({ entry: Entry; size: number } | { truncate: number; size: number })[];
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody waits for must not crash the process with an unhandled rejection; the
  // failure is kept in `Wal.failure` and reported to every later caller.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export class Wal {
  /** Logical log: entries first..first+terms.length-1, after compaction and truncation. */
  private first: number;
  private baseTerm: number;
  private terms: number[];
  /** Entries queued but not yet written, served to readers from memory. */
  private readonly unwritten = new Map<number, Entry>();

  private segments: Segment[];
  /** See durableLastIndex(). */
  private durableLast: number;
  private pending: PendingWrite | null = null;

  private queue: WalOp[] = [];
  private queuedBytes = 0;
  /** Bytes of the batch being written (see pendingBytes). */
  private batchBytes = 0;
  private scheduled = false;
  private running = false;
  private current: Deferred | null = null;
  private next: Deferred = deferred();
  private barrier: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private closed = false;
  private syncObserver: ((seconds: number) => void) | null = null;
  readonly stats: WalStats = {
    batches: 0,
    fdatasyncs: 0,
    dirSyncs: 0,
    bytesWritten: 0,
    entriesWritten: 0,
  };

  private constructor(
    readonly dir: string,
    private readonly options: WalOptions,
    segments: Segment[],
  ) {
    this.segments = segments;
    this.first = segments[0]?.first ?? 1;
    this.baseTerm = 0;
    this.terms = [];
    this.durableLast = segments.at(-1)?.lastIndex() ?? 0;
  }

  /**
   * Opens (creating when absent) the log in `dir` and recovers it; see wal-recovery.ts
   * for the rules. `after` is the latest durable snapshot ({0, 0} for none): entries up to
   * it are dropped, and a log that ends before it or disagrees with its term is discarded
   * (both reported as warnings). Throws ERR_WAL_CORRUPT or ERR_WAL_MISSING_SEGMENT when the
   * log is damaged, ERR_DISK_FULL or ERR_STORAGE_IO when the disk fails.
   */
  /**
   * Opens (recovers) the log in `dir`. `durableThrough`: an index up to which the log is known
   * to have been durable (the hard state's commit hint), so that damage there is not taken
   * for a torn tail and cut off.
   */
  static async open(
    dir: string,
    after: SnapshotMeta,
    options: Partial<WalOptions> & Pick<WalOptions, "segmentBytes">,
    durableThrough = 0,
  ): Promise<{ wal: Wal; warnings: string[] }> {
    const full: WalOptions = {
      fs: options.fs ?? nodeFileSystem,
      clock: options.clock ?? realClock,
      segmentBytes: options.segmentBytes,
    };
    assert(full.segmentBytes > segmentHeaderBytes, "segment size must exceed the header");
    await createDirDurably(full.fs, dir);
    const scanned = await scanLog(full.fs, dir, after, durableThrough);
    const wal = new Wal(dir, full, scanned.segments);
    const warnings = [...scanned.warnings];
    try {
      await wal.reconcile(after, scanned.terms, warnings);
    } catch (error) {
      for (const segment of wal.segments) await segment.retire();
      throw error;
    }
    return { wal, warnings };
  }

  /** Fits the scanned log to the snapshot it follows (Raft §7: keep a matching suffix). */
  private async reconcile(after: SnapshotMeta, terms: number[], warnings: string[]): Promise<void> {
    const oldest = this.segments[0];
    this.first = after.index + 1;
    this.baseTerm = after.term;
    if (oldest === undefined) {
      await this.discardAll(after);
      return;
    }
    const last = oldest.first + terms.length - 1;
    if (oldest.first > after.index + 1) {
      const detail = `the oldest segment starts at index ${oldest.first}, after the snapshot at ${after.index}`;
      throw new WalMissingSegmentError(oldest.path, after.index + 1, detail);
    }
    const termThere = terms[after.index - oldest.first];
    const conflict = after.index >= oldest.first && termThere !== after.term;
    if (last < after.index || conflict) {
      const why = conflict
        ? `holds term ${termThere} at index ${after.index} where the snapshot has term ${after.term}`
        : `ends at index ${last}, before the snapshot`;
      warnings.push(
        `discarded the write-ahead log (entries ${oldest.first}..${last}): it ${why}, and the ` +
          `snapshot at index ${after.index} (term ${after.term}) supersedes it`,
      );
      await this.discardAll(after);
      return;
    }
    this.terms = terms.slice(after.index + 1 - oldest.first);
    this.checkInvariants();
  }

  // ------------------------------------------------------------------ logical view

  /** First index the log holds (one past the snapshot it follows). */
  firstIndex(): number {
    return this.first;
  }

  /** Last index the log holds, queued writes included; firstIndex() - 1 when empty. */
  lastIndex(): number {
    return this.first + this.terms.length - 1;
  }

  /** Term of the entry at `index`; for firstIndex() - 1, the snapshot's term; else undefined. */
  termAt(index: number): number | undefined {
    if (index === this.first - 1) return this.baseTerm;
    if (index < this.first || index > this.lastIndex()) return undefined;
    return this.terms[index - this.first];
  }

  /**
   * Calls `observer` with the seconds each fdatasync of a segment took (the node's fsync
   * latency metric). One observer; a later call replaces it.
   */
  observeSyncs(observer: (seconds: number) => void): void {
    this.syncObserver = observer;
  }

  /**
   * Highest index up to which the log on disk (what survived fdatasync) already is the log
   * that the queued operations will leave: a truncation or reset lowers it at once, before
   * its record is written, so that nothing (the commit hint) counts on an entry it is
   * replacing. Writes raise it once they are durable.
   */
  durableLastIndex(): number {
    return this.durableLast;
  }

  /**
   * Queues `entries` (contiguous, terms never decreasing). The first may be at or below
   * lastIndex(): as in the core's Ready, an entry at index i replaces the stored entry at i
   * and everything after it. Durable once a later `sync()` resolves. Throws the log's
   * fatal error if an earlier write failed.
   */
  append(entries: readonly Entry[]): void {
    this.checkUsable();
    const head = entries[0];
    if (head === undefined) return;
    assert(head.index >= this.first, `wal: append at ${head.index} below first ${this.first}`);
    assert(head.index <= this.lastIndex() + 1, `wal: append at ${head.index} leaves a gap`);
    if (head.index <= this.lastIndex()) this.truncateFrom(head.index);
    let bytes = 0;
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1, `wal: entry ${entry.index} is not contiguous`);
      assert(Number.isSafeInteger(entry.term), `wal: entry ${entry.index} has a bad term`);
      assert(
        entry.term >= (this.termAt(this.lastIndex()) ?? 0),
        "wal: terms decrease along the log",
      );
      this.terms.push(entry.term);
      this.unwritten.set(entry.index, entry);
      bytes += entryRecordBytes(entry);
    }
    this.enqueue({ type: "append", entries }, bytes);
  }

  /** Queues "the log from `index` on is replaced": entries at `index` and above are gone. */
  truncateFrom(index: number): void {
    this.checkUsable();
    assert(index >= this.first, `wal: truncation at ${index} below first ${this.first}`);
    assert(index <= this.lastIndex() + 1, `wal: truncation at ${index} beyond the log`);
    if (index === this.lastIndex() + 1) return;
    this.durableLast = Math.min(this.durableLast, index - 1);
    for (let i = index; i <= this.lastIndex(); i++) this.unwritten.delete(i);
    this.terms.length = index - this.first;
    this.enqueue({ type: "truncate", index }, 0);
  }

  /**
   * Forgets entries up to `upToIndex`, which a durable snapshot must already cover, and
   * deletes every segment that holds only such entries. The active segment is never
   * deleted. Resolves once the deletions are durable.
   */
  compact(upToIndex: number): Promise<void> {
    this.checkUsable();
    assert(upToIndex <= this.lastIndex(), "wal: compaction beyond the log; use reset()");
    if (upToIndex < this.first) return this.sync();
    this.baseTerm = this.termAt(upToIndex)!;
    this.terms.splice(0, upToIndex - this.first + 1);
    this.first = upToIndex + 1;
    this.enqueue({ type: "compact", upToIndex }, 0);
    return this.sync();
  }

  /**
   * Discards the whole log: it continues after `after`, a durable snapshot received by
   * state transfer that the log does not match (Raft §7). Resolves once durable.
   */
  reset(after: SnapshotMeta): Promise<void> {
    this.checkUsable();
    assert(after.index >= this.first - 1, "wal: reset to before the log's start");
    this.first = after.index + 1;
    this.baseTerm = after.term;
    this.terms = [];
    this.unwritten.clear();
    this.durableLast = Math.min(this.durableLast, after.index);
    this.enqueue({ type: "reset", after }, 0);
    return this.sync();
  }

  /**
   * Resolves once everything queued before this call is durable; rejects with the log's
   * fatal error (ERR_DISK_FULL, ERR_STORAGE_IO) if a write or fdatasync failed.
   */
  /** Bytes of entries queued or being written, not durable yet. */
  pendingBytes(): number {
    return this.queuedBytes + this.batchBytes;
  }

  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.queue.length > 0) {
      this.schedule();
      return this.next.promise;
    }
    return this.current?.promise ?? Promise.resolve();
  }

  /**
   * Makes the next batch wait for `write` (the hard state): nothing that no batch has taken
   * yet reaches the disk before it, which covers everything queued after this call and
   * everything queued before it in the same synchronous step. A failure of `write` fails
   * the log.
   */
  holdUntil(write: Promise<void>): void {
    const barrier = Promise.all([this.barrier, write]).then(() => {});
    barrier.catch(() => {});
    this.barrier = barrier;
  }

  /**
   * Entries in [from, to) (like Array.slice), at most about `maxBytes` of data but always
   * at least one. Reads written entries back from disk and verifies their checksums. When
   * the log is compacted, truncated or reset while the read runs, it returns the entries
   * read so far (each of them was in the log when it was read).
   */
  async entries(from: number, to: number, maxBytes = Number.POSITIVE_INFINITY): Promise<Entry[]> {
    this.checkUsable();
    assert(from >= this.first && from <= to, `wal: read from ${from} outside the log`);
    assert(to <= this.lastIndex() + 1, `wal: read to ${to} beyond the log`);
    const out: Entry[] = [];
    const budget = { bytes: maxBytes };
    let index = from;
    while (index < to && (out.length === 0 || budget.bytes > 0)) {
      // Between two reads the log may have changed under us: stop at its new bounds.
      if (out.length > 0 && (index < this.first || index > this.lastIndex())) break;
      const cached = this.unwritten.get(index);
      const read = cached !== undefined ? [cached] : await this.readRun(index, to, budget.bytes);
      for (const entry of read) {
        if (out.length > 0 && entry.data.length > budget.bytes) return out;
        budget.bytes -= entry.data.length;
        out.push(entry);
        index++;
      }
    }
    return out;
  }

  /** Flushes everything queued, then closes every segment. The log is unusable afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.failure === null) await this.sync();
    } finally {
      this.closed = true;
      for (const segment of this.segments) await segment.retire();
      this.segments = [];
    }
  }

  // ------------------------------------------------------------------ reading

  /** Reads consecutive written entries from one segment, starting at `from`. */
  private async readRun(from: number, to: number, budgetBytes: number): Promise<Entry[]> {
    const segment = this.segmentFor(from);
    let last = from;
    let bytes = segment.sizes[from - segment.first]!;
    // One positional read per run, capped so a huge request does not allocate a huge buffer.
    const readBytesMax = Math.max(
      walScanWindowBytes,
      Math.min(budgetBytes, 64 * walScanWindowBytes),
    );
    while (last + 1 < to && last + 1 <= segment.lastIndex() && !this.unwritten.has(last + 1)) {
      const size = segment.sizes[last + 1 - segment.first]!;
      if (bytes + size > readBytesMax) break;
      bytes += size;
      last++;
    }
    segment.acquire();
    try {
      return await this.decodeRun(segment, from, last);
    } finally {
      await segment.release();
    }
  }

  private async decodeRun(segment: Segment, from: number, last: number): Promise<Entry[]> {
    const start = segment.offsets[from - segment.first]!;
    const end = segment.offsets[last - segment.first]! + segment.sizes[last - segment.first]!;
    const buffer = Buffer.allocUnsafe(end - start);
    const read = await readFully(segment.handle, segment.path, buffer, end - start, start);
    const out: Entry[] = [];
    for (let index = from; index <= last; index++) {
      const offset = segment.offsets[index - segment.first]! - start;
      const frame = read >= offset + 9 ? checkFrame(buffer, offset) : null;
      const record =
        frame?.ok && offset + frame.recordBytes <= read
          ? decodeRecord(buffer, offset, frame)
          : null;
      if (record?.ok !== true || record.type !== "entry" || record.entry.index !== index) {
        const detail = `entry ${index} no longer reads back intact (${record?.ok === false ? record.detail : "bad frame"})`;
        throw new WalCorruptError(segment.path, offset + start, detail);
      }
      out.push(record.entry);
    }
    return out;
  }

  /** The segment holding written entry `index`. */
  private segmentFor(index: number): Segment {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.first <= index) lo = mid;
      else hi = mid - 1;
    }
    const segment = this.segments[lo];
    assert(
      segment !== undefined && segment.first <= index && index <= segment.lastIndex(),
      `wal: entry ${index} not on disk`,
    );
    return segment;
  }

  // ------------------------------------------------------------------ the writer

  private checkUsable(): void {
    assert(!this.closed, "wal: used after close");
    if (this.failure !== null) throw this.failure;
  }

  private enqueue(op: WalOp, bytes: number): void {
    this.queue.push(op);
    this.queuedBytes += bytes;
    assert(
      this.queuedBytes <= walQueuedBytesMax,
      "wal: write queue over its bound (no back-pressure upstream)",
    );
    this.checkInvariants();
    this.schedule();
  }

  /**
   * Starts the writer after the current turn of the event loop, so that everything queued
   * in this turn joins one batch.
   */
  private schedule(): void {
    if (this.scheduled || this.running || this.failure !== null) return;
    this.scheduled = true;
    this.options.clock.setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && this.failure === null) {
        const batch = this.next;
        try {
          // Wait for every hold placed so far, one placed meanwhile included, and take the
          // queue in the same step: nothing queued may overtake a hold placed before it.
          let barrier: Promise<void>;
          do {
            barrier = this.barrier;
            await barrier;
          } while (barrier !== this.barrier);
          const ops = this.queue;
          this.queue = [];
          this.batchBytes = this.queuedBytes;
          this.queuedBytes = 0;
          this.next = deferred();
          this.current = batch;
          await this.writeBatch(ops);
          this.batchBytes = 0;
          this.stats.batches++;
          batch.resolve();
        } catch (error) {
          this.fail(error, batch);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private fail(error: unknown, batch: Deferred): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    this.failure = failure;
    batch.reject(failure);
    this.next.reject(failure);
  }

  /** Writes one batch of operations in order, then makes every touched segment durable. */
  private async writeBatch(ops: readonly WalOp[]): Promise<void> {
    for (const op of ops) {
      switch (op.type) {
        case "append":
          for (const entry of op.entries) await this.writeEntry(entry);
          break;
        case "truncate":
          await this.writeTruncation(op.index);
          break;
        case "compact":
          await this.deleteCovered(op.upToIndex);
          break;
        case "reset":
          await this.flushPending();
          await this.discardAll(op.after);
          break;
      }
    }
    await this.flushPending();
    for (const segment of this.segments) await this.syncSegment(segment);
    this.durableLast = Math.min(this.active().lastIndex(), this.queuedReplacementFloor());
  }

  /**
   * Below which index the operations queued since the batch began keep the log as it is:
   * a truncation or reset queued meanwhile already lowered durableLast, and a batch that
   * finishes after it must not raise it above what they keep.
   */
  private queuedReplacementFloor(): number {
    let floor = Number.POSITIVE_INFINITY;
    for (const op of this.queue) {
      if (op.type === "truncate") floor = Math.min(floor, op.index - 1);
      else if (op.type === "reset") floor = Math.min(floor, op.after.index);
    }
    return floor;
  }

  private active(): Segment {
    const segment = this.segments.at(-1);
    assert(segment !== undefined, "wal: no active segment");
    return segment;
  }

  private pendingFor(segment: Segment): PendingWrite {
    if (this.pending === null) this.pending = { segment, bytes: 0, placements: [] };
    assert(this.pending.segment === segment, "wal: pending write for another segment");
    return this.pending;
  }

  private async writeEntry(entry: Entry): Promise<void> {
    const size = entryRecordBytes(entry);
    const segment = this.active();
    const used = segment.bytes + (this.pending?.bytes ?? 0);
    if (used > segmentHeaderBytes && used + size > this.options.segmentBytes) {
      await this.roll(entry.index);
    }
    const pending = this.pendingFor(this.active());
    pending.bytes += size;
    pending.placements.push({ entry, size });
  }

  /**
   * Writes a truncation. Inside the active segment it is one record; below it, the newer
   * segments are deleted first (newest first, each deletion made durable, so a crash
   * leaves a shorter but gap-free log) and the older segment takes the record.
   */
  private async writeTruncation(index: number): Promise<void> {
    if (index < this.active().first) {
      await this.flushPending();
      while (this.active().first > index) {
        const segment = this.segments.pop()!;
        await this.deleteSegment(segment);
        await this.syncDir();
      }
    }
    const pending = this.pendingFor(this.active());
    const size = recordHeaderBytes + truncatePayloadBytes;
    pending.bytes += size;
    pending.placements.push({ truncate: index, size });
  }

  /** Deletes every segment, other than the active one, that holds only entries up to `upTo`. */
  private async deleteCovered(upToIndex: number): Promise<void> {
    let count = 0;
    while (count + 1 < this.segments.length && this.segments[count + 1]!.first <= upToIndex + 1) {
      count++;
    }
    if (count === 0) return;
    for (const segment of this.segments.splice(0, count)) await this.deleteSegment(segment);
    await this.syncDir();
  }

  /** Deletes every segment (newest first) and starts an empty one after `after`. */
  private async discardAll(after: SnapshotMeta): Promise<void> {
    while (this.segments.length > 0) {
      await this.deleteSegment(this.segments.pop()!);
      await this.syncDir();
    }
    this.segments.push(await this.createSegment(after.index + 1));
    this.durableLast = after.index;
  }

  private async roll(nextIndex: number): Promise<void> {
    await this.flushPending();
    if (this.active().first === nextIndex) {
      // Writing `nextIndex` again means a truncation to it, which went into this segment
      // since it starts there: everything in it is replaced. A new segment would take its
      // very file name, and renaming over it would leave two segments in memory for one
      // file, so that deleting the old one (a compaction) unlinks the live log. Delete it.
      await this.deleteSegment(this.segments.pop()!);
      await this.syncDir();
    } else {
      await this.syncSegment(this.active());
    }
    this.segments.push(await this.createSegment(nextIndex));
  }

  /** Creates a segment under a temporary name, makes it durable, then renames it in place. */
  private async createSegment(first: number): Promise<Segment> {
    const { fs } = this.options;
    const path = join(this.dir, segmentFileName(first));
    const temporary = `${path}.tmp`;
    const handle = await io(temporary, "create", () => fs.open(temporary, "w+"));
    const segment = new Segment(first, path, handle, segmentHeaderBytes);
    try {
      await writeFully(handle, temporary, encodeSegmentHeader(first), 0);
      const started = this.options.clock.monotonicMs();
      await io(temporary, "fdatasync", () => handle.datasync());
      this.stats.fdatasyncs++;
      // Timed like every other fdatasync the count holds, so count and histogram agree.
      this.syncObserver?.((this.options.clock.monotonicMs() - started) / 1000);
      await io(path, "rename", () => fs.rename(temporary, path));
      await this.syncDir();
    } catch (error) {
      await segment.retire();
      throw error;
    }
    return segment;
  }

  private async deleteSegment(segment: Segment): Promise<void> {
    await io(segment.path, "delete", () => this.options.fs.unlink(segment.path));
    await segment.retire();
  }

  private async syncDir(): Promise<void> {
    await io(this.dir, "fsync directory", () => this.options.fs.syncDir(this.dir));
    this.stats.dirSyncs++;
  }

  private async syncSegment(segment: Segment): Promise<void> {
    if (segment.unsyncedBytes === 0) return;
    const started = this.options.clock.monotonicMs();
    await io(segment.path, "fdatasync", () => segment.handle.datasync());
    this.stats.fdatasyncs++;
    this.syncObserver?.((this.options.clock.monotonicMs() - started) / 1000);
    segment.unsyncedBytes = 0;
  }

  /** Writes the pending records with one write call, then indexes them. */
  private async flushPending(): Promise<void> {
    const pending = this.pending;
    if (pending === null) return;
    this.pending = null;
    const { segment } = pending;
    const bytes = Buffer.allocUnsafe(pending.bytes);
    let at = 0;
    for (const placement of pending.placements) {
      if ("truncate" in placement) bytes.set(encodeTruncateRecord(placement.truncate), at);
      else encodeEntryRecord(bytes, at, placement.entry);
      at += placement.size;
    }
    assert(at === bytes.length, "wal: pending records do not fill their buffer");
    await writeFully(segment.handle, segment.path, bytes, segment.bytes);
    let offset = segment.bytes;
    for (const placement of pending.placements) {
      if ("truncate" in placement) {
        segment.truncateFrom(placement.truncate);
        offset += placement.size;
        continue;
      }
      segment.addEntry(placement.entry.index, offset, placement.size);
      offset += placement.size;
      if (this.unwritten.get(placement.entry.index) === placement.entry) {
        this.unwritten.delete(placement.entry.index);
      }
      this.stats.entriesWritten++;
    }
    segment.bytes += bytes.length;
    segment.unsyncedBytes += bytes.length;
    this.stats.bytesWritten += bytes.length;
  }

  private checkInvariants(): void {
    assert(this.first >= 1, "wal: first index below 1");
    assert(this.lastIndex() >= this.first - 1, "wal: last index below first - 1");
  }
}
