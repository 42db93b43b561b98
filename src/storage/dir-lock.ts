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

import { readFileSync } from "node:fs";
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
  /**
   * What tells process `pid` from a later process given the same id (the machine's boot
   * and the process's start), or null when the host cannot say: written into the lock
   * beside the pid, and compared before a running `pid` counts as the owner.
   */
  startStamp?(pid: number): string | null;
  /** Directories this process holds, so a second open inside one process fails too. */
  readonly held: Set<string>;
}

/**
 * This process. On Linux a lock also names the boot (`/proc/sys/kernel/random/boot_id`)
 * and the owner's start time (`/proc/<pid>/stat`, field 22): after a crash or a power loss
 * the owner's pid is often given to another process (a kernel thread after a reboot), and
 * a lock naming only the pid then kept the node from starting until someone removed it.
 */
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
  startStamp(pid) {
    try {
      const boot = readFileSync("/proc/sys/kernel/random/boot_id", "latin1").trim();
      const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
      // The command name, in parentheses, may hold spaces: fields count from after it.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const startTicks = fields[19];
      return boot !== "" && startTicks !== undefined && /^\d+$/.test(startTicks)
        ? `${boot}/${startTicks}`
        : null;
    } catch {
      return null; // not Linux, or no such process: the pid alone decides
    }
  },
  held: new Set<string>(),
};

async function createExclusively(
  fs: FileSystem,
  path: string,
  pid: number,
  stamp: string | null,
): Promise<boolean> {
  let handle = null;
  try {
    handle = await fs.open(path, "wx");
  } catch (error) {
    if (hasErrno(error, "EEXIST")) return false;
    return io(path, "create", () => Promise.reject(error));
  }
  try {
    await writeFully(handle, path, Buffer.from(`${pid}\n${stamp === null ? "" : `${stamp}\n`}`), 0);
  } finally {
    await closeQuietly(handle);
  }
  return true;
}

/** The owner a lock names: its pid, and its start stamp when it was written with one. */
async function ownerOf(
  fs: FileSystem,
  path: string,
): Promise<{ readonly pid: number; readonly stamp: string | null } | null> {
  const bytes = await io(path, "read", () => fs.readSmall(path));
  if (bytes === null) return null;
  const [pidLine, stampLine] = Buffer.from(bytes).toString("latin1").split("\n");
  const pid = Number(pidLine?.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  const stamp = stampLine?.trim() ?? "";
  return { pid, stamp: stamp === "" ? null : stamp };
}

/**
 * Whether the lock's owner runs: its pid is alive and, when both the lock and the host can
 * say when it started, it is the same process, not a later one given the same pid.
 */
function ownerRuns(host: LockHost, owner: { pid: number; stamp: string | null }): boolean {
  if (!host.isRunning(owner.pid)) return false;
  if (owner.stamp === null) return true;
  const now = host.startStamp?.(owner.pid) ?? null;
  return now === null || now === owner.stamp;
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
    const stamp = host.startStamp?.(host.pid) ?? null;
    if (!(await createExclusively(fs, path, host.pid, stamp))) {
      const owner = await ownerOf(fs, path);
      if (owner !== null && owner.pid !== host.pid && ownerRuns(host, owner)) {
        throw new StorageLockedError(path, owner.pid);
      }
      await io(path, "delete", () =>
        fs.unlink(path).catch((e: unknown) => {
          if (!hasErrno(e, "ENOENT")) throw e;
        }),
      );
      if (!(await createExclusively(fs, path, host.pid, stamp))) {
        throw new StorageLockedError(path, (await ownerOf(fs, path))?.pid ?? 0);
      }
      warning = `took over ${path}, left by process ${owner?.pid ?? "unknown"} which no longer runs`;
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
