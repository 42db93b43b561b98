/**
 * A node's durable storage on real files: it bundles the write-ahead log, the hard-state
 * file and the snapshot store in one data directory, runs recovery at start-up and keeps
 * the three consistent with each other afterwards.
 *
 *   <dir>/LOCK            the owner's process id (dir-lock.ts)
 *   <dir>/hard-state      term, vote, commit index (stable-store.ts)
 *   <dir>/wal/*.seg       the write-ahead log (wal.ts)
 *   <dir>/snapshots/*.snap
 *
 * Ordering rules it enforces: a term or vote change reaches the disk before any entry
 * appended after it, or before it in the same synchronous step (so the durable term is
 * never behind the log); the commit index written never goes beyond the log on disk up to
 * where queued truncations leave it unchanged (so it never covers a replaced entry); a
 * snapshot becomes durable before the log is compacted or reset to it. It must never open a directory another process holds, and
 * never start from state that contradicts itself: recovery throws instead.
 */

import { join } from "node:path";
import type { Entry, HardState, SnapshotMeta } from "../protocol/messages.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import { type Clock, realClock } from "../shared/clock.js";
import { DirLock, type LockHost } from "./dir-lock.js";
import { StorageInconsistentError } from "./errors.js";
import { createDirDurably, type FileSystem, nodeFileSystem } from "./file-system.js";
import { SnapshotStore, type StoredSnapshot } from "./snapshot-store.js";
import { StableStore } from "./stable-store.js";
import type { OpenedStorage, SnapshotReader, SnapshotReceiver, Storage } from "./storage.js";
import { parseStorageConfig, type StorageConfig } from "./storage-config.js";
import { Wal, type WalStats } from "./wal.js";

export interface DiskStorageOptions {
  /** Settings; see storage-config.ts. @default defaultStorageConfig() */
  readonly config?: Partial<StorageConfig>;
  /** The file system; tests inject failures through it. @default nodeFileSystem */
  readonly fs?: FileSystem;
  /** Time and timers; the simulator passes its virtual clock. @default realClock */
  readonly clock?: Clock;
  /** Who holds the directory lock; the simulator passes one per simulated process. @default this process */
  readonly lockHost?: LockHost;
}

const noSnapshot: SnapshotMeta = Object.freeze({ index: 0, term: 0 });

interface Parts {
  readonly dir: string;
  readonly config: StorageConfig;
  readonly lock: DirLock;
  readonly stable: StableStore;
  readonly snapshots: SnapshotStore;
  readonly wal: Wal;
}

export class DiskStorage implements Storage {
  private hard: HardState;
  /** The last hard state handed to the stable store, its commit index as written. */
  private saved: HardState;
  /** The newest save that `sync` must wait for (a term or vote change). */
  private requiredSave: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private closed = false;

  private constructor(private readonly parts: Parts) {
    this.hard = parts.stable.current();
    this.saved = this.hard;
  }

  /**
   * Opens the data directory `dir` (created when absent), locks it and recovers. Throws
   * ERR_STORAGE_LOCKED, ERR_WAL_CORRUPT, ERR_WAL_MISSING_SEGMENT, ERR_SNAPSHOT_CORRUPT,
   * ERR_HARD_STATE_CORRUPT, ERR_STORAGE_INCONSISTENT, ERR_DISK_FULL or ERR_STORAGE_IO;
   * each message names the file and says what to do.
   */
  static async open(dir: string, options: DiskStorageOptions = {}): Promise<OpenedStorage> {
    const config = parseStorageConfig(options.config);
    const fs = options.fs ?? nodeFileSystem;
    await createDirDurably(fs, dir);
    const { lock, warning } = await DirLock.acquire(dir, fs, options.lockHost);
    const warnings = warning === null ? [] : [warning];
    let wal: Wal | null = null;
    try {
      const stable = await StableStore.open(dir, fs);
      const snapshotDir = join(dir, "snapshots");
      const snapshots = await SnapshotStore.open(snapshotDir, fs, config.snapshotsRetainedCount);
      const after = snapshots.latest?.meta ?? noSnapshot;
      const opened = await Wal.open(
        join(dir, "wal"),
        after,
        { fs, clock: options.clock ?? realClock, segmentBytes: config.walSegmentBytes },
        stable.hardState.commitIndex,
      );
      wal = opened.wal;
      warnings.push(...stable.warnings, ...snapshots.warnings, ...opened.warnings);
      const parts = { dir, config, lock, stable: stable.store, snapshots: snapshots.store, wal };
      checkConsistent(parts, stable.hardState, after);
      const entries = await wal.entries(wal.firstIndex(), wal.lastIndex() + 1);
      const storage = new DiskStorage(parts);
      return { storage, hardState: stable.hardState, snapshot: after, entries, warnings };
    } catch (error) {
      if (wal !== null) await wal.close().catch(rethrowIfBug);
      await lock.release();
      throw error;
    }
  }

  hardState(): HardState {
    return this.hard;
  }

  /** Counters of the write-ahead log (group commits, fdatasyncs, bytes) for metrics. */
  walStats(): Readonly<WalStats> {
    return this.parts.wal.stats;
  }

  /** Calls `observer` with the seconds each fdatasync of the write-ahead log takes. */
  observeSyncs(observer: (seconds: number) => void): void {
    this.parts.wal.observeSyncs(observer);
  }

  setHardState(state: HardState): void {
    this.checkUsable();
    const old = this.hard;
    assert(state.term >= old.term, `hard state: term went back from ${old.term} to ${state.term}`);
    assert(
      state.term > old.term || old.votedFor === null || state.votedFor === old.votedFor,
      `hard state: vote changed within term ${state.term}`,
    );
    assert(state.commitIndex >= old.commitIndex, "hard state: commit index went back");
    this.hard = state;
    const { commitIndexPersistIntervalEntries } = this.parts.config;
    const joiningChanged = (state.joining === true) !== (this.saved.joining === true);
    if (
      state.term !== this.saved.term ||
      state.votedFor !== this.saved.votedFor ||
      joiningChanged
    ) {
      const save = this.save(state);
      this.requiredSave = save;
      // Entries appended from now on wait for this save, so the log never gets ahead of the term.
      this.parts.wal.holdUntil(save);
    } else if (state.commitIndex - this.saved.commitIndex >= commitIndexPersistIntervalEntries) {
      void this.save(state).catch(() => {});
    }
  }

  snapshot(): SnapshotMeta {
    return this.parts.snapshots.latest()?.meta ?? noSnapshot;
  }

  firstIndex(): number {
    return this.parts.wal.firstIndex();
  }

  lastIndex(): number {
    return this.parts.wal.lastIndex();
  }

  termAt(index: number): number | undefined {
    return this.parts.wal.termAt(index);
  }

  entries(from: number, to: number, maxBytes?: number): Promise<Entry[]> {
    this.checkUsable();
    return this.parts.wal.entries(from, to, maxBytes);
  }

  append(entries: readonly Entry[]): void {
    this.checkUsable();
    const head = entries[0];
    if (head === undefined) return;
    // Raft §5.3 replaces only a conflicting suffix, and a committed entry never conflicts.
    assert(
      head.index > this.lastIndex() || head.index > this.hard.commitIndex,
      `append at ${head.index} replaces committed entries`,
    );
    this.parts.wal.append(entries);
  }

  truncateFrom(index: number): void {
    this.checkUsable();
    assert(index > this.hard.commitIndex, `truncation at ${index} removes committed entries`);
    this.parts.wal.truncateFrom(index);
  }

  pendingBytes(): number {
    return this.parts.wal.pendingBytes();
  }

  async sync(): Promise<void> {
    if (this.failure !== null) throw this.failure;
    await Promise.all([this.requiredSave, this.parts.wal.sync()]);
  }

  async saveSnapshot(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    this.checkUsable();
    assert(meta.index <= this.hard.commitIndex, "snapshot of uncommitted entries");
    assert(
      this.termAt(meta.index) === meta.term,
      `snapshot term ${meta.term} differs from the log's`,
    );
    assert(meta.index >= this.snapshot().index, "snapshot older than the newest one");
    await this.parts.stable.idle();
    await this.parts.snapshots.save(meta, chunks);
  }

  readSnapshot(): SnapshotReader | null {
    this.checkUsable();
    const latest = this.parts.snapshots.latest();
    if (latest === null) return null;
    return readerFor(this.parts.snapshots, latest);
  }

  async receiveSnapshot(meta: SnapshotMeta): Promise<SnapshotReceiver> {
    this.checkUsable();
    assert(meta.index > this.snapshot().index, "state transfer of a snapshot not newer than ours");
    const receiver = await this.parts.snapshots.receive(meta);
    const finish = async (): Promise<void> => {
      // The snapshot's term must not be durable before the term that accepted it.
      await this.parts.stable.idle();
      await receiver.finish();
      // A transfer is adopted only beyond the commit index, so nothing newer can be here.
      assert(this.snapshot().index === meta.index, "a transferred snapshot is not the newest");
      await this.parts.wal.reset(meta);
    };
    return {
      meta,
      get receivedBytes() {
        return receiver.receivedBytes;
      },
      get dataCrc32() {
        return receiver.dataCrc32;
      },
      write: (offset, chunk) => receiver.write(offset, chunk),
      finish,
      abort: () => receiver.abort(),
    };
  }

  async compact(upToIndex: number): Promise<void> {
    this.checkUsable();
    assert(upToIndex <= this.snapshot().index, "compaction beyond the newest snapshot");
    await this.parts.wal.compact(Math.min(upToIndex, this.lastIndex()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.parts.wal.close();
      if (this.failure === null && !sameHardState(this.hard, this.saved))
        await this.save(this.hard);
      await this.parts.stable.idle();
    } finally {
      await this.parts.lock.release();
    }
  }

  /**
   * Writes the hard state, its commit index clamped to what the durable log holds and the
   * queued operations keep (the WAL lowers that index as soon as a truncation is queued).
   */
  private save(state: HardState): Promise<void> {
    const durable = Math.max(this.parts.wal.durableLastIndex(), this.snapshot().index);
    const clamped = { ...state, commitIndex: Math.min(state.commitIndex, durable) };
    this.saved = clamped;
    const save = this.parts.stable.save(clamped);
    save.catch((error: unknown) => {
      this.failure ??= error instanceof Error ? error : new Error(String(error));
    });
    return save;
  }

  private checkUsable(): void {
    assert(!this.closed, "storage used after close");
    if (this.failure !== null) throw this.failure;
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return (
    a.term === b.term &&
    a.votedFor === b.votedFor &&
    a.commitIndex === b.commitIndex &&
    (a.joining === true) === (b.joining === true)
  );
}

function readerFor(store: SnapshotStore, snapshot: StoredSnapshot): SnapshotReader {
  return {
    meta: snapshot.meta,
    dataBytes: snapshot.dataBytes,
    dataCrc32: snapshot.dataCrc32,
    chunks: () => store.read(snapshot),
  };
}

/** Cross-checks the recovered pieces; throws ERR_STORAGE_INCONSISTENT. */
function checkConsistent(parts: Parts, hard: HardState, after: SnapshotMeta): void {
  const { wal } = parts;
  const hardPath = join(parts.dir, "hard-state");
  const lastTerm = wal.termAt(wal.lastIndex()) ?? after.term;
  if (lastTerm > hard.term) {
    throw new StorageInconsistentError(
      hardPath,
      `the log (or snapshot) holds term ${lastTerm} at index ${wal.lastIndex()}, but the ` +
        `durable current term is ${hard.term}: the hard-state file was lost or replaced, and ` +
        "this node could vote twice in one term",
    );
  }
  if (hard.commitIndex > wal.lastIndex()) {
    throw new StorageInconsistentError(
      hardPath,
      `the commit index ${hard.commitIndex} is beyond the last index ${wal.lastIndex()} the ` +
        "log and snapshot hold: committed entries are missing",
    );
  }
}
