import { Packr } from "msgpackr";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  comparable,
  numberedHeartbeat,
  sampleMessages,
} from "../../test/conformance/transport.suite.js";
import type { Message, SnapshotChunk } from "../protocol/messages.js";
import {
  type DecodeStep,
  decodePayload,
  defaultFrameCodecLimits,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
} from "./frame-codec.js";
import {
  type Frame,
  type Hello,
  type HelloOk,
  HTTP_URL_BYTES_MAX,
  PROTOCOL_VERSION,
  validateFrame,
} from "./frame-schema.js";

const limits = defaultFrameCodecLimits();
/** A plain msgpack encoder for building frames the real encoder would never produce. */
const rawPackr = new Packr({ useRecords: false, moreTypes: false });

function encode(frame: Frame): Buffer {
  const result = encodeFrame(frame, limits);
  if (!result.ok) throw new Error("frame too large");
  return result.bytes;
}

/** Frames `value` as the real encoder would, but without checking it against the schema. */
function rawFrame(value: unknown): Buffer {
  const payload = rawPackr.pack(value);
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(payload.length);
  return Buffer.concat([header, payload]);
}

/** A handshake frame as a node of protocol version 1 would send it. */
function withoutAdvertise(frame: Hello | HelloOk): unknown {
  const { advertise: _, ...rest } = frame;
  return rest;
}

/** Feeds `chunks` and drains the decoder after each one. */
function decodeAll(decoder: FrameDecoder, chunks: Iterable<Uint8Array>): DecodeStep[] {
  const steps: DecodeStep[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (;;) {
      const step = decoder.next();
      if (step.kind === "need_more") break;
      steps.push(step);
      if (step.kind === "error") return steps;
    }
  }
  return steps;
}

function framesOf(steps: DecodeStep[]): Frame[] {
  return steps.flatMap((step) => (step.kind === "frame" ? [step.frame] : []));
}

function errorOf(bytes: Uint8Array): string | null {
  const step = decodeAll(new FrameDecoder(limits), [bytes]).at(-1);
  return step?.kind === "error" ? step.error.code : null;
}

/** A small seeded generator (mulberry32), so that a fuzz failure replays from its seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("frame codec", () => {
  it("codec: round-trips every message type (large entries)", () => {
    const messages = sampleMessages(1, 2, 3 * 1024 * 1024);
    const steps = decodeAll(new FrameDecoder(limits), messages.map(encode));
    expect(comparable(framesOf(steps) as Message[])).toEqual(comparable(messages));
  });

  it("codec: entry data decodes as a plain Uint8Array that owns its memory", () => {
    const [, , append] = sampleMessages(1, 2, 100);
    const bytes = encode(append as Message);
    const [frame] = framesOf(decodeAll(new FrameDecoder(limits), [bytes]));
    const entry = frame?.type === "append" ? frame.entries[2] : undefined;
    expect(entry?.data.constructor).toBe(Uint8Array);
    expect(entry?.data.buffer).not.toBe(bytes.buffer);
    expect(entry?.data.byteLength).toBe(entry?.data.buffer.byteLength);
  });

  it("codec: a snapshot chunk's data is a view of its frame's own buffer; small bytes are copied out", () => {
    const chunk = (data: Uint8Array): SnapshotChunk => ({
      type: "snapshot_chunk",
      from: 1,
      to: 2,
      term: 3,
      snapshotIndex: 9,
      snapshotTerm: 2,
      offset: 0,
      totalBytes: data.length,
      crc32: 0,
      data,
      config: new Uint8Array(0),
    });
    const big = new Uint8Array(1 << 20).map((_, i) => i % 251);
    const bytes = encode(chunk(big) as Frame);
    // Split, as a socket delivers it: the decoder assembles the frame in a buffer of its
    // own, and the data, nearly all of it, stays a view of it instead of a second copy.
    const pieces = [bytes.subarray(0, 65_536), bytes.subarray(65_536)];
    const [frame] = framesOf(decodeAll(new FrameDecoder(limits), pieces));
    const data = frame?.type === "snapshot_chunk" ? frame.data : new Uint8Array(0);
    expect(data.constructor).toBe(Uint8Array);
    expect(Buffer.compare(data, big)).toBe(0);
    expect(data.buffer.byteLength - data.byteLength).toBeLessThan(200);
    expect(data.buffer).not.toBe(bytes.buffer);
    // A few bytes in a large chunk of the socket's are copied, so as not to pin it.
    const small = encode(chunk(Uint8Array.of(1, 2, 3)) as Frame);
    const socketChunk = Buffer.concat([small, Buffer.alloc(60_000)]);
    const decoder = new FrameDecoder(limits);
    decoder.push(socketChunk.subarray(0, small.length));
    const step = decoder.next();
    const tiny =
      step.kind === "frame" && step.frame.type === "snapshot_chunk" ? step.frame.data : null;
    expect(tiny).toEqual(Uint8Array.of(1, 2, 3));
    expect(tiny?.buffer.byteLength).toBe(3);
  });

  it("codec: decodes frames split byte by byte", () => {
    const messages = sampleMessages(2, 1, 300);
    const stream = Buffer.concat(messages.map(encode));
    const bytes = Array.from(stream, (byte) => Uint8Array.of(byte));
    const steps = decodeAll(new FrameDecoder(limits), bytes);
    expect(comparable(framesOf(steps) as Message[])).toEqual(comparable(messages));
  });

  it("codec: decodes many frames combined in one chunk and split at random points", () => {
    const random = prng(7);
    const messages = Array.from({ length: 300 }, (_, n) => numberedHeartbeat(1, 2, n));
    const stream = Buffer.concat(messages.map(encode));
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; ) {
      const size = 1 + Math.floor(random() * 200);
      chunks.push(stream.subarray(at, at + size));
      at += size;
    }
    expect(framesOf(decodeAll(new FrameDecoder(limits), chunks))).toEqual(messages);
  });

  it("codec: refuses to encode a payload over the limit (too_large)", () => {
    const [, , append] = sampleMessages(1, 2, 2000);
    const result = encodeFrame(append as Message, { frameBytesMax: 1000 });
    expect(result).toMatchObject({ ok: false, reason: "too_large" });
  });

  it("codec: rejects an oversized length from its header alone, without allocating", () => {
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const alloc = vi.spyOn(Buffer, "alloc");
    const decoder = new FrameDecoder({ frameBytesMax: 1024 });
    decoder.push(Uint8Array.of(0xff, 0xff, 0xff, 0xf0));
    const step = decoder.next();
    expect(step).toMatchObject({ kind: "error", error: { code: "oversized_frame" } });
    const sizes = [...allocUnsafe.mock.calls, ...alloc.mock.calls].map(([size]) => size);
    expect(sizes.every((size) => size <= 1024)).toBe(true);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("codec: stays failed after an error (later valid frames ignored)", () => {
    const decoder = new FrameDecoder(limits);
    decoder.push(Uint8Array.of(0, 0, 0, 0));
    expect(decoder.next()).toMatchObject({ kind: "error", error: { code: "empty_frame" } });
    decoder.push(encode(numberedHeartbeat(1, 2, 1)));
    expect(decoder.next()).toMatchObject({ kind: "error", error: { code: "empty_frame" } });
  });

  it("codec: names an HTTP request in the oversized-frame error", () => {
    const decoder = new FrameDecoder(limits);
    decoder.push(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const step = decoder.next();
    expect(step.kind === "error" && step.error.detail).toMatch(/HTTP request/);
  });

  it("codec: rejects bad msgpack and trailing bytes (bad_msgpack)", () => {
    expect(errorOf(Uint8Array.of(0, 0, 0, 1, 0x82))).toBe("bad_msgpack");
    const payload = rawPackr.pack(numberedHeartbeat(1, 2, 1));
    const withTrailer = Buffer.concat([payload, Uint8Array.of(0)]);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(withTrailer.length);
    expect(errorOf(Buffer.concat([header, withTrailer]))).toBe("bad_msgpack");
  });
});

describe("frame schema", () => {
  const heartbeat = numberedHeartbeat(1, 2, 5);
  const [, , append] = sampleMessages(1, 2, 10) as [Message, Message, Message & { type: "append" }];
  const hello: Hello = {
    type: "hello",
    magic: "baton",
    protocolVersion: PROTOCOL_VERSION,
    clusterId: "c",
    clusterUid: "",
    fromId: 3,
    toId: 1,
    incarnation: 7,
    memberIncarnation: 9,
    peerAddress: "10.0.0.3:7001",
    advertise: { httpUrl: "http://10.0.0.3:8080" },
  };
  const helloOk: HelloOk = {
    type: "hello_ok",
    protocolVersion: PROTOCOL_VERSION,
    nodeId: 1,
    clusterUid: "u",
    incarnation: 8,
    advertise: { httpUrl: null },
  };
  /** The URL `url` advertised in a hello, and in a hello_ok. */
  const advertising = (url: unknown): [unknown, unknown] => [
    { ...hello, advertise: { httpUrl: url } },
    { ...helloOk, advertise: { httpUrl: url } },
  ];
  const longUrl = `http://example.com/${"p".repeat(HTTP_URL_BYTES_MAX)}`.slice(
    0,
    HTTP_URL_BYTES_MAX,
  );

  const invalidFrames: [string, unknown][] = [
    ["not a map", [1, 2, 3]],
    ["unknown type", { ...heartbeat, type: "install_everything" }],
    ["missing field", { type: "heartbeat", from: 1, to: 2, term: 1, commitIndex: 0 }],
    ["extra field", { ...heartbeat, extra: 1 }],
    ["negative term", { ...heartbeat, term: -1 }],
    ["fractional index", { ...heartbeat, commitIndex: 1.5 }],
    ["NaN", { ...heartbeat, commitIndex: Number.NaN }],
    ["infinite", { ...heartbeat, commitIndex: Number.POSITIVE_INFINITY }],
    ["unsafe integer", { ...heartbeat, commitIndex: 2 ** 60 }],
    ["string number", { ...heartbeat, term: "5" }],
    ["node id 0", { ...heartbeat, from: 0 }],
    ["node id beyond 32 bits", { ...heartbeat, to: 2 ** 32 }],
    ["message to itself", { ...heartbeat, to: 1 }],
    [
      "boolean as number",
      { type: "vote_response", from: 1, to: 2, term: 1, preVote: 0, granted: 1 },
    ],
    ["entries not an array", { ...append, entries: {} }],
    [
      "entry data not bytes",
      { ...append, entries: [{ index: 8, term: 2, kind: "command", data: "x" }] },
    ],
    [
      "entry index 0",
      { ...append, prevIndex: 0, prevTerm: 0, entries: [{ ...append.entries[0], index: 0 }] },
    ],
    ["unknown entry kind", { ...append, entries: [{ ...append.entries[0], kind: "magic" }] }],
    ["noop with data", { ...append, entries: [{ ...append.entries[0], data: Uint8Array.of(1) }] }],
    ["gap in entries", { ...append, entries: [append.entries[0], append.entries[2]] }],
    ["entry term above message term", { ...append, term: 2 }],
    [
      "snapshot term above message term",
      {
        type: "snapshot_chunk",
        from: 1,
        to: 2,
        term: 3,
        snapshotIndex: 9,
        snapshotTerm: 4,
        offset: 0,
        totalBytes: 1,
        crc32: 0,
        data: Uint8Array.of(1),
        config: new Uint8Array(0),
      },
    ],
    [
      "decreasing entry terms",
      {
        ...append,
        entries: [
          { ...append.entries[1], index: 8 },
          { ...append.entries[0], index: 9 },
        ],
      },
    ],
    ["hello with wrong magic", { ...hello, magic: "http" }],
    ["hello with long cluster id", { ...hello, clusterId: "c".repeat(2000) }],
    ["hello without advertise", withoutAdvertise(hello)],
    ["hello_ok without advertise", withoutAdvertise(helloOk)],
    ["advertise not a map", { ...hello, advertise: "http://a" }],
    ["advertise with an extra key", { ...hello, advertise: { httpUrl: null, role: "master" } }],
    ["advertise without httpUrl", { ...helloOk, advertise: {} }],
    ...advertising(`${longUrl}x`).map((frame): [string, unknown] => [
      "httpUrl of 257 bytes",
      frame,
    ]),
    ...advertising("").map((frame): [string, unknown] => ["empty httpUrl", frame]),
    ...advertising(8080).map((frame): [string, unknown] => ["httpUrl a number", frame]),
    ...advertising("ftp://a:21").map((frame): [string, unknown] => ["ftp httpUrl", frame]),
    ...advertising("localhost:8080").map((frame): [string, unknown] => [
      "httpUrl no scheme",
      frame,
    ]),
    ...advertising("http://").map((frame): [string, unknown] => ["httpUrl no host", frame]),
    ...advertising("http://a b").map((frame): [string, unknown] => ["httpUrl with a space", frame]),
    ...advertising("http://a/\n").map((frame): [string, unknown] => [
      "httpUrl with a newline",
      frame,
    ]),
    ...advertising("http://bücher.de").map((frame): [string, unknown] => [
      "non-ASCII httpUrl",
      frame,
    ]),
    ...advertising("http://u:p@a").map((frame): [string, unknown] => [
      "httpUrl with credentials",
      frame,
    ]),
    ...advertising("http://a/?x=1").map((frame): [string, unknown] => [
      "httpUrl with a query",
      frame,
    ]),
    ...advertising("http://a/#top").map((frame): [string, unknown] => [
      "httpUrl with a fragment",
      frame,
    ]),
    ["__proto__ key", JSON.parse('{"type":"heartbeat","__proto__":{"x":1}}')],
  ];

  it.each(invalidFrames)("schema: rejects %s (invalid_frame or bad_msgpack)", (_, value) => {
    const code = errorOf(rawFrame(value));
    expect(["invalid_frame", "bad_msgpack"]).toContain(code);
    // Checked directly too, so that a msgpack quirk cannot hide a schema gap.
    if (code === "invalid_frame") expect(validateFrame(value).ok).toBe(false);
  });

  it("schema: rejects bigints (msgpack would turn small ones into numbers)", () => {
    expect(validateFrame({ ...heartbeat, term: 5n }).ok).toBe(false);
  });

  it("schema: accepts every sample message and the handshake frames", () => {
    const frames: Frame[] = [
      ...sampleMessages(3, 1, 10),
      hello,
      helloOk,
      { type: "hello_error", reason: "no" },
    ];
    for (const frame of frames) expect(validateFrame(frame)).toMatchObject({ ok: true });
  });

  it.each([
    "http://127.0.0.1:8080",
    "https://node-1.example.com/baton/",
    "http://[::1]:8080",
    longUrl,
  ])("schema: accepts the advertised httpUrl %s (hello and hello_ok)", (url) => {
    expect(longUrl).toHaveLength(HTTP_URL_BYTES_MAX);
    for (const frame of advertising(url)) {
      const result = validateFrame(frame);
      expect(result).toMatchObject({ ok: true, frame: { advertise: { httpUrl: url } } });
    }
  });

  it("schema: copies advertise into a fresh frozen object (no aliasing)", () => {
    const advertise = { httpUrl: "http://a:1" };
    const result = validateFrame({ ...hello, advertise });
    if (!result.ok || result.frame.type !== "hello") throw new Error("hello rejected");
    expect(result.frame.advertise).toEqual(advertise);
    expect(result.frame.advertise).not.toBe(advertise);
    expect(Object.isFrozen(result.frame.advertise)).toBe(true);
  });

  it("schema: names the protocol version when an older hello lacks advertise (version 1)", () => {
    const result = validateFrame(withoutAdvertise({ ...hello, protocolVersion: 1 }));
    expect(result).toMatchObject({
      ok: false,
      error: { code: "invalid_frame", detail: expect.stringMatching(/protocol version 1 is not/) },
    });
  });
});

describe("frame decoder fuzz", () => {
  /** Every step must be a valid frame or a protocol error; nothing may throw. */
  function checkSteps(decoder: FrameDecoder, chunks: Uint8Array[]): void {
    for (const step of decodeAll(decoder, chunks)) {
      if (step.kind === "frame") expect(validateFrame(step.frame).ok).toBe(true);
      else expect(step.kind).toBe("error");
    }
  }

  it("fuzz: random bytes only produce frames or protocol errors (seeds 1..300)", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const length = Math.floor(random() * 600);
      const bytes = Uint8Array.from({ length }, () => Math.floor(random() * 256));
      // Plausible small lengths reach the msgpack decoder instead of the length check.
      if (length >= 4 && random() < 0.7) new DataView(bytes.buffer).setUint32(0, length - 4);
      try {
        checkSteps(new FrameDecoder({ frameBytesMax: 4096 }), [bytes]);
      } catch (error) {
        throw new Error(`fuzz seed ${seed}: ${String(error)}`);
      }
    }
  });

  it("fuzz: mutated valid frames only produce frames or protocol errors (seeds 1..2000)", () => {
    const originals = [...sampleMessages(1, 2, 40), numberedHeartbeat(1, 2, 1)].map(encode);
    for (let seed = 1; seed <= 2000; seed++) {
      const random = prng(seed);
      const original = originals[Math.floor(random() * originals.length)] as Buffer;
      const bytes = Buffer.from(original);
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips; i++) {
        // Byte 0..3 is the length; mutating the payload mostly reaches msgpack and schema.
        const at = FRAME_HEADER_BYTES + Math.floor(random() * (bytes.length - FRAME_HEADER_BYTES));
        bytes[at] = Math.floor(random() * 256);
      }
      try {
        checkSteps(new FrameDecoder(limits), [bytes]);
        expect(decodePayload(bytes.subarray(FRAME_HEADER_BYTES))).toBeDefined();
      } catch (error) {
        throw new Error(`fuzz seed ${seed}: ${String(error)}`);
      }
    }
  });
});
