/**
 * The snapshot store on the real file system: streaming in and out in chunks, atomic
 * replacement, retention, state transfer by offset, and what happens to half-written and
 * corrupted snapshot files.
 */

import { appendFile, open, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { SnapshotMeta } from "../../src/protocol/messages.js";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import { snapshotReadChunkBytes } from "../../src/storage/limits.js";
import {
  SnapshotStore,
  snapshotFileName,
  snapshotHeaderBytes,
} from "../../src/storage/snapshot-store.js";
import { makeTempDir, removeTempDirs } from "./helpers.js";
import { InstrumentedFileSystem } from "./instrumented-file-system.js";

afterEach(removeTempDirs);

function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 131 + seed * 7) & 0xff;
  return out;
}

/** Yields `bytes` in chunks of `size`, as a state machine's snapshot() would. */
async function* chunksOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function readAll(
  chunks: AsyncIterable<Uint8Array>,
): Promise<{ data: Buffer; count: number }> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return { data: Buffer.concat(parts), count: parts.length };
}

async function openStore(dir: string, retain = 2) {
  return SnapshotStore.open(join(dir, "snapshots"), nodeFileSystem, retain);
}

async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, "r+");
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, offset);
  byte[0] = byte[0]! ^ 0xff;
  await handle.write(byte, 0, 1, offset);
  await handle.close();
}

const meta = (index: number, term: number): SnapshotMeta => ({ index, term });

describe("snapshot store", () => {
  it("snapshot: data streams back in chunks identical to what was saved (3 MiB)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const data = pattern(3 * 1024 * 1024 + 17, 1);
    const stored = await store.save(meta(100, 2), chunksOf(data, 100_000));
    expect(stored.dataBytes).toBe(data.length);
    const { data: back, count } = await readAll(store.read(stored));
    expect(back.equals(data)).toBe(true);
    expect(count).toBe(Math.ceil(data.length / snapshotReadChunkBytes));
    const { size } = await stat(stored.path);
    expect(size).toBe(data.length + 64);
    const reopened = await openStore(dir);
    expect(reopened.latest).toEqual(stored);
    expect(reopened.warnings).toEqual([]);
  });

  it("snapshot: an empty snapshot round-trips (zero bytes of data)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const stored = await store.save(meta(1, 1), chunksOf(new Uint8Array(0), 10));
    expect((await readAll(store.read(stored))).data.length).toBe(0);
    await store.verify(stored);
  });

  it("snapshot: only the newest two are kept (retention)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    for (const index of [10, 20, 30, 40]) {
      await store.save(meta(index, 1), chunksOf(pattern(1000, index), 300));
    }
    const names = (await readdir(join(dir, "snapshots"))).sort();
    expect(names).toEqual([snapshotFileName(meta(30, 1)), snapshotFileName(meta(40, 1))]);
    expect(store.latest()?.meta).toEqual(meta(40, 1));
  });

  it("snapshot: a half-written temporary file is ignored and removed (crash while saving)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    await store.save(meta(10, 1), chunksOf(pattern(5000, 1), 1000));
    const writer = await store.begin(meta(20, 1));
    await writer.append(pattern(3000, 2));
    // The process "dies" here: the writer is never finished.
    const reopened = await openStore(dir);
    expect(reopened.latest?.meta).toEqual(meta(10, 1));
    expect(reopened.warnings.length).toBe(1);
    expect(reopened.warnings[0]).toMatch(/writing was interrupted/);
    expect((await readdir(join(dir, "snapshots"))).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("snapshot: a flipped data byte in the newest snapshot stops start-up naming file and offset", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const stored = await store.save(meta(10, 1), chunksOf(pattern(200_000, 3), 64_000));
    await flipByte(stored.path, snapshotHeaderBytes + 150_000);
    const error = await openStore(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "ERR_SNAPSHOT_CORRUPT",
      file: stored.path,
      offset: snapshotHeaderBytes + 200_000,
    });
    expect(String(error)).toMatch(/fails its checksum.*wipe its data directory/);
  });

  it("snapshot: a flipped bit in the trailer's reserved bytes stops start-up naming the offset", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const stored = await store.save(meta(10, 1), chunksOf(pattern(10_000, 3), 4096));
    const trailerAt = snapshotHeaderBytes + 10_000;
    await flipByte(stored.path, trailerAt + 5);
    const error = await openStore(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_SNAPSHOT_CORRUPT", offset: trailerAt + 4 });
    expect(String(error)).toMatch(/reserved bytes are not zero/);
  });

  it("snapshot: a damaged header or a cut file stops start-up (header, length)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const stored = await store.save(meta(10, 1), chunksOf(pattern(10_000, 3), 4096));
    await flipByte(stored.path, 20);
    await expect(openStore(dir)).rejects.toMatchObject({ code: "ERR_SNAPSHOT_CORRUPT", offset: 0 });
    await flipByte(stored.path, 20);
    await truncate(stored.path, 5000);
    await expect(openStore(dir)).rejects.toMatchObject({
      code: "ERR_SNAPSHOT_CORRUPT",
      offset: 32,
    });
  });

  it("snapshot: the newest is never silently replaced by an older one (corrupt newest, older intact)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    await store.save(meta(10, 1), chunksOf(pattern(1000, 1), 100));
    const newest = await store.save(meta(20, 1), chunksOf(pattern(1000, 2), 100));
    await appendFile(newest.path, Buffer.from("x"));
    await expect(openStore(dir)).rejects.toMatchObject({
      code: "ERR_SNAPSHOT_CORRUPT",
      file: newest.path,
    });
  });

  it("snapshot: a reader fails at the end when the file changed after start-up (verify on read)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const stored = await store.save(
      meta(10, 1),
      chunksOf(pattern(3 * snapshotReadChunkBytes, 1), 1 << 20),
    );
    await flipByte(stored.path, snapshotHeaderBytes + 10);
    const chunks: Uint8Array[] = [];
    const error = await (async () => {
      for await (const chunk of store.read(stored)) chunks.push(chunk);
    })().catch((e: unknown) => e);
    expect(chunks.length).toBe(3);
    expect(error).toMatchObject({ code: "ERR_SNAPSHOT_CORRUPT", file: stored.path });
    await expect(store.verify(stored)).rejects.toMatchObject({ code: "ERR_SNAPSHOT_CORRUPT" });
  });

  it("snapshot: a receiver writes offset-addressed chunks once each (retransmissions, gaps)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    const data = pattern(10_000, 5);
    const receiver = await store.receive(meta(50, 3));
    expect(await receiver.write(0, data.subarray(0, 4000))).toBe(4000);
    expect(await receiver.write(6000, data.subarray(6000, 8000))).toBe(4000);
    expect(await receiver.write(2000, data.subarray(2000, 4000))).toBe(4000);
    expect(await receiver.write(3000, data.subarray(3000, 10_000))).toBe(10_000);
    const stored = await receiver.finish();
    expect(stored.dataBytes).toBe(10_000);
    expect((await readAll(store.read(stored))).data.equals(data)).toBe(true);
  });

  it("snapshot: ENOSPC while saving fails with ERR_DISK_FULL and leaves no temporary file", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { store } = await SnapshotStore.open(join(dir, "snapshots"), fs, 2);
    fs.inject({ operation: "write", pathIncludes: ".tmp", errno: "ENOSPC", skip: 2 });
    const error = await store
      .save(meta(10, 1), chunksOf(pattern(10_000, 1), 1000))
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_DISK_FULL" });
    expect(String(error)).toMatch(/disk full while trying to write .*\.tmp/);
    expect(await readdir(join(dir, "snapshots"))).toEqual([]);
    expect(store.latest()).toBeNull();
  });

  it("snapshot: stray files are reported and left alone (operator files)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir);
    await store.save(meta(10, 1), chunksOf(pattern(100, 1), 100));
    await writeFile(join(dir, "snapshots", "notes.txt"), "hello");
    const reopened = await openStore(dir);
    expect(reopened.warnings).toEqual([expect.stringMatching(/ignored .*notes\.txt/)]);
  });
});

describe("snapshot store: a local snapshot that finishes after a newer state transfer", () => {
  it("snapshot store: a snapshot of this node's state finished after a newer one was adopted by state transfer stays a spare, and the newer stays the newest (no assertion)", async () => {
    const dir = await makeTempDir();
    const { store } = await openStore(dir, 3);
    // The runtime started its own snapshot at 63; a slow disk (or a pause) holds it, and
    // meanwhile a transfer of the master's snapshot at 80 arrives and is adopted.
    const local = await store.begin(meta(63, 2));
    await local.append(pattern(1000, 63));
    const received = await store.receive(meta(80, 3));
    await received.write(0, pattern(500, 80));
    await received.finish();
    await local.finish();
    expect(store.latest()?.meta).toEqual(meta(80, 3));
    const reopened = await openStore(dir, 3);
    expect(reopened.latest?.meta).toEqual(meta(80, 3));
  });
});
