/**
 * The narrow slice of the file system that storage uses, behind an interface so that
 * tests can count fsyncs and inject failures (a full disk, an EIO on fdatasync) without
 * a real broken disk. `nodeFileSystem` is the real thing, on `fs.promises`.
 *
 * Every helper here translates a failure into a catalogued error that names the file.
 * This layer must never retry a failed write or fsync: after a failed fsync the kernel
 * may have dropped the dirty pages, so a retry that "succeeds" would be a lie.
 */

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { rethrowIfBug } from "../shared/assert.js";
import { makeDirectory } from "../shared/make-directory.js";
import { hasErrno, storageIoError } from "./errors.js";

/** An open file: positional reads and writes, fdatasync, truncation. */
export interface FileHandleLike {
  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  write(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }>;
  /** fdatasync(2): data and the metadata needed to read it back (the size) are durable. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/** Opening modes as in fopen(3): "w+" creates or replaces and allows reading back. */
export type OpenMode = "r" | "r+" | "wx" | "w" | "w+";

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandleLike>;
  /** Names in a directory; an empty list when it does not exist. */
  list(dir: string): Promise<string[]>;
  mkdir(dir: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Whole small file (lock and hard-state files), or null when it does not exist. */
  readSmall(path: string): Promise<Uint8Array | null>;
  /** fsync(2) on a directory: makes creations, renames and deletions in it durable. */
  syncDir(dir: string): Promise<void>;
}

/**
 * Writes up to this size go to the page cache synchronously: a small write costs less
 * than the two thread hand-offs of an asynchronous one, and every write of the log is
 * followed by an fdatasync that waits anyway. Larger ones stay off the event loop.
 */
const SYNC_WRITE_BYTES_MAX = 64 * 1024;

class NodeFileHandle implements FileHandleLike {
  /** fdatasync calls in flight, which the handle's own close() does not know of. */
  private readonly syncing = new Set<Promise<void>>();

  constructor(private readonly handle: fsp.FileHandle) {}

  read(buffer: Uint8Array, offset: number, length: number, position: number) {
    return this.handle.read(buffer, offset, length, position);
  }

  write(buffer: Uint8Array, offset: number, length: number, position: number) {
    if (length > SYNC_WRITE_BYTES_MAX) return this.handle.write(buffer, offset, length, position);
    try {
      const bytesWritten = fs.writeSync(this.handle.fd, buffer, offset, length, position);
      return Promise.resolve({ bytesWritten });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  datasync(): Promise<void> {
    // The callback API: one thread hand-off, without the promise API's extra bookkeeping.
    const done = new Promise<void>((resolve, reject) => {
      fs.fdatasync(this.handle.fd, (error) => (error === null ? resolve() : reject(error)));
    });
    this.syncing.add(done);
    const forget = () => this.syncing.delete(done);
    done.then(forget, forget);
    return done;
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  async close(): Promise<void> {
    // Never close the descriptor under an fdatasync: the number could be reused meanwhile.
    await Promise.allSettled([...this.syncing]);
    return this.handle.close();
  }
}

/** The real file system. */
export const nodeFileSystem: FileSystem = {
  async open(path, mode) {
    // Readable by the node's user alone: the files hold every key and value in clear.
    return new NodeFileHandle(await fsp.open(path, mode, 0o600));
  },
  async list(dir) {
    try {
      return await fsp.readdir(dir);
    } catch (error) {
      if (hasErrno(error, "ENOENT")) return [];
      throw error;
    }
  },
  async mkdir(dir) {
    // One level at a time (see makeDirectory); only ever at start-up, so synchronously.
    makeDirectory(dir, 0o700);
  },
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  async readSmall(path) {
    try {
      return await fsp.readFile(path);
    } catch (error) {
      if (hasErrno(error, "ENOENT")) return null;
      throw error;
    }
  },
  async syncDir(dir) {
    const handle = await fsp.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/**
 * Creates `dir` (and any missing ancestors) and makes the new entries durable: a
 * directory's entry lives in its parent, and like any creation it survives a power loss
 * only once the parent is fsynced. The parent of `dir` is synced even when `dir` existed
 * (a directory made by a process that crashed before syncing it looks present but is not
 * durable), except when this process may not open that parent (EACCES, EPERM): a data
 * directory prepared by an administrator inside a directory only root may list, made
 * durable by whoever made it. Further ancestors are synced only when this call created
 * them. Throws ERR_DISK_FULL or ERR_STORAGE_IO naming the directory.
 */
export async function createDirDurably(fs: FileSystem, dir: string): Promise<void> {
  const target = resolve(dir);
  const existed = await existsQuietly(fs, target);
  const created = [target];
  for (let at = dirname(target); at !== dirname(at); at = dirname(at)) {
    if (await existsQuietly(fs, at)) break;
    created.push(at);
  }
  await io(dir, "create directory", () => fs.mkdir(dir));
  for (const path of created.reverse()) {
    const parent = dirname(path);
    try {
      await fs.syncDir(parent);
    } catch (error) {
      const notOurs = path === target && existed && hasErrno(error, "EACCES", "EPERM");
      if (!notOurs) throw storageIoError(parent, "fsync directory", error);
    }
  }
}

/** Whether `path` exists; true when that cannot be told (its parent is unreadable). */
async function existsQuietly(fs: FileSystem, path: string): Promise<boolean> {
  try {
    return (await fs.list(dirname(path))).includes(basename(path));
  } catch (error) {
    rethrowIfBug(error);
    return true;
  }
}

/**
 * Runs one file-system operation and turns its failure into a catalogued error naming
 * `file` (ERR_DISK_FULL for ENOSPC, ERR_STORAGE_IO otherwise).
 */
export async function io<T>(file: string, operation: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw storageIoError(file, operation, error);
  }
}

/** Writes all of `bytes` at `position`, looping over short writes. */
export async function writeFully(
  handle: FileHandleLike,
  file: string,
  bytes: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await io(file, "write", () =>
      handle.write(bytes, done, bytes.length - done, position + done),
    );
    if (bytesWritten === 0) {
      // A regular file never accepts zero bytes without an error; treat it as a full disk.
      throw storageIoError(
        file,
        "write",
        Object.assign(new Error("short write"), { code: "ENOSPC" }),
      );
    }
    done += bytesWritten;
  }
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
export async function readFully(
  handle: FileHandleLike,
  file: string,
  buffer: Uint8Array,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await io(file, "read", () =>
      handle.read(buffer, done, length - done, position + done),
    );
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Closes a handle on a path that is being abandoned; a failure to close changes nothing. */
export async function closeQuietly(handle: FileHandleLike | null): Promise<void> {
  if (handle === null) return;
  try {
    await handle.close();
  } catch (error) {
    // The handle is being abandoned after an earlier error; that error is what matters.
    rethrowIfBug(error);
  }
}
