/**
 * Start-up scan of the write-ahead log directory: finds the segments, verifies every
 * record's checksum, rebuilds the in-memory index (where each entry's record starts) and
 * trims a torn tail. The rules, which docs/storage.md spells out for operators:
 *
 * - A bad record at the tail of the last segment, with no valid record after it, is what
 *   a crash during a write leaves behind. It was never acknowledged (acknowledgement
 *   waits for fdatasync), so it is trimmed and reported as a warning.
 * - Any other bad record, a bad segment header, a segment that does not continue where
 *   the previous one ended (missing, truncated or overlapping) is corruption: the scan
 *   throws an error naming the file and byte offset.
 * - Segments entirely covered by the snapshot are leftovers of an interrupted compaction
 *   and are deleted (reported as a warning). Temporary files are deleted likewise.
 *
 * This file must never drop a record silently: every byte it removes is reported.
 */

import type { SnapshotMeta } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { storageIoError, WalCorruptError, WalMissingSegmentError } from "./errors.js";
import {
  closeQuietly,
  type FileHandleLike,
  type FileSystem,
  io,
  readFully,
  writeFully,
} from "./file-system.js";
import { walScanWindowBytes } from "./limits.js";
import {
  type CheckedRecord,
  checkFrame,
  checkRecord,
  checkSegmentHeader,
  parseSegmentFileName,
  recordHeaderBytes,
  segmentHeaderBytes,
} from "./wal-format.js";
import { Segment } from "./wal-segment.js";

export interface ScannedLog {
  /** The segments in index order, each open read-write, none retired. */
  readonly segments: Segment[];
  /** Term of every entry from `segments[0].first` to the last one. */
  readonly terms: number[];
  /** What recovery changed on disk, one sentence each, for the caller to log. */
  readonly warnings: string[];
}

/** A sliding read buffer over one file, so the scan reads large blocks, not records. */
class ReadWindow {
  private buffer = Buffer.alloc(0);
  private start = 0;
  private length = 0;

  constructor(
    private readonly handle: FileHandleLike,
    private readonly path: string,
    readonly size: number,
  ) {}

  /**
   * `view` without I/O: the bytes when the window already holds them (or the file ends
   * there), null when it must read. Most records of a scan come from here, and a
   * synchronous path costs no turn of the microtask queue per record.
   */
  peek(offset: number, length: number): { buffer: Buffer; at: number; available: number } | null {
    const available = Math.max(0, Math.min(length, this.size - offset));
    if (offset < this.start || offset + available > this.start + this.length) return null;
    return { buffer: this.buffer, at: offset - this.start, available };
  }

  /** `length` bytes at `offset` (fewer at the end of the file) as a buffer and a position in it. */
  async view(
    offset: number,
    length: number,
  ): Promise<{ buffer: Buffer; at: number; available: number }> {
    const available = Math.max(0, Math.min(length, this.size - offset));
    if (offset < this.start || offset + available > this.start + this.length) {
      const want = Math.min(Math.max(available, walScanWindowBytes), this.size - offset);
      if (this.buffer.length < want) this.buffer = Buffer.alloc(want);
      this.start = offset;
      this.length = await readFully(this.handle, this.path, this.buffer, want, offset);
    }
    return { buffer: this.buffer, at: offset - this.start, available };
  }
}

/** A record the scan could not accept, and whether a torn write could explain it. */
interface BadRecord {
  readonly offset: number;
  readonly detail: string;
  readonly tornCandidate: boolean;
}

type RecordAt =
  | { ok: true; record: CheckedRecord & { ok: true }; bytes: number }
  | { ok: false; bad: BadRecord };

/**
 * The record at `offset` checked where the window holds it, without I/O; null when the
 * window does not hold its header or, with a sane frame, all of it (`loadRecordAt` reads).
 */
function recordInWindow(window: ReadWindow, offset: number): RecordAt | null {
  const head = window.peek(offset, recordHeaderBytes);
  if (head === null) return null;
  if (head.available < recordHeaderBytes) {
    return { ok: false, bad: { offset, detail: "incomplete record frame", tornCandidate: true } };
  }
  const frame = checkFrame(head.buffer, head.at);
  if (!frame.ok) return { ok: false, bad: { offset, detail: frame.detail, tornCandidate: true } };
  const end = offset + frame.recordBytes;
  if (end > window.size) {
    const detail = "record extends past the end of the file";
    return { ok: false, bad: { offset, detail, tornCandidate: true } };
  }
  const whole = window.peek(offset, frame.recordBytes);
  if (whole === null) return null;
  const record = checkRecord(whole.buffer, whole.at, frame);
  if (!record.ok) {
    const bad = { offset, detail: record.detail, tornCandidate: record.checksum };
    return { ok: false, bad };
  }
  return { ok: true, record, bytes: frame.recordBytes };
}

/**
 * The record at `offset` once the window has read it: its header, then, when the frame is
 * sane but the record runs past the window, the whole record. Each read may move the
 * window, so it looks again after each.
 */
async function loadRecordAt(window: ReadWindow, offset: number): Promise<RecordAt> {
  const head = await window.view(offset, recordHeaderBytes);
  const afterHead = recordInWindow(window, offset);
  if (afterHead !== null) return afterHead;
  const frame = checkFrame(head.buffer, head.at);
  assert(frame.ok, "a record with a bad frame was not judged from its header");
  await window.view(offset, frame.recordBytes);
  const whole = recordInWindow(window, offset);
  assert(whole !== null, "a record was read but is not in the window");
  return whole;
}

/** The record at `offset`, from the window when it holds it, else read. */
async function readRecordAt(window: ReadWindow, offset: number): Promise<RecordAt> {
  return recordInWindow(window, offset) ?? loadRecordAt(window, offset);
}

/** Adds one valid record to the segment's index; throws when its content breaks the log. */
function applyRecord(
  segment: Segment,
  terms: number[],
  prevTerm: number,
  at: { offset: number; bytes: number; record: CheckedRecord & { ok: true } },
): void {
  const { record, offset } = at;
  if (record.type === "truncate") {
    if (record.index < segment.first || record.index > segment.lastIndex() + 1) {
      const detail = `truncation at index ${record.index} outside the segment's entries`;
      throw new WalCorruptError(segment.path, offset, detail);
    }
    segment.truncateFrom(record.index);
    terms.length = record.index - segment.first;
    return;
  }
  const expected = segment.lastIndex() + 1;
  if (record.index !== expected) {
    const detail = `entry ${record.index} found where entry ${expected} belongs`;
    throw new WalCorruptError(segment.path, offset, detail);
  }
  const lastTerm = terms.length > 0 ? terms[terms.length - 1]! : prevTerm;
  if (record.term < lastTerm) {
    const detail = `entry ${expected} has term ${record.term}, below the term ${lastTerm} before it`;
    throw new WalCorruptError(segment.path, offset, detail);
  }
  segment.addEntry(expected, offset, at.bytes);
  terms.push(record.term);
}

/**
 * Whether a complete, checksum-valid record that continues the log starts anywhere after
 * the bad record's first byte (a byte-by-byte search): an entry of a later index than the
 * bad one's, or a truncation. The search starts inside the bad record, because its frame
 * cannot be trusted: a flipped bit in its length makes a record in the middle of the file
 * look as if it ran past the end, like a torn write, and the search must still find the
 * records after it. A record inside a torn record's own payload (a value that holds a
 * log record: anyone may store one) is not one of those unless it names a later index;
 * one that does only makes the node refuse to start (it is wiped and rejoins), while a
 * real record taken for a torn tail would silently lose acknowledged entries.
 */
async function validRecordAfter(
  window: ReadWindow,
  bad: BadRecord,
  badIndex: number,
): Promise<number | null> {
  for (let offset = bad.offset + 1; offset + recordHeaderBytes <= window.size; offset++) {
    const at = await readRecordAt(window, offset);
    if (!at.ok) continue;
    if (at.record.type === "truncate" || at.record.index > badIndex) return offset;
  }
  return null;
}

/** Trims a torn tail of the last segment, or throws when the bad record is not one. */
async function trimOrFail(
  window: ReadWindow,
  segment: Segment,
  bad: BadRecord,
  isLast: boolean,
  durableThrough: number,
): Promise<string> {
  if (!isLast || !bad.tornCandidate) {
    throw new WalCorruptError(segment.path, bad.offset, bad.detail);
  }
  // A torn write is one that was never made durable, so never acknowledged; an entry the
  // hard state's commit hint covers was (the hint never passes the durable log). Damage,
  // then: refuse, and cut nothing, so that the operator still has the bytes.
  const index = segment.lastIndex() + 1;
  if (index <= durableThrough) {
    const detail = `${bad.detail}; entry ${index} is covered by the commit index ${durableThrough} in the hard state, which only durable entries reach, so this is damage, not a torn write`;
    throw new WalCorruptError(segment.path, bad.offset, detail);
  }
  const valid = await validRecordAfter(window, bad, index);
  if (valid !== null) {
    const detail = `${bad.detail}, and a valid record follows at byte ${valid}, so this is not a torn tail`;
    throw new WalCorruptError(segment.path, bad.offset, detail);
  }
  const dropped = window.size - bad.offset;
  await io(segment.path, "truncate", () => segment.handle.truncate(bad.offset));
  await io(segment.path, "fdatasync", () => segment.handle.datasync());
  return (
    `trimmed a torn record at the end of ${segment.path}: ${dropped} bytes from byte ` +
    `${bad.offset} (${bad.detail}); a crash interrupted that write, which was never acknowledged`
  );
}

/** Opens and scans one segment; `prevTerm` is the term of the entry before its first. */
async function scanSegment(
  fs: FileSystem,
  path: string,
  first: number,
  prevTerm: number,
  isLast: boolean,
  durableThrough: number,
): Promise<{ segment: Segment; terms: number[]; warning: string | null }> {
  const handle = await io(path, "open", () => fs.open(path, "r+"));
  try {
    const window = new ReadWindow(handle, path, await io(path, "stat", () => handle.size()));
    const head = await window.view(0, segmentHeaderBytes);
    const problem =
      head.available < segmentHeaderBytes
        ? "segment header is incomplete"
        : checkSegmentHeader(head.buffer.subarray(head.at, head.at + segmentHeaderBytes), first);
    if (problem !== null) throw new WalCorruptError(path, 0, problem);
    const segment = new Segment(first, path, handle, segmentHeaderBytes);
    const terms: number[] = [];
    while (segment.bytes < window.size) {
      const at =
        recordInWindow(window, segment.bytes) ?? (await loadRecordAt(window, segment.bytes));
      if (!at.ok) {
        const warning = await trimOrFail(window, segment, at.bad, isLast, durableThrough);
        return { segment, terms, warning };
      }
      applyRecord(segment, terms, prevTerm, { offset: segment.bytes, ...at });
      segment.bytes += at.bytes;
    }
    return { segment, terms, warning: null };
  } catch (error) {
    await closeQuietly(handle);
    throw error;
  }
}

/** Segment files in `dir` by first index; removes temporary files left by a crash. */
async function listSegments(
  fs: FileSystem,
  dir: string,
  warnings: string[],
): Promise<{ first: number; path: string }[]> {
  const names = await io(dir, "list", () => fs.list(dir));
  const found: { first: number; path: string }[] = [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    const first = parseSegmentFileName(name);
    if (first !== null) {
      found.push({ first, path });
    } else if (name.endsWith(".tmp")) {
      await io(path, "unlink", () => fs.unlink(path));
      warnings.push(`removed ${path}, a segment whose creation a crash interrupted`);
    } else {
      warnings.push(`ignored ${path}: not a write-ahead log file`);
    }
  }
  return found.sort((a, b) => a.first - b.first);
}

/** Deletes the segments that the snapshot covers entirely; returns the rest. */
async function dropCovered(
  fs: FileSystem,
  dir: string,
  files: { first: number; path: string }[],
  after: SnapshotMeta,
  warnings: string[],
): Promise<{ first: number; path: string }[]> {
  let keepFrom = 0;
  while (keepFrom + 1 < files.length && files[keepFrom + 1]!.first <= after.index + 1) keepFrom++;
  for (const file of files.slice(0, keepFrom)) {
    await io(file.path, "unlink", () => fs.unlink(file.path));
    warnings.push(
      `removed ${file.path}: the snapshot at index ${after.index} covers it (a compaction ` +
        "was interrupted)",
    );
  }
  if (keepFrom > 0) await io(dir, "fsync directory", () => fs.syncDir(dir));
  return files.slice(keepFrom);
}

/**
 * Scans the log in `dir`. Segments wholly before `after` (the snapshot) are removed
 * unread; the rest must form one contiguous log. Reconciling that log with the snapshot
 * (a gap, or a conflicting term) is the caller's job, because it needs to write.
 */
export async function scanLog(
  fs: FileSystem,
  dir: string,
  after: SnapshotMeta,
  durableThrough = 0,
): Promise<ScannedLog> {
  const warnings: string[] = [];
  const files = await dropCovered(fs, dir, await listSegments(fs, dir, warnings), after, warnings);
  const segments: Segment[] = [];
  const terms: number[] = [];
  try {
    for (const [k, file] of files.entries()) {
      const prev = segments[segments.length - 1];
      if (prev !== undefined) checkContinues(prev, file);
      const prevTerm = terms.length > 0 ? terms[terms.length - 1]! : 0;
      const scanned = await scanSegment(
        fs,
        file.path,
        file.first,
        prevTerm,
        k === files.length - 1,
        durableThrough,
      );
      segments.push(scanned.segment);
      // One push per term: a spread of a segment's terms (hundreds of thousands of small
      // entries) overflowed the call stack, and a node with a long log could not start.
      for (const term of scanned.terms) terms.push(term);
      if (scanned.warning !== null) warnings.push(scanned.warning);
    }
  } catch (error) {
    for (const segment of segments) await segment.retire();
    throw error;
  }
  assert(
    segments.length === 0 || terms.length === segments.at(-1)!.lastIndex() - segments[0]!.first + 1,
  );
  // What was read may exist only in the page cache: a process that died between a write and
  // its fdatasync leaves it there, readable, but not on the disk. This node is about to
  // count those entries as durable (acknowledge them, let a commit hint cover them), so they
  // must be, and so must the segments' names (a crash between a segment's rename and its
  // directory's fsync): a power loss later would take back what was acknowledged.
  //
  // An fdatasync is not enough for the last segment. After a failed fdatasync Linux marks
  // the pages it could not write clean: they stay readable and no later fdatasync writes
  // them (PostgreSQL's "fsyncgate"). A node stops on such a failure, and the next process
  // would read those entries back as if they were on the disk. Only the last segment can
  // hold them: the log syncs a segment before it starts the next one, and never writes to
  // an older one. So its bytes are written again, which makes every page dirty, and then
  // synced: at most one segment's worth of writing per start.
  try {
    const last = segments.at(-1);
    if (last !== undefined) await rewriteInPlace(last.handle, last.path, last.bytes);
    for (const segment of segments) {
      await io(segment.path, "fdatasync", () => segment.handle.datasync());
    }
    await io(dir, "fsync directory", () => fs.syncDir(dir));
  } catch (error) {
    for (const segment of segments) await segment.retire();
    throw error;
  }
  return { segments, terms, warnings };
}

/** Reads bytes [0, length) of a file and writes them back where they were, a window at a time. */
async function rewriteInPlace(handle: FileHandleLike, path: string, length: number): Promise<void> {
  const buffer = Buffer.alloc(Math.min(length, walScanWindowBytes));
  for (let at = 0; at < length; at += buffer.length) {
    const want = Math.min(buffer.length, length - at);
    const read = await readFully(handle, path, buffer, want, at);
    if (read !== want) {
      const shrank = new Error(`the file ended at byte ${at + read}, inside what was just scanned`);
      throw storageIoError(path, "read", Object.assign(shrank, { code: "EIO" }));
    }
    await writeFully(handle, path, buffer.subarray(0, want), at);
  }
}

function checkContinues(prev: Segment, next: { first: number; path: string }): void {
  const expected = prev.lastIndex() + 1;
  if (next.first > expected) {
    const detail =
      `the next segment starts at index ${next.first}: entries ${expected}..${next.first - 1} ` +
      `are missing (${prev.path} ends early, or a segment file was deleted)`;
    throw new WalMissingSegmentError(next.path, expected, detail);
  }
  if (next.first < expected) {
    const detail = `it starts at index ${next.first}, inside ${prev.path} which ends at ${expected - 1}`;
    throw new WalMissingSegmentError(next.path, expected, detail);
  }
}
