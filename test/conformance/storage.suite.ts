/**
 * The storage conformance suite: the promises of src/storage/storage.ts as tests, run
 * against every implementation (DiskStorage on real files, MemoryStorage in memory). A
 * test file calls `runStorageConformance` with a harness that creates an empty store and
 * reopens it, which is how a restart is simulated.
 *
 * The suite may only use the `Storage` interface: anything implementation-specific (torn
 * tails, fsync counts, disk errors) belongs in that implementation's own tests.
 */

import { afterEach, describe, expect, it } from "vitest";
import type { Entry, HardState } from "../../src/protocol/messages.js";
import type { OpenedStorage, Storage } from "../../src/storage/storage.js";

/** One empty place to keep storage in, that can be opened again and again (restarts). */
export interface StorageHome {
  open(): Promise<OpenedStorage>;
  dispose(): Promise<void>;
}

export interface StorageHarness {
  readonly name: string;
  create(): Promise<StorageHome>;
}

function entry(index: number, term: number, size = (index * 37) % 300): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index + term * 7 + i) & 0xff;
  return { index, term, kind: "command", data };
}

function run(from: number, count: number, term: number): Entry[] {
  return Array.from({ length: count }, (_, i) => entry(from + i, term));
}

function plain(entries: readonly Entry[]): unknown[] {
  return entries.map((e) => ({ index: e.index, term: e.term, kind: e.kind, data: [...e.data] }));
}

async function* chunksOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 131 + seed) & 0xff;
  return out;
}

const hs = (term: number, votedFor: number | null, commitIndex: number): HardState => ({
  term,
  votedFor,
  commitIndex,
});

export function runStorageConformance(harness: StorageHarness): void {
  describe(`storage conformance (${harness.name})`, () => {
    const homes: StorageHome[] = [];
    const open: Storage[] = [];

    afterEach(async () => {
      for (const storage of open.splice(0)) await storage.close().catch(() => {});
      for (const home of homes.splice(0)) await home.dispose();
    });

    async function fresh(): Promise<{ home: StorageHome; opened: OpenedStorage }> {
      const home = await harness.create();
      homes.push(home);
      return { home, opened: await reopen(home) };
    }

    async function reopen(home: StorageHome): Promise<OpenedStorage> {
      const opened = await home.open();
      open.push(opened.storage);
      return opened;
    }

    async function restart(home: StorageHome, storage: Storage): Promise<OpenedStorage> {
      await storage.close();
      return reopen(home);
    }

    it("storage: a new store is empty (first open)", async () => {
      const { opened } = await fresh();
      expect(opened.hardState).toEqual(hs(0, null, 0));
      expect(opened.snapshot).toEqual({ index: 0, term: 0 });
      expect(opened.entries).toEqual([]);
      expect(opened.storage.firstIndex()).toBe(1);
      expect(opened.storage.lastIndex()).toBe(0);
      expect(opened.storage.termAt(0)).toBe(0);
      expect(opened.storage.termAt(1)).toBeUndefined();
      expect(opened.storage.readSnapshot()).toBeNull();
    });

    it("storage: synced entries and hard state survive a restart", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(2, 3, 0));
      storage.append([...run(1, 20, 1), ...run(21, 10, 2)]);
      await storage.sync();
      storage.setHardState(hs(2, 3, 25));
      const again = await restart(home, storage);
      expect(again.hardState).toEqual(hs(2, 3, 25));
      expect(plain(again.entries)).toEqual(plain([...run(1, 20, 1), ...run(21, 10, 2)]));
      expect(again.storage.lastIndex()).toBe(30);
      expect(again.storage.termAt(20)).toBe(1);
      expect(again.storage.termAt(21)).toBe(2);
    });

    it("storage: appended entries are readable before sync (unsynced)", async () => {
      const { opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      storage.append(run(1, 5, 1));
      expect(storage.lastIndex()).toBe(5);
      expect(plain(await storage.entries(1, 6))).toEqual(plain(run(1, 5, 1)));
      await storage.sync();
    });

    it("storage: entries respects maxBytes and always returns one (limits)", async () => {
      const { opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      storage.append(run(1, 40, 1));
      await storage.sync();
      expect((await storage.entries(2, 40, 0)).map((e) => e.index)).toEqual([2]);
      const some = await storage.entries(1, 41, 2000);
      expect(some.reduce((n, e) => n + e.data.length, 0)).toBeLessThanOrEqual(2000);
      expect(some.length).toBeGreaterThan(1);
      expect(plain(some)).toEqual(plain(run(1, some.length, 1)));
      expect(await storage.entries(5, 5)).toEqual([]);
    });

    it("storage: an append below the last index replaces the suffix (conflict, restart)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(3, null, 5));
      storage.append(run(1, 20, 1));
      await storage.sync();
      // Raft §5.3: a conflicting entry and everything after it are replaced.
      storage.append(run(8, 4, 3));
      await storage.sync();
      expect(storage.lastIndex()).toBe(11);
      const again = await restart(home, storage);
      expect(plain(again.entries)).toEqual(plain([...run(1, 7, 1), ...run(8, 4, 3)]));
    });

    it("storage: a Ready's commit index may cover the suffix its entries replace (entries first, restart)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.append(run(1, 10, 2));
      storage.setHardState({ term: 2, votedFor: null, commitIndex: 3, joining: true });
      await storage.sync();
      // One Ready: a new master's entries replace 6.., it commits 9, the node stops joining.
      storage.append(run(6, 7, 3));
      storage.setHardState(hs(3, null, 9));
      await storage.sync();
      const again = await restart(home, storage);
      expect(again.hardState).toEqual(hs(3, null, 9));
      expect(plain(again.entries)).toEqual(plain([...run(1, 5, 2), ...run(6, 7, 3)]));
    });

    it("storage: a commit index beyond the log is not stored as it is (hint, restart)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      storage.append(run(1, 5, 1));
      await storage.sync();
      // A hint set ahead of the entries it covers, which then never came.
      storage.setHardState(hs(1, null, 8));
      await storage.sync();
      const again = await restart(home, storage);
      expect(again.hardState.commitIndex).toBeLessThanOrEqual(5);
      expect(again.entries.length).toBe(5);
    });

    it("storage: truncateFrom removes the suffix durably (restart)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      storage.append(run(1, 10, 1));
      await storage.sync();
      storage.truncateFrom(4);
      expect(storage.lastIndex()).toBe(3);
      expect(storage.termAt(4)).toBeUndefined();
      await storage.sync();
      const again = await restart(home, storage);
      expect(plain(again.entries)).toEqual(plain(run(1, 3, 1)));
      again.storage.append(run(4, 2, 1));
      await again.storage.sync();
      expect(plain(await again.storage.entries(1, 6))).toEqual(plain(run(1, 5, 1)));
    });

    it("storage: snapshot saved from chunks reads back identical (restart)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 10));
      storage.append(run(1, 12, 1));
      await storage.sync();
      const data = pattern(100_000, 3);
      await storage.saveSnapshot({ index: 10, term: 1 }, chunksOf(data, 7_000));
      expect(storage.snapshot()).toEqual({ index: 10, term: 1 });
      const reader = storage.readSnapshot()!;
      expect(reader.meta).toEqual({ index: 10, term: 1 });
      expect(reader.dataBytes).toBe(data.length);
      expect(Buffer.compare(await readAll(reader.chunks()), data)).toBe(0);
      const again = await restart(home, storage);
      expect(again.snapshot).toEqual({ index: 10, term: 1 });
      expect(Buffer.compare(await readAll(again.storage.readSnapshot()!.chunks()), data)).toBe(0);
      // Not compacted yet: the log still starts where it did... or after the snapshot.
      expect(again.storage.lastIndex()).toBe(12);
      expect(plain(again.entries)).toEqual(plain(run(11, 2, 1)));
    });

    it("storage: compaction drops entries the snapshot covers (restart keeps the rest)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(2, 1, 300));
      storage.append([...run(1, 150, 1), ...run(151, 150, 2)]);
      await storage.sync();
      await storage.saveSnapshot({ index: 200, term: 2 }, chunksOf(pattern(10, 1), 4));
      await storage.compact(200);
      expect(storage.firstIndex()).toBe(201);
      expect(storage.termAt(200)).toBe(2);
      expect(storage.termAt(199)).toBeUndefined();
      expect(plain(await storage.entries(201, 301))).toEqual(plain(run(201, 100, 2)));
      const again = await restart(home, storage);
      expect(again.snapshot).toEqual({ index: 200, term: 2 });
      expect(again.storage.firstIndex()).toBe(201);
      expect(plain(again.entries)).toEqual(plain(run(201, 100, 2)));
      expect(again.hardState).toEqual(hs(2, 1, 300));
    });

    it("storage: a received snapshot replaces the log (state transfer, repeated and early chunks)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(5, 2, 3));
      storage.append(run(1, 10, 1));
      await storage.sync();
      const data = pattern(50_000, 9);
      const receiver = await storage.receiveSnapshot({ index: 1000, term: 4 });
      expect(await receiver.write(0, data.subarray(0, 10_000))).toBe(10_000);
      expect(await receiver.write(0, data.subarray(0, 10_000))).toBe(10_000);
      expect(await receiver.write(20_000, data.subarray(20_000, 30_000))).toBe(10_000);
      expect(await receiver.write(5_000, data.subarray(5_000, 25_000))).toBe(25_000);
      expect(await receiver.write(25_000, data.subarray(25_000))).toBe(50_000);
      expect(receiver.receivedBytes).toBe(50_000);
      await receiver.finish();
      storage.setHardState(hs(5, 2, 1000));
      expect(storage.snapshot()).toEqual({ index: 1000, term: 4 });
      expect(storage.firstIndex()).toBe(1001);
      expect(storage.lastIndex()).toBe(1000);
      expect(storage.termAt(1000)).toBe(4);
      storage.append(run(1001, 3, 5));
      await storage.sync();
      const again = await restart(home, storage);
      expect(again.snapshot).toEqual({ index: 1000, term: 4 });
      expect(plain(again.entries)).toEqual(plain(run(1001, 3, 5)));
      const reader = again.storage.readSnapshot()!;
      expect(Buffer.compare(await readAll(reader.chunks()), data)).toBe(0);
      expect(reader.dataCrc32).toBe(receiver.dataCrc32);
    });

    it("storage: an aborted state transfer leaves log and snapshot unchanged", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      storage.append(run(1, 5, 1));
      await storage.sync();
      const receiver = await storage.receiveSnapshot({ index: 50, term: 1 });
      await receiver.write(0, pattern(1000, 1));
      await receiver.abort();
      expect(storage.snapshot()).toEqual({ index: 0, term: 0 });
      const again = await restart(home, storage);
      expect(again.snapshot).toEqual({ index: 0, term: 0 });
      expect(again.entries.length).toBe(5);
    });

    it("storage: a second open fails while the store is open (lock)", async () => {
      const { home, opened } = await fresh();
      await expect(home.open()).rejects.toMatchObject({ code: "ERR_STORAGE_LOCKED" });
      await opened.storage.close();
      const again = await reopen(home);
      expect(again.entries).toEqual([]);
    });

    it("storage: concurrent syncs all resolve once their entries are durable (many callers)", async () => {
      const { home, opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(1, null, 0));
      const waits: Promise<void>[] = [];
      for (let i = 1; i <= 100; i++) {
        storage.append([entry(i, 1)]);
        waits.push(storage.sync());
        if (i % 10 === 0) await Promise.resolve();
      }
      await Promise.all(waits);
      const again = await restart(home, storage);
      expect(plain(again.entries)).toEqual(plain(run(1, 100, 1)));
    });

    it("storage: broken invariants are assertion failures (gap, term going back)", async () => {
      const { opened } = await fresh();
      const { storage } = opened;
      storage.setHardState(hs(2, null, 2));
      storage.append(run(1, 3, 2));
      expect(() => storage.append([entry(5, 2)])).toThrow(/gap/);
      expect(() => storage.append([entry(4, 1)])).toThrow(/term/);
      expect(() => storage.truncateFrom(2)).toThrow(/committed/);
      expect(() => storage.setHardState(hs(1, null, 2))).toThrow(/term/);
      await storage.sync();
    });
  });
}
