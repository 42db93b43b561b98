/**
 * The lock file that keeps two processes from opening the same data directory: a `LOCK`
 * file created exclusively, holding the owner's process id. Two nodes writing one log
 * would corrupt it beyond repair, so this is checked before anything else is read.
 *
 * A lock left by a process that no longer runs (after a crash or SIGKILL) is taken over
 * and reported. The check is advisory and local to one machine: it protects against an
 * operator's mistake, it is not a distributed lock, and it must never be relied on for
 * anything between nodes. Two processes taking over the same stale lock at the same
 * instant is a race it does not close.
 */

import { join, resolve } from "node:path";
import { rethrowIfBug } from "../shared/assert.js";
import { hasErrno, StorageLockedError } from "./errors.js";
import { closeQuietly, type FileSystem, io, writeFully } from "./file-system.js";

export const lockFileName = "LOCK";

/**
 * The process that takes a lock, and what it can tell of others: this process by default.
 * The simulator runs several simulated nodes, and every restart of one, in a single
 * process, each with a host of its own.
 */
export interface LockHost {
  /** The process id written into the lock file. */
  readonly pid: number;
  /** Whether process `pid` still runs. */
  isRunning(pid: number): boolean;
  /** Directories this process holds, so a second open inside one process fails too. */
  readonly held: Set<string>;
}

/** This process. */
export const processLockHost: LockHost = {
  pid: process.pid,
  isRunning(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      // EPERM: the process exists but belongs to someone else, which still means "running".
      return hasErrno(error, "EPERM");
    }
  },
  held: new Set<string>(),
};

async function createExclusively(fs: FileSystem, path: string, pid: number): Promise<boolean> {
  let handle = null;
  try {
    handle = await fs.open(path, "wx");
  } catch (error) {
    if (hasErrno(error, "EEXIST")) return false;
    return io(path, "create", () => Promise.reject(error));
  }
  try {
    await writeFully(handle, path, Buffer.from(`${pid}\n`), 0);
  } finally {
    await closeQuietly(handle);
  }
  return true;
}

async function ownerOf(fs: FileSystem, path: string): Promise<number | null> {
  const bytes = await io(path, "read", () => fs.readSmall(path));
  if (bytes === null) return null;
  const pid = Number(Buffer.from(bytes).toString("latin1").trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

export class DirLock {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly key: string,
    private readonly fs: FileSystem,
    private readonly host: LockHost,
  ) {}

  /**
   * Takes the lock on `dir` (which must exist). Throws ERR_STORAGE_LOCKED naming the owner
   * when a running process holds it; returns a warning when it took over a stale lock.
   */
  static async acquire(
    dir: string,
    fs: FileSystem,
    host: LockHost = processLockHost,
  ): Promise<{ lock: DirLock; warning: string | null }> {
    const path = join(dir, lockFileName);
    const key = resolve(dir);
    if (host.held.has(key)) throw new StorageLockedError(path, host.pid);
    let warning: string | null = null;
    if (!(await createExclusively(fs, path, host.pid))) {
      const owner = await ownerOf(fs, path);
      if (owner !== null && owner !== host.pid && host.isRunning(owner)) {
        throw new StorageLockedError(path, owner);
      }
      await io(path, "delete", () =>
        fs.unlink(path).catch((e: unknown) => {
          if (!hasErrno(e, "ENOENT")) throw e;
        }),
      );
      if (!(await createExclusively(fs, path, host.pid))) {
        throw new StorageLockedError(path, (await ownerOf(fs, path)) ?? 0);
      }
      warning = `took over ${path}, left by process ${owner ?? "unknown"} which no longer runs`;
    }
    host.held.add(key);
    return { lock: new DirLock(path, key, fs, host), warning };
  }

  /** Releases the lock; later calls do nothing. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.host.held.delete(this.key);
    try {
      await this.fs.unlink(this.path);
    } catch (error) {
      // A lock file that cannot be removed is stale once this process exits; nothing to do.
      rethrowIfBug(error);
    }
  }
}
