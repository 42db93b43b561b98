/**
 * Crash consistency of the real DiskStorage (write-ahead log, hard state, snapshots,
 * recovery) over the simulated file system: a seeded workload shaped like the runtime's
 * Readies (entries, then hard state, then sync; suffix replacements above the commit index;
 * snapshots and compaction) runs until a seeded crash point between two file-system
 * operations, the disk keeps what POSIX lets a crash keep, and recovery must give back
 * every acknowledged write, a commit hint the recovered log supports, and never an entry
 * that was not written. A damaged disk must be refused with an error naming the file.
 */

import { describe, expect, it } from "vitest";
import { Prng } from "../../src/core/prng.js";
import type { Entry, HardState, SnapshotMeta } from "../../src/protocol/messages.js";
import { SimClock, SimScheduler } from "../../src/sim/sim-clock.js";
import { KIND_DISK, SimFileSystem, type SimFsFaults } from "../../src/sim/sim-fs.js";
import type { LockHost } from "../../src/storage/dir-lock.js";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import { IdentityStore } from "../../src/storage/identity-store.js";
import type { OpenedStorage, Storage } from "../../src/storage/storage.js";

const DIR = "/data/n1";
/** First seed of the crash sweep; BATON_SIM_FS_FROM=n runs another 150 (a longer search). */
const SEED_FROM = Number(process.env.BATON_SIM_FS_FROM ?? 1);

interface Machine {
  readonly scheduler: SimScheduler;
  clock: SimClock;
  readonly fs: SimFileSystem;
  pid: number;
  crashed: boolean;
}

async function newMachine(seed: number, faults: SimFsFaults): Promise<Machine> {
  const scheduler = new SimScheduler();
  const clock = new SimClock(scheduler, 0);
  const fs = new SimFileSystem(new Prng(seed ^ 0x5eed), clock, faults);
  const m: Machine = { scheduler, clock, fs, pid: 1, crashed: false };
  // The directory above the data directory exists and is durable, as on a real machine.
  await drive(m, fs.mkdir("/data"));
  await drive(m, fs.syncDir("/"));
  return m;
}

/** Runs virtual time until `promise` settles or the machine crashes (then: null). */
async function drive<T>(m: Machine, promise: Promise<T>): Promise<T | null> {
  let done = false;
  const settled = promise.finally(() => {
    done = true;
  });
  settled.catch(() => {});
  await m.scheduler.run(Number.POSITIVE_INFINITY, () => done || m.crashed);
  if (!done) return null;
  return settled;
}

function crash(m: Machine): void {
  m.crashed = true;
  m.clock.kill();
  m.clock = new SimClock(m.scheduler, 0);
  m.fs.crash(m.clock);
}

/** The process dies, not the machine: what it wrote stays in the page cache, unsynced. */
function processCrash(m: Machine): void {
  m.crashed = true;
  m.clock.kill();
  m.clock = new SimClock(m.scheduler, 0);
  m.fs.processCrash(m.clock);
}

/** The machine loses power, and keeps nothing that was not synced. */
function powerLoss(m: Machine): void {
  m.clock.kill();
  m.clock = new SimClock(m.scheduler, 0);
  m.fs.crash(m.clock, { loseAllUnsynced: true });
}

function lockHost(m: Machine): LockHost {
  m.pid++;
  return { pid: m.pid, isRunning: () => false, held: new Set() };
}

/** A one-byte command entry of term 1 at `index`. */
function entry(index: number): Entry {
  return { index, term: 1, kind: "command", data: Uint8Array.of(index) };
}

function open(m: Machine): Promise<OpenedStorage> {
  return DiskStorage.open(DIR, {
    fs: m.fs,
    clock: m.clock,
    lockHost: lockHost(m),
    config: { walSegmentBytes: 4096, commitIndexPersistIntervalEntries: 7 },
  });
}

/** What the workload did and what storage acknowledged. */
class Model {
  log: Entry[] = [];
  hard: HardState = { term: 0, votedFor: null, commitIndex: 0 };
  /** The log and hard state as of the newest sync that resolved. */
  durableLog: Entry[] = [];
  durableHard: HardState = this.hard;
  /** Every entry ever written at an index, by "term:data". */
  readonly written = new Map<number, Set<string>>();
  /** Committed entries: never replaced. */
  readonly committed = new Map<number, string>();
  readonly committedEntries = new Map<number, Entry>();
  private floor = 0;
  /** Lowest first index of an append queued after the newest acknowledged sync. */
  replacedAfterAck = Number.POSITIVE_INFINITY;
  ackedSnapshot = 0;
  maxTerm = 0;
  /** The snapshot data stored for each snapshot index. */
  readonly snapshotData = new Map<number, string>();

  /** Highest index ever committed. */
  commitFloor(): number {
    for (; this.committed.has(this.floor + 1); ) this.floor++;
    return this.floor;
  }

  /** The index of the snapshot the log starts after, as recovered. */
  base = 0;

  lastIndex(): number {
    return this.log.at(-1)?.index ?? this.base;
  }
}

const key = (e: Entry) => `${e.term}:${Buffer.from(e.data).toString("hex")}`;

function entriesFrom(prng: Prng, first: number, count: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const data = new Uint8Array(prng.int(0, 300));
    for (let j = 0; j < data.length; j++) data[j] = prng.int(0, 255);
    out.push({ index: first + i, term, kind: "command", data });
  }
  return out;
}

async function* chunksOf(text: string): AsyncIterable<Uint8Array> {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; at += 1000) yield bytes.subarray(at, at + 1000);
}

/** One Ready in the runtime's order: entries, hard state, then a sync that resolves later. */
function issueReady(prng: Prng, storage: Storage, model: Model): Promise<void> {
  if (prng.chance(0.2)) {
    model.hard = { ...model.hard, term: model.hard.term + 1, votedFor: prng.pick([null, 1, 2]) };
    model.maxTerm = model.hard.term;
  }
  const last = model.lastIndex();
  const commit = model.hard.commitIndex;
  // Raft §5.3: only an uncommitted suffix is ever replaced, and an entry committed
  // anywhere is the one a restarted node gets again from its master.
  const floor = Math.max(commit, model.commitFloor());
  const first =
    last > floor && prng.chance(0.2)
      ? prng.int(Math.max(floor + 1, storage.firstIndex()), last)
      : last + 1;
  let entries: Entry[] = [];
  if (first <= model.commitFloor()) {
    for (let i = first; i <= Math.min(model.commitFloor(), first + 5); i++) {
      entries.push(model.committedEntries.get(i)!);
    }
  } else if (model.hard.term > 0) {
    entries = entriesFrom(prng, first, prng.int(1, 6), model.hard.term);
  }
  if (entries.length > 0) {
    // A master of a newer term sent these: its term comes with them.
    const term = Math.max(...entries.map((e) => e.term));
    if (term > model.hard.term) {
      model.hard = { ...model.hard, term, votedFor: null };
      model.maxTerm = Math.max(model.maxTerm, term);
    }
    storage.append(entries);
    model.log = [...model.log.filter((e) => e.index < first), ...entries];
    for (const e of entries) {
      if (!model.written.has(e.index)) model.written.set(e.index, new Set());
      model.written.get(e.index)!.add(key(e));
    }
    model.replacedAfterAck = Math.min(model.replacedAfterAck, first);
  }
  const newLast = model.lastIndex();
  const newCommit = prng.chance(0.5) ? prng.int(commit, newLast) : commit;
  for (let i = commit + 1; i <= newCommit; i++) {
    if (model.committed.has(i)) continue;
    const entry = model.log.find((e) => e.index === i)!;
    model.committed.set(i, key(entry));
    model.committedEntries.set(i, entry);
  }
  model.hard = { ...model.hard, commitIndex: newCommit };
  storage.setHardState({
    ...model.hard,
    commitIndex: Math.max(newCommit, storage.hardState().commitIndex),
  });
  const log = model.log;
  const hard = model.hard;
  return storage.sync().then(() => {
    model.durableLog = log;
    model.durableHard = hard;
    if (model.log === log) model.replacedAfterAck = Number.POSITIVE_INFINITY;
  });
}

async function maybeSnapshot(prng: Prng, storage: Storage, model: Model): Promise<void> {
  const index = model.hard.commitIndex;
  if (index <= storage.snapshot().index || !prng.chance(0.15)) return;
  const entry = model.log.find((e) => e.index === index);
  if (entry === undefined) return;
  const data = `state at ${index} `.repeat(prng.int(1, 400));
  model.snapshotData.set(index, data);
  const meta: SnapshotMeta = { index, term: entry.term };
  await storage.saveSnapshot(meta, chunksOf(data));
  model.ackedSnapshot = Math.max(model.ackedSnapshot, index);
  if (prng.chance(0.7))
    await storage.compact(Math.max(storage.firstIndex() - 1, index - prng.int(0, 5)));
}

async function workload(prng: Prng, storage: Storage, model: Model, steps: number): Promise<void> {
  let outstanding: Promise<void>[] = [];
  for (let step = 0; step < steps; step++) {
    outstanding.push(issueReady(prng, storage, model));
    if (prng.chance(0.5)) {
      await Promise.all(outstanding);
      outstanding = [];
      await maybeSnapshot(prng, storage, model);
    }
  }
  await Promise.all(outstanding);
}

async function readAll(reader: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of reader) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts).toString();
}

/** Checks what recovery returned against what the workload was told was durable. */
async function checkRecovered(m: Machine, seed: number, opened: OpenedStorage, model: Model) {
  const where = `seed ${seed}`;
  const { hardState, snapshot, entries } = opened;
  expect(hardState.term, `${where}: the durable term went back`).toBeGreaterThanOrEqual(
    model.durableHard.term,
  );
  expect(hardState.term, `${where}: a term never written`).toBeLessThanOrEqual(model.maxTerm);
  if (hardState.term === model.durableHard.term && model.durableHard.votedFor !== null) {
    expect(hardState.votedFor, `${where}: an acknowledged vote was lost`).toBe(
      model.durableHard.votedFor,
    );
  }
  expect(snapshot.index, `${where}: an acknowledged snapshot was lost`).toBeGreaterThanOrEqual(
    model.ackedSnapshot,
  );
  const recoveredLast = entries.at(-1)?.index ?? snapshot.index;
  const durableLast = model.durableLog.at(-1)?.index ?? 0;
  const bound = Math.min(durableLast, model.replacedAfterAck - 1);
  expect(recoveredLast, `${where}: acknowledged entries were lost`).toBeGreaterThanOrEqual(bound);
  for (const e of entries) {
    const k = key(e);
    expect(model.written.get(e.index)?.has(k), `${where}: entry ${e.index} was never written`).toBe(
      true,
    );
    if (e.index <= bound) {
      const acked = model.durableLog.find((d) => d.index === e.index);
      expect(k, `${where}: acknowledged entry ${e.index} changed`).toBe(key(acked!));
    }
    if (e.index <= hardState.commitIndex) {
      // The hint must name entries that were committed, as they were committed.
      expect(k, `${where}: the commit hint covers entry ${e.index}, not the committed one`).toBe(
        model.committed.get(e.index),
      );
    }
  }
  expect(hardState.commitIndex, `${where}: hint beyond the log`).toBeLessThanOrEqual(recoveredLast);
  if (snapshot.index > 0) {
    expect(model.committed.has(snapshot.index), `${where}: snapshot of an uncommitted entry`).toBe(
      true,
    );
    const reader = opened.storage.readSnapshot()!;
    const hook = m.fs.onOperation;
    m.fs.onOperation = null; // the check's own reads are no crash points
    const data = await drive(m, readAll(reader.chunks()));
    m.fs.onOperation = hook;
    expect(data, `${where}: snapshot ${snapshot.index} content`).toBe(
      model.snapshotData.get(snapshot.index),
    );
  }
}

/** Counts operations and crashes the machine at the `at`-th one. */
function crashAt(m: Machine, at: number): void {
  let ops = 0;
  m.fs.onOperation = () => {
    ops++;
    if (ops === at) {
      m.fs.onOperation = null;
      crash(m);
    }
  };
}

const FAULTY: SimFsFaults = {
  ...KIND_DISK,
  opMsMax: 2,
  syncMsMin: 1,
  syncMsMax: 10,
  stallChance: 0.01,
  stallMsMax: 3000,
};

async function crashRun(seed: number): Promise<void> {
  const prng = new Prng(seed);
  const m = await newMachine(seed, prng.chance(0.5) ? FAULTY : KIND_DISK);
  const model = new Model();
  for (let life = 0; life < 3; life++) {
    m.crashed = false;
    crashAt(m, prng.int(1, 400));
    const opened = await drive(m, open(m));
    if (opened === null) continue; // crashed during recovery: recover again
    if (life > 0) await checkRecovered(m, seed, opened, model);
    if (m.crashed) continue;
    // The workload continues from what recovery returned, as a restarted node does.
    // A recovered entry that is not the committed one at its index was never committed
    // here: the master replaces it (and what follows) with the committed entries.
    const diverged = opened.entries.findIndex((e) => {
      const committed = model.committed.get(e.index);
      return committed !== undefined && committed !== key(e);
    });
    model.log = diverged < 0 ? [...opened.entries] : opened.entries.slice(0, diverged);
    model.durableLog = model.log;
    model.base = opened.snapshot.index;
    model.hard = opened.hardState;
    model.durableHard = opened.hardState;
    model.replacedAfterAck = Number.POSITIVE_INFINITY;
    await drive(m, workload(prng, opened.storage, model, prng.int(5, 60)));
    if (!m.crashed) crash(m);
  }
  m.fs.onOperation = null;
  m.crashed = false;
  const last = await drive(m, open(m));
  await checkRecovered(m, seed, last!, model);
}

describe("disk storage over the simulated file system", () => {
  it("crash consistency: a crash between any two file-system operations loses nothing acknowledged and commits nothing uncommitted (150 seeds)", async () => {
    for (let seed = SEED_FROM; seed < SEED_FROM + 150; seed++) {
      await crashRun(seed).catch((error: Error) => {
        error.message = `seed ${seed}: ${error.message}`;
        throw error;
      });
    }
  }, 120_000);
});

/** Builds a durable data directory by a crash-free workload; returns the machine and model. */
async function durableDisk(seed: number): Promise<{ m: Machine; model: Model; prng: Prng }> {
  const prng = new Prng(seed);
  const m = await newMachine(seed, KIND_DISK);
  const model = new Model();
  crashAt(m, -1);
  const opened = (await drive(m, open(m)))!;
  await drive(m, workload(prng, opened.storage, model, prng.int(10, 60)));
  await drive(m, opened.storage.close());
  crash(m);
  m.crashed = false;
  return { m, model, prng };
}

/** Opens the data directory; returns what recovery gave or the error it refused with. */
async function reopen(m: Machine): Promise<OpenedStorage | Error> {
  try {
    return (await drive(m, open(m)))!;
  } catch (error) {
    return error as Error;
  }
}

describe("disk storage over a failing simulated disk", () => {
  it("disk faults: EIO on an fsync or ENOSPC on a write fails the sync with a catalogued error naming the file, every later call fails too, and recovery loses nothing acknowledged before (seeds 1..60)", async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 60; seed++) {
      const prng = new Prng(seed);
      const m = await newMachine(seed, KIND_DISK);
      const model = new Model();
      const { storage } = (await drive(m, open(m)))!;
      await drive(m, workload(prng, storage, model, prng.int(0, 30)));
      if (prng.chance(0.5)) {
        m.fs.failNext(prng.pick(["datasync", "syncDir", "write"]), "EIO");
      } else {
        m.fs.faults = { ...KIND_DISK, capacityBytes: m.fs.usedBytes() + prng.int(0, 2000) };
      }
      let failure: (Error & { code?: string }) | null = null;
      try {
        await drive(m, workload(prng, storage, model, 200));
      } catch (error) {
        failure = error as Error & { code?: string };
      }
      const where = `seed ${seed}`;
      if (failure === null) continue; // the workload never touched the failing operation
      expect(["ERR_STORAGE_IO", "ERR_DISK_FULL"], `${where}: ${failure.message}`).toContain(
        failure.code,
      );
      expect(failure.message, where).toContain(DIR);
      seen.add(failure.code!);
      // The storage never guesses after a failed write or fsync: every later sync fails.
      await expect(drive(m, storage.sync()), where).rejects.toBeDefined();
      crash(m);
      m.crashed = false;
      m.fs.faults = KIND_DISK;
      await checkRecovered(m, seed, (await drive(m, open(m)))!, model);
    }
    expect(seen).toEqual(new Set(["ERR_STORAGE_IO", "ERR_DISK_FULL"]));
  }, 120_000);
});

describe("disk storage over a damaged simulated disk", () => {
  it("corruption: a flipped bit anywhere is refused with an error naming the file, or is provably harmless; never applied (seeds 1..120)", async () => {
    const outcomes = { refused: 0, harmless: 0 };
    for (let seed = 1; seed <= 120; seed++) {
      const { m, model, prng } = await durableDisk(seed);
      const files = m.fs.files(DIR).filter((f) => !f.endsWith("/LOCK"));
      const file = prng.pick(files);
      const at = m.fs.flipBit(file);
      const result = await reopen(m);
      const where = `seed ${seed}: bit flipped in ${file} at byte ${at}`;
      if (result instanceof Error) {
        expect(result.message, where).toContain(file);
        expect((result as { code?: string }).code, where).toMatch(/^ERR_/);
        outcomes.refused++;
        continue;
      }
      // Recovery accepted the disk: then nothing it returns may differ from what was written.
      for (const e of result.entries) {
        expect(model.written.get(e.index)?.has(key(e)), `${where}: entry ${e.index}`).toBe(true);
      }
      if (result.snapshot.index > 0) {
        const data = await drive(m, readAll(result.storage.readSnapshot()!.chunks()));
        expect(data, where).toBe(model.snapshotData.get(result.snapshot.index));
      }
      expect(result.hardState.term, where).toBeLessThanOrEqual(model.maxTerm);
      outcomes.harmless++;
    }
    expect(outcomes.refused).toBeGreaterThan(60);
  }, 120_000);

  it("corruption: a latent read error is refused with ERR_STORAGE_IO naming the file (seeds 1..40)", async () => {
    let refused = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const { m, prng } = await durableDisk(seed);
      const files = m.fs.files(DIR).filter((f) => f.endsWith(".seg") || f.endsWith("hard-state"));
      const file = prng.pick(files);
      m.fs.damage(file, 0, 1 << 30);
      const result = await reopen(m);
      if (!(result instanceof Error)) {
        // Only a segment wholly below the snapshot, which recovery never reads, may be bad.
        expect(file, `seed ${seed}: ${file} unreadable yet recovery read it`).toMatch(/\.seg$/);
        const first = Number(file.split("/").at(-1)!.replace(".seg", ""));
        expect(result.storage.firstIndex(), `seed ${seed}`).toBeGreaterThan(first);
        continue;
      }
      const error = result as Error & { code?: string };
      expect(error.code, `seed ${seed}`).toBe("ERR_STORAGE_IO");
      expect(error.message, `seed ${seed}`).toContain(file);
      refused++;
    }
    expect(refused).toBeGreaterThan(30);
  });

  it("disk storage: entries a restarted process recovered from the page cache (its predecessor died before their fdatasync) survive a later power loss", async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const m = await newMachine(seed, KIND_DISK);
      const { storage } = (await drive(m, open(m)))!;
      storage.setHardState({ term: 1, votedFor: 1, commitIndex: 0 });
      storage.append([1, 2, 3].map(entry));
      await drive(m, storage.sync());
      // The process dies (not the machine) as the next batch's fdatasync starts: the
      // entries are in the page cache, readable, not durable.
      m.fs.onOperation = (op, path) => {
        if (op !== "datasync" || !path.includes("/wal/")) return;
        m.fs.onOperation = null;
        processCrash(m);
      };
      storage.append([4, 5, 6].map(entry));
      expect(await drive(m, storage.sync()), `seed ${seed}`).toBeNull();
      m.crashed = false;
      const restarted = (await drive(m, open(m)))!;
      // The new process reads them back and, from now on, counts them as durable.
      expect(
        restarted.entries.map((e) => e.index),
        `seed ${seed}`,
      ).toEqual([1, 2, 3, 4, 5, 6]);
      // A power loss that keeps nothing unsynced must not take them back.
      powerLoss(m);
      const afterPowerLoss = (await drive(m, open(m)))!;
      expect(
        afterPowerLoss.entries.map((e) => e.index),
        `seed ${seed}`,
      ).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });

  it("disk storage: a snapshot a restarted process found under a name not yet durable survives a later power loss (the log it covers was deleted)", async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const m = await newMachine(seed, KIND_DISK);
      const { storage } = (await drive(m, open(m)))!;
      const entries = Array.from({ length: 40 }, (_, i) => ({
        index: i + 1,
        term: 1,
        kind: "command" as const,
        data: new Uint8Array(300).fill(i),
      }));
      storage.setHardState({ term: 1, votedFor: 1, commitIndex: 40 });
      storage.append(entries);
      await drive(m, storage.sync());
      // The process dies as the snapshot's directory fsync starts: renamed, not durable.
      m.fs.onOperation = (op, path) => {
        if (op !== "syncDir" || !path.endsWith("/snapshots")) return;
        m.fs.onOperation = null;
        processCrash(m);
      };
      const saved = storage.saveSnapshot({ index: 40, term: 1 }, chunksOf("state at 40"));
      expect(await drive(m, saved), `seed ${seed}`).toBeNull();
      m.crashed = false;
      // The next process finds the snapshot, and deletes the segments it covers.
      const restarted = (await drive(m, open(m)))!;
      expect(restarted.snapshot.index, `seed ${seed}`).toBe(40);
      await drive(m, restarted.storage.compact(40));
      powerLoss(m);
      const afterPowerLoss = (await drive(m, open(m)))!;
      expect(afterPowerLoss.snapshot.index, `seed ${seed}`).toBe(40);
    }
  });

  it("disk storage: entries whose fdatasync failed, read back from the page cache by the next process, survive a later power loss (Linux marks the pages clean: fsyncgate)", async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const m = await newMachine(seed, KIND_DISK);
      const { storage } = (await drive(m, open(m)))!;
      storage.setHardState({ term: 1, votedFor: 1, commitIndex: 0 });
      storage.append([1, 2, 3].map(entry));
      await drive(m, storage.sync());
      // The next batch's fdatasync fails: its pages are marked clean, still readable, and
      // no later fdatasync writes them. The node stops; only its process dies.
      m.fs.failNext("datasync", "EIO");
      storage.append([4, 5, 6].map(entry));
      await expect(drive(m, storage.sync()), `seed ${seed}`).rejects.toMatchObject({
        code: "ERR_STORAGE_IO",
      });
      processCrash(m);
      m.crashed = false;
      const restarted = (await drive(m, open(m)))!;
      const recovered = restarted.entries.map((e) => e.index);
      // Whatever the new process recovered it counts as durable from now on, so a power
      // loss that keeps nothing unsynced must give back exactly that.
      powerLoss(m);
      const afterPowerLoss = (await drive(m, open(m)))!;
      expect(
        afterPowerLoss.entries.map((e) => e.index),
        `seed ${seed}`,
      ).toEqual(recovered);
    }
  });

  it("disk storage: a hard state and an identity a restarted process found under names not yet durable survive a later power loss", async () => {
    /** The process dies as its next fsync of the data directory starts. */
    const dieAtNextDirSync = (m: Machine): void => {
      m.fs.onOperation = (op, path) => {
        if (op !== "syncDir" || path !== DIR) return;
        m.fs.onOperation = null;
        processCrash(m);
      };
    };
    for (let seed = 1; seed <= 20; seed++) {
      const m = await newMachine(seed, KIND_DISK);
      const first = (await drive(m, open(m)))!;
      first.storage.setHardState({ term: 1, votedFor: 1, commitIndex: 0 });
      await drive(m, first.storage.sync());
      // The identity is renamed into place; the process dies before the directory's fsync.
      const identities = (await drive(m, IdentityStore.open(DIR, m.fs)))!;
      dieAtNextDirSync(m);
      const identity = { clusterId: "c", incarnation: 7, joinedConfig: null, appliedConfig: null };
      expect(await drive(m, identities.save(identity)), `seed ${seed}`).toBeNull();
      m.crashed = false;
      // A vote for 2 in term 2 likewise: the vote was never sent, and the next process,
      // reading it back, would repeat it without saving it again.
      const second = (await drive(m, open(m)))!;
      dieAtNextDirSync(m);
      second.storage.setHardState({ term: 2, votedFor: 2, commitIndex: 0 });
      expect(await drive(m, second.storage.sync()), `seed ${seed}`).toBeNull();
      m.crashed = false;
      const restarted = (await drive(m, open(m)))!;
      const identityRead = (await drive(m, IdentityStore.open(DIR, m.fs)))!.identity();
      expect(restarted.hardState.term, `seed ${seed}`).toBe(2);
      expect(identityRead?.incarnation, `seed ${seed}`).toBe(7);
      powerLoss(m);
      const afterPowerLoss = (await drive(m, open(m)))!;
      expect(afterPowerLoss.hardState, `seed ${seed}`).toEqual(restarted.hardState);
      const identityAfter = (await drive(m, IdentityStore.open(DIR, m.fs)))!.identity();
      expect(identityAfter, `seed ${seed}`).toEqual(identityRead);
    }
  });

  it("disk storage: a new data directory survives a crash once storage says it is durable (its entry in the parent is fsynced)", async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const m = await newMachine(seed, KIND_DISK);
      const { storage } = (await drive(m, open(m)))!;
      storage.setHardState({ term: 3, votedFor: 2, commitIndex: 0 });
      storage.append([{ index: 1, term: 3, kind: "noop", data: new Uint8Array(0) }]);
      await drive(m, storage.sync());
      crash(m);
      m.crashed = false;
      const after = (await drive(m, open(m)))!;
      expect(after.hardState, `seed ${seed}`).toEqual({ term: 3, votedFor: 2, commitIndex: 0 });
      expect(after.entries.length, `seed ${seed}`).toBe(1);
    }
  });
});
