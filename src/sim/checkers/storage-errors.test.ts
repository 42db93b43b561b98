import { describe, expect, it } from "vitest";
import { Prng } from "../../core/prng.js";
import { DiskStorage } from "../../storage/disk-storage.js";
import {
  HardStateCorruptError,
  StorageError,
  StorageInconsistentError,
  StorageIoError,
  WalCorruptError,
} from "../../storage/errors.js";
import { SimClock, SimScheduler } from "../sim-clock.js";
import { KIND_DISK, SimFileSystem } from "../sim-fs.js";
import { describeStrikes, explainedByStrikes } from "./storage-errors.js";

const DIR = "/data/n1";

/** A disk and a clock, and a way to run virtual time until a promise settles. */
function machine() {
  const scheduler = new SimScheduler();
  const clock = new SimClock(scheduler, 0);
  const fs = new SimFileSystem(new Prng(7), clock, KIND_DISK);
  const drive = async <T>(promise: Promise<T>): Promise<T> => {
    let done = false;
    const settled = promise.finally(() => {
      done = true;
    });
    settled.catch(() => {});
    await scheduler.run(Number.POSITIVE_INFINITY, () => done);
    return settled;
  };
  let pid = 1;
  const open = () =>
    DiskStorage.open(DIR, {
      fs,
      clock,
      lockHost: { pid: ++pid, isRunning: () => false, held: new Set() },
    });
  return { fs, drive, open };
}

/** A machine whose node wrote its hard state, closed, and then lost power. */
async function withHardState() {
  const m = machine();
  const first = await m.drive(m.open());
  first.storage.setHardState({ term: 3, votedFor: 1, commitIndex: 0 });
  await m.drive(first.storage.sync());
  await m.drive(first.storage.close());
  m.fs.crash();
  return m;
}

/** What a rejected promise rejected with, as a storage error. */
async function failure(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe("storage errors", () => {
  it("storage errors: an injected EIO explains the ERR_STORAGE_IO made of it, in that process only; nothing explains an error the disk did not cause", async () => {
    const { fs, drive, open } = machine();
    const { storage } = await drive(open());
    fs.failNext("datasync", "EIO");
    storage.append([{ index: 1, term: 1, kind: "command", data: new Uint8Array([1]) }]);
    const error = await failure(drive(storage.sync()));
    expect(error.code).toBe("ERR_STORAGE_IO");
    expect(explainedByStrikes(error, fs.strikes)).toBe(true);
    expect(describeStrikes(fs.strikes)).toMatch(/^EIO in \/data\/n1\/wal\//);
    // The same code, made up by the storage layer rather than by the disk.
    const madeUp = new StorageIoError(error.file, "fdatasync", "EIO", new Error("EIO"));
    expect(explainedByStrikes(madeUp, fs.strikes)).toBe(false);
    const inconsistent = new StorageInconsistentError(`${DIR}/hard-state`, "made up");
    expect(explainedByStrikes(inconsistent, fs.strikes)).toBe(false);
    // The next process starts with nothing struck.
    fs.processCrash();
    expect(explainedByStrikes(error, fs.strikes)).toBe(false);
    expect(describeStrikes(fs.strikes)).toBe("none struck");
  });

  it("storage errors: a flipped bit explains the corruption error of the file it was read in, and no other", async () => {
    const { fs, drive, open } = await withHardState();
    fs.flipBit(`${DIR}/hard-state`, 20);
    const error = await failure(drive(open()));
    expect(error).toBeInstanceOf(HardStateCorruptError);
    expect(explainedByStrikes(error, fs.strikes)).toBe(true);
    // Another code about the same file, or the same code about another file: not the flip.
    const otherCode = new StorageInconsistentError(`${DIR}/hard-state`, "made up");
    expect(explainedByStrikes(otherCode, fs.strikes)).toBe(false);
    const otherFile = new WalCorruptError(`${DIR}/wal/00000000000000000001.seg`, 0, "made up");
    expect(explainedByStrikes(otherFile, fs.strikes)).toBe(false);
    // A flip that was never read explains nothing.
    fs.crash();
    expect(fs.holdsDamage()).toBe(true);
    expect(explainedByStrikes(error, fs.strikes)).toBe(false);
  });

  it("storage errors: a read of a damaged range explains ERR_STORAGE_IO, an ENOSPC explains ERR_DISK_FULL", async () => {
    const { fs, drive, open } = await withHardState();
    fs.damage(`${DIR}/hard-state`, 0, 4096);
    const read = await failure(drive(open()));
    expect(read.code).toBe("ERR_STORAGE_IO");
    expect(explainedByStrikes(read, fs.strikes)).toBe(true);

    const small = machine();
    small.fs.faults = { ...KIND_DISK, capacityBytes: 16 };
    const full = await failure(small.drive(small.open()));
    expect(full.code).toBe("ERR_DISK_FULL");
    expect(explainedByStrikes(full, small.fs.strikes)).toBe(true);
    // The same errno under another code is not what the storage code makes of it.
    const asIo = new StorageIoError(full.file, "write", "ENOSPC", full.cause);
    expect(explainedByStrikes(asIo, small.fs.strikes)).toBe(false);
  });
});
