import { describe, expect, it } from "vitest";
import { AssertionError } from "../shared/assert.js";
import { encodeCommand, type KvCommand, type KvResult } from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { defaultKvLimits, type KvLimits } from "./limits.js";
import { FrameWriter, KvSnapshotError } from "./snapshot-frames.js";
import { SMALL_VALUE_BYTES_MAX } from "./stored-value.js";

/** A small seeded generator (mulberry32), so that every failure replays from its seed. */
function prng(seed: number): (bound: number) => number {
  let state = seed >>> 0;
  return (bound) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % bound) as number;
  };
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

function machine(limits: Partial<KvLimits> = {}): KvStateMachine {
  return new KvStateMachine({ ...defaultKvLimits(), ...limits });
}

/** Applies a command at an index and time, as the log would. */
function apply(sm: KvStateMachine, index: number, command: KvCommand, time = 0): KvResult {
  return sm.apply(encodeCommand(command), { index, term: 1, time });
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of chunks) out.push(chunk);
  return out;
}

async function* stream(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
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

async function restored(chunks: Uint8Array[], limits: Partial<KvLimits> = {}) {
  const sm = machine(limits);
  await sm.restore(stream(chunks));
  return sm;
}

/** A store with keys, sessions and idempotency keys; returns the next free index. */
function populate(sm: KvStateMachine, keyCount: number, valueBytes: number): number {
  let index = 0;
  for (let i = 0; i < keyCount; i++) {
    const value = new Uint8Array(valueBytes).fill(i % 251);
    apply(sm, ++index, { type: "put", key: `key-${i}`, value }, 1000 + i);
  }
  for (let i = 0; i < 20; i++) {
    const command: KvCommand = {
      type: "put",
      key: `key-${i}`,
      value: text(`session ${i}`),
      session: { clientId: `client-${i}`, seq: 1 },
      idempotencyKey: `idem-${i}`,
    };
    apply(sm, ++index, command, 5000 + i);
  }
  apply(sm, ++index, { type: "delete", key: "key-5" }, 6000);
  apply(sm, ++index, { type: "delete", key: "missing", idempotencyKey: "idem-x" }, 6000);
  return index + 1;
}

describe("kv snapshots", () => {
  it("snapshot: values on both sides of the small-value bound keep their bytes, equality and digest", async () => {
    // Small values are held as strings and larger ones as bytes (stored-value.ts); a
    // snapshot read from frames must copy large values out of the frame it decodes.
    // With the default chunk size every frame lies within one chunk, where the reader
    // decodes it in place.
    const sizes = [0, 1, 100, SMALL_VALUE_BYTES_MAX, SMALL_VALUE_BYTES_MAX + 1, 70_000];
    const source = machine();
    const values = sizes.map((n, i) =>
      Uint8Array.from({ length: n }, (_, j) => (i * 31 + j) & 255),
    );
    for (const [i, value] of values.entries()) {
      apply(source, i + 1, { type: "put", key: `v${i}`, value });
    }
    const chunks = await collect(source.snapshot());
    const copy = await restored(chunks);
    expect(copy.stateHash()).toBe(source.stateHash());
    for (const [i, value] of values.entries()) {
      expect(source.get(`v${i}`)?.value, `size ${sizes[i]}`).toEqual(value);
      expect(copy.get(`v${i}`)?.value, `size ${sizes[i]}`).toEqual(value);
    }
    // The restored copy holds its own bytes: the chunks it was read from may be reused.
    for (const chunk of chunks) chunk.fill(0);
    for (const [i, value] of values.entries()) expect(copy.get(`v${i}`)?.value).toEqual(value);
    // A compare on a value, each side of the bound, in a transaction.
    const index = values.length + 1;
    const compare = values.map((value, i) => ({ key: `v${i}`, target: "value", value }));
    const txn = apply(copy, index, {
      type: "txn",
      compare,
      success: [{ type: "put", key: "t", value: text("yes") }],
      failure: [],
    } as KvCommand);
    expect(txn).toMatchObject({ ok: true, succeeded: true });
  });

  it("snapshot: a table restored over a smaller limit regains room as its keys expire, and apply never throws", async () => {
    // 150 idempotency keys at one log time, under a limit of 200.
    const source = machine({ idempotencyKeyCountMax: 200 });
    let index = 0;
    for (let i = 0; i < 150; i++) {
      apply(source, ++index, {
        type: "put",
        key: `k${i}`,
        value: text("v"),
        idempotencyKey: `i${i}`,
      });
    }
    // Restored where the limit is 10: the table is 140 over it.
    const target = await restored(source.snapshotChunks(), { idempotencyKeyCountMax: 10 });
    const window = defaultKvLimits().idempotencyWindowMs;
    const step = defaultKvLimits().logTimeStepMsMax;
    for (let time = step; time < window; time += step) {
      apply(target, ++index, { type: "tick" }, time);
    }
    // Every key has expired: a new one must fit (after a retry or two), never throw.
    let result: KvResult | null = null;
    for (let attempt = 0; attempt < 5 && (result === null || !result.ok); attempt++) {
      result = apply(
        target,
        ++index,
        { type: "put", key: "new", value: text("v"), idempotencyKey: "fresh" },
        window + attempt,
      );
      if (!result.ok) expect(result).toMatchObject({ code: "table_full", retryAfterMs: 1 });
    }
    expect(result).toMatchObject({ ok: true });
  });

  it("snapshot: restore reproduces keys, sessions and idempotency keys (state hash)", async () => {
    const source = machine({ snapshotChunkBytesMax: 4096 });
    const next = populate(source, 300, 100);
    const chunks = await collect(source.snapshot());
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) expect(chunk.byteLength).toBeLessThanOrEqual(4096);
    const copy = await restored(chunks);
    expect(copy.stateHash()).toBe(source.stateHash());
    expect(copy.size).toBe(source.size);
    expect(copy.revision).toBe(source.revision);
    expect(copy.sessionCount).toBe(20);
    expect(copy.idempotencyKeyCount).toBe(21);
    expect(copy.get("key-7")).toEqual(source.get("key-7"));
    // The restored sessions and idempotency keys keep answering retries.
    const retry: KvCommand = {
      type: "put",
      key: "key-3",
      value: text("session 3"),
      session: { clientId: "client-3", seq: 1 },
    };
    expect(apply(copy, next, retry, 7000)).toEqual(apply(source, next, retry, 7000));
    const idem: KvCommand = { type: "delete", key: "missing", idempotencyKey: "idem-x" };
    expect(apply(copy, next + 1, idem, 7000)).toEqual({ ok: false, code: "not_found" });
    apply(source, next + 1, idem, 7000);
    expect(copy.stateHash()).toBe(source.stateHash());
  });

  it("snapshot: an empty store round trips, and restore replaces what was there", async () => {
    const empty = machine();
    const chunks = await collect(empty.snapshot());
    const target = machine();
    populate(target, 10, 10);
    await target.restore(stream(chunks));
    expect(target.stateHash()).toBe(empty.stateHash());
    expect(target.size).toBe(0);
    expect(target.sessionCount).toBe(0);
  });

  it("snapshot: values above the chunk size are split across chunks (1 MiB value, 64 KiB chunks)", async () => {
    const source = machine({ snapshotChunkBytesMax: 65_536 });
    const big = new Uint8Array(1_048_576).map((_, i) => i % 256);
    apply(source, 1, { type: "put", key: "big", value: big });
    const chunks = await collect(source.snapshot());
    for (const chunk of chunks) expect(chunk.byteLength).toBeLessThanOrEqual(65_536);
    const copy = await restored(chunks);
    // Compared by hand: a deep equality over a million elements takes seconds.
    const value = copy.get("big")?.value;
    expect(value?.byteLength).toBe(big.byteLength);
    expect(value?.every((byte, i) => byte === big[i])).toBe(true);
  });

  it("snapshot: stays as of the call while apply changes read and unread keys", async () => {
    const source = machine({ snapshotChunkBytesMax: 2048 });
    let index = populate(source, 400, 200);
    const expectedHash = source.stateHash();
    const expected = new Map(Array.from({ length: 400 }, (_, i) => [i, source.get(`key-${i}`)]));
    const iterator = source.snapshot()[Symbol.asyncIterator]();
    const chunks: Uint8Array[] = [];
    const take = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const step = await iterator.next();
        if (step.done === true) return;
        chunks.push(step.value);
      }
    };
    const change = (command: KvCommand) => apply(source, index++, command, 9000);
    const put = (key: string, value: string) => change({ type: "put", key, value: text(value) });
    await take(10);
    // Keys early in the Map are read by now; keys late in the Map are not.
    put("key-1", "changed after read");
    change({ type: "delete", key: "key-2" });
    put("key-390", "changed before read");
    put("key-390", "changed twice before read");
    change({ type: "delete", key: "key-391" });
    change({ type: "delete", key: "key-392" });
    put("key-392", "deleted and re-created before read");
    put("new-key", "created after the snapshot");
    change({ type: "put", key: "key-393", value: text("s"), session: { clientId: "z", seq: 1 } });
    await take(20);
    put("key-394", "changed in the middle");
    change({ type: "delete", key: "key-395" });
    put("key-2", "re-created after read");
    await take(Number.POSITIVE_INFINITY);
    expect(source.activeSnapshotCount).toBe(0);
    const copy = await restored(chunks);
    expect(copy.stateHash()).toBe(expectedHash);
    expect(copy.get("new-key")).toBeNull();
    for (const [i, entry] of expected) expect(copy.get(`key-${i}`)).toEqual(entry);
    expect(source.get("key-390")?.value).toEqual(text("changed twice before read"));
  });

  it("snapshot: pauses after every frame, and what apply does meanwhile stays out of it (2,000 idempotency keys in one chunk)", async () => {
    // The tables of a busy store hold thousands of small entries, all within one chunk:
    // written without a pause, every node stalled for the whole of it at each snapshot.
    const source = machine();
    let index = populate(source, 50, 20);
    for (let i = 0; i < 2000; i++) {
      const key = `key-${i % 50}`;
      const value = text(`write ${i}`);
      apply(source, index++, { type: "put", key, value, idempotencyKey: `write-${i}` }, 7000);
    }
    const expectedHash = source.stateHash();
    const expectedBytes = concat(source.snapshotChunks());
    let pauses = 0;
    let chunksBeforeLastPause = 0;
    const chunks: Uint8Array[] = [];
    const pause = async (): Promise<void> => {
      pauses++;
      chunksBeforeLastPause = chunks.length;
      // The event loop runs the node meanwhile: commands are applied.
      apply(source, index++, { type: "put", key: `during-${pauses}`, value: text("x") }, 8000);
      apply(source, index++, {
        type: "delete",
        key: `key-${pauses % 50}`,
        idempotencyKey: `during-${pauses}`,
      });
    };
    for await (const chunk of source.snapshot({ pause })) chunks.push(chunk);
    // One frame of keys, one of sessions, four of idempotency keys (512 per frame).
    expect(pauses).toBeGreaterThanOrEqual(6);
    expect(chunksBeforeLastPause, "the pauses come before the one chunk is complete").toBe(0);
    expect(concat(chunks)).toEqual(expectedBytes);
    const copy = await restored(chunks);
    expect(copy.stateHash()).toBe(expectedHash);
    expect(copy.get("during-1")).toBeNull();
    expect(source.activeSnapshotCount).toBe(0);
  });

  it("snapshot: two overlapping snapshots each stay as of their own call", async () => {
    const source = machine({ snapshotChunkBytesMax: 1024 });
    let index = populate(source, 200, 100);
    const firstHash = source.stateHash();
    const first = source.snapshot()[Symbol.asyncIterator]();
    const firstChunks = [(await first.next()).value as Uint8Array];
    apply(source, index++, { type: "put", key: "key-150", value: text("between") });
    apply(source, index++, { type: "delete", key: "key-160" });
    const secondHash = source.stateHash();
    const secondChunks = await collect(source.snapshot());
    apply(source, index++, { type: "put", key: "key-170", value: text("after both") });
    for (;;) {
      const step = await first.next();
      if (step.done === true) break;
      firstChunks.push(step.value);
    }
    expect((await restored(firstChunks)).stateHash()).toBe(firstHash);
    expect((await restored(secondChunks)).stateHash()).toBe(secondHash);
  });

  it("snapshot: ending a stream early releases it (return before and after the first chunk)", async () => {
    const source = machine({ snapshotChunkBytesMax: 1024 });
    populate(source, 100, 100);
    const unread = source.snapshot()[Symbol.asyncIterator]();
    expect(source.activeSnapshotCount).toBe(1);
    await unread.return?.();
    expect(source.activeSnapshotCount).toBe(0);
    for await (const _chunk of source.snapshot()) break;
    expect(source.activeSnapshotCount).toBe(0);
  });

  it("snapshot: restoring while a snapshot streams leaves that snapshot as of its call", async () => {
    const source = machine({ snapshotChunkBytesMax: 1024 });
    populate(source, 100, 100);
    const before = source.stateHash();
    const iterator = source.snapshot()[Symbol.asyncIterator]();
    const chunks = [(await iterator.next()).value as Uint8Array];
    await source.restore(stream(await collect(machine().snapshot())));
    apply(source, 1, { type: "put", key: "key-99", value: text("after restore") });
    for (;;) {
      const step = await iterator.next();
      if (step.done === true) break;
      chunks.push(step.value);
    }
    expect((await restored(chunks)).stateHash()).toBe(before);
  });
});

describe("kv snapshot formats", () => {
  /**
   * A format 1 snapshot, written by the code before format 2: key "b" = "2" (revision 2),
   * session "c" at seq 1, idempotency keys "k1" (put, revision 2) and "k2" (a delete whose
   * precondition failed), the last three commands stamped 5000, 6000 and 7000 ms.
   */
  const FORMAT_1 =
    "4241544f4e4b56010000001097a668656164657202cd1b58040201020000001392a46461746196a161c4013101" +
    "a162c40132020000001692a873657373696f6e7394a16301cd138892a26f6b010000004992ab6964656d706f74" +
    "656e63799aa26b31ce74db7b92ce47791193cd177092a26f6b02a26b32cee8f3c0e2ce78d500f8cd1b5892b370" +
    "7265636f6e646974696f6e5f6661696c6564010000001692a3656e64b035306232616365636234386165383863";

  it("snapshot: a format 1 snapshot is read, its largest stamp taken as the last one", async () => {
    const bytes = Uint8Array.from(Buffer.from(FORMAT_1, "hex"));
    const sm = await restored([bytes], { logTimeStepMsMax: 1000 });
    expect(sm.get("b")?.value).toEqual(text("2"));
    expect(sm.logTimeMs).toBe(7000);
    const retry = { type: "put", key: "b", value: text("2"), idempotencyKey: "k1" } as const;
    // 500 ms after the last stamp: log time advances by 500, and the key answers its retry.
    expect(apply(sm, 5, retry, 7500)).toEqual({ ok: true, revision: 2 });
    expect(sm.logTimeMs).toBe(7500);
    // Written again, it is the current format, and restores to the same state.
    const again = await restored(await collect(sm.snapshot()));
    expect(again.stateHash()).toBe(sm.stateHash());
    expect((await collect(sm.snapshot()))[0]![7]).toBe(4);
  });

  // Written by the format 2 code: a put of "a" (1000 ms), of "b" with idempotency key "k1"
  // (2000 ms), and a delete of "a" in session "c" (2500 ms).
  const FORMAT_2 =
    "4241544f4e4b56020000001398a668656164657203cd05dc03010101cd09c40000000d92a46461746193a162" +
    "c40132020000001692a873657373696f6e7394a16301cd05dc92a26f6b030000002392ab6964656d706f7465" +
    "6e637995a26b31ce74db7b92ce47791193cd03e892a26f6b020000001692a3656e64b0616565666134643031" +
    "66626138303136";

  it("snapshot: a format 2 snapshot is read, with no leases and its term unknown", async () => {
    const bytes = Uint8Array.from(Buffer.from(FORMAT_2, "hex"));
    const sm = await restored([bytes]);
    expect(sm.get("b")).toEqual({ value: text("2"), revision: 2 });
    expect(sm.get("a")).toBeNull();
    expect(sm.leaseCount).toBe(0);
    const retry = { type: "put", key: "b", value: text("2"), idempotencyKey: "k1" } as const;
    expect(apply(sm, 4, retry, 3000)).toEqual({ ok: true, revision: 2 });
    const again = await restored(await collect(sm.snapshot()));
    expect(again.stateHash()).toBe(sm.stateHash());
  });

  // Written by the format 3 code: a put of "a" (1000 ms), a lease grant (1500 ms), a put of
  // "b" on that lease with idempotency key "k1" (2000 ms), a put of "c" in session "c"
  // (2500 ms), all in term 1.
  const FORMAT_3 =
    "4241544f4e4b5603000000159aa668656164657204cd05dc04030101cd09c401010000001f92a46461746" +
    "19ca161c401310100a162c40232320302a163c40333333304000000001692a873657373696f6e7394a163" +
    "01cd05dc92a26f6b040000002392ab6964656d706f74656e637995a26b31ce2eb25e10ce0d5484e9cd03e8" +
    "92a26f6b030000001092a66c65617365739302cdea60cdec540000001692a3656e64b0363565383231323" +
    "66162643265396639";

  it("snapshot: a format 3 snapshot is read, with no quota, and written again as format 4", async () => {
    const bytes = Uint8Array.from(Buffer.from(FORMAT_3, "hex"));
    const sm = await restored([bytes]);
    expect(sm.get("b")).toEqual({ value: text("22"), revision: 3 });
    expect(sm.leaseCount).toBe(1);
    expect(sm.quota).toEqual({ keyCountMax: 0, bytesMax: 0 });
    expect(sm.bytes).toBe(1 + 1 + 1 + 2 + 1 + 3);
    expect(sm.stateHash()).toBe(sm.stateHashRecomputed());
    const retry = { type: "put", key: "b", value: text("22"), lease: 2, idempotencyKey: "k1" };
    expect(apply(sm, 5, retry as KvCommand, 3000)).toEqual({ ok: true, revision: 3 });
    const again = await restored(await collect(sm.snapshot()));
    expect(again.stateHash()).toBe(sm.stateHash());
    expect((await collect(sm.snapshot()))[0]![7]).toBe(4);
  });

  it("snapshot: the synchronous chunks are the streamed bytes, and restore from them", async () => {
    const sm = machine({ snapshotChunkBytesMax: 100 });
    populate(sm, 20, 30);
    const chunks = sm.snapshotChunks();
    expect(concat(chunks)).toEqual(concat(await collect(sm.snapshot())));
    const copy = machine();
    copy.restoreChunks(chunks);
    expect(copy.stateHash()).toBe(sm.stateHash());
    expect(() => copy.restoreChunks([chunks[0]!])).toThrow(KvSnapshotError);
    expect(copy.stateHash()).toBe(sm.stateHash());
  });
});

describe("kv snapshot restore", () => {
  it("snapshot: applying while a restore reads its stream is a bug (assertion)", async () => {
    const sm = machine();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    async function* slow(): AsyncGenerator<Uint8Array> {
      await gate;
      yield* await collect(machine().snapshot());
    }
    const restoring = sm.restore(slow());
    expect(() => apply(sm, 1, { type: "delete", key: "a" })).toThrow(AssertionError);
    release();
    await restoring;
    expect(apply(sm, 1, { type: "delete", key: "a" })).toEqual({ ok: false, code: "not_found" });
  });
});

describe("kv snapshot read as it arrives", () => {
  /** The snapshot's bytes cut at every `step`th byte, each piece a copy of its own. */
  function pieces(bytes: Uint8Array, step: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += step) out.push(bytes.slice(at, at + step));
    return out;
  }

  it("snapshot: a restore pushed piece by piece installs the state, while apply goes on with the old one", async () => {
    const source = machine({ snapshotChunkBytesMax: 4096 });
    populate(source, 50, 40);
    const big = new Uint8Array(3000).map((_, i) => (i * 7) % 256);
    apply(source, 1000, { type: "put", key: "big", value: big });
    const bytes = concat(await collect(source.snapshot()));
    for (const step of [1, 97, 4096, bytes.length]) {
      const target = machine();
      apply(target, 1, { type: "put", key: "old", value: text("kept until install") });
      const restore = target.beginRestore();
      for (const [i, piece] of pieces(bytes, step).entries()) {
        restore.push(piece);
        // The node keeps applying its log while the snapshot arrives.
        if (i === 0) apply(target, 2, { type: "put", key: "old2", value: text("x") });
      }
      expect(target.get("old")).not.toBeNull();
      restore.install();
      expect(target.stateHash()).toBe(source.stateHash());
      expect(target.get("old")).toBeNull();
      expect(target.get("big")?.value).toEqual(big);
      expect(() => restore.install()).toThrow(AssertionError);
    }
  });

  it("snapshot: an incomplete or broken stream fails at push or install and leaves the state", async () => {
    const source = machine();
    populate(source, 10, 5);
    const bytes = concat(await collect(source.snapshot()));
    const target = machine();
    apply(target, 1, { type: "put", key: "a", value: text("1") });
    const before = target.stateHash();
    const cut = target.beginRestore();
    cut.push(bytes.subarray(0, bytes.length - 3));
    expect(() => cut.install()).toThrow(KvSnapshotError);
    expect(target.stateHash()).toBe(before);
    const foreign = target.beginRestore();
    expect(() => foreign.push(text("not a snapshot at all"))).toThrow(KvSnapshotError);
    expect(target.stateHash()).toBe(before);
  });

  it("snapshot: restored values keep nothing of the chunks they came from (the chunks may be reused)", async () => {
    // Large values inside one chunk and across chunks, small ones, with chunks of several
    // sizes: after restore every chunk is overwritten, and every value must be intact.
    const source = machine({ snapshotChunkBytesMax: 65_536 });
    // Random bytes, so that a value's bytes are found in the stream at its own place only.
    const values = [10, 300, 5000, 70_000, 200_000].map((size, k) => {
      const next = prng(k + 1);
      return new Uint8Array(size).map(() => next(256));
    });
    for (const [k, value] of values.entries()) {
      apply(source, k + 1, { type: "put", key: `v${k}`, value });
    }
    const bytes = concat(await collect(source.snapshot()));
    // Also a chunk that is nearly all the largest value: a view of it would be cheap to
    // keep, and wrong, since the chunk is the caller's.
    const at = Buffer.from(bytes).indexOf(Buffer.from(values[4]!.subarray(0, 64)));
    const around = [
      bytes.slice(0, at - 40),
      bytes.slice(at - 40, at + 200_040),
      bytes.slice(at + 200_040),
    ];
    for (const step of [1000, 65_536, 300_000, 0]) {
      for (const incremental of [false, true]) {
        const chunks = step === 0 ? around.map((c) => c.slice()) : pieces(bytes, step);
        const target = machine();
        if (incremental) {
          const restore = target.beginRestore();
          for (const chunk of chunks) restore.push(chunk);
          restore.install();
        } else {
          target.restoreChunks(chunks);
        }
        for (const chunk of chunks) chunk.fill(0xee);
        for (const [k, value] of values.entries()) {
          const restored = target.get(`v${k}`)?.value ?? new Uint8Array(0);
          expect(Buffer.compare(restored, value), `v${k}, step ${step}`).toBe(0);
        }
        expect(target.stateHash()).toBe(source.stateHash());
      }
    }
  });
});

describe("kv snapshot validation", () => {
  async function goodSnapshot(): Promise<{ sm: KvStateMachine; bytes: Uint8Array }> {
    const sm = machine();
    populate(sm, 5, 3);
    return { sm, bytes: concat(await collect(sm.snapshot())) };
  }

  it("snapshot: corrupt or foreign streams fail with KvSnapshotError and change nothing", async () => {
    const { bytes } = await goodSnapshot();
    const target = machine();
    apply(target, 1, { type: "put", key: "kept", value: text("v") });
    const hash = target.stateHash();
    const version = bytes.slice();
    version[7] = 5;
    const cases: [Uint8Array[], RegExp][] = [
      [[], /ends before the preamble/],
      [[text("{ not a snapshot }")], /not a Baton key-value snapshot/],
      [[version], /format version 5 is not supported \(this node reads 1 to 4\)/],
      [[bytes.subarray(0, bytes.byteLength - 3)], /ends inside a frame/],
      [[bytes.subarray(0, 8)], /end frame is missing/],
    ];
    for (const [chunks, message] of cases) {
      const failure = target.restore(stream(chunks));
      await expect(failure).rejects.toThrow(KvSnapshotError);
      await expect(target.restore(stream(chunks))).rejects.toThrow(message);
    }
    expect(target.stateHash()).toBe(hash);
    expect(target.get("kept")?.value).toEqual(text("v"));
  });

  it("snapshot: a key listed twice is refused, naming it", async () => {
    // Header: revision, log time, last index, keys, sessions, idempotency keys, stamp,
    // term, leases, the two quotas; then one data frame that lists key "a" twice.
    const writer = new FrameWriter(1 << 20);
    writer.frame(["header", 2, 0, 2, 2, 0, 0, 0, 1, 0, 0, 0]);
    writer.frame(["data", ["a", text("1"), 1, 0, "a", text("2"), 2, 0]]);
    writer.frame(["end", "0000000000000000"]);
    const failure = machine().restore(stream([...writer.chunks(true)]));
    await expect(failure).rejects.toThrow(/key a appears twice/);
  });

  it("snapshot: every single flipped byte is detected (small snapshot, each position)", async () => {
    const { bytes } = await goodSnapshot();
    for (let i = 0; i < bytes.byteLength; i++) {
      const damaged = bytes.slice();
      damaged[i] = damaged[i]! ^ 0x20;
      const error = await machine()
        .restore(stream([damaged]))
        .then(
          () => null,
          (caught: unknown) => caught,
        );
      expect(error, `flip at byte ${i}`).toBeInstanceOf(KvSnapshotError);
    }
  });
});

describe("kv convergence", () => {
  /** A random command over a small key, client and idempotency-key space. */
  function randomCommand(random: (bound: number) => number, seqs: Map<string, number>): KvCommand {
    const key = `k${random(12)}`;
    const options: { ifRevision?: number; session?: { clientId: string; seq: number } } & {
      idempotencyKey?: string;
    } = {};
    if (random(4) === 0) options.ifRevision = random(3) === 0 ? 0 : random(40);
    if (random(2) === 0) {
      const clientId = `c${random(8)}`;
      const last = seqs.get(clientId) ?? 0;
      // Mostly the next request; sometimes a retry, a stale duplicate or a gap.
      const seq = Math.max(1, last + [1, 1, 1, 0, -1, 3][random(6)]!);
      seqs.set(clientId, Math.max(last, seq));
      options.session = { clientId, seq };
    }
    if (random(3) === 0) options.idempotencyKey = `i${random(10)}`;
    const value = new Uint8Array(random(40)).fill(random(256));
    // The store's other commands, a few times in twenty; lease ids are small log indexes,
    // so some name a lease that is held and some one that is not.
    const { ifRevision: _, ...unconditional } = options;
    switch (random(20)) {
      case 0:
        return { type: "delete_range", prefix: `k${random(2)}`, ...unconditional };
      case 1:
        return { type: "lease_grant", ttlMs: 100 + random(400), ...unconditional };
      case 2:
        return { type: "lease_revoke", id: 1 + random(60), ...unconditional };
      case 3:
        return { type: "lease_keepalive", id: 1 + random(60), ...unconditional };
      case 4:
        return { type: "put", key, value, lease: 1 + random(60), ...options };
      case 5: {
        const put = { type: "put", key: `k${random(12)}`, value } as const;
        return {
          type: "txn",
          compare: [{ key, target: "exists", exists: random(2) === 0 }],
          success: [random(2) === 0 ? put : { ...put, lease: 1 + random(60) }],
          failure: [{ type: "delete", key }],
          ...unconditional,
        };
      }
      case 6:
        return { type: "tick" };
    }
    if (random(3) === 0) return { type: "delete", key, ...options };
    return { type: "put", key, value, ...options };
  }

  interface OpenSnapshot {
    readonly iterator: AsyncIterator<Uint8Array>;
    readonly chunks: Uint8Array[];
    /** The index of the last command applied when the snapshot was taken. */
    readonly at: number;
  }

  const LIMITS: Partial<KvLimits> = {
    sessionCountMax: 5,
    sessionTtlMs: 300,
    idempotencyKeyCountMax: 4,
    idempotencyWindowMs: 500,
    logTimeStepMsMax: 200,
    expiryCountMaxPerApply: 1,
    snapshotChunkBytesMax: 97,
  };

  it("convergence: same commands give the same hash, and snapshot + restore + replay agrees (50 seeds)", async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const random = prng(seed);
      const seqs = new Map<string, number>();
      const [a, b] = [machine(LIMITS), machine(LIMITS)];
      const log: { command: Uint8Array; time: number; term: number }[] = [];
      const open: OpenSnapshot[] = [];
      // Restores a snapshot of `a`, replays the log after it, and compares with `b`.
      const check = async (snapshot: OpenSnapshot, now: number) => {
        const copy = machine(LIMITS);
        await copy.restore(stream(snapshot.chunks));
        for (let index = snapshot.at + 1; index <= now; index++) {
          const { command, time, term } = log[index - 1]!;
          copy.apply(command, { index, term, time });
        }
        const where = `seed ${seed}, snapshot at ${snapshot.at}, checked at ${now}`;
        expect(copy.stateHash(), where).toBe(b.stateHash());
      };
      let time = 0;
      let term = 1;
      for (let index = 1; index <= 300; index++) {
        // Log time mostly moves on, sometimes jumps, sometimes goes back (a new master).
        time = Math.max(0, time + [0, 7, 13, 400, -50][random(5)]!);
        if (random(40) === 0) term++;
        const command = encodeCommand(randomCommand(random, seqs));
        log.push({ command, time, term });
        const context = { index, term, time };
        const result = a.apply(command, context);
        expect(result, `seed ${seed}, index ${index}`).toEqual(b.apply(command, context));
        if (random(30) === 0) {
          open.push({ iterator: a.snapshot()[Symbol.asyncIterator](), chunks: [], at: index });
        }
        // One chunk of every open snapshot per command, so applies interleave with streams.
        for (const snapshot of [...open]) {
          const step = await snapshot.iterator.next();
          if (step.done !== true) {
            snapshot.chunks.push(step.value);
            continue;
          }
          open.splice(open.indexOf(snapshot), 1);
          await check(snapshot, index);
        }
      }
      for (const snapshot of open) {
        for (;;) {
          const step = await snapshot.iterator.next();
          if (step.done === true) break;
          snapshot.chunks.push(step.value);
        }
        await check(snapshot, log.length);
      }
      expect(a.stateHash(), `seed ${seed}`).toBe(b.stateHash());
      expect(a.activeSnapshotCount).toBe(0);
    }
  });
});
