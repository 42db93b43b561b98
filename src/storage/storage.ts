/**
 * The contract between the node runtime and its durable storage: the log, the hard
 * state and snapshots. `DiskStorage` implements it on real files and `MemoryStorage` in
 * memory; both pass test/conformance/storage.suite.ts, which is the executable form of
 * the promises written here.
 *
 * The runtime's obligations, matching the core's Ready: hand storage one Ready's entries
 * (`append`) and then its hard state (`setHardState`) in the same synchronous step, then
 * await `sync()` before sending that Ready's messages. The entries go first because the
 * Ready's commit index may cover them, and they may replace a suffix of the log: a commit
 * index handed to storage must never cover entries that a later append replaces. This
 * file holds types only and must never import an implementation.
 */

import type { Entry, HardState, SnapshotMeta } from "../protocol/messages.js";

/** What storage recovered at start-up: shaped like the core's `RestoredState`. */
export interface RecoveredState {
  readonly hardState: HardState;
  /** The newest durable snapshot; index 0 / term 0 when there is none. */
  readonly snapshot: SnapshotMeta;
  /** Every entry after the snapshot, in order. */
  readonly entries: readonly Entry[];
  /** What recovery repaired (a torn tail trimmed, temporary files removed), for the log. */
  readonly warnings: readonly string[];
}

export interface OpenedStorage extends RecoveredState {
  readonly storage: Storage;
}

/** A stored snapshot, readable as a stream whose checksum is verified at the end. */
export interface SnapshotReader {
  readonly meta: SnapshotMeta;
  /** Size of the data in bytes. */
  readonly dataBytes: number;
  /** CRC32 of the data, for a backup to check a state transfer against. */
  readonly dataCrc32: number;
  /**
   * The data in chunks. Throws ERR_SNAPSHOT_CORRUPT at the end (or earlier) when it fails
   * its checksum: restore into a fresh state and adopt it only once iteration completes.
   */
  chunks(): AsyncIterable<Uint8Array>;
}

/**
 * A snapshot arriving from the master in offset-addressed chunks (state transfer).
 * Chunks are written in order: a repeated chunk is skipped and a chunk beyond the data
 * received so far is ignored; `write` answers the data offset it expects next.
 */
export interface SnapshotReceiver {
  readonly meta: SnapshotMeta;
  readonly receivedBytes: number;
  readonly dataCrc32: number;
  write(offset: number, chunk: Uint8Array): Promise<number>;
  /**
   * Makes the snapshot durable and the newest one, and replaces the whole log with it
   * (the log continues at meta.index + 1), as the core's state transfer does.
   */
  finish(): Promise<void>;
  /** Drops what was received. */
  abort(): Promise<void>;
}

export interface Storage {
  /** The hard state as last set (durable once `sync` resolves; see setHardState). */
  hardState(): HardState;
  /**
   * Records the hard state. Term and vote are durable when the next `sync()` resolves,
   * and no entry appended after this call, or before it in the same synchronous step,
   * reaches the disk before them. The commit index alone may be written lazily: it is a
   * hint, and what is written never exceeds the log stored with it, nor covers an entry
   * that a queued truncation or replacement removes (a restart would commit that entry).
   */
  setHardState(state: HardState): void;
  /** The newest durable snapshot ({0, 0} for none). */
  snapshot(): SnapshotMeta;
  /**
   * First index the log holds. Right after open and after `compact` that is
   * snapshot().index + 1; saving a snapshot alone does not move it.
   */
  firstIndex(): number;
  /** Last index, appended-but-unsynced entries included; firstIndex() - 1 when empty. */
  lastIndex(): number;
  /** Term at `index` for firstIndex() - 1 .. lastIndex(); undefined elsewhere. */
  termAt(index: number): number | undefined;
  /** Entries in [from, to) (like Array.slice), about `maxBytes` of data but at least one. */
  entries(from: number, to: number, maxBytes?: number): Promise<Entry[]>;
  /**
   * Queues contiguous entries. The first may be at or below lastIndex() (never at or
   * below the commit index): an entry at index i replaces index i and everything after it.
   */
  append(entries: readonly Entry[]): void;
  /** Queues removal of the entries at `index` and above (never committed ones). */
  truncateFrom(index: number): void;
  /**
   * Resolves when everything queued before it is durable. Concurrent callers share one
   * fsync (group commit). Rejects with ERR_DISK_FULL or ERR_STORAGE_IO, after which every
   * call fails: the runtime must stop the node.
   */
  sync(): Promise<void>;
  /**
   * Bytes of entries handed to `append` that are not durable yet (queued, or in the batch
   * being written): how far the disk is behind. The runtime refuses new writes, and drops
   * appends from the master, while it is over its bound, so a slow disk slows the cluster
   * down instead of filling memory.
   */
  pendingBytes(): number;
  /**
   * Writes a snapshot of the applied state up to `meta` (a committed entry in the log),
   * streamed from `chunks`; resolves once it is durable and the newest one.
   */
  saveSnapshot(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /** The newest snapshot, or null when there is none. */
  readSnapshot(): SnapshotReader | null;
  /** Starts receiving a snapshot from the master; see SnapshotReceiver. */
  receiveSnapshot(meta: SnapshotMeta): Promise<SnapshotReceiver>;
  /**
   * Drops the log up to `upToIndex` (at most the snapshot's index) and frees the disk space
   * of what only those entries used. Resolves once durable.
   */
  compact(upToIndex: number): Promise<void>;
  /** Flushes, writes the final hard state and releases the data directory. */
  close(): Promise<void>;
}
