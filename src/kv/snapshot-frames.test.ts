import { describe, expect, it } from "vitest";
import { FrameWriter, KvSnapshotError, readFrames } from "./snapshot-frames.js";

async function* stream(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

async function readAll(chunks: Uint8Array[], frameBytesMax = 1 << 20): Promise<unknown[]> {
  const frames: unknown[] = [];
  for await (const frame of readFrames(stream(chunks), frameBytesMax)) frames.push(frame);
  return frames;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function written(frames: unknown[], chunkBytesMax: number): Uint8Array[] {
  const writer = new FrameWriter(chunkBytesMax);
  const chunks: Uint8Array[] = [];
  for (const frame of frames) {
    writer.frame(frame);
    chunks.push(...writer.chunks(false));
  }
  chunks.push(...writer.chunks(true));
  return chunks;
}

const FRAMES = [
  ["a", 1],
  ["b", new Uint8Array(300).fill(7)],
  ["c", "text"],
];

describe("snapshot frames", () => {
  it("snapshot frames: chunks never exceed the bound (chunk of 64 bytes)", () => {
    const chunks = written(FRAMES, 64);
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) expect(chunk.byteLength).toBeLessThanOrEqual(64);
  });

  it("snapshot frames: reading accepts any re-chunking (split at every byte)", async () => {
    const whole = concat(written(FRAMES, 64));
    const expected = await readAll([whole]);
    expect(expected).toEqual(FRAMES);
    const single = Array.from(whole, (byte) => Uint8Array.of(byte));
    expect(await readAll(single)).toEqual(FRAMES);
    for (let cut = 0; cut <= whole.byteLength; cut += 7) {
      const parts = [whole.subarray(0, cut), new Uint8Array(0), whole.subarray(cut)];
      expect(await readAll(parts)).toEqual(FRAMES);
    }
  });

  it("snapshot frames: bad streams fail with a clear error (magic, version, truncation, size)", async () => {
    const whole = concat(written(FRAMES, 1024));
    const wrongMagic = whole.slice();
    wrongMagic[0] = 0;
    const wrongVersion = whole.slice();
    wrongVersion[7] = 9;
    const cases: [Uint8Array[], RegExp][] = [
      [[], /before the preamble/],
      [[wrongMagic], /not a Baton key-value snapshot/],
      [[wrongVersion], /format version 9 is not supported/],
      [[whole.subarray(0, whole.byteLength - 1)], /ends inside a frame/],
      [[whole, Uint8Array.of(0, 0)], /ends inside a frame/],
      [[whole.subarray(0, 8), Uint8Array.of(0, 0, 0, 0)], /frame length 0/],
      [[whole.subarray(0, 8), Uint8Array.of(0, 1, 0, 0)], /frame length 65536 outside/],
      [[whole.subarray(0, 8), Uint8Array.of(0, 0, 0, 2, 0x92, 0x01)], /not MessagePack/],
    ];
    for (const [chunks, message] of cases) {
      const failure = readAll(chunks, 1000);
      await expect(failure).rejects.toThrow(KvSnapshotError);
      await expect(readAll(chunks, 1000)).rejects.toThrow(message);
    }
  });
});
