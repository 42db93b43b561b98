/**
 * Storage in memory, with the same contract as DiskStorage: for tests and for the
 * simulator's nodes that do not exercise files. A `MemoryVolume` plays the disk: it
 * survives a "restart" (a new `MemoryStorage.open` on the same volume) and holds only
 * what `sync` made durable, so tests can check what a crash would lose.
 *
 * It must behave like the disk in every way the conformance suite can observe, and never
 * hand out its internal arrays: entries and snapshot chunks are copied in and out.
 */

import { crc32 } from "node:zlib";
import type { Entry, HardState, SnapshotMeta } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { StorageLockedError } from "./errors.js";
import { emptyHardState } from "./stable-store.js";
import type { OpenedStorage, SnapshotReader, SnapshotReceiver, Storage } from "./storage.js";

/** The durable state of one memory "disk". */
export class MemoryVolume {
  hardState: HardState = emptyHardState;
  snapshot: { meta: SnapshotMeta; chunks: Uint8Array[]; crc: number; bytes: number } | null = null;
  /** The durable log: entries[k].index === base.index + 1 + k. */
  base: SnapshotMeta = { index: 0, term: 0 };
  entries: Entry[] = [];
  inUse = false;
}

type Op =
  | { type: "append"; entries: readonly Entry[] }
  | { type: "truncate"; index: number }
  | { type: "hard"; state: HardState }
  | { type: "compact"; upToIndex: number; term: number }
  | { type: "reset"; after: SnapshotMeta };

function copyEntry(entry: Entry): Entry {
  return { index: entry.index, term: entry.term, kind: entry.kind, data: entry.data.slice() };
}

function applyOp(volume: MemoryVolume, op: Op): void {
  switch (op.type) {
    case "append":
      volume.entries.length = op.entries[0]!.index - volume.base.index - 1;
      for (const entry of op.entries) volume.entries.push(entry);
      break;
    case "truncate":
      volume.entries.length = Math.min(volume.entries.length, op.index - volume.base.index - 1);
      break;
    case "hard": {
      // Like the disk, never keep a commit hint beyond the log it is stored with.
      const last = volume.base.index + volume.entries.length;
      volume.hardState = { ...op.state, commitIndex: Math.min(op.state.commitIndex, last) };
      break;
    }
    case "compact":
      volume.entries = volume.entries.slice(op.upToIndex - volume.base.index);
      volume.base = { index: op.upToIndex, term: op.term };
      break;
    case "reset":
      volume.entries = [];
      volume.base = op.after;
      break;
  }
}

export class MemoryStorage implements Storage {
  private hard: HardState;
  private base: SnapshotMeta;
  private log: Entry[];
  private journal: Op[] = [];
  private closed = false;

  private constructor(private readonly volume: MemoryVolume) {
    this.hard = volume.hardState;
    this.base = volume.base;
    this.log = [...volume.entries];
  }

  /** Opens `volume` (a fresh, empty one by default). Throws ERR_STORAGE_LOCKED when in use. */
  static async open(volume: MemoryVolume = new MemoryVolume()): Promise<OpenedStorage> {
    if (volume.inUse) throw new StorageLockedError("memory volume", process.pid);
    volume.inUse = true;
    // Like recovery on disk: the log restarts right after the newest snapshot.
    const covered = volume.snapshot?.meta;
    if (covered !== undefined && covered.index > volume.base.index) {
      volume.entries = volume.entries.slice(covered.index - volume.base.index);
      volume.base = covered;
    }
    const storage = new MemoryStorage(volume);
    const snapshot = volume.snapshot?.meta ?? { index: 0, term: 0 };
    const entries = volume.entries.map(copyEntry);
    return { storage, hardState: volume.hardState, snapshot, entries, warnings: [] };
  }

  hardState(): HardState {
    return this.hard;
  }

  setHardState(state: HardState): void {
    this.checkOpen();
    assert(state.term >= this.hard.term, "hard state: term went back");
    assert(
      state.term > this.hard.term ||
        this.hard.votedFor === null ||
        state.votedFor === this.hard.votedFor,
      "hard state: vote changed within a term",
    );
    assert(state.commitIndex >= this.hard.commitIndex, "hard state: commit index went back");
    this.hard = state;
    this.journal.push({ type: "hard", state });
  }

  snapshot(): SnapshotMeta {
    return this.volume.snapshot?.meta ?? { index: 0, term: 0 };
  }

  firstIndex(): number {
    return this.base.index + 1;
  }

  lastIndex(): number {
    return this.base.index + this.log.length;
  }

  termAt(index: number): number | undefined {
    if (index === this.base.index) return this.base.term;
    return this.log[index - this.base.index - 1]?.term;
  }

  async entries(from: number, to: number, maxBytes = Number.POSITIVE_INFINITY): Promise<Entry[]> {
    this.checkOpen();
    assert(
      from >= this.firstIndex() && from <= to && to <= this.lastIndex() + 1,
      "read outside the log",
    );
    const out: Entry[] = [];
    let bytes = 0;
    for (let index = from; index < to; index++) {
      const entry = this.log[index - this.base.index - 1]!;
      if (out.length > 0 && bytes + entry.data.length > maxBytes) break;
      bytes += entry.data.length;
      out.push(copyEntry(entry));
    }
    return out;
  }

  append(entries: readonly Entry[]): void {
    this.checkOpen();
    const head = entries[0];
    if (head === undefined) return;
    assert(
      head.index >= this.firstIndex() && head.index <= this.lastIndex() + 1,
      "append leaves a gap",
    );
    assert(
      head.index > this.lastIndex() || head.index > this.hard.commitIndex,
      "append replaces committed entries",
    );
    this.log.length = head.index - this.base.index - 1;
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1, "entries are not contiguous");
      assert(entry.term >= (this.termAt(this.lastIndex()) ?? 0), "terms decrease along the log");
      this.log.push(copyEntry(entry));
    }
    this.journal.push({
      type: "append",
      entries: this.log.slice(head.index - this.base.index - 1),
    });
  }

  truncateFrom(index: number): void {
    this.checkOpen();
    assert(
      index >= this.firstIndex() && index <= this.lastIndex() + 1,
      "truncation outside the log",
    );
    assert(index > this.hard.commitIndex, "truncation removes committed entries");
    this.log.length = index - this.base.index - 1;
    this.journal.push({ type: "truncate", index });
  }

  pendingBytes(): number {
    let bytes = 0;
    for (const op of this.journal) {
      if (op.type === "append") for (const entry of op.entries) bytes += entry.data.length;
    }
    return bytes;
  }

  async sync(): Promise<void> {
    this.checkOpen();
    const journal = this.journal;
    this.journal = [];
    for (const op of journal) applyOp(this.volume, op);
    // Yield once, like a real fsync, so callers cannot depend on synchronous completion.
    await Promise.resolve();
  }

  async saveSnapshot(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    this.checkOpen();
    assert(meta.index <= this.hard.commitIndex, "snapshot of uncommitted entries");
    assert(this.termAt(meta.index) === meta.term, "snapshot term differs from the log's");
    const stored: Uint8Array[] = [];
    let crc = 0;
    let bytes = 0;
    for await (const chunk of chunks) {
      stored.push(chunk.slice());
      crc = crc32(chunk, crc);
      bytes += chunk.length;
    }
    this.volume.snapshot = { meta, chunks: stored, crc, bytes };
  }

  readSnapshot(): SnapshotReader | null {
    this.checkOpen();
    const snapshot = this.volume.snapshot;
    if (snapshot === null) return null;
    return {
      meta: snapshot.meta,
      dataBytes: snapshot.bytes,
      dataCrc32: snapshot.crc,
      async *chunks() {
        for (const chunk of snapshot.chunks) yield chunk.slice();
      },
    };
  }

  async receiveSnapshot(meta: SnapshotMeta): Promise<SnapshotReceiver> {
    this.checkOpen();
    assert(meta.index > this.snapshot().index, "state transfer of a snapshot not newer than ours");
    return new MemoryReceiver(meta, async (chunks, crc, bytes) => {
      this.volume.snapshot = { meta, chunks, crc, bytes };
      this.base = meta;
      this.log = [];
      this.journal.push({ type: "reset", after: meta });
      await this.sync();
    });
  }

  async compact(upToIndex: number): Promise<void> {
    this.checkOpen();
    assert(upToIndex <= this.snapshot().index, "compaction beyond the newest snapshot");
    const upTo = Math.min(upToIndex, this.lastIndex());
    if (upTo < this.firstIndex()) return;
    const term = this.termAt(upTo)!;
    this.log = this.log.slice(upTo - this.base.index);
    this.base = { index: upTo, term };
    this.journal.push({ type: "compact", upToIndex: upTo, term });
    await this.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // The final hard state, after everything else, as the disk writes it at a clean close.
    this.journal.push({ type: "hard", state: this.hard });
    await this.sync();
    this.closed = true;
    this.volume.inUse = false;
  }

  /** Simulates a crash: everything not synced is lost and the volume is free again. */
  crash(): void {
    this.closed = true;
    this.journal = [];
    this.volume.inUse = false;
  }

  private checkOpen(): void {
    assert(!this.closed, "storage used after close");
  }
}

class MemoryReceiver implements SnapshotReceiver {
  private readonly chunks: Uint8Array[] = [];
  private bytes = 0;
  private crc = 0;
  private done = false;

  constructor(
    readonly meta: SnapshotMeta,
    private readonly complete: (chunks: Uint8Array[], crc: number, bytes: number) => Promise<void>,
  ) {}

  get receivedBytes(): number {
    return this.bytes;
  }

  get dataCrc32(): number {
    return this.crc;
  }

  async write(offset: number, chunk: Uint8Array): Promise<number> {
    assert(!this.done, "snapshot receiver used after finish or abort");
    if (offset > this.bytes || offset + chunk.length <= this.bytes) return this.bytes;
    const fresh = chunk.slice(this.bytes - offset);
    this.chunks.push(fresh);
    this.crc = crc32(fresh, this.crc);
    this.bytes += fresh.length;
    return this.bytes;
  }

  async finish(): Promise<void> {
    assert(!this.done, "snapshot receiver finished twice");
    this.done = true;
    await this.complete(this.chunks, this.crc, this.bytes);
  }

  async abort(): Promise<void> {
    this.done = true;
  }
}
