/**
 * Property tests of the peer frame decoder, the code that reads every byte a stranger
 * sends to a peer port: whatever the bytes, however they are split into chunks, it only
 * ever answers a frame, "need more" or a protocol error, and never throws; a valid frame
 * of any type survives encoding and decoding unchanged. Frames are generated from the
 * schema table itself, so a new message type is fuzzed as soon as it has a rule.
 *
 * BATON_FUZZ_RUNS sets the number of inputs per property (default 300); docs/security.md
 * records a long run.
 */

import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import {
  type DecodeStep,
  decodePayload,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
} from "./frame-codec.js";
import {
  type FieldKind,
  FRAME_SCHEMAS,
  FRAME_TEXT_CHARS_MAX,
  type Frame,
  type FrameType,
  NODE_ID_MAX,
  PROTOCOL_MAGIC,
  type ProtocolErrorCode,
  validateFrame,
} from "./frame-schema.js";

const RUNS = Number(process.env.BATON_FUZZ_RUNS ?? 300);
const LIMITS = { frameBytesMax: 64 * 1024 };
const ERROR_CODES: ReadonlySet<ProtocolErrorCode> = new Set([
  "oversized_frame",
  "empty_frame",
  "bad_msgpack",
  "invalid_frame",
  "unexpected_frame",
]);

/** Splits `bytes` at the given cut points (taken modulo its length), in order. */
function chunk(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  if (bytes.length === 0) return [bytes];
  const points = [...new Set(cuts.map((cut) => cut % bytes.length))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/** Pushes `chunks` into a decoder and drains it; throws only if the decoder misbehaves. */
function drain(chunks: readonly Uint8Array[]): { frames: Frame[]; error: DecodeStep | null } {
  const decoder = new FrameDecoder(LIMITS);
  const frames: Frame[] = [];
  for (const piece of chunks) {
    decoder.push(piece);
    for (;;) {
      const step = decoder.next();
      if (step.kind === "need_more") break;
      if (step.kind === "error") {
        if (!ERROR_CODES.has(step.error.code)) throw new Error(`unknown code ${step.error.code}`);
        // A failed decoder stays failed with the same error.
        if (!isDeepStrictEqual(decoder.next(), step)) throw new Error("decoder recovered");
        return { frames, error: step };
      }
      frames.push(step.frame);
    }
  }
  return { frames, error: null };
}

const uint = fc.maxSafeNat();
const nodeId = fc.integer({ min: 1, max: NODE_ID_MAX });
const bytes = fc.uint8Array({ maxLength: 64 });
const httpUrls = ["http://127.0.0.1:8101", "https://node2.example.net:8443", "http://[::1]:80"];

function fieldArbitrary(kind: FieldKind): fc.Arbitrary<unknown> {
  switch (kind) {
    case "uint":
      return uint;
    case "node_id":
      return nodeId;
    case "bool":
      return fc.boolean();
    case "text":
      return fc
        .string({ unit: "grapheme", maxLength: 40 })
        .filter((s) => s.length <= FRAME_TEXT_CHARS_MAX);
    case "magic":
      return fc.constant(PROTOCOL_MAGIC);
    case "entries":
      return fc.array(
        fc.record({
          index: fc.constant(0),
          term: fc.nat(1000),
          kind: fc.constantFrom("noop", "command"),
          data: bytes,
        }),
        { maxLength: 4 },
      );
    case "bytes":
      return bytes;
    case "peer_info":
      return fc.record({ httpUrl: fc.constantFrom(null, ...httpUrls) });
    case "forward_outcome":
      return fc.constantFrom("proposed", "not_master", "busy");
  }
}

/** Adjusts a schema-shaped frame to the rules that relate fields to each other. */
function makeValid(frame: Record<string, unknown>): Frame {
  const out = { ...frame };
  // fast-check's records have no prototype; decoded maps are plain objects.
  if ("advertise" in out) out.advertise = { ...(out.advertise as object) };
  if ("from" in out && out.from === out.to) out.to = (out.from as number) === 1 ? 2 : 1;
  if (out.type === "hello" && out.fromId === out.toId) out.toId = out.fromId === 1 ? 2 : 1;
  if (out.type === "append") {
    const prevIndex = (out.prevIndex as number) % 2 ** 40;
    const entries = out.entries as { term: number; kind: string; data: Uint8Array }[];
    const prevTerm = (out.prevTerm as number) % 1000;
    const terms = entries.map((entry) => prevTerm + entry.term).sort((a, b) => a - b);
    out.prevIndex = prevIndex;
    out.prevTerm = prevTerm;
    out.term = Math.max(out.term as number, prevTerm, ...terms);
    out.entries = entries.map((entry, i) => ({
      index: prevIndex + 1 + i,
      term: terms[i],
      kind: entry.kind,
      data: entry.kind === "noop" ? new Uint8Array(0) : entry.data,
    }));
  }
  if (out.type === "snapshot_chunk") {
    out.offset = (out.offset as number) % 2 ** 40;
    const end = (out.offset as number) + (out.data as Uint8Array).length;
    out.totalBytes = Math.max(out.totalBytes as number, end);
    out.term = Math.max(out.term as number, out.snapshotTerm as number);
  }
  return out as unknown as Frame;
}

const validFrame: fc.Arbitrary<Frame> = fc
  .constantFrom(...(Object.keys(FRAME_SCHEMAS) as FrameType[]))
  .chain((type) => {
    const fields = Object.entries(FRAME_SCHEMAS[type]).map(
      ([name, kind]) => [name, fieldArbitrary(kind)] as const,
    );
    return fc.record(Object.fromEntries(fields)).map((values) => makeValid({ type, ...values }));
  });

const cuts = fc.array(fc.nat(), { maxLength: 8 });

describe("frame codec properties", () => {
  it("fuzz: arbitrary bytes in arbitrary chunks give frames, need_more or a protocol error, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), cuts, (input, at) => {
        drain(chunk(input, at));
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: a plausible header over arbitrary payload bytes never throws", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), cuts, (payload, at) => {
        const framed = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
        new DataView(framed.buffer).setUint32(0, payload.length);
        framed.set(payload, FRAME_HEADER_BYTES);
        drain(chunk(framed, at));
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: any msgpack value as a payload is a frame or invalid_frame, never a throw", () => {
    const packr = new Packr({ useRecords: false, mapsAsObjects: true });
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withTypedArray: true }), (value) => {
        let payload: Uint8Array;
        try {
          payload = packr.pack(value);
        } catch {
          return;
        }
        const result = decodePayload(payload);
        if (!result.ok) expect(["bad_msgpack", "invalid_frame"]).toContain(result.error.code);
        expect(validateFrame(value).ok).toBe(result.ok ? validateFrame(value).ok : false);
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: every valid frame of every type round-trips, however it is chunked", () => {
    fc.assert(
      fc.property(fc.array(validFrame, { minLength: 1, maxLength: 4 }), cuts, (frames, at) => {
        for (const frame of frames) expect(validateFrame(frame)).toMatchObject({ ok: true });
        const encoded = frames.map((frame) => {
          const result = encodeFrame(frame, LIMITS);
          if (!result.ok) throw new Error("frame too large");
          return result.bytes;
        });
        const { frames: decoded, error } = drain(chunk(Buffer.concat(encoded), at));
        expect(error).toBeNull();
        expect(isDeepStrictEqual(decoded, frames)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: a valid frame with bytes flipped or cut off never throws", () => {
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 4,
    });
    fc.assert(
      fc.property(validFrame, mutation, fc.nat(), (frame, flips, cutAt) => {
        const result = encodeFrame(frame, LIMITS);
        if (!result.ok) return;
        const mutated = Uint8Array.from(result.bytes);
        for (const [at, value] of flips) mutated[at % mutated.length] = value;
        drain([mutated]);
        drain([mutated.subarray(0, cutAt % (mutated.length + 1))]);
      }),
      { numRuns: RUNS },
    );
  });
});
