/**
 * The write-ahead log on the real file system: round trips, group commit, truncation,
 * compaction, and what recovery does with every kind of damage a crash or a bad disk can
 * leave. Each test works in its own temporary directory, removed even when it fails.
 */

import { appendFile, open, readdir, stat, truncate, unlink } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { SnapshotMeta } from "../../src/protocol/messages.js";
import { Wal } from "../../src/storage/wal.js";
import { segmentFileName, segmentHeaderBytes } from "../../src/storage/wal-format.js";
import { command, commands, makeTempDir, plain, removeTempDirs } from "./helpers.js";
import { InstrumentedFileSystem } from "./instrumented-file-system.js";

const none: SnapshotMeta = { index: 0, term: 0 };
const small = { segmentBytes: 4096 };

afterEach(removeTempDirs);

async function openWal(dir: string, after = none, fs?: InstrumentedFileSystem) {
  return Wal.open(join(dir, "wal"), after, fs === undefined ? small : { ...small, fs });
}

async function segmentNames(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "wal"))).filter((n) => n.endsWith(".seg")).sort();
}

async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, "r+");
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, offset);
  byte[0] = byte[0]! ^ 0x5a;
  await handle.write(byte, 0, 1, offset);
  await handle.close();
}

/** Appends `count` entries in term 1 one batch at a time, then closes. */
async function writeLog(dir: string, count: number): Promise<void> {
  const { wal } = await openWal(dir);
  wal.append(commands(1, count, 1));
  await wal.sync();
  await wal.close();
}

describe("wal", () => {
  it("wal: entries read back intact after restart (many segments)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 300);
    expect((await segmentNames(dir)).length).toBeGreaterThan(3);
    const { wal, warnings } = await openWal(dir);
    expect(warnings).toEqual([]);
    expect(wal.firstIndex()).toBe(1);
    expect(wal.lastIndex()).toBe(300);
    expect(plain(await wal.entries(1, 301))).toEqual(plain(commands(1, 300, 1)));
    expect(wal.termAt(300)).toBe(1);
    expect(wal.termAt(0)).toBe(0);
    await wal.close();
  });

  it("wal: every fdatasync it counts is timed, a new segment's included (count and histogram agree)", async () => {
    const dir = await makeTempDir();
    const { wal } = await openWal(dir);
    let timed = 0;
    wal.observeSyncs(() => timed++);
    const before = wal.stats.fdatasyncs;
    // Small segments: many rolls, each of which makes a new segment durable.
    for (let i = 0; i < 30; i++) {
      wal.append(commands(i * 10 + 1, 10, 1));
      await wal.sync();
    }
    expect((await segmentNames(dir)).length).toBeGreaterThan(3);
    expect(wal.stats.fdatasyncs - before).toBe(timed);
    await wal.close();
  });

  it("wal: reads see queued entries before they are durable (unsynced appends)", async () => {
    const dir = await makeTempDir();
    const { wal } = await openWal(dir);
    wal.append(commands(1, 5, 1));
    expect(wal.lastIndex()).toBe(5);
    expect(plain(await wal.entries(2, 4))).toEqual(plain(commands(2, 2, 1)));
    await wal.sync();
    expect(plain(await wal.entries(1, 6))).toEqual(plain(commands(1, 5, 1)));
    await wal.close();
  });

  it("wal: pendingBytes counts what is queued or being written until it is durable", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { wal } = await openWal(dir, none, fs);
    expect(wal.pendingBytes()).toBe(0);
    const stalled = fs.hold("datasync", ".seg");
    wal.append(commands(1, 3, 1));
    const first = wal.sync();
    await stalled.reached;
    // Being written (its fdatasync stalls), then more queued behind it.
    const writing = wal.pendingBytes();
    expect(writing).toBeGreaterThan(0);
    wal.append(commands(4, 2, 1));
    expect(wal.pendingBytes()).toBeGreaterThan(writing);
    stalled.release();
    await first;
    await wal.sync();
    expect(wal.pendingBytes()).toBe(0);
    await wal.close();
  });

  it("wal: entries stops near maxBytes but returns at least one entry", async () => {
    const dir = await makeTempDir();
    const { wal } = await openWal(dir);
    wal.append(commands(1, 50, 1));
    await wal.sync();
    const one = await wal.entries(1, 51, 0);
    expect(one.length).toBe(1);
    const some = await wal.entries(1, 51, 1000);
    const bytes = some.reduce((sum, e) => sum + e.data.length, 0);
    expect(bytes).toBeLessThanOrEqual(1000);
    expect(some.length).toBeLessThan(50);
    await wal.close();
  });

  it("wal: concurrent appenders share fdatasyncs (group commit)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { wal } = await Wal.open(join(dir, "wal"), none, { fs, segmentBytes: 1 << 20 });
    const before = fs.datasyncs;
    const appenders = 32;
    const rounds = 10;
    const appender = async (): Promise<void> => {
      for (let round = 0; round < rounds; round++) {
        wal.append([command(wal.lastIndex() + 1, 1)]);
        await wal.sync();
      }
    };
    await Promise.all(Array.from({ length: appenders }, appender));
    const syncs = fs.datasyncs - before;
    expect(wal.lastIndex()).toBe(appenders * rounds);
    // One appender alone would need 320 fdatasyncs; batching needs about one per round.
    expect(syncs).toBeLessThanOrEqual(rounds * 2 + 2);
    expect(wal.stats.batches).toBe(syncs);
    await wal.close();
  });

  it("wal: a segment of 300,000 entries reopens (recovery used to overflow the call stack)", async () => {
    const dir = await makeTempDir();
    const count = 300_000;
    const { wal } = await Wal.open(join(dir, "wal"), none, { segmentBytes: 64 << 20 });
    wal.append(commands(1, count, 3, 4));
    await wal.sync();
    await wal.close();
    const reopened = await Wal.open(join(dir, "wal"), none, { segmentBytes: 64 << 20 });
    expect(reopened.wal.lastIndex()).toBe(count);
    expect(reopened.wal.termAt(count)).toBe(3);
    expect(plain(await reopened.wal.entries(count - 1, count + 1))).toEqual(
      plain(commands(count - 1, 2, 3, 4)),
    );
    await reopened.wal.close();
  });

  it("wal: records of every size across the scan's read windows reopen intact, and damage past the first window is found", async () => {
    // The scan reads 1 MiB at a time and checks records in place: records that end, or
    // whose header ends, at a window's edge take the slow path. 5,000 entries of up to
    // 1,200 bytes fill about 3 MiB, so every edge falls somewhere different in a record.
    const count = 5000;
    const sizes = { segmentBytes: 64 << 20 };
    const write = async (dir: string): Promise<string> => {
      const { wal } = await Wal.open(join(dir, "wal"), none, sizes);
      wal.append(commands(1, count, 2, 1200));
      await wal.sync();
      await wal.close();
      return join(dir, "wal", (await segmentNames(dir))[0]!);
    };
    const dir = await makeTempDir();
    const path = await write(dir);
    expect((await stat(path)).size).toBeGreaterThan(2 * 1024 * 1024);
    const reopened = await Wal.open(join(dir, "wal"), none, sizes);
    expect(reopened.warnings).toEqual([]);
    expect(reopened.wal.lastIndex()).toBe(count);
    expect(plain(await reopened.wal.entries(1, count + 1))).toEqual(
      plain(commands(1, count, 2, 1200)),
    );
    await reopened.wal.close();

    // A flipped byte at 2.5 MiB: corruption named with the offset of its record.
    const damaged = await makeTempDir();
    const damagedPath = await write(damaged);
    await flipByte(damagedPath, 2.5 * 1024 * 1024);
    const error = await Wal.open(join(damaged, "wal"), none, sizes).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_WAL_CORRUPT", file: damagedPath });
    const offset = (error as { offset: number }).offset;
    expect(offset).toBeGreaterThan(2.5 * 1024 * 1024 - 1300);
    expect(offset).toBeLessThanOrEqual(2.5 * 1024 * 1024);

    // A torn tail past the first window: trimmed, every earlier entry kept.
    const torn = await makeTempDir();
    const tornPath = await write(torn);
    await truncate(tornPath, (await stat(tornPath)).size - 7);
    const trimmed = await Wal.open(join(torn, "wal"), none, sizes);
    expect(trimmed.warnings.join()).toMatch(/torn record/);
    expect(trimmed.wal.lastIndex()).toBe(count - 1);
    expect(plain(await trimmed.wal.entries(count - 10, count))).toEqual(
      plain(commands(count - 10, 10, 2, 1200)),
    );
    await trimmed.wal.close();
  });

  it("wal: a truncated suffix stays truncated after restart (inside the active segment)", async () => {
    const dir = await makeTempDir();
    const { wal } = await Wal.open(join(dir, "wal"), none, { segmentBytes: 1 << 20 });
    wal.append(commands(1, 10, 1));
    await wal.sync();
    wal.truncateFrom(6);
    wal.append(commands(6, 3, 2));
    await wal.sync();
    await wal.close();
    const reopened = await Wal.open(join(dir, "wal"), none, { segmentBytes: 1 << 20 });
    const expected = [...commands(1, 5, 1), ...commands(6, 3, 2)];
    expect(reopened.wal.lastIndex()).toBe(8);
    expect(plain(await reopened.wal.entries(1, 9))).toEqual(plain(expected));
    await reopened.wal.close();
  });

  it("wal: a conflicting suffix replaced across segments survives restart (append below last)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 200);
    const segmentsBefore = await segmentNames(dir);
    const { wal } = await openWal(dir);
    // As in the core's Ready: an entry at index 40 replaces index 40 and everything after.
    wal.append(commands(40, 5, 3));
    await wal.sync();
    expect(wal.lastIndex()).toBe(44);
    await wal.close();
    expect((await segmentNames(dir)).length).toBeLessThan(segmentsBefore.length);
    const reopened = await openWal(dir);
    expect(reopened.warnings).toEqual([]);
    expect(plain(await reopened.wal.entries(1, 45))).toEqual(
      plain([...commands(1, 39, 1), ...commands(40, 5, 3)]),
    );
    reopened.wal.append(commands(45, 100, 3));
    await reopened.wal.close();
    const third = await openWal(dir);
    expect(third.wal.lastIndex()).toBe(144);
    expect(plain(await third.wal.entries(140, 145))).toEqual(plain(commands(140, 5, 3)));
    await third.wal.close();
  });

  it("wal: compaction deletes only segments the snapshot covers entirely", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 300);
    const { wal } = await openWal(dir);
    const names = await segmentNames(dir);
    await wal.compact(150);
    expect(wal.firstIndex()).toBe(151);
    expect(wal.termAt(150)).toBe(1);
    const left = await segmentNames(dir);
    expect(left.length).toBeLessThan(names.length);
    const firsts = left.map((n) => Number(n.slice(0, 20)));
    expect(firsts[0]).toBeLessThanOrEqual(151);
    expect(plain(await wal.entries(151, 301))).toEqual(plain(commands(151, 150, 1)));
    await wal.close();
    const reopened = await openWal(dir, { index: 150, term: 1 });
    expect(reopened.wal.firstIndex()).toBe(151);
    expect(reopened.wal.lastIndex()).toBe(300);
    await reopened.wal.close();
  });

  it("wal: reset discards the log and continues after the snapshot (state transfer)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const { wal } = await openWal(dir);
    await wal.reset({ index: 500, term: 4 });
    expect(wal.firstIndex()).toBe(501);
    expect(wal.lastIndex()).toBe(500);
    expect(wal.termAt(500)).toBe(4);
    wal.append(commands(501, 3, 4));
    await wal.close();
    expect(await segmentNames(dir)).toEqual([segmentFileName(501)]);
    const reopened = await openWal(dir, { index: 500, term: 4 });
    expect(plain(await reopened.wal.entries(501, 504))).toEqual(plain(commands(501, 3, 4)));
    await reopened.wal.close();
  });

  it("wal: recovery discards a log that conflicts with the snapshot (reported)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const { wal, warnings } = await openWal(dir, { index: 50, term: 2 });
    expect(warnings.join("\n")).toMatch(/discarded the write-ahead log \(entries \d+\.\.100\)/);
    expect(wal.firstIndex()).toBe(51);
    expect(wal.lastIndex()).toBe(50);
    await wal.close();
  });

  it("wal: recovery keeps the suffix after a matching snapshot (interrupted compaction)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 300);
    const { wal, warnings } = await openWal(dir, { index: 200, term: 1 });
    expect(warnings.some((w) => /covers it/.test(w))).toBe(true);
    expect(wal.firstIndex()).toBe(201);
    expect(plain(await wal.entries(201, 301))).toEqual(plain(commands(201, 100, 1)));
    await wal.close();
  });
});

describe("wal recovery", () => {
  it("wal: a torn record at the tail is trimmed and reported (cut mid-record)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const names = await segmentNames(dir);
    const last = join(dir, "wal", names.at(-1)!);
    const { size } = await stat(last);
    await truncate(last, size - 5);
    const { wal, warnings } = await openWal(dir);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain(last);
    expect(warnings[0]).toMatch(/torn record/);
    expect(wal.lastIndex()).toBe(99);
    wal.append([command(100, 1)]);
    await wal.close();
    const again = await openWal(dir);
    expect(again.warnings).toEqual([]);
    expect(plain(await again.wal.entries(95, 101))).toEqual(plain(commands(95, 6, 1)));
    await again.wal.close();
  });

  it("wal: a torn tail of zeros or garbage is trimmed (file extended by a crash)", async () => {
    for (const tail of [Buffer.alloc(3000), Buffer.from("half-written garbage ".repeat(20))]) {
      const dir = await makeTempDir();
      await writeLog(dir, 20);
      const names = await segmentNames(dir);
      await appendFile(join(dir, "wal", names.at(-1)!), tail);
      const { wal, warnings } = await openWal(dir);
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toMatch(new RegExp(`${tail.length} bytes`));
      expect(wal.lastIndex()).toBe(20);
      await wal.close();
    }
  });

  it("wal: a flipped byte inside a segment stops recovery naming file and offset", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const names = await segmentNames(dir);
    const path = join(dir, "wal", names[1]!);
    const recordOffset = segmentHeaderBytes;
    await flipByte(path, recordOffset + 20);
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_WAL_CORRUPT", file: path, offset: recordOffset });
    expect(String(error)).toContain(`${path} at byte ${recordOffset}`);
    expect(String(error)).toMatch(/wipe its data directory/);
  });

  it("wal: a bad record followed by valid ones in the last segment is corruption, not a torn tail", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const names = await segmentNames(dir);
    const path = join(dir, "wal", names.at(-1)!);
    await flipByte(path, segmentHeaderBytes + 12);
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "ERR_WAL_CORRUPT",
      file: path,
      offset: segmentHeaderBytes,
    });
    expect(String(error)).toMatch(/valid record follows/);
  });

  it("wal: a truncated segment that is not the last stops recovery (cut mid-record)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const names = await segmentNames(dir);
    const path = join(dir, "wal", names[0]!);
    const { size } = await stat(path);
    await truncate(path, size - 10);
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_WAL_CORRUPT", file: path });
    expect((error as { offset: number }).offset).toBeGreaterThan(segmentHeaderBytes);
  });

  it("wal: a segment cut at a record boundary leaves a gap that stops recovery", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const { wal } = await openWal(dir);
    const names = await segmentNames(dir);
    await wal.close();
    const second = Number(names[1]!.slice(0, 20));
    // Rewrite the first segment without its last entry: the file is valid but ends early.
    await unlink(join(dir, "wal", names[0]!));
    const rebuilt = await Wal.open(join(dir, "wal-rebuilt"), none, small);
    rebuilt.wal.append(commands(1, second - 2, 1));
    await rebuilt.wal.close();
    const { rename } = await import("node:fs/promises");
    await rename(join(dir, "wal-rebuilt", segmentFileName(1)), join(dir, "wal", names[0]!));
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "ERR_WAL_MISSING_SEGMENT",
      file: join(dir, "wal", names[1]!),
      expectedIndex: second - 1,
    });
  });

  it("wal: a missing segment stops recovery naming the gap", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 200);
    const names = await segmentNames(dir);
    await unlink(join(dir, "wal", names[1]!));
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "ERR_WAL_MISSING_SEGMENT",
      file: join(dir, "wal", names[2]!),
      expectedIndex: Number(names[1]!.slice(0, 20)),
    });
  });

  it("wal: a missing first segment stops recovery (no snapshot covers it)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 200);
    const names = await segmentNames(dir);
    await unlink(join(dir, "wal", names[0]!));
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_WAL_MISSING_SEGMENT", expectedIndex: 1 });
  });

  it("wal: a segment with a bad header stops recovery at byte 0", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 100);
    const names = await segmentNames(dir);
    const path = join(dir, "wal", names.at(-1)!);
    await flipByte(path, 3);
    const error = await openWal(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_WAL_CORRUPT", file: path, offset: 0 });
    expect(String(error)).toMatch(/bad magic/);
  });

  it("wal: a leftover temporary segment is removed and reported (crash while rolling)", async () => {
    const dir = await makeTempDir();
    await writeLog(dir, 10);
    await appendFile(join(dir, "wal", `${segmentFileName(11)}.tmp`), Buffer.alloc(7));
    const { wal, warnings } = await openWal(dir);
    expect(warnings.join()).toMatch(/creation a crash interrupted/);
    expect(wal.lastIndex()).toBe(10);
    await wal.close();
  });
});

describe("wal failures", () => {
  it("wal: ENOSPC while writing fails sync with ERR_DISK_FULL naming the segment", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { wal } = await Wal.open(join(dir, "wal"), none, { fs, segmentBytes: 1 << 20 });
    wal.append(commands(1, 5, 1));
    await wal.sync();
    fs.inject({ operation: "write", pathIncludes: ".seg", errno: "ENOSPC", partialBytes: 10 });
    wal.append(commands(6, 5, 1));
    const error = await wal.sync().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "ERR_DISK_FULL",
      file: join(dir, "wal", segmentFileName(1)),
    });
    expect(String(error)).toMatch(/disk full/);
    // The log is poisoned: nothing more is accepted, and nothing retries.
    expect(() => wal.append([command(11, 1)])).toThrow(/disk full/);
    await expect(wal.sync()).rejects.toMatchObject({ code: "ERR_DISK_FULL" });
    await wal.close();
    // What was acknowledged survives; the partial write is a torn tail.
    const reopened = await Wal.open(join(dir, "wal"), none, { segmentBytes: 1 << 20 });
    expect(reopened.wal.lastIndex()).toBe(5);
    expect(reopened.warnings.join()).toMatch(/torn record/);
    await reopened.wal.close();
  });

  it("wal: EIO from fdatasync fails sync with ERR_STORAGE_IO and is never retried", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { wal } = await Wal.open(join(dir, "wal"), none, { fs, segmentBytes: 1 << 20 });
    fs.inject({ operation: "datasync", pathIncludes: ".seg", errno: "EIO" });
    wal.append(commands(1, 5, 1));
    const error = await wal.sync().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_STORAGE_IO", errno: "EIO", operation: "fdatasync" });
    expect(String(error)).toContain(segmentFileName(1));
    const syncs = fs.datasyncs;
    await expect(wal.sync()).rejects.toMatchObject({ code: "ERR_STORAGE_IO" });
    expect(fs.datasyncs).toBe(syncs);
    await wal.close();
  });

  it("wal: ENOSPC while creating the next segment fails with ERR_DISK_FULL (rolling)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { wal } = await Wal.open(join(dir, "wal"), none, { fs, segmentBytes: 4096 });
    fs.inject({ operation: "open", pathIncludes: ".seg.tmp", errno: "ENOSPC" });
    wal.append(commands(1, 100, 1));
    const error = await wal.sync().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_DISK_FULL" });
    expect((error as { file: string }).file).toMatch(/\.seg\.tmp$/);
    await wal.close();
  });
});

describe("wal: a segment rolled at the index its predecessor starts at", () => {
  it("wal: a roll right after a truncation to the active segment's first index replaces that segment instead of renaming over it (compaction then keeps the live one)", async () => {
    const dir = await makeTempDir();
    const { wal } = await openWal(dir);
    // Fill segments until a second one starts; note where.
    wal.append(commands(1, 60, 1));
    await wal.sync();
    const names = await segmentNames(dir);
    expect(names.length).toBeGreaterThanOrEqual(2);
    const activeFirst = Number(names.at(-1)!.replace(".seg", ""));
    // Fill the active segment almost to the end, then replace its whole content: the
    // truncation record goes into it, and the first new entry does not fit.
    let next = 61;
    while ((await stat(join(dir, "wal", names.at(-1)!))).size < small.segmentBytes - 300) {
      wal.append([command(next, 1)]);
      await wal.sync();
      next++;
    }
    wal.append([{ index: activeFirst, term: 2, kind: "command", data: new Uint8Array(2000) }]);
    await wal.sync();
    wal.append(commands(activeFirst + 1, 3, 2));
    await wal.sync();
    // Compact everything below the replaced entries: the live segment must survive.
    await wal.compact(activeFirst - 1);
    wal.append(commands(activeFirst + 4, 2, 2));
    await wal.sync();
    await wal.close();
    // As storage does: the log is reopened after the snapshot the compaction followed.
    const reopened = await openWal(dir, { index: activeFirst - 1, term: 1 });
    expect(reopened.wal.lastIndex()).toBe(activeFirst + 5);
    const tail = await reopened.wal.entries(activeFirst, activeFirst + 6);
    expect(tail.map((e) => e.term)).toEqual([2, 2, 2, 2, 2, 2]);
    await reopened.wal.close();
  });
});
