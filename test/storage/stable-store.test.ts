/**
 * The hard-state file: atomic replacement, leftovers of an interrupted update, and
 * damage detection.
 */

import { open, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import {
  decodeHardState,
  encodeHardState,
  hardStateFileName,
  StableStore,
} from "../../src/storage/stable-store.js";
import { makeTempDir, removeTempDirs } from "./helpers.js";
import { InstrumentedFileSystem } from "./instrumented-file-system.js";

afterEach(removeTempDirs);

describe("stable store", () => {
  it("hard state: saved values survive a restart (many saves, newest wins)", async () => {
    const dir = await makeTempDir();
    const { store, hardState } = await StableStore.open(dir, nodeFileSystem);
    expect(hardState).toEqual({ term: 0, votedFor: null, commitIndex: 0 });
    const saves = [1, 2, 3, 4, 5].map((term) =>
      store.save({ term, votedFor: term % 2 === 0 ? null : term, commitIndex: term * 10 }),
    );
    await Promise.all(saves);
    expect(store.current()).toEqual({ term: 5, votedFor: 5, commitIndex: 50 });
    const again = await StableStore.open(dir, nodeFileSystem);
    expect(again.hardState).toEqual({ term: 5, votedFor: 5, commitIndex: 50 });
    expect(await readdir(dir)).toEqual([hardStateFileName]);
  });

  it("hard state: the joining flag survives a restart and clears; unknown flags are refused", async () => {
    const dir = await makeTempDir();
    const { store } = await StableStore.open(dir, nodeFileSystem);
    await store.save({ term: 0, votedFor: null, commitIndex: 0, joining: true });
    expect((await StableStore.open(dir, nodeFileSystem)).hardState).toEqual({
      term: 0,
      votedFor: null,
      commitIndex: 0,
      joining: true,
    });
    await store.save({ term: 3, votedFor: 2, commitIndex: 7 });
    expect((await StableStore.open(dir, nodeFileSystem)).hardState).toEqual({
      term: 3,
      votedFor: 2,
      commitIndex: 7,
    });
    const bytes = encodeHardState({ term: 3, votedFor: 2, commitIndex: 7 });
    bytes.writeUInt32LE(2, 12);
    bytes.writeUInt32LE(crc32(bytes.subarray(0, 44)), 44);
    expect(() => decodeHardState(bytes, "hard-state")).toThrow(/byte 12: unknown flags 0x2/);
  });

  it("hard state: every save renames a durable file and fsyncs the directory (ordering)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { store } = await StableStore.open(dir, fs);
    // Opening fsyncs the directory: the name it read may have been only in the page cache.
    expect(fs.dirSyncs).toBe(1);
    fs.recording = true;
    await store.save({ term: 1, votedFor: 2, commitIndex: 0 });
    const path = join(dir, hardStateFileName);
    expect(fs.events).toEqual([`write ${path}.tmp`, `datasync ${path}.tmp`, `rename ${path}`]);
    expect(fs.dirSyncs).toBe(2);
  });

  it("hard state: a leftover temporary file is removed and the old state kept (crash mid-update)", async () => {
    const dir = await makeTempDir();
    const { store } = await StableStore.open(dir, nodeFileSystem);
    await store.save({ term: 3, votedFor: 1, commitIndex: 7 });
    await writeFile(join(dir, `${hardStateFileName}.tmp`), Buffer.alloc(20));
    const again = await StableStore.open(dir, nodeFileSystem);
    expect(again.hardState).toEqual({ term: 3, votedFor: 1, commitIndex: 7 });
    expect(again.warnings.join()).toMatch(/crash interrupted/);
  });

  it("hard state: a flipped byte or a wrong size stops start-up (ERR_HARD_STATE_CORRUPT)", async () => {
    const dir = await makeTempDir();
    const { store } = await StableStore.open(dir, nodeFileSystem);
    await store.save({ term: 3, votedFor: 1, commitIndex: 7 });
    const path = join(dir, hardStateFileName);
    const handle = await open(path, "r+");
    await handle.write(Buffer.from([0x42]), 0, 1, 17);
    await handle.close();
    await expect(StableStore.open(dir, nodeFileSystem)).rejects.toMatchObject({
      code: "ERR_HARD_STATE_CORRUPT",
      file: path,
      offset: 44,
    });
    await writeFile(path, Buffer.alloc(10));
    await expect(StableStore.open(dir, nodeFileSystem)).rejects.toThrow(/10 bytes, not 48/);
  });

  it("hard state: ENOSPC fails the save with ERR_DISK_FULL and every later save", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { store } = await StableStore.open(dir, fs);
    fs.inject({ operation: "write", pathIncludes: hardStateFileName, errno: "ENOSPC" });
    await expect(store.save({ term: 1, votedFor: null, commitIndex: 0 })).rejects.toMatchObject({
      code: "ERR_DISK_FULL",
    });
    await expect(store.save({ term: 2, votedFor: null, commitIndex: 0 })).rejects.toMatchObject({
      code: "ERR_DISK_FULL",
    });
    expect(store.current()).toEqual({ term: 0, votedFor: null, commitIndex: 0 });
  });
});
