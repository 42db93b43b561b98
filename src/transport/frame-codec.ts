/**
 * The wire format between nodes: a frame is a 4-byte big-endian payload length followed by
 * that many bytes of MessagePack. This file owns encoding frames and the incremental
 * decoder that turns a stream of arbitrary chunks (one frame split across many, or many
 * frames in one) back into validated frames.
 *
 * The decoder must never throw for bad input and never allocate for a length it has not
 * checked against the limit: a peer (or a port scanner) controls every byte it reads.
 * Anything wrong is returned as a ProtocolError, after which the decoder stays failed,
 * because a byte stream that lost its framing cannot be resynchronised.
 */

import { Packr, RESERVE_START_SPACE } from "msgpackr";
import { assert } from "../shared/assert.js";
import {
  describe,
  type Frame,
  type FrameResult,
  type ProtocolError,
  validateFrame,
} from "./frame-schema.js";

/** Bytes of the big-endian length prefix in front of every payload. */
export const FRAME_HEADER_BYTES = 4;

export interface FrameCodecLimits {
  /**
   * Largest payload (excluding the 4-byte header) a frame may carry, in bytes. Both sides
   * must agree: a frame above the receiver's limit gets the connection closed.
   * @default 16777216 (16 MiB)
   */
  readonly frameBytesMax: number;
}

export function defaultFrameCodecLimits(): FrameCodecLimits {
  return { frameBytesMax: 16 * 1024 * 1024 };
}

/**
 * One fixed configuration, so that every node encodes identically and decoding never
 * depends on state from earlier frames: plain maps with string keys (no records or shared
 * structures), no msgpackr-only extensions on the way out, binary data as `bin`, and
 * 64-bit integers decoded as numbers (unsafe ones are then rejected by the schema).
 */
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
  int64AsType: "number",
});

export type EncodeResult =
  | { readonly ok: true; readonly bytes: Buffer }
  | { readonly ok: false; readonly reason: "too_large"; readonly payloadBytes: number };

/**
 * Encodes `frame` as header + payload in one buffer that the caller owns. Fails with
 * `too_large` when the payload exceeds `limits.frameBytesMax`.
 */
export function encodeFrame(frame: Frame, limits: FrameCodecLimits): EncodeResult {
  // msgpackr leaves room for the header before the payload, so the frame is the view it
  // returns, not a copy (a mebibyte entry was copied once more per backup). The view is
  // the caller's: msgpackr writes later frames after it in its buffer, never over it. A
  // frame kept keeps that buffer alive, so a send queue keeps a copy of a frame much
  // smaller than its buffer (send-queue.ts, ownedFrame).
  const bytes = packr.pack(frame, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
  const payloadBytes = bytes.length - FRAME_HEADER_BYTES;
  if (payloadBytes > limits.frameBytesMax) {
    return { ok: false, reason: "too_large", payloadBytes };
  }
  bytes.writeUInt32BE(payloadBytes, 0);
  return { ok: true, bytes };
}

/**
 * Decodes one payload (without header). Never throws: msgpack errors of any kind become
 * `bad_msgpack`, and schema violations `invalid_frame`.
 */
export function decodePayload(payload: Uint8Array): FrameResult {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (error) {
    const message = error instanceof Error ? error.message : describe(error);
    return { ok: false, error: { code: "bad_msgpack", detail: message.slice(0, 200) } };
  }
  return validateFrame(value);
}

/** What the decoder has next: a frame, nothing until more bytes arrive, or a failure. */
export type DecodeStep =
  | { readonly kind: "frame"; readonly frame: Frame }
  | { readonly kind: "need_more" }
  | { readonly kind: "error"; readonly error: ProtocolError };

/**
 * Reassembles frames from a byte stream. Use: `push(chunk)` for every chunk received, then
 * call `next()` until it answers `need_more` or `error`. Chunks are kept by reference, and
 * a decoded frame's bytes may be views of them, so the caller must never modify a chunk
 * after pushing it (a socket's chunks are fresh buffers, never reused).
 *
 * A payload that lies within one chunk is decoded in place; a payload split across chunks
 * is copied into a buffer of exactly its length, allocated only after the length passed
 * the limit. The per-chunk cost therefore stays constant even if a peer trickles bytes.
 */
export class FrameDecoder {
  /** Received chunks not yet consumed; `pendingOffset` bytes of the first are consumed. */
  private readonly pending: Uint8Array[] = [];
  private pendingOffset = 0;
  private pendingBytes = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  /** The payload being reassembled, once its header has been read and accepted. */
  private body: Buffer | null = null;
  private bodyFilled = 0;
  private frameBytesMax: number;
  private failure: ProtocolError | null = null;

  constructor(limits: FrameCodecLimits) {
    this.frameBytesMax = limits.frameBytesMax;
    assert(Number.isSafeInteger(this.frameBytesMax) && this.frameBytesMax > 0);
  }

  /**
   * Changes the payload limit for frames whose header has not been read yet. The TCP
   * acceptor keeps a small limit until the handshake is done, so that an unknown client
   * cannot make it hold a large frame.
   */
  setFrameBytesMax(frameBytesMax: number): void {
    assert(Number.isSafeInteger(frameBytesMax) && frameBytesMax > 0);
    this.frameBytesMax = frameBytesMax;
  }

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.pendingBytes + this.headerFilled + this.bodyFilled;
  }

  push(chunk: Uint8Array): void {
    // After a failure the stream is garbage; keeping its bytes would only waste memory.
    if (this.failure !== null || chunk.length === 0) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
  }

  next(): DecodeStep {
    if (this.failure !== null) return { kind: "error", error: this.failure };
    if (this.body === null) {
      this.headerFilled += this.consumeInto(this.header, this.headerFilled);
      if (this.headerFilled < FRAME_HEADER_BYTES) return { kind: "need_more" };
      const length = this.header.readUInt32BE(0);
      // The length is checked before anything of that size is allocated or awaited.
      const lengthError = this.checkLength(length);
      if (lengthError !== null) return this.fail(lengthError);
      const inPlace = this.consumeView(length);
      if (inPlace !== null) return this.decode(inPlace);
      this.body = Buffer.allocUnsafe(length);
      this.bodyFilled = 0;
    }
    this.bodyFilled += this.consumeInto(this.body, this.bodyFilled);
    if (this.bodyFilled < this.body.length) return { kind: "need_more" };
    return this.decode(this.body);
  }

  private decode(payload: Uint8Array): DecodeStep {
    this.headerFilled = 0;
    this.body = null;
    this.bodyFilled = 0;
    const result = decodePayload(payload);
    return result.ok ? { kind: "frame", frame: result.frame } : this.fail(result.error);
  }

  private checkLength(length: number): ProtocolError | null {
    if (length === 0) return { code: "empty_frame", detail: "frame length is 0" };
    if (length <= this.frameBytesMax) return null;
    const detail = `frame length ${length} exceeds the limit of ${this.frameBytesMax}`;
    const hint = looksLikeHttp(this.header)
      ? " (an HTTP request?)"
      : looksLikeTls(this.header)
        ? " (a TLS handshake? this node speaks plain TCP to peers: give every node the same --tls-* settings)"
        : "";
    return { code: "oversized_frame", detail: `${detail}${hint}` };
  }

  private fail(error: ProtocolError): DecodeStep {
    this.failure = error;
    this.pending.length = 0;
    this.pendingOffset = 0;
    this.pendingBytes = 0;
    this.headerFilled = 0;
    this.body = null;
    this.bodyFilled = 0;
    return { kind: "error", error };
  }

  /** Consumes `count` bytes as a view of the first chunk, or null if they span chunks. */
  private consumeView(count: number): Uint8Array | null {
    const head = this.pending[0];
    if (head === undefined || head.length - this.pendingOffset < count) return null;
    const view = head.subarray(this.pendingOffset, this.pendingOffset + count);
    this.pendingOffset += count;
    this.pendingBytes -= count;
    if (this.pendingOffset === head.length) {
      this.pending.shift();
      this.pendingOffset = 0;
    }
    return view;
  }

  /** Moves pending bytes into `target` from `offset` on; returns how many were moved. */
  private consumeInto(target: Buffer, offset: number): number {
    let moved = 0;
    while (offset + moved < target.length) {
      const head = this.pending[0];
      if (head === undefined) break;
      const wanted = target.length - offset - moved;
      const part = head.subarray(this.pendingOffset, this.pendingOffset + wanted);
      target.set(part, offset + moved);
      moved += part.length;
      this.pendingOffset += part.length;
      if (this.pendingOffset === head.length) {
        this.pending.shift();
        this.pendingOffset = 0;
      }
    }
    this.pendingBytes -= moved;
    return moved;
  }
}

/** True when a frame header is really the start of a TLS handshake record. */
export function looksLikeTls(header: Uint8Array): boolean {
  return header[0] === 0x16 && header[1] === 0x03;
}

const httpMethodPrefixes = ["GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN"];

/** True when a frame header is really the start of an HTTP request line. */
export function looksLikeHttp(header: Uint8Array): boolean {
  const text = String.fromCharCode(...header.subarray(0, FRAME_HEADER_BYTES));
  return httpMethodPrefixes.includes(text);
}
