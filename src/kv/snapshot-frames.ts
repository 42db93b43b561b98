/**
 * The byte layout of a key-value snapshot stream: an 8-byte preamble ("BATONKV" and a
 * format version byte), then frames, each a 4-byte big-endian length and a MessagePack
 * body. What the frames mean is `kv-snapshot.ts`'s business; this file only cuts the
 * stream into frames and back.
 *
 * A stream is a sequence of bytes, not of chunks: `FrameWriter` cuts it into chunks of a
 * bounded size wherever it likes, and `readFrames` accepts any chunking, because storage
 * and transport are free to re-chunk a snapshot on its way to another node. Reading never
 * trusts the input: every malformation becomes a `KvSnapshotError` that says what is wrong,
 * never an assertion and never an unbounded allocation.
 */

import { assert } from "../shared/assert.js";
import { kvFrameUnpackr, kvPackr } from "./commands.js";

/**
 * The version of the snapshot format that this code writes. Version 2 added the master's
 * last timestamp (`stampMs`) to the header; version 3 added the term, the leases and each
 * key's lease; version 4 added the quota and replaced the digest by a sum of per-entry
 * digests. Versions 1 to 3 are still read.
 */
export const SNAPSHOT_FORMAT_VERSION = 4;

/** The snapshot format versions this code reads. */
export type SnapshotFormatVersion = 1 | 2 | 3 | 4;

const MAGIC = [0x42, 0x41, 0x54, 0x4f, 0x4e, 0x4b, 0x56]; // "BATONKV"
const PREAMBLE_BYTES = MAGIC.length + 1;
const FRAME_HEADER_BYTES = 4;

/** A snapshot stream that cannot be restored: wrong format, wrong version, or corrupt. */
export class KvSnapshotError extends Error {
  override readonly name = "KvSnapshotError";
  readonly code = "ERR_KV_SNAPSHOT_INVALID";

  constructor(detail: string) {
    super(`invalid key-value snapshot: ${detail}`);
  }
}

/**
 * Accumulates frames and hands them out as chunks of at most `chunkBytesMax` bytes. It
 * buffers at most one chunk plus the last frame, so a snapshot never holds more than that
 * in memory however large the store is.
 */
export class FrameWriter {
  private pieces: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(private readonly chunkBytesMax: number) {
    assert(Number.isSafeInteger(chunkBytesMax) && chunkBytesMax > 0);
    this.push(Uint8Array.from([...MAGIC, SNAPSHOT_FORMAT_VERSION]));
  }

  /** Appends one frame whose body is `payload` in MessagePack. */
  frame(payload: unknown): void {
    const body = kvPackr.pack(payload);
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    new DataView(header.buffer).setUint32(0, body.byteLength);
    this.push(header);
    this.push(body);
  }

  /** Yields every full chunk; with `final`, also the last, partial one. */
  *chunks(final: boolean): Generator<Uint8Array> {
    while (this.pendingBytes >= this.chunkBytesMax || (final && this.pendingBytes > 0)) {
      yield this.take(Math.min(this.chunkBytesMax, this.pendingBytes));
    }
  }

  private push(bytes: Uint8Array): void {
    this.pieces.push(bytes);
    this.pendingBytes += bytes.byteLength;
  }

  private take(count: number): Uint8Array {
    const chunk = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const piece = this.pieces[0];
      assert(piece !== undefined, "frame writer ran out of pieces");
      const used = Math.min(piece.byteLength, count - filled);
      chunk.set(piece.subarray(0, used), filled);
      filled += used;
      if (used === piece.byteLength) this.pieces.shift();
      else this.pieces[0] = piece.subarray(used);
    }
    this.pendingBytes -= count;
    return chunk;
  }
}

/**
 * Reads the preamble, then yields each frame's decoded body in order. Throws
 * `KvSnapshotError` on a wrong preamble or version, a frame longer than `frameBytesMax`,
 * a body that is not MessagePack, or a stream that ends inside a frame.
 */
export async function* readFrames(
  chunks: AsyncIterable<Uint8Array>,
  frameBytesMax: number,
): AsyncGenerator<unknown> {
  const reader = new FrameReader(frameBytesMax);
  for await (const chunk of chunks) {
    const frames: unknown[] = [];
    reader.push(chunk, (frame) => frames.push(frame));
    yield* frames;
  }
  reader.finish();
}

/**
 * Called with each decoded frame body. `copied` says that the frame's bytes were copied
 * into a buffer of their own (a frame that spans chunks): binary data in the body is then
 * a view of a buffer nothing else holds, which the callee may keep rather than copy.
 */
export type FrameVisitor = (frame: unknown, copied: boolean) => void;

/**
 * The frame reader without an event loop: the chunks are pushed in one at a time, and
 * each push hands the frames it completed to a visitor. `readFrames` drives it over a
 * stream; callers that hold the whole snapshot (the simulator) drive it directly.
 */
export class FrameReader {
  private readonly queue = new ByteQueue();
  private needed = PREAMBLE_BYTES;
  private inFrame = false;
  /** The stream's format version, once the preamble has been read. */
  version: SnapshotFormatVersion | null = null;

  constructor(private readonly frameBytesMax: number) {}

  /** Takes the next chunk and hands each frame it completes, decoded, to `visit`. */
  push(chunk: Uint8Array, visit: FrameVisitor): void {
    if (!(chunk instanceof Uint8Array)) throw new KvSnapshotError("a chunk is not bytes");
    const { queue } = this;
    queue.push(chunk);
    while (queue.available >= this.needed) {
      const copied = queue.spans(this.needed);
      const bytes = queue.read(this.needed);
      if (this.version === null) {
        this.version = checkPreamble(bytes);
      } else if (!this.inFrame) {
        this.needed = new DataView(bytes.buffer, bytes.byteOffset, FRAME_HEADER_BYTES).getUint32(0);
        if (this.needed === 0 || this.needed > this.frameBytesMax) {
          throw new KvSnapshotError(`frame length ${this.needed} outside 1..${this.frameBytesMax}`);
        }
        this.inFrame = true;
        continue;
      } else {
        visit(decodeFrame(bytes), copied);
      }
      this.inFrame = false;
      this.needed = FRAME_HEADER_BYTES;
    }
  }

  /** Checks that the stream ended between frames. */
  finish(): void {
    if (this.version === null) throw new KvSnapshotError("stream ends before the preamble");
    if (this.inFrame || this.queue.available > 0) {
      throw new KvSnapshotError("stream ends inside a frame");
    }
  }
}

function checkPreamble(bytes: Uint8Array): SnapshotFormatVersion {
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new KvSnapshotError("not a Baton key-value snapshot");
  }
  const version = bytes[MAGIC.length];
  if (version !== 1 && version !== 2 && version !== 3 && version !== 4) {
    throw new KvSnapshotError(
      `format version ${String(version)} is not supported (this node reads 1 to 4)`,
    );
  }
  return version;
}

function decodeFrame(bytes: Uint8Array): unknown {
  try {
    return kvFrameUnpackr.unpack(bytes);
  } catch (error) {
    throw new KvSnapshotError(`a frame is not MessagePack: ${(error as Error).message}`);
  }
}

/**
 * A FIFO of byte chunks read in arbitrary slices. A slice within one chunk is a view, so
 * the producer must not reuse a chunk's buffer after handing it over (Node streams never
 * do); a slice that spans chunks is copied, once, into a buffer of exactly its size.
 */
class ByteQueue {
  private pieces: Uint8Array[] = [];
  available = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.pieces.push(chunk);
    this.available += chunk.byteLength;
  }

  /** Whether reading `count` bytes now would copy them (they span chunks). */
  spans(count: number): boolean {
    return (this.pieces[0]?.byteLength ?? 0) < count;
  }

  read(count: number): Uint8Array {
    assert(count <= this.available, "byte queue underflow");
    this.available -= count;
    const first = this.pieces[0];
    assert(first !== undefined);
    if (first.byteLength >= count) return this.advance(first, count);
    // Not zeroed first (every byte is written below), and a buffer of its own, not a
    // slice of Node's shared pool, so that a value kept from it pins nothing else.
    // A Uint8Array, not the Buffer: values decoded from it are then plain Uint8Arrays too.
    const out = new Uint8Array(Buffer.allocUnsafeSlow(count).buffer, 0, count);
    let filled = 0;
    while (filled < count) {
      const piece = this.pieces[0];
      assert(piece !== undefined);
      const used = Math.min(piece.byteLength, count - filled);
      out.set(this.advance(piece, used), filled);
      filled += used;
    }
    return out;
  }

  private advance(piece: Uint8Array, count: number): Uint8Array {
    if (count === piece.byteLength) this.pieces.shift();
    else this.pieces[0] = piece.subarray(count);
    return piece.subarray(0, count);
  }
}
