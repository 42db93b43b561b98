/**
 * The commit index in the hard-state file is a hint for recovery: a node restarts with
 * everything up to it committed and applies it. It must never cover an entry that a
 * replacement (Raft §5.3: a backup's conflicting suffix) is removing, or a crash between
 * the hard-state write and the log write makes the node commit entries that were never
 * committed, which no master can repair. These tests stall the log write on a real
 * DiskStorage, copy the data directory as a crash would leave it, and recover the copy.
 */

import { cp } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import type { Storage } from "../../src/storage/storage.js";
import type { StorageConfig } from "../../src/storage/storage-config.js";
import { commands, makeTempDir, plain, removeTempDirs } from "./helpers.js";
import { InstrumentedFileSystem } from "./instrumented-file-system.js";

const opened: Storage[] = [];

afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close().catch(() => {});
  await removeTempDirs();
});

async function openDisk(dir: string, fs?: InstrumentedFileSystem, config?: Partial<StorageConfig>) {
  const result = await DiskStorage.open(dir, {
    ...(config === undefined ? {} : { config }),
    ...(fs === undefined ? {} : { fs }),
  });
  opened.push(result.storage);
  return result;
}

/** A copy of `dir` as it is now: what a crash at this moment would leave on the disk. */
async function crashImage(dir: string): Promise<string> {
  const image = join(await makeTempDir("baton-crash-image-"), "data");
  await cp(dir, image, { recursive: true });
  return image;
}

describe("commit hint", () => {
  it("disk storage: the commit hint never covers entries a replacement removes (switch to voter after a fail-over, crash before the log write)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await openDisk(dir, fs);
    // A node rejoining with a wiped disk got entries 1..10 of term 2; 3 are committed.
    storage.append(commands(1, 10, 2));
    storage.setHardState({ term: 2, votedFor: null, commitIndex: 3, joining: true });
    await storage.sync();
    // The master of term 2 failed. The master of term 3 holds another suffix from index 6
    // on and has committed up to 9: one Ready replaces 6.., commits 9 and ends the joining,
    // in the runtime's order (the Ready's entries, then its hard state).
    const logWrite = fs.hold("write", ".seg");
    storage.append(commands(6, 7, 3));
    storage.setHardState({ term: 3, votedFor: null, commitIndex: 9 });
    const synced = storage.sync();
    // The term is durable before the log write starts (it must be); crash right there.
    await logWrite.reached;
    const image = await crashImage(dir);
    logWrite.release();
    await synced;

    const crashed = await openDisk(image);
    expect(crashed.hardState.term).toBe(3);
    expect(crashed.entries.map((e) => e.term)).toEqual(Array(10).fill(2));
    // Raft §5.4: entries 6..10 of term 2 were never committed; a restart must not commit them.
    expect(crashed.hardState.commitIndex).toBeLessThan(6);

    await storage.close();
    const after = await openDisk(dir);
    expect(after.hardState).toEqual({ term: 3, votedFor: null, commitIndex: 9 });
    expect(plain(after.entries)).toEqual(plain([...commands(1, 5, 2), ...commands(6, 7, 3)]));
  });

  it("disk storage: a log write finishing after a replacement was queued does not let the hint cover the replaced entries (hint saved before a snapshot)", async () => {
    const dir = await makeTempDir();
    const fs = new InstrumentedFileSystem();
    const { storage } = await openDisk(dir, fs, { commitIndexPersistIntervalEntries: 1 });
    storage.append(commands(1, 10, 2));
    storage.setHardState({ term: 2, votedFor: 1, commitIndex: 0 });
    await storage.sync();
    // Entry 11 from the master of term 2 is being written...
    const first = fs.hold("write", ".seg");
    storage.append(commands(11, 1, 2));
    const firstSynced = storage.sync();
    await first.reached;
    // ...when the master of term 3 replaces the suffix from 6 on.
    storage.append(commands(6, 7, 3));
    storage.setHardState({ term: 3, votedFor: null, commitIndex: 3 });
    const second = fs.hold("write", ".seg");
    first.release();
    await firstSynced;
    await second.reached;
    // The replacement is not on disk when the runtime hands storage a commit index of 8
    // (entries of term 3) before it takes a snapshot: storage saves it lazily.
    const hintSaved = fs.completion("rename", "hard-state");
    storage.setHardState({ term: 3, votedFor: null, commitIndex: 8 });
    await hintSaved;
    const image = await crashImage(dir);
    second.release();
    await storage.sync();

    const crashed = await openDisk(image);
    expect(crashed.entries.map((e) => e.term)).toEqual(Array(11).fill(2));
    // Raft §5.4: entries 6..11 of term 2 were never committed; a restart must not commit them.
    expect(crashed.hardState.commitIndex).toBeLessThan(6);
  });
});
