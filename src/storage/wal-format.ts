/**
 * The byte layout of write-ahead log segments: the segment header, the record frame and
 * the two record payloads (an entry, a truncation). docs/storage.md describes the same
 * layout for operators; change both together, and bump `segmentFormatVersion` whenever a
 * byte moves.
 *
 * This file encodes and decodes bytes only. It must never touch a file, and decoding
 * never throws for bad input: it reports what is wrong, and the caller decides whether
 * that is a torn tail or corruption.
 */

import { crc32 } from "node:zlib";
import type { Entry, EntryKind } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { walEntryDataBytesMax } from "./limits.js";

export const segmentMagic = Buffer.from("BATONWAL", "latin1");
export const segmentFormatVersion = 1;
/** magic(8) version(4) reserved(4) firstIndex(8) reserved(4) crc32(4) */
export const segmentHeaderBytes = 32;
/** length(4) crc32(4) type(1), then `length` payload bytes. */
export const recordHeaderBytes = 9;
/** index(8) term(8) kind(1), then the entry's data. */
export const entryPayloadFixedBytes = 17;
/** index(8) */
export const truncatePayloadBytes = 8;

export const recordType = { entry: 1, truncate: 2 } as const;

const kindCodes: Record<EntryKind, number> = { noop: 0, command: 1, config: 2 };
const kindsByCode: readonly EntryKind[] = ["noop", "command", "config"];
const two32 = 2 ** 32;

/** Segment files are named by their first index, zero-padded so names sort as numbers. */
export function segmentFileName(firstIndex: number): string {
  return `${String(firstIndex).padStart(20, "0")}.seg`;
}

/** The first index a segment file name encodes, or null when it is not a segment name. */
export function parseSegmentFileName(name: string): number | null {
  const match = /^(\d{20})\.seg$/.exec(name);
  if (match === null) return null;
  const index = Number(match[1]);
  return Number.isSafeInteger(index) && index >= 1 ? index : null;
}

export function writeU64(buffer: Buffer, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 out of range: ${value}`);
  buffer.writeUInt32LE(value % two32, offset);
  buffer.writeUInt32LE(Math.floor(value / two32), offset + 4);
}

/** Reads a little-endian u64; NaN when it exceeds what a JavaScript number holds exactly. */
export function readU64(buffer: Buffer, offset: number): number {
  const value = buffer.readUInt32LE(offset) + buffer.readUInt32LE(offset + 4) * two32;
  return Number.isSafeInteger(value) ? value : Number.NaN;
}

export function encodeSegmentHeader(firstIndex: number): Buffer {
  const header = Buffer.alloc(segmentHeaderBytes);
  segmentMagic.copy(header, 0);
  header.writeUInt32LE(segmentFormatVersion, 8);
  writeU64(header, 16, firstIndex);
  header.writeUInt32LE(crc32(header.subarray(0, 28)), 28);
  return header;
}

/** Checks a segment header read from a file named for `firstIndex`; returns a problem or null. */
export function checkSegmentHeader(header: Buffer, firstIndex: number): string | null {
  if (header.length < segmentHeaderBytes) return "segment header is incomplete";
  if (!header.subarray(0, 8).equals(segmentMagic)) return "not a segment (bad magic)";
  if (header.readUInt32LE(28) !== crc32(header.subarray(0, 28))) {
    return "segment header fails its checksum";
  }
  const version = header.readUInt32LE(8);
  if (version !== segmentFormatVersion) {
    return `segment format version ${version} is not supported (this build reads ${segmentFormatVersion})`;
  }
  const named = readU64(header, 16);
  if (named !== firstIndex) return `header says first index ${named}, the file name ${firstIndex}`;
  return null;
}

/** Bytes one entry takes on disk, frame included. */
export function entryRecordBytes(entry: Entry): number {
  return recordHeaderBytes + entryPayloadFixedBytes + entry.data.length;
}

/** Fills in the frame (length, checksum, type) around a payload already in place. */
function sealRecord(buffer: Buffer, offset: number, type: number, payloadBytes: number): void {
  buffer.writeUInt32LE(payloadBytes, offset);
  buffer.writeUInt8(type, offset + 8);
  const lengthCrc = crc32(buffer.subarray(offset, offset + 4));
  const end = offset + recordHeaderBytes + payloadBytes;
  buffer.writeUInt32LE(crc32(buffer.subarray(offset + 8, end), lengthCrc), offset + 4);
}

/** Encodes one entry record into `buffer` at `offset`; returns the offset after it. */
export function encodeEntryRecord(buffer: Buffer, offset: number, entry: Entry): number {
  assert(entry.data.length <= walEntryDataBytesMax, `entry ${entry.index} data too large`);
  assert(entry.kind !== "noop" || entry.data.length === 0, "a noop entry carries no data");
  const payload = offset + recordHeaderBytes;
  writeU64(buffer, payload, entry.index);
  writeU64(buffer, payload + 8, entry.term);
  buffer.writeUInt8(kindCodes[entry.kind], payload + 16);
  buffer.set(entry.data, payload + entryPayloadFixedBytes);
  const payloadBytes = entryPayloadFixedBytes + entry.data.length;
  sealRecord(buffer, offset, recordType.entry, payloadBytes);
  return offset + recordHeaderBytes + payloadBytes;
}

/** Encodes a truncation record ("the log from `index` on is replaced"). */
export function encodeTruncateRecord(index: number): Buffer {
  const buffer = Buffer.alloc(recordHeaderBytes + truncatePayloadBytes);
  writeU64(buffer, recordHeaderBytes, index);
  sealRecord(buffer, 0, recordType.truncate, truncatePayloadBytes);
  return buffer;
}

/** What a record's 9-byte frame says, before its payload is read. */
export type FrameCheck =
  | { ok: true; type: number; payloadBytes: number; recordBytes: number }
  | { ok: false; detail: string };

/** Checks the frame at `offset` (at least `recordHeaderBytes` must be available). */
export function checkFrame(buffer: Buffer, offset: number): FrameCheck {
  const payloadBytes = buffer.readUInt32LE(offset);
  const type = buffer.readUInt8(offset + 8);
  const min = type === recordType.entry ? entryPayloadFixedBytes : truncatePayloadBytes;
  const max = type === recordType.entry ? min + walEntryDataBytesMax : truncatePayloadBytes;
  if (type !== recordType.entry && type !== recordType.truncate) {
    return { ok: false, detail: `unknown record type ${type}` };
  }
  if (payloadBytes < min || payloadBytes > max) {
    return { ok: false, detail: `record length ${payloadBytes} is impossible for its type` };
  }
  return { ok: true, type, payloadBytes, recordBytes: recordHeaderBytes + payloadBytes };
}

/**
 * A decoded record, or what is wrong with it. `checksum` tells a checksum failure (what a
 * torn write looks like) from a record whose checksum holds but whose content is
 * impossible (what a bug or a foreign format looks like).
 */
export type DecodedRecord =
  | { ok: true; type: "entry"; entry: Entry }
  | { ok: true; type: "truncate"; index: number }
  | { ok: false; detail: string; checksum: boolean };

/**
 * A record whose checksum and header were verified, without its entry's data: what the
 * start-up scan needs to index the log (it reads the data later, when asked for it).
 */
export type CheckedRecord =
  | { ok: true; type: "entry"; index: number; term: number; kind: EntryKind }
  | { ok: true; type: "truncate"; index: number }
  | { ok: false; detail: string; checksum: boolean };

/**
 * Verifies the checksum of the whole record at `offset` (frame already checked, whole
 * record in `buffer`) and reads its header, leaving the entry's data where it is.
 */
export function checkRecord(buffer: Buffer, offset: number, frame: FrameCheck): CheckedRecord {
  assert(frame.ok);
  const end = offset + frame.recordBytes;
  assert(end <= buffer.length, "record extends past the buffer");
  const lengthCrc = crc32(buffer.subarray(offset, offset + 4));
  if (crc32(buffer.subarray(offset + 8, end), lengthCrc) !== buffer.readUInt32LE(offset + 4)) {
    return { ok: false, detail: "record fails its checksum", checksum: true };
  }
  const payload = offset + recordHeaderBytes;
  const index = readU64(buffer, payload);
  if (!(index >= 1)) return { ok: false, detail: "record index out of range", checksum: false };
  if (frame.type === recordType.truncate) return { ok: true, type: "truncate", index };
  const term = readU64(buffer, payload + 8);
  const kind = kindsByCode[buffer.readUInt8(payload + 16)];
  if (!(term >= 0)) return { ok: false, detail: "entry term out of range", checksum: false };
  if (kind === undefined) return { ok: false, detail: "unknown entry kind", checksum: false };
  return { ok: true, type: "entry", index, term, kind };
}

/**
 * Verifies the checksum of the whole record at `offset` (frame already checked, whole
 * record in `buffer`) and decodes it. The entry's data is copied out of `buffer`.
 */
export function decodeRecord(buffer: Buffer, offset: number, frame: FrameCheck): DecodedRecord {
  const record = checkRecord(buffer, offset, frame);
  if (!record.ok || record.type === "truncate") return record;
  assert(frame.ok);
  const { index, term, kind } = record;
  const start = offset + recordHeaderBytes + entryPayloadFixedBytes;
  const data = new Uint8Array(buffer.subarray(start, offset + frame.recordBytes));
  return { ok: true, type: "entry", entry: { index, term, kind, data } };
}
