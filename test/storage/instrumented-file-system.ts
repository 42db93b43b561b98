/**
 * A file system for tests that wraps the real one: it counts fdatasyncs and directory
 * fsyncs, fails chosen operations with a chosen errno (ENOSPC, EIO) so tests can
 * exercise a full or broken disk without one, and holds chosen operations until the test
 * releases them (a stalled disk), so a test can look at the files between two writes. It
 * must never change what succeeds: an operation either fails as injected or runs on the
 * real file system unchanged, possibly later.
 */

import {
  type FileHandleLike,
  type FileSystem,
  nodeFileSystem,
  type OpenMode,
} from "../../src/storage/file-system.js";

export type FaultOperation = "write" | "datasync" | "open" | "rename" | "syncDir" | "unlink";

export interface Fault {
  readonly operation: FaultOperation;
  /** The fault applies to paths that contain this text. */
  readonly pathIncludes: string;
  readonly errno: string;
  /** Calls of that operation on such paths to let through before failing. @default 0 */
  skip?: number;
  /** For `write`: the bytes that reach the file before the error (a short write). */
  readonly partialBytes?: number;
}

/** An operation held back until the test releases it. */
export interface Hold {
  /** Resolves once a matching operation has started waiting. */
  readonly reached: Promise<void>;
  /** Lets the held operation run (at once when it arrives, if it has not yet). */
  release(): void;
}

interface Waiter {
  readonly operation: FaultOperation;
  readonly pathIncludes: string;
  /** Called when a matching operation arrives; resolves once it may run. */
  readonly arrive: () => Promise<void>;
}

function errnoError(errno: string, operation: string, path: string): Error {
  return Object.assign(new Error(`${errno}: injected failure, ${operation} '${path}'`), {
    code: errno,
  });
}

export class InstrumentedFileSystem implements FileSystem {
  datasyncs = 0;
  dirSyncs = 0;
  writes = 0;
  /** Every mutating operation in order, as "operation path", when `recording` is on. */
  readonly events: string[] = [];
  recording = false;
  private readonly faults: Fault[] = [];
  private readonly holds: Waiter[] = [];
  private readonly completions: Waiter[] = [];

  constructor(private readonly inner: FileSystem = nodeFileSystem) {}

  /** Arms a fault; it fires once, after `skip` matching calls. */
  inject(fault: Fault): void {
    this.faults.push({ ...fault, skip: fault.skip ?? 0 });
  }

  /** Throws the armed fault for this call, if one matches. */
  fault(operation: FaultOperation, path: string): Fault | null {
    const index = this.faults.findIndex(
      (f) => f.operation === operation && path.includes(f.pathIncludes),
    );
    const fault = this.faults[index];
    if (fault === undefined) return null;
    if ((fault.skip ?? 0) > 0) {
      fault.skip = (fault.skip ?? 0) - 1;
      return null;
    }
    this.faults.splice(index, 1);
    return fault;
  }

  /** Holds the next `operation` on a path containing `pathIncludes` until released. */
  hold(operation: FaultOperation, pathIncludes: string): Hold {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.holds.push({
      operation,
      pathIncludes,
      arrive: () => {
        reached();
        return released;
      },
    });
    return { reached: reachedPromise, release };
  }

  /** Resolves once the next `operation` on a path containing `pathIncludes` has completed. */
  completion(operation: FaultOperation, pathIncludes: string): Promise<void> {
    return new Promise((resolve) => {
      this.completions.push({
        operation,
        pathIncludes,
        arrive: async () => resolve(),
      });
    });
  }

  /** Waits while a hold armed for this call is not released. */
  async held(operation: FaultOperation, path: string): Promise<void> {
    const waiter = take(this.holds, operation, path);
    if (waiter !== undefined) await waiter.arrive();
  }

  /** Reports a completed operation to whoever waits for it. */
  completed(operation: FaultOperation, path: string): void {
    void take(this.completions, operation, path)?.arrive();
  }

  record(operation: string, path: string): void {
    if (this.recording) this.events.push(`${operation} ${path}`);
  }

  throwIfFault(operation: FaultOperation, path: string): void {
    const fault = this.fault(operation, path);
    if (fault !== null) throw errnoError(fault.errno, operation, path);
  }

  async open(path: string, mode: OpenMode): Promise<FileHandleLike> {
    await this.held("open", path);
    this.throwIfFault("open", path);
    const handle = new InstrumentedHandle(this, path, await this.inner.open(path, mode));
    this.completed("open", path);
    return handle;
  }

  list(dir: string): Promise<string[]> {
    return this.inner.list(dir);
  }

  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.held("rename", to);
    this.throwIfFault("rename", to);
    await this.inner.rename(from, to);
    this.record("rename", to);
    this.completed("rename", to);
  }

  async unlink(path: string): Promise<void> {
    await this.held("unlink", path);
    this.throwIfFault("unlink", path);
    await this.inner.unlink(path);
    this.record("unlink", path);
    this.completed("unlink", path);
  }

  readSmall(path: string): Promise<Uint8Array | null> {
    return this.inner.readSmall(path);
  }

  async syncDir(dir: string): Promise<void> {
    await this.held("syncDir", dir);
    this.throwIfFault("syncDir", dir);
    this.dirSyncs++;
    await this.inner.syncDir(dir);
    this.completed("syncDir", dir);
  }
}

class InstrumentedHandle implements FileHandleLike {
  constructor(
    private readonly fs: InstrumentedFileSystem,
    private readonly path: string,
    private readonly inner: FileHandleLike,
  ) {}

  read(buffer: Uint8Array, offset: number, length: number, position: number) {
    return this.inner.read(buffer, offset, length, position);
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number) {
    await this.fs.held("write", this.path);
    const fault = this.fs.fault("write", this.path);
    if (fault !== null) {
      const partial = Math.min(fault.partialBytes ?? 0, length);
      if (partial > 0) await this.inner.write(buffer, offset, partial, position);
      throw errnoError(fault.errno, "write", this.path);
    }
    this.fs.writes++;
    this.fs.record("write", this.path);
    const result = await this.inner.write(buffer, offset, length, position);
    this.fs.completed("write", this.path);
    return result;
  }

  async datasync(): Promise<void> {
    await this.fs.held("datasync", this.path);
    this.fs.throwIfFault("datasync", this.path);
    this.fs.datasyncs++;
    await this.inner.datasync();
    this.fs.record("datasync", this.path);
    this.fs.completed("datasync", this.path);
  }

  truncate(length: number): Promise<void> {
    return this.inner.truncate(length);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Removes and returns the first waiter for `operation` on `path`, if any. */
function take(waiters: Waiter[], operation: FaultOperation, path: string): Waiter | undefined {
  const index = waiters.findIndex(
    (w) => w.operation === operation && path.includes(w.pathIncludes),
  );
  return index < 0 ? undefined : waiters.splice(index, 1)[0];
}
