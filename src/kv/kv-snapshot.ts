/**
 * Streams the key-value state into snapshot frames and rebuilds a state from them.
 *
 * Frames, in order (each a MessagePack array; see `snapshot-frames.ts` for the framing):
 *   ["header", revision, clockMs, lastIndex, keyCount, sessionCount, idempotencyCount,
 *    stampMs, term, leaseCount, quotaKeyCountMax, quotaBytesMax]
 *    (format 1 ends before stampMs, format 2 before term, format 3 before the quota)
 *   ["data", [key, value, revision, lease, …]]        zero or more (format 1, 2: no lease)
 *   ["sessions", [clientId, lastSeq, timeMs, result, …]]                  zero or more
 *   ["idempotency", [key, fingerprintHi, fingerprintLo, timeMs, result, …]] zero or more
 *   ["leases", [id, ttlMs, expiresAtMs, …]]             zero or more, by id (format 3)
 *   ["end", stateHash]   (format 4: the summed digest of `summedStateDigest`)
 * Sessions and idempotency keys appear oldest first, the order that decides expiry; keys
 * appear in no particular order. The end frame carries the digest of the whole state, so
 * `readSnapshot` detects any corruption that still parses.
 *
 * A format 1 snapshot (written before log time was advanced by clamped differences) is
 * restored with `stampMs` equal to its `clockMs`, which was then the largest stamp seen,
 * and is verified against the format 1 digest, which did not cover `stampMs`.
 *
 * Writing and reading are plain synchronous generators and classes underneath, so that a
 * caller without an event loop (the simulator) streams the very same bytes; `apply` may
 * still run between any two chunks of a snapshot being written.
 *
 * The writer reads the live key Map while `apply` keeps changing it, and stays consistent
 * as of the moment the snapshot was taken through copy-on-write: before `apply` replaces
 * or deletes an entry the snapshot has not read yet, it hands the old entry to the
 * snapshot's `SnapshotCursor` (`preserveForSnapshot`). The writer must never read a key
 * inserted after the snapshot was taken, and the reader must never touch live state: it
 * builds a new state that the caller swaps in only when the whole stream checked out.
 */

import { assert } from "../shared/assert.js";
import { resultFromWire, resultToWire } from "./commands.js";
import type { ExpiringSlot } from "./expiring-table.js";
import { addDigests, type Digest64, formatDigest, ZERO_DIGEST } from "./hash64.js";
import {
  createKvState,
  type DataEntry,
  dataEntryDigest,
  type IdempotencyRecord,
  idempotencyDigest,
  type KvMeta,
  type KvState,
  type SessionRecord,
  type SnapshotDigestFormat,
  sessionDigest,
  stateDigest,
  summedStateDigest,
} from "./kv-state.js";
import { leaseDigest } from "./lease-table.js";
import type { KvLimits } from "./limits.js";
import {
  FrameReader,
  FrameWriter,
  KvSnapshotError,
  type SnapshotFormatVersion,
} from "./snapshot-frames.js";
import { storedBytes, storedLength, toStoredValue } from "./stored-value.js";

/**
 * Data frames are closed once their estimated size reaches this many bytes, or the chunk
 * size if that is smaller: a frame is read from the live Map all at once, so frames larger
 * than a chunk would only delay the chunks and hold more in memory.
 */
const DATA_FRAME_BYTES_TARGET = 64 * 1024;
/** Session and idempotency frames hold at most this many entries (each is under 1 KiB). */
const TABLE_FRAME_COUNT_MAX = 512;
/** What a frame may hold beyond its largest key and value, in bytes. */
const FRAME_SLACK_BYTES = 1024 * 1024;

/** A snapshot being written, as the write path of the state machine sees it. */
export interface SnapshotCursor {
  /** Entries at positions up to this one existed when the snapshot was taken. */
  readonly positionMax: number;
  /** Position of the last entry the snapshot has read; entries at or below it are done. */
  readPosition: number;
  /** The snapshot-time entries of keys replaced or deleted before the snapshot read them. */
  readonly preserved: Map<string, DataEntry>;
}

/**
 * Copy-on-write hook: `apply` calls it before it replaces or deletes `entry`, the current
 * entry of `key`. Keeps the entry for the snapshot when the snapshot still needs it: it
 * existed when the snapshot was taken, has not been read yet, and is not kept already (a
 * second change to the key must not overwrite the snapshot-time entry).
 */
export function preserveForSnapshot(cursor: SnapshotCursor, key: string, entry: DataEntry): void {
  if (entry.position > cursor.positionMax || entry.position <= cursor.readPosition) return;
  if (!cursor.preserved.has(key)) cursor.preserved.set(key, entry);
}

/** What a snapshot captures when it is taken; only `data` keeps changing afterwards. */
export interface SnapshotSource {
  readonly meta: KvMeta;
  /** The live key Map; read through `cursor`. */
  readonly data: Map<string, DataEntry>;
  readonly dataCount: number;
  /** Copies of the tables (their entries are immutable), oldest first. */
  readonly sessions: readonly [string, ExpiringSlot<SessionRecord>][];
  readonly idempotency: readonly [string, ExpiringSlot<IdempotencyRecord>][];
  /** Copies of the leases as [id, ttlMs, expiresAtMs], by id. */
  readonly leases: readonly (readonly [number, number, number])[];
  readonly cursor: SnapshotCursor;
}

/**
 * Yields the snapshot's chunks, each at most `chunkBytesMax` bytes. `apply` may run
 * between any two chunks, and while `pause` (when given) is awaited after each frame:
 * a chunk holds thousands of small table entries, and encoding them in one synchronous
 * stretch stalled every node for a few hundred milliseconds at each snapshot.
 */
export async function* writeSnapshot(
  source: SnapshotSource,
  chunkBytesMax: number,
  pause?: () => Promise<void>,
): AsyncGenerator<Uint8Array> {
  for (const piece of snapshotPieces(source, chunkBytesMax)) {
    if (piece !== FRAME_END) yield piece;
    else if (pause !== undefined) await pause();
  }
}

/** `writeSnapshot` as a synchronous generator: the same chunks, for the same source. */
export function* writeSnapshotChunks(
  source: SnapshotSource,
  chunkBytesMax: number,
): Generator<Uint8Array> {
  for (const piece of snapshotPieces(source, chunkBytesMax)) {
    if (piece !== FRAME_END) yield piece;
  }
}

/** Marks, among the chunks, the end of a frame: where the writer may pause. */
const FRAME_END = null;
type Piece = Uint8Array | typeof FRAME_END;

/** Each full chunk of what was framed so far, then the end-of-frame mark. */
function* framed(writer: FrameWriter): Generator<Piece> {
  yield* writer.chunks(false);
  yield FRAME_END;
}

function* snapshotPieces(source: SnapshotSource, chunkBytesMax: number): Generator<Piece> {
  const { meta } = source;
  const writer = new FrameWriter(chunkBytesMax);
  writer.frame([
    "header",
    meta.revision,
    meta.clockMs,
    meta.lastIndex,
    source.dataCount,
    source.sessions.length,
    source.idempotency.length,
    meta.stampMs,
    meta.term,
    source.leases.length,
    meta.quotaKeyCountMax,
    meta.quotaBytesMax,
  ]);
  const frameBytesTarget = Math.min(DATA_FRAME_BYTES_TARGET, chunkBytesMax);
  let dataDigest = ZERO_DIGEST;
  let dataCount = 0;
  let batch: unknown[] = [];
  let batchBytes = 0;
  for (const entry of readDataAsOfSnapshot(source)) {
    const [key, { value, revision, lease }] = entry;
    batch.push(key, storedBytes(value), revision, lease);
    batchBytes += key.length * 3 + storedLength(value) + 24;
    dataDigest = addDigests(dataDigest, dataEntryDigest(key, entry[1]));
    dataCount++;
    if (batchBytes >= frameBytesTarget) {
      writer.frame(["data", batch]);
      batch = [];
      batchBytes = 0;
      yield* framed(writer);
    }
  }
  if (batch.length > 0) {
    writer.frame(["data", batch]);
    yield* framed(writer);
  }
  assert(dataCount === source.dataCount, "snapshot read a different number of keys");
  const sessions = yield* writeTableFrames(
    writer,
    "sessions",
    source.sessions,
    ([id, { value, timeMs }]) => [id, value.lastSeq, timeMs, resultToWire(value.result)],
    ([id, slot]) => sessionDigest(id, slot),
  );
  const idempotency = yield* writeTableFrames(
    writer,
    "idempotency",
    source.idempotency,
    ([id, { value, timeMs }]) => [
      id,
      value.fingerprint.hi,
      value.fingerprint.lo,
      timeMs,
      resultToWire(value.result),
    ],
    ([key, slot]) => idempotencyDigest(key, slot),
  );
  const leases = yield* writeTableFrames(
    writer,
    "leases",
    source.leases,
    (lease) => lease,
    ([id, ttlMs, expiresAtMs]) => leaseDigest({ id, ttlMs, expiresAtMs }),
  );
  const digest = summedStateDigest(meta, {
    dataCount,
    data: dataDigest,
    sessionCount: source.sessions.length,
    sessions,
    idempotencyCount: source.idempotency.length,
    idempotency,
    leaseCount: source.leases.length,
    leases,
  });
  writer.frame(["end", formatDigest(digest)]);
  yield* writer.chunks(true);
}

/**
 * The keys as of the snapshot, read lazily from the live Map. A Map iterates in insertion
 * order and visits entries inserted during the iteration at the end, and positions grow
 * in that same order, so the first entry past `positionMax` ends the snapshot-time keys.
 * An entry replaced in place keeps its position and is read from `preserved`; an entry
 * deleted before it was read is no longer in the Map, and is read from `preserved` last.
 */
function* readDataAsOfSnapshot(source: SnapshotSource): Generator<[string, DataEntry]> {
  const { cursor } = source;
  for (const [key, live] of source.data) {
    if (live.position > cursor.positionMax) break;
    const preserved = cursor.preserved.get(key);
    if (preserved !== undefined) cursor.preserved.delete(key);
    cursor.readPosition = live.position;
    yield [key, preserved ?? live];
  }
  // From here on nothing more is preserved, so the loop below sees a Map that stays still.
  cursor.readPosition = Number.POSITIVE_INFINITY;
  for (const [key, preserved] of cursor.preserved) yield [key, preserved];
  cursor.preserved.clear();
}

/**
 * Writes a table's frames, `TABLE_FRAME_COUNT_MAX` entries each, the end of each marked;
 * returns the sum of its entries' digests.
 */
function* writeTableFrames<T>(
  writer: FrameWriter,
  tag: string,
  entries: readonly T[],
  toWire: (entry: T) => readonly unknown[],
  digestOf: (entry: T) => Digest64,
): Generator<Piece, Digest64> {
  let digest = ZERO_DIGEST;
  for (let start = 0; start < entries.length; start += TABLE_FRAME_COUNT_MAX) {
    const batch: unknown[] = [];
    for (const entry of entries.slice(start, start + TABLE_FRAME_COUNT_MAX)) {
      batch.push(...toWire(entry));
      digest = addDigests(digest, digestOf(entry));
    }
    writer.frame([tag, batch]);
    yield* framed(writer);
  }
  return digest;
}

const SECTIONS = ["header", "data", "sessions", "idempotency", "leases", "end"] as const;
type Section = (typeof SECTIONS)[number];

interface Header {
  readonly meta: KvMeta;
  readonly keyCount: number;
  readonly sessionCount: number;
  readonly idempotencyCount: number;
  readonly leaseCount: number;
}

/**
 * A state read from a snapshot, with the sum of its data entries' digests, which the read
 * computed to verify the snapshot and the store keeps (rather than hashing every key again).
 */
export interface RestoredState {
  readonly state: KvState;
  readonly dataDigest: Digest64;
}

/** Restoration in progress: the state being built and what the header promised. */
interface Restoring {
  readonly state: KvState;
  readonly allocatePosition: () => number;
  format: SnapshotFormatVersion;
  header: Header | null;
  dataDigest: Digest64;
  endDigest: string | null;
}

/**
 * Rebuilds a state from a snapshot stream. `allocatePosition` hands out increasing Map
 * positions (see `DataEntry.position`). Throws `KvSnapshotError`, naming what is wrong,
 * when the stream is not a complete, intact snapshot in a format this code reads.
 */
export async function readSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  limits: KvLimits,
  allocatePosition: () => number,
): Promise<RestoredState> {
  const reader = new SnapshotReader(limits, allocatePosition);
  for await (const chunk of chunks) reader.push(chunk);
  return reader.finish();
}

/** `readSnapshot` over chunks already in memory, without an event loop. */
export function readSnapshotChunks(
  chunks: Iterable<Uint8Array>,
  limits: KvLimits,
  allocatePosition: () => number,
): RestoredState {
  const reader = new SnapshotReader(limits, allocatePosition);
  for (const chunk of chunks) reader.push(chunk);
  return reader.finish();
}

/** Takes a snapshot's chunks one at a time, checking each frame as it completes. */
export class SnapshotReader {
  private readonly frames: FrameReader;
  private readonly restoring: Restoring;
  private sectionIndex = -1;

  constructor(limits: KvLimits, allocatePosition: () => number) {
    this.frames = new FrameReader(limits.valueBytesMax + limits.keyBytesMax + FRAME_SLACK_BYTES);
    this.restoring = {
      state: createKvState(limits),
      allocatePosition,
      format: 4,
      header: null,
      dataDigest: ZERO_DIGEST,
      endDigest: null,
    };
  }

  push(chunk: Uint8Array): void {
    this.frames.push(chunk, (frame, copied) => {
      this.restoring.format = this.frames.version ?? 4;
      this.frame(frame, copied);
    });
  }

  finish(): RestoredState {
    this.frames.finish();
    if (this.sectionIndex !== SECTIONS.length - 1) {
      throw new KvSnapshotError("the end frame is missing");
    }
    return { state: finishRestore(this.restoring), dataDigest: this.restoring.dataDigest };
  }

  private frame(frame: unknown, copied: boolean): void {
    const headerFields = [0, 6, 7, 9, 11][this.restoring.format]!;
    if (
      !Array.isArray(frame) ||
      frame.length !== 2 + (frame[0] === "header" ? headerFields - 1 : 0)
    ) {
      throw new KvSnapshotError("a frame is not a tagged array of the right length");
    }
    const index = SECTIONS.indexOf(frame[0] as Section);
    const sectionIndex = this.sectionIndex;
    if (index < 0) throw new KvSnapshotError(`unknown frame tag ${String(frame[0])}`);
    if (sectionIndex === SECTIONS.length - 1) throw new KvSnapshotError("frames after the end");
    if (sectionIndex < 0 && index !== 0) throw new KvSnapshotError("the header is not first");
    if (SECTIONS[index] === "leases" && this.restoring.format < 3) {
      throw new KvSnapshotError(`format ${this.restoring.format} has no leases`);
    }
    if (index < sectionIndex || (index === 0 && sectionIndex === 0)) {
      throw new KvSnapshotError(`frame ${SECTIONS[index]} out of order`);
    }
    this.sectionIndex = index;
    readFrame(this.restoring, SECTIONS[index]!, frame, copied);
  }
}

function readFrame(
  restoring: Restoring,
  section: Section,
  frame: unknown[],
  copied: boolean,
): void {
  if (section === "header") {
    restoring.header = readHeader(frame, restoring.format);
    Object.assign(restoring.state, restoring.header.meta);
    return;
  }
  if (section === "end") {
    if (typeof frame[1] !== "string") throw new KvSnapshotError("the end frame has no digest");
    restoring.endDigest = frame[1];
    return;
  }
  const items = frame[1];
  if (!Array.isArray(items)) throw new KvSnapshotError(`a ${section} frame holds no array`);
  if (section === "data") readDataItems(restoring, items, copied);
  else if (section === "sessions") readSessionItems(restoring, items);
  else if (section === "leases") readLeaseItems(restoring, items);
  else readIdempotencyItems(restoring, items);
}

function readHeader(frame: unknown[], format: SnapshotFormatVersion): Header {
  const fields = frame.slice(1);
  if (!fields.every(isCount)) throw new KvSnapshotError("header fields are not counts");
  const [
    revision,
    clockMs,
    lastIndex,
    keyCount,
    sessionCount,
    idempotencyCount,
    stampMs,
    term,
    leaseCount,
    quotaKeyCountMax,
    quotaBytesMax,
  ] = fields as number[];
  if (revision! > lastIndex!) throw new KvSnapshotError("header revision is past its last index");
  // Format 1's log time was the largest stamp seen, so it is the stamp to advance from.
  const stamp = format === 1 ? clockMs! : stampMs!;
  return {
    meta: {
      revision: revision!,
      clockMs: clockMs!,
      stampMs: stamp,
      lastIndex: lastIndex!,
      // Before format 3 the term was not kept: the next command's term renews the leases,
      // of which there are none.
      term: term ?? 0,
      // Before format 4 there was no quota; the master proposes its own soon after.
      quotaKeyCountMax: quotaKeyCountMax ?? 0,
      quotaBytesMax: quotaBytesMax ?? 0,
    },
    keyCount: keyCount!,
    sessionCount: sessionCount!,
    idempotencyCount: idempotencyCount!,
    leaseCount: leaseCount ?? 0,
  };
}

/**
 * Whether a large value read from a frame may be kept as the view it is rather than
 * copied: when the frame was copied into a buffer of its own and the value is nearly all
 * of it (a value of a mebibyte is a frame of its own), keeping the view pins little
 * besides the value and saves copying it a second time. A view of a chunk the caller
 * passed in is never kept: the chunk is the caller's.
 */
function keepsView(value: Uint8Array, copied: boolean): boolean {
  return copied && value.buffer.byteLength - value.byteLength <= value.byteLength / 16;
}

function readDataItems(restoring: Restoring, items: unknown[], copied: boolean): void {
  const { state, header } = restoring;
  assert(header !== null, "the header is read first");
  const width = restoring.format < 3 ? 3 : 4;
  if (items.length % width !== 0) throw new KvSnapshotError("a data frame is cut mid-entry");
  for (let i = 0; i < items.length; i += width) {
    // By index, not by destructuring a slice: a million keys made a million small arrays.
    const key = items[i];
    const value = items[i + 1];
    const revision = items[i + 2];
    const lease = width === 4 ? items[i + 3] : 0;
    if (typeof key !== "string") throw new KvSnapshotError("a key is not a string");
    if (!(value instanceof Uint8Array)) throw new KvSnapshotError(`value of ${key} is not bytes`);
    if (!isCount(revision) || revision < 1 || revision > header.meta.revision) {
      throw new KvSnapshotError(`revision of ${key} is outside 1..${header.meta.revision}`);
    }
    if (!isCount(lease)) throw new KvSnapshotError(`lease of ${key} is not a lease id`);
    const position = restoring.allocatePosition();
    // The value is a view of the frame (see kvFrameUnpackr): a large one is copied out,
    // unless the frame is a copy that is nearly all this value.
    const entry = {
      value: toStoredValue(value, keepsView(value, copied)),
      revision,
      position,
      lease,
    };
    // One lookup, not a `has` first: a key seen before leaves the size as it was (the
    // restore then fails, so the entry it replaced does not matter).
    const size = state.data.size;
    state.data.set(key, entry);
    if (state.data.size === size) throw new KvSnapshotError(`key ${key} appears twice`);
    restoring.dataDigest = addDigests(restoring.dataDigest, dataEntryDigest(key, entry));
  }
}

function readSessionItems(restoring: Restoring, items: unknown[]): void {
  const { state } = restoring;
  if (items.length % 4 !== 0) throw new KvSnapshotError("a sessions frame is cut mid-entry");
  for (let i = 0; i < items.length; i += 4) {
    const [clientId, lastSeq, timeMs, wire] = items.slice(i, i + 4);
    if (typeof clientId !== "string") throw new KvSnapshotError("a client id is not a string");
    if (!isCount(lastSeq) || lastSeq < 1) {
      throw new KvSnapshotError(`session ${clientId} has a bad seq`);
    }
    const result = resultFromWire(wire);
    if (result === null) throw new KvSnapshotError(`session ${clientId} has a bad result`);
    const time = checkTableTime(state, timeMs, `session ${clientId}`);
    if (!state.sessions.load(clientId, { lastSeq, result }, time)) {
      throw new KvSnapshotError(`session ${clientId} is repeated or out of order`);
    }
  }
}

function readIdempotencyItems(restoring: Restoring, items: unknown[]): void {
  const { state } = restoring;
  if (items.length % 5 !== 0) throw new KvSnapshotError("an idempotency frame is cut mid-entry");
  for (let i = 0; i < items.length; i += 5) {
    const [key, hi, lo, timeMs, wire] = items.slice(i, i + 5);
    if (typeof key !== "string") throw new KvSnapshotError("an idempotency key is not a string");
    if (!isUint32(hi) || !isUint32(lo)) {
      throw new KvSnapshotError(`idempotency key ${key} has a bad fingerprint`);
    }
    const result = resultFromWire(wire);
    if (result === null) throw new KvSnapshotError(`idempotency key ${key} has a bad result`);
    const time = checkTableTime(state, timeMs, `idempotency key ${key}`);
    const record = { fingerprint: Object.freeze({ hi, lo }), result };
    if (!state.idempotency.load(key, record, time)) {
      throw new KvSnapshotError(`idempotency key ${key} is repeated or out of order`);
    }
  }
}

function readLeaseItems(restoring: Restoring, items: unknown[]): void {
  const { leases, lastIndex } = restoring.state;
  if (items.length % 3 !== 0) throw new KvSnapshotError("a leases frame is cut mid-entry");
  let previous = 0;
  for (const lease of leases.values()) previous = lease.id;
  for (let i = 0; i < items.length; i += 3) {
    const [id, ttlMs, expiresAtMs] = items.slice(i, i + 3);
    if (!isCount(id) || id <= previous || id > lastIndex) {
      throw new KvSnapshotError(`lease ${String(id)} is out of order or past the last index`);
    }
    if (!isCount(ttlMs) || ttlMs < 1 || !isCount(expiresAtMs)) {
      throw new KvSnapshotError(`lease ${id} has a bad time to live or deadline`);
    }
    leases.grant(id, ttlMs, expiresAtMs);
    previous = id;
  }
}

/** A table entry's time, which must not be later than the log clock it was stamped from. */
function checkTableTime(state: KvState, timeMs: unknown, what: string): number {
  if (!isCount(timeMs) || timeMs > state.clockMs) {
    throw new KvSnapshotError(`${what} has a time outside 0..${state.clockMs}`);
  }
  return timeMs;
}

function finishRestore(restoring: Restoring): KvState {
  const { state, header, endDigest } = restoring;
  assert(header !== null && endDigest !== null, "header and end were read");
  const counts: [string, number, number][] = [
    ["keys", state.data.size, header.keyCount],
    ["sessions", state.sessions.size, header.sessionCount],
    ["idempotency keys", state.idempotency.size, header.idempotencyCount],
    ["leases", state.leases.size, header.leaseCount],
  ];
  for (const [what, actual, promised] of counts) {
    if (actual !== promised) {
      throw new KvSnapshotError(`holds ${actual} ${what}; the header promised ${promised}`);
    }
  }
  const digest = formatDigest(restoredDigest(restoring));
  if (digest !== endDigest) {
    throw new KvSnapshotError(`state digest ${digest} differs from the recorded ${endDigest}`);
  }
  attachLeasedKeys(state);
  return state;
}

/** The digest of the state read, by the definition of the snapshot's format. */
function restoredDigest(restoring: Restoring): Digest64 {
  const { state, format } = restoring;
  if (format !== 4) {
    return stateDigest(
      state,
      state.data.size,
      restoring.dataDigest,
      state.sessions.entries(),
      state.idempotency.entries(),
      format as SnapshotDigestFormat,
      state.leases.values(),
    );
  }
  return summedStateDigest(state, {
    dataCount: state.data.size,
    data: restoring.dataDigest,
    sessionCount: state.sessions.size,
    sessions: state.sessions.digest,
    idempotencyCount: state.idempotency.size,
    idempotency: state.idempotency.digest,
    leaseCount: state.leases.size,
    leases: state.leases.digest,
  });
}

/** Rebuilds each lease's key set from the keys' leases; a key's lease must be held. */
function attachLeasedKeys(state: KvState): void {
  const keys: string[] = [];
  for (const [key, entry] of state.data) if (entry.lease !== 0) keys.push(key);
  // Sorted, so that a lease's keys are in the same order on every node however it got here.
  keys.sort();
  for (const key of keys) {
    const id = state.data.get(key)!.lease;
    const lease = state.leases.get(id);
    if (lease === undefined) throw new KvSnapshotError(`key ${key} names lease ${id}, not held`);
    lease.keys.add(key);
  }
  state.leases.loaded();
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isUint32(value: unknown): value is number {
  return isCount(value) && value <= 0xffff_ffff;
}
