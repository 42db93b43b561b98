/**
 * DiskStorage as a whole: the directory lock, recovery across the three stores, the
 * ordering of hard state against the log, and disk failures surfacing as fatal errors.
 */

import { spawnSync } from "node:child_process";
import { open, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { processLockHost } from "../../src/storage/dir-lock.js";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import { StableStore } from "../../src/storage/stable-store.js";
import type { Storage } from "../../src/storage/storage.js";
import { recordHeaderBytes, segmentHeaderBytes } from "../../src/storage/wal-format.js";
import { commands, makeTempDir, plain, removeTempDirs } from "./helpers.js";
import { InstrumentedFileSystem } from "./instrumented-file-system.js";

const opened: Storage[] = [];

afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close().catch(() => {});
  await removeTempDirs();
});

async function openDisk(dir: string, fs?: InstrumentedFileSystem) {
  const result = await DiskStorage.open(dir, {
    config: { walSegmentBytes: 4096 },
    ...(fs === undefined ? {} : { fs }),
  });
  opened.push(result.storage);
  return result;
}

async function* oneChunk(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

describe("disk storage", () => {
  it("disk storage: the directories it makes are the node's user's alone (0700), and so are its files (0600)", async () => {
    const dir = join(await makeTempDir(), "data");
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    storage.append([{ index: 1, term: 1, kind: "command", data: Uint8Array.of(7) }]);
    await storage.close();
    const modes: string[] = [];
    const walk = async (at: string, name: string): Promise<void> => {
      const info = await stat(at);
      modes.push(`${name} ${(info.mode & 0o777).toString(8)}`);
      if (info.isDirectory()) {
        for (const entry of await readdir(at)) await walk(join(at, entry), `${name}/${entry}`);
      }
    };
    await walk(dir, "data");
    expect(modes.length).toBeGreaterThan(3);
    for (const line of modes) expect(line).toMatch(/ (700|600)$/);
    expect(modes.filter((line) => line.endsWith(" 700")).length).toBeGreaterThanOrEqual(2);
  });

  it("disk storage: a data directory held by a running process is refused (lock)", async () => {
    const dir = await makeTempDir();
    await writeFile(join(dir, "LOCK"), `${process.ppid}\n`);
    const error = await DiskStorage.open(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_STORAGE_LOCKED", pid: process.ppid });
    expect(String(error)).toContain(join(dir, "LOCK"));
  });

  it("disk storage: a lock naming a running pid that another process started (pid reused after a crash or reboot) is taken over; the same process's is not", async () => {
    const dir = await makeTempDir();
    const stamp = processLockHost.startStamp!(process.ppid);
    expect(stamp).toMatch(/^[0-9a-f-]+\/\d+$/); // Linux: boot id and start time
    // The parent runs, but the lock was written by an earlier process with its pid.
    await writeFile(join(dir, "LOCK"), `${process.ppid}\n${stamp!.replace(/\d+$/, "1")}\n`);
    const { warnings, storage } = await openDisk(dir);
    expect(warnings.join()).toMatch(new RegExp(`left by process ${process.ppid}`));
    // The lock now names this process, with its own stamp.
    expect(await readFile(join(dir, "LOCK"), "latin1")).toBe(
      `${process.pid}\n${processLockHost.startStamp!(process.pid)}\n`,
    );
    await storage.close();
    // Written by the parent itself: refused, as a pid-only lock of a running process is.
    await writeFile(join(dir, "LOCK"), `${process.ppid}\n${stamp}\n`);
    const error = await DiskStorage.open(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_STORAGE_LOCKED", pid: process.ppid });
  });

  it("disk storage: a stale lock of a process that exited is taken over (reported)", async () => {
    const dir = await makeTempDir();
    const child = spawnSync(process.execPath, ["-e", ""]);
    await writeFile(join(dir, "LOCK"), `${child.pid}\n`);
    const { warnings, storage } = await openDisk(dir);
    expect(warnings.join()).toMatch(new RegExp(`left by process ${child.pid}`));
    await storage.close();
    expect(await readdir(dir)).not.toContain("LOCK");
  });

  it("disk storage: open returns hard state, snapshot and the entries after it (restart)", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: 1, commitIndex: 0 });
    storage.append(commands(1, 200, 1));
    await storage.sync();
    storage.setHardState({ term: 1, votedFor: 1, commitIndex: 150 });
    await storage.saveSnapshot({ index: 120, term: 1 }, oneChunk(new Uint8Array([1, 2, 3])));
    await storage.compact(100);
    await storage.close();
    const again = await openDisk(dir);
    expect(again.hardState).toEqual({ term: 1, votedFor: 1, commitIndex: 150 });
    expect(again.snapshot).toEqual({ index: 120, term: 1 });
    expect(plain(again.entries)).toEqual(plain(commands(121, 80, 1)));
    expect(again.warnings).toEqual([]);
  });

  it("disk storage: a torn tail is trimmed and reported in the open result", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    storage.append(commands(1, 10, 1));
    await storage.close();
    const wal = join(dir, "wal");
    const last = join(wal, (await readdir(wal)).sort().at(-1)!);
    await truncate(last, (await stat(last)).size - 3);
    const again = await openDisk(dir);
    expect(again.warnings).toEqual([expect.stringMatching(/trimmed a torn record/)]);
    expect(again.entries.length).toBe(9);
  });

  it("disk storage: a torn last record whose value holds a valid log record is still a torn tail", async () => {
    // One valid record, as the log writes it: anyone may store these bytes as a value.
    const scratch = await makeTempDir();
    const one = await openDisk(scratch);
    one.storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    one.storage.append([{ index: 1, term: 1, kind: "command", data: Uint8Array.of(7) }]);
    await one.storage.close();
    const scratchWal = join(scratch, "wal");
    const segment = await readFile(join(scratchWal, (await readdir(scratchWal))[0]!));
    const record = segment.subarray(segmentHeaderBytes);
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    const value = Buffer.concat([Buffer.alloc(16), record, Buffer.alloc(64)]);
    storage.append([...commands(1, 3, 1), { index: 4, term: 1, kind: "command", data: value }]);
    await storage.close();
    // The crash tore the last record after the record inside its value.
    const wal = join(dir, "wal");
    const last = join(wal, (await readdir(wal)).sort().at(-1)!);
    await truncate(last, (await stat(last)).size - 10);
    const again = await openDisk(dir);
    expect(again.warnings).toEqual([expect.stringMatching(/trimmed a torn record/)]);
    expect(again.entries.map((e) => e.index)).toEqual([1, 2, 3]);
  });

  it("disk storage: a record whose length a flipped bit sends past the end of the file is damage when valid records follow", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    storage.append(commands(1, 20, 1));
    await storage.close();
    const wal = join(dir, "wal");
    const last = join(wal, (await readdir(wal)).sort().at(-1)!);
    // The payload length of entry 10's record (a little-endian u32 at its start) grows by
    // 64 KiB: still a possible length, and past the end of the file, as a torn write's is.
    const bytes = await readFile(last);
    const size = bytes.length;
    let at = segmentHeaderBytes;
    for (let k = 0; k < 9; k++) at += recordHeaderBytes + bytes.readUInt32LE(at);
    const handle = await open(last, "r+");
    await handle.write(Buffer.of(bytes[at + 2]! ^ 0x01), 0, 1, at + 2);
    await handle.close();
    // Entries 11..20 (acknowledged, maybe) follow: cutting them off as a torn tail would
    // lose them silently.
    await expect(openDisk(dir)).rejects.toMatchObject({
      code: "ERR_WAL_CORRUPT",
      message: expect.stringMatching(
        /record extends past the end of the file, and a valid record follows/,
      ),
    });
    expect((await stat(last)).size).toBe(size);
  });

  it("disk storage: a term change reaches the disk before entries appended after it (ordering)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await openDisk(dir, fs);
    fs.recording = true;
    storage.setHardState({ term: 2, votedFor: 3, commitIndex: 0 });
    storage.append(commands(1, 3, 2));
    await storage.sync();
    const renamed = fs.events.indexOf(`rename ${join(dir, "hard-state")}`);
    // The handle keeps the name the segment was created under (".seg.tmp" before its rename).
    const written = fs.events.findIndex((e) => e.startsWith("write") && e.includes(".seg"));
    expect(renamed).toBeGreaterThanOrEqual(0);
    expect(written).toBeGreaterThan(renamed);
  });

  it("disk storage: the commit index written never exceeds the durable log (clamped hint)", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    // A backup learns commit 3 together with the entries that carry it.
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 3 });
    storage.append(commands(1, 3, 1));
    await storage.sync();
    const onDisk = await StableStore.open(dir, nodeFileSystem);
    expect(onDisk.hardState).toEqual({ term: 1, votedFor: null, commitIndex: 0 });
    await storage.close();
    expect((await StableStore.open(dir, nodeFileSystem)).hardState.commitIndex).toBe(3);
  });

  it("disk storage: a lost hard-state file stops start-up (ERR_STORAGE_INCONSISTENT)", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 4, votedFor: 2, commitIndex: 0 });
    storage.append(commands(1, 5, 4));
    await storage.close();
    await rm(join(dir, "hard-state"));
    const error = await DiskStorage.open(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_STORAGE_INCONSISTENT" });
    expect(String(error)).toMatch(/term 4 .* durable current term is 0/);
    // The failed open released the lock: a repaired directory can be opened again.
    await expect(DiskStorage.open(dir)).rejects.toMatchObject({ code: "ERR_STORAGE_INCONSISTENT" });
  });

  it("disk storage: a corrupted snapshot stops start-up (ERR_SNAPSHOT_CORRUPT)", async () => {
    const dir = await makeTempDir();
    const { storage } = await openDisk(dir);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 5 });
    storage.append(commands(1, 5, 1));
    await storage.sync();
    await storage.saveSnapshot({ index: 5, term: 1 }, oneChunk(new Uint8Array(1000)));
    await storage.close();
    const snapshots = join(dir, "snapshots");
    const file = join(snapshots, (await readdir(snapshots))[0]!);
    const handle = await open(file, "r+");
    await handle.write(Buffer.from([9]), 0, 1, 500);
    await handle.close();
    await expect(DiskStorage.open(dir)).rejects.toMatchObject({
      code: "ERR_SNAPSHOT_CORRUPT",
      file,
    });
  });

  it("disk storage: ENOSPC during sync is a fatal ERR_DISK_FULL naming the segment", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await openDisk(dir, fs);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    storage.append(commands(1, 3, 1));
    await storage.sync();
    fs.inject({ operation: "write", pathIncludes: ".seg", errno: "ENOSPC" });
    storage.append(commands(4, 3, 1));
    const error = await storage.sync().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_DISK_FULL" });
    expect((error as { file: string }).file).toMatch(/wal\/\d{20}\.seg$/);
    expect(() => storage.append(commands(7, 1, 1))).toThrow(/disk full/);
  });

  it("disk storage: ENOSPC while saving the hard state fails sync (vote not durable)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await openDisk(dir, fs);
    fs.inject({ operation: "write", pathIncludes: "hard-state", errno: "ENOSPC" });
    storage.setHardState({ term: 1, votedFor: 2, commitIndex: 0 });
    await expect(storage.sync()).rejects.toMatchObject({ code: "ERR_DISK_FULL" });
    expect(() => storage.setHardState({ term: 2, votedFor: null, commitIndex: 0 })).toThrow(
      /disk full/,
    );
  });

  it("disk storage: many concurrent proposals share fdatasyncs (group commit)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await DiskStorage.open(dir, { fs });
    opened.push(storage);
    storage.setHardState({ term: 1, votedFor: null, commitIndex: 0 });
    await storage.sync();
    const before = fs.datasyncs;
    const proposer = async () => {
      for (let i = 0; i < 20; i++) {
        storage.append(commands(storage.lastIndex() + 1, 1, 1));
        await storage.sync();
      }
    };
    await Promise.all(Array.from({ length: 50 }, proposer));
    expect(storage.lastIndex()).toBe(1000);
    expect(fs.datasyncs - before).toBeLessThanOrEqual(45);
  });
});
