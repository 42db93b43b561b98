/**
 * A simulated file system that is as unkind as a real one is allowed to be, behind the
 * storage layer's `FileSystem` seam, so that the real DiskStorage (write-ahead log, hard
 * state, snapshots, recovery) runs under the simulator's clock and seeded generator.
 *
 * What it promises, and no more (POSIX and Linux behaviour under power loss):
 * - a write reaches the file's contents at once (the page cache) but is durable only once
 *   an fdatasync of that file, called after the write completed, has returned;
 * - a creation, rename or deletion of a name is durable only once an fsync of its
 *   directory has returned (mkdir included: a new directory's own entry lives in its
 *   parent);
 * - on a crash each file keeps its durable contents plus any prefix of its writes since,
 *   the last of them torn at any byte, and each directory keeps any prefix of its changes
 *   since its last fsync; a rename within a directory is atomic;
 * - every operation completes after a delay on the virtual clock (fsyncs slow, sometimes
 *   stalled for seconds), so that a crash can fall between any two of them;
 * - faults on demand or by chance: EIO on a write, fdatasync or directory fsync (after a
 *   failed fdatasync the unsynced writes are in an unknown state, as Linux leaves them),
 *   ENOSPC past a capacity, latent read errors (EIO on reading a damaged range) and bit
 *   flips in stored bytes; each that strikes a process (a flipped bit when it is read) is
 *   recorded, so that a storage error it did not cause can be told apart.
 *
 * A crash (`crash()`) ends a process: operations it started never complete and handles it
 * held are dead. It must never take a real file or a real timer.
 */

import { posix } from "node:path";
import type { Prng } from "../core/prng.js";
import { assert } from "../shared/assert.js";
import type { Clock } from "../shared/clock.js";
import type { FileHandleLike, FileSystem, OpenMode } from "../storage/file-system.js";

/** Timings and fault rates; every delay is in virtual milliseconds. */
export interface SimFsFaults {
  /** Delay of a write, read, open, list, rename or unlink. */
  readonly opMsMax: number;
  /** Delay of an fdatasync or directory fsync, drawn in [min, max]. */
  readonly syncMsMin: number;
  readonly syncMsMax: number;
  /** Chance that one fsync stalls, and for how long at most (a disk that hangs). */
  readonly stallChance: number;
  readonly stallMsMax: number;
  /** Chance that a write, fdatasync or directory fsync fails with EIO. */
  readonly eioChance: number;
  /** Chance that a read of stored bytes fails with EIO (a latent sector error). */
  readonly readErrorChance: number;
  /** Bytes the disk holds; a write that would go beyond fails with ENOSPC. */
  readonly capacityBytes: number;
}

/** A disk that never fails and is fast: what a test that wants no faults asks for. */
export const KIND_DISK: SimFsFaults = Object.freeze({
  opMsMax: 0,
  syncMsMin: 0,
  syncMsMax: 0,
  stallChance: 0,
  stallMsMax: 0,
  eioChance: 0,
  readErrorChance: 0,
  capacityBytes: Number.MAX_SAFE_INTEGER,
});

/** A growable byte array with a length. */
class Bytes {
  buf = new Uint8Array(0);
  length = 0;

  static copy(from: Bytes): Bytes {
    const bytes = new Bytes();
    bytes.buf = from.buf.slice(0, from.length);
    bytes.length = from.length;
    return bytes;
  }

  write(position: number, data: Uint8Array): void {
    const end = position + data.length;
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(end, this.buf.length * 2, 256));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    if (position > this.length) this.buf.fill(0, this.length, position);
    this.buf.set(data, position);
    this.length = Math.max(this.length, end);
  }

  truncate(length: number): void {
    if (length > this.length) this.write(length, new Uint8Array(0));
    if (length < this.length) this.buf.fill(0, length, this.length);
    this.length = length;
  }
}

type FileOp =
  | { readonly kind: "write"; readonly position: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly length: number };

/** A file's contents: what a reader sees now, and what survives a crash. */
class Inode {
  current = new Bytes();
  durable = new Bytes();
  /** Changes since the last fdatasync, in order; `current` is `durable` plus these. */
  pending: FileOp[] = [];
  /** Damaged byte ranges [start, end): reading them fails with EIO. */
  bad: Array<readonly [number, number]> = [];
  /** A bit of it was flipped, or a range made unreadable, at some point. */
  damaged = false;
  /** Offsets of the bytes whose bits were flipped (kept when overwritten: see `strikes`). */
  flips: number[] = [];

  constructor(readonly id: number) {}

  apply(op: FileOp): void {
    this.pending.push(op);
    applyTo(this.current, op);
  }

  /** The first `count` pending changes become durable. */
  makeDurable(count: number): void {
    for (const op of this.pending.splice(0, count)) applyTo(this.durable, op);
  }

  /**
   * A crash: durable contents plus a prefix of the changes since, the last one torn (with
   * `loseAll`, none of them: the unkindest power loss).
   */
  crash(prng: Prng, loseAll = false): { torn: boolean } {
    const keep = loseAll ? -1 : prng.int(0, this.pending.length);
    let torn = false;
    for (const [i, op] of this.pending.entries()) {
      if (i > keep || (i === keep && op.kind !== "write")) break;
      if (i === keep && op.kind === "write") {
        const bytes = prng.int(0, op.data.length);
        if (bytes > 0 && bytes < op.data.length) torn = true;
        applyTo(this.durable, { ...op, data: op.data.subarray(0, bytes) });
        break;
      }
      applyTo(this.durable, op);
    }
    this.pending = [];
    this.current = Bytes.copy(this.durable);
    return { torn };
  }
}

function applyTo(bytes: Bytes, op: FileOp): void {
  if (op.kind === "write") bytes.write(op.position, op.data);
  else bytes.truncate(op.length);
}

type Node =
  | { readonly kind: "file"; readonly inode: Inode }
  | { readonly kind: "dir"; readonly dir: Dir };

type DirOp =
  | { readonly kind: "link"; readonly name: string; readonly node: Node }
  | { readonly kind: "unlink"; readonly name: string }
  | { readonly kind: "rename"; readonly from: string; readonly to: string };

class Dir {
  entries = new Map<string, Node>();
  durable = new Map<string, Node>();
  pending: DirOp[] = [];

  apply(op: DirOp): void {
    this.pending.push(op);
    applyDirOp(this.entries, op);
  }

  makeDurable(count: number): void {
    for (const op of this.pending.splice(0, count)) applyDirOp(this.durable, op);
  }

  crash(prng: Prng, loseAll = false): void {
    const keep = loseAll ? 0 : prng.int(0, this.pending.length);
    this.makeDurable(keep);
    this.pending = [];
    this.entries = new Map(this.durable);
  }
}

function applyDirOp(entries: Map<string, Node>, op: DirOp): void {
  if (op.kind === "link") {
    entries.set(op.name, op.node);
  } else if (op.kind === "unlink") {
    entries.delete(op.name);
  } else {
    const node = entries.get(op.from);
    if (node === undefined) return; // its creation did not survive
    entries.delete(op.from);
    entries.set(op.to, node);
  }
}

function errno(code: string, operation: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${operation} '${path}' (simulated)`), { code });
}

/**
 * An injected fault that struck the process using the disk: an operation that failed with
 * an errno the disk made up (forced, by chance, a read of a damaged range, a full disk),
 * or a read that returned a flipped bit.
 */
export interface SimFsStrike {
  readonly path: string;
  /** The error the operation failed with; null for a read of a flipped bit (it succeeds). */
  readonly error: Error | null;
}

/** Counters, for tests and the simulator's report. */
export interface SimFsStats {
  writes: number;
  datasyncs: number;
  dirSyncs: number;
  crashes: number;
  tornWrites: number;
  injectedErrors: number;
  bitFlips: number;
}

export class SimFileSystem implements FileSystem {
  private readonly root = new Dir();
  private readonly inodes: Inode[] = [];
  private readonly dirs: Dir[] = [this.root];
  private nextInode = 0;
  /** Bumped by each crash: completions of an older process are dropped. */
  private epoch = 0;
  /** Operations of the next calls that must fail, by kind, with an errno (tests). */
  private readonly forced: Array<{ op: string; code: string }> = [];
  private clock: Clock;
  faults: SimFsFaults;
  /** Called before each operation completes, with its kind and path (crash points). */
  onOperation: ((op: string, path: string) => void) | null = null;
  /**
   * The injected faults that struck since the process using the disk started (emptied by
   * `crash` and `processCrash`), in order: what a storage error of that process may be
   * blamed on. A flipped byte written over still counts when read (it errs on the side of
   * blaming the flip).
   */
  readonly strikes: SimFsStrike[] = [];
  readonly stats: SimFsStats = {
    writes: 0,
    datasyncs: 0,
    dirSyncs: 0,
    crashes: 0,
    tornWrites: 0,
    injectedErrors: 0,
    bitFlips: 0,
  };

  constructor(
    private readonly prng: Prng,
    clock: Clock,
    faults: SimFsFaults = KIND_DISK,
  ) {
    this.clock = clock;
    this.faults = faults;
  }

  /**
   * The process that used this disk died: operations under way never complete, handles
   * die, and every file and directory keeps what the rules above let survive. `clock` is
   * the clock of the process that uses the disk next.
   */
  crash(clock: Clock = this.clock, options: { readonly loseAllUnsynced?: boolean } = {}): void {
    const loseAll = options.loseAllUnsynced === true;
    this.epoch++;
    this.stats.crashes++;
    this.clock = clock;
    this.forced.length = 0;
    this.strikes.length = 0;
    for (const inode of this.inodes) {
      if (inode.crash(this.prng, loseAll).torn) this.stats.tornWrites++;
    }
    for (const dir of this.dirs) dir.crash(this.prng, loseAll);
    this.forgetUnreachable();
  }

  /**
   * The process that used this disk died, but not the machine: operations under way never
   * complete and its handles die, while every write and name change it made stays as it
   * is, in the page cache: readable by the next process, and not durable until synced (a
   * later `crash()`, a power loss, may still take it back).
   */
  processCrash(clock: Clock = this.clock): void {
    this.epoch++;
    this.clock = clock;
    this.forced.length = 0;
    this.strikes.length = 0;
  }

  /**
   * After a crash no handle is alive, so a file or directory that no directory names any
   * more is gone for good: forget it, so that a long run's memory and work stay bounded.
   */
  private forgetUnreachable(): void {
    const inodes = new Set<Inode>();
    const dirs: Dir[] = [];
    const walk = (dir: Dir): void => {
      dirs.push(dir);
      for (const node of dir.entries.values()) {
        if (node.kind === "file") inodes.add(node.inode);
        else walk(node.dir);
      }
    };
    walk(this.root);
    this.inodes.splice(0, this.inodes.length, ...[...inodes].sort((a, b) => a.id - b.id));
    this.dirs.splice(0, this.dirs.length, ...dirs);
  }

  /** Forgets every failure `failNext` armed that has not struck yet (the faults are over). */
  disarm(): void {
    this.forced.length = 0;
  }

  /** The next operation of kind `op` ("write", "datasync", "syncDir", "read", …) fails with `code`. */
  failNext(op: string, code: string): void {
    this.forced.push({ op, code });
  }

  /**
   * Flips one bit of a stored byte of `path` (chosen by the generator when `offset` is
   * not given), in what a reader sees and in what survives: silent corruption on the disk.
   * Returns the offset, or null when the file is absent or empty.
   */
  flipBit(path: string, offset?: number): number | null {
    const node = this.lookup(path);
    if (node?.kind !== "file") return null;
    const { inode } = node;
    const length = Math.min(inode.current.length, inode.durable.length);
    if (length === 0) return null;
    const at = offset ?? this.prng.int(0, length - 1);
    assert(at >= 0 && at < length, `sim fs: flip at ${at} outside ${path}`);
    const mask = 1 << this.prng.int(0, 7);
    inode.current.buf[at]! ^= mask;
    inode.durable.buf[at]! ^= mask;
    inode.damaged = true;
    inode.flips.push(at);
    this.stats.bitFlips++;
    return at;
  }

  /**
   * Whether a file that was damaged (a bit flipped, a range made unreadable) is still on
   * the disk under some name. Damage that recovery never read stays latent, and a later
   * read may find it: until the file is gone, the disk is not a healthy one.
   */
  holdsDamage(): boolean {
    const walk = (d: Dir): boolean =>
      [...d.entries.values()].some((node) =>
        node.kind === "file" ? node.inode.damaged : walk(node.dir),
      );
    return walk(this.root);
  }

  /** Makes bytes [start, end) of `path` unreadable (EIO), as a latent sector error does. */
  damage(path: string, start: number, end: number): void {
    const node = this.lookup(path);
    assert(node?.kind === "file", `sim fs: no file ${path} to damage`);
    node.inode.bad.push([start, end]);
    node.inode.damaged = true;
  }

  /** Paths of every file now visible, sorted (tests and the nemesis pick from them). */
  files(dir = "/"): string[] {
    const out: string[] = [];
    const walk = (path: string, d: Dir): void => {
      for (const [name, node] of [...d.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
        const child = posix.join(path, name);
        if (node.kind === "file") out.push(child);
        else walk(child, node.dir);
      }
    };
    const start = this.lookup(dir);
    if (start?.kind === "dir") walk(posix.resolve(dir), start.dir);
    return out;
  }

  /** Bytes of `path` as a reader sees them now (tests). */
  contents(path: string): Uint8Array | null {
    const node = this.lookup(path);
    return node?.kind === "file"
      ? node.inode.current.buf.slice(0, node.inode.current.length)
      : null;
  }

  // ------------------------------------------------------------------ FileSystem

  open(path: string, mode: OpenMode): Promise<FileHandleLike> {
    return this.complete("open", path, this.faults.opMsMax, () => {
      const { dir, name } = this.parent(path, "open");
      const existing = dir.entries.get(name);
      if (existing?.kind === "dir") throw errno("EISDIR", "open", path);
      if (mode === "r" || mode === "r+") {
        if (existing === undefined) throw errno("ENOENT", "open", path);
        return new SimFileHandle(this, existing.inode, path, mode === "r+", this.epoch);
      }
      if (mode === "wx" && existing !== undefined) throw errno("EEXIST", "open", path);
      if (existing !== undefined) {
        existing.inode.apply({ kind: "truncate", length: 0 });
        return new SimFileHandle(this, existing.inode, path, true, this.epoch);
      }
      const inode = new Inode(this.nextInode++);
      this.inodes.push(inode);
      dir.apply({ kind: "link", name, node: { kind: "file", inode } });
      return new SimFileHandle(this, inode, path, true, this.epoch);
    });
  }

  list(dir: string): Promise<string[]> {
    return this.complete("list", dir, this.faults.opMsMax, () => {
      const node = this.lookup(dir);
      if (node === undefined) return [];
      if (node.kind !== "dir") throw errno("ENOTDIR", "list", dir);
      // readdir(3) promises no order: a seeded shuffle keeps callers from relying on one.
      const names = [...node.dir.entries.keys()].sort();
      for (let i = names.length - 1; i > 0; i--) {
        const j = this.prng.int(0, i);
        [names[i], names[j]] = [names[j]!, names[i]!];
      }
      return names;
    });
  }

  mkdir(dir: string): Promise<void> {
    return this.complete("mkdir", dir, this.faults.opMsMax, () => {
      let current = this.root;
      for (const name of components(dir)) {
        const node = current.entries.get(name);
        if (node === undefined) {
          const created = new Dir();
          this.dirs.push(created);
          current.apply({ kind: "link", name, node: { kind: "dir", dir: created } });
          current = created;
        } else if (node.kind === "dir") {
          current = node.dir;
        } else {
          throw errno("EEXIST", "mkdir", dir);
        }
      }
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.complete("rename", to, this.faults.opMsMax, () => {
      const source = this.parent(from, "rename");
      const target = this.parent(to, "rename");
      const node = source.dir.entries.get(source.name);
      if (node === undefined) throw errno("ENOENT", "rename", from);
      if (source.dir === target.dir) {
        source.dir.apply({ kind: "rename", from: source.name, to: target.name });
      } else {
        target.dir.apply({ kind: "link", name: target.name, node });
        source.dir.apply({ kind: "unlink", name: source.name });
      }
    });
  }

  unlink(path: string): Promise<void> {
    return this.complete("unlink", path, this.faults.opMsMax, () => {
      const { dir, name } = this.parent(path, "unlink");
      const node = dir.entries.get(name);
      if (node === undefined) throw errno("ENOENT", "unlink", path);
      if (node.kind === "dir") throw errno("EISDIR", "unlink", path);
      dir.apply({ kind: "unlink", name });
    });
  }

  readSmall(path: string): Promise<Uint8Array | null> {
    return this.complete("read", path, this.faults.opMsMax, () => {
      const node = this.lookup(path);
      if (node === undefined) return null;
      if (node.kind === "dir") throw errno("EISDIR", "read", path);
      this.checkReadable(node.inode, path, 0, node.inode.current.length);
      return node.inode.current.buf.slice(0, node.inode.current.length);
    });
  }

  syncDir(dir: string): Promise<void> {
    const node = this.lookup(dir);
    const target = node?.kind === "dir" ? node.dir : null;
    const count = target?.pending.length ?? 0;
    return this.complete("syncDir", dir, this.syncMs(), () => {
      if (target === null) throw errno("ENOENT", "fsync", dir);
      this.maybeFail("syncDir", dir);
      target.makeDurable(Math.min(count, target.pending.length));
      this.stats.dirSyncs++;
    });
  }

  // ------------------------------------------------------------------ internals

  /** Runs `action` after `ms` of virtual time, unless the process crashed meanwhile. */
  complete<T>(op: string, path: string, ms: number, action: () => T): Promise<T> {
    const epoch = this.epoch;
    const delay = ms <= 0 ? 0 : this.prng.int(0, ms);
    return new Promise<T>((resolve, reject) => {
      this.clock.setTimeout(() => {
        if (epoch !== this.epoch) return; // the process died: this never returns
        this.onOperation?.(op, path);
        if (epoch !== this.epoch) return; // the hook crashed it
        try {
          resolve(action());
        } catch (error) {
          reject(error);
        }
      }, delay);
    });
  }

  alive(epoch: number): boolean {
    return epoch === this.epoch;
  }

  syncMs(): number {
    const { syncMsMin, syncMsMax, stallChance, stallMsMax } = this.faults;
    if (this.prng.chance(stallChance))
      return this.prng.int(syncMsMax, Math.max(syncMsMax, stallMsMax));
    return this.prng.int(syncMsMin, Math.max(syncMsMin, syncMsMax));
  }

  /** Fails the operation when a failure was forced for it, or by chance. */
  maybeFail(op: string, path: string): void {
    const forced = this.forced.findIndex((f) => f.op === op);
    if (forced >= 0) {
      const { code } = this.forced.splice(forced, 1)[0]!;
      throw this.strike(errno(code, op, path), path);
    }
    const chance = op === "read" ? this.faults.readErrorChance : this.faults.eioChance;
    if (op !== "open" && this.prng.chance(chance)) {
      throw this.strike(errno("EIO", op, path), path);
    }
  }

  /** Counts an injected error that struck `path` and returns it, to be thrown. */
  strike(error: Error, path: string): Error {
    this.stats.injectedErrors++;
    this.strikes.push({ path, error });
    return error;
  }

  checkReadable(inode: Inode, path: string, start: number, end: number): void {
    for (const [from, to] of inode.bad) {
      if (from < end && start < to) throw this.strike(errno("EIO", "read", path), path);
    }
    this.maybeFail("read", path);
    if (inode.flips.some((at) => start <= at && at < end)) this.strikes.push({ path, error: null });
  }

  /**
   * A failed fdatasync of the first `count` changes: some prefix of them reached the disk,
   * the rest stay visible to readers but will never be written (their pages are clean).
   */
  loseWriteback(inode: Inode, count: number): void {
    const reached = this.prng.int(0, count);
    inode.makeDurable(reached);
    inode.pending.splice(0, count - reached);
  }

  usedBytes(): number {
    let bytes = 0;
    for (const inode of this.inodes) bytes += inode.current.length;
    return bytes;
  }

  private lookup(path: string): Node | undefined {
    let node: Node = { kind: "dir", dir: this.root };
    for (const name of components(path)) {
      if (node.kind !== "dir") return undefined;
      const next: Node | undefined = node.dir.entries.get(name);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  private parent(path: string, operation: string): { dir: Dir; name: string } {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw errno("EISDIR", operation, path);
    const node = this.lookup(`/${parts.join("/")}`);
    if (node?.kind !== "dir") throw errno("ENOENT", operation, path);
    return { dir: node.dir, name };
  }
}

function components(path: string): string[] {
  return posix
    .resolve("/", path)
    .split("/")
    .filter((part) => part.length > 0);
}

class SimFileHandle implements FileHandleLike {
  private closed = false;

  constructor(
    private readonly fs: SimFileSystem,
    private readonly inode: Inode,
    private readonly path: string,
    private readonly writable: boolean,
    private readonly epoch: number,
  ) {}

  read(buffer: Uint8Array, offset: number, length: number, position: number) {
    return this.run("read", this.fs.faults.opMsMax, () => {
      const bytes = this.inode.current;
      const end = Math.min(bytes.length, position + length);
      if (end <= position) return { bytesRead: 0 };
      this.fs.checkReadable(this.inode, this.path, position, end);
      buffer.set(bytes.buf.subarray(position, end), offset);
      return { bytesRead: end - position };
    });
  }

  write(buffer: Uint8Array, offset: number, length: number, position: number) {
    const data = buffer.slice(offset, offset + length);
    return this.run("write", this.fs.faults.opMsMax, () => {
      if (!this.writable) throw errno("EBADF", "write", this.path);
      this.fs.maybeFail("write", this.path);
      const grows = Math.max(0, position + data.length - this.inode.current.length);
      const { capacityBytes } = this.fs.faults;
      if (capacityBytes < KIND_DISK.capacityBytes && this.fs.usedBytes() + grows > capacityBytes) {
        throw this.fs.strike(errno("ENOSPC", "write", this.path), this.path);
      }
      this.inode.apply({ kind: "write", position, data });
      this.fs.stats.writes++;
      return { bytesWritten: data.length };
    });
  }

  datasync(): Promise<void> {
    const count = this.inode.pending.length;
    return this.run("datasync", this.fs.syncMs(), () => {
      try {
        this.fs.maybeFail("datasync", this.path);
      } catch (error) {
        // Linux marks the dirty pages clean after a failed writeback: what they held may
        // or may not be on the disk, and a later fdatasync will not write them again.
        this.fs.loseWriteback(this.inode, Math.min(count, this.inode.pending.length));
        throw error;
      }
      this.inode.makeDurable(Math.min(count, this.inode.pending.length));
      this.fs.stats.datasyncs++;
    });
  }

  truncate(length: number): Promise<void> {
    return this.run("truncate", this.fs.faults.opMsMax, () => {
      if (!this.writable) throw errno("EBADF", "truncate", this.path);
      this.inode.apply({ kind: "truncate", length });
    });
  }

  size(): Promise<number> {
    return this.run("size", this.fs.faults.opMsMax, () => this.inode.current.length);
  }

  close(): Promise<void> {
    return this.run("close", 0, () => {
      this.closed = true;
    });
  }

  private run<T>(op: string, ms: number, action: () => T): Promise<T> {
    if (this.closed) return Promise.reject(errno("EBADF", op, this.path));
    if (!this.fs.alive(this.epoch)) return new Promise<T>(() => {}); // a dead process's handle
    return this.fs.complete(op, this.path, ms, action);
  }
}
