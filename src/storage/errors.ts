/**
 * The errors the storage layer lets cross its API, each with a stable `code` that the
 * runtime, the CLI and the HTTP layer test instead of the message. Every one of them means
 * the node must stop: storage never guesses, never retries a failed fsync and never drops
 * data silently. Messages name the file and, where there is one, the byte offset, and say
 * what an operator should do.
 *
 * This file owns only the classes. It must never decide whether an error is fatal (they
 * all are) nor log anything. When `shared/errors.ts` gains a common base class, these
 * should extend it; the codes stay the same.
 */

/** The operator advice for damage that only a fresh copy from the cluster can repair. */
export const REJOIN_ADVICE =
  "stop this node, wipe its data directory and start it again with --join: it rejoins the cluster through state transfer";

export type StorageErrorCode =
  | "ERR_WAL_CORRUPT"
  | "ERR_WAL_MISSING_SEGMENT"
  | "ERR_SNAPSHOT_CORRUPT"
  | "ERR_HARD_STATE_CORRUPT"
  | "ERR_STORAGE_INCONSISTENT"
  | "ERR_STORAGE_LOCKED"
  | "ERR_DISK_FULL"
  | "ERR_STORAGE_IO"
  | "ERR_STORAGE_CONFIG";

/** Base of every catalogued storage error. Callers test `code`, never the message. */
export abstract class StorageError extends Error {
  abstract readonly code: StorageErrorCode;
  /** The file (or directory) the error is about. */
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.file = file;
  }
}

/**
 * A write-ahead log segment holds a record that fails its checksum or cannot be parsed,
 * somewhere other than a torn tail, or its header is wrong. `offset` is the byte offset
 * of the bad record (or 0 for a bad header) within `file`.
 */
export class WalCorruptError extends StorageError {
  override readonly name = "WalCorruptError";
  readonly code = "ERR_WAL_CORRUPT";

  constructor(
    file: string,
    readonly offset: number,
    readonly detail: string,
  ) {
    super(
      file,
      `write-ahead log corrupt in ${file} at byte ${offset}: ${detail}; ${REJOIN_ADVICE}`,
    );
  }
}

/** The segments do not form one contiguous log: one is missing or they overlap. */
export class WalMissingSegmentError extends StorageError {
  override readonly name = "WalMissingSegmentError";
  readonly code = "ERR_WAL_MISSING_SEGMENT";

  constructor(
    file: string,
    readonly expectedIndex: number,
    readonly detail: string,
  ) {
    super(
      file,
      `write-ahead log incomplete at ${file}: expected the log to continue at index ` +
        `${expectedIndex}, but ${detail}; ${REJOIN_ADVICE}`,
    );
  }
}

/** A snapshot file fails its header check or its checksum. */
export class SnapshotCorruptError extends StorageError {
  override readonly name = "SnapshotCorruptError";
  readonly code = "ERR_SNAPSHOT_CORRUPT";

  constructor(
    file: string,
    readonly offset: number,
    readonly detail: string,
  ) {
    super(file, `snapshot corrupt in ${file} at byte ${offset}: ${detail}; ${REJOIN_ADVICE}`);
  }
}

/** The hard-state file (term, vote, commit index) fails its checks. */
export class HardStateCorruptError extends StorageError {
  override readonly name = "HardStateCorruptError";
  readonly code = "ERR_HARD_STATE_CORRUPT";

  constructor(
    file: string,
    readonly offset: number,
    readonly detail: string,
  ) {
    super(file, `hard state corrupt in ${file} at byte ${offset}: ${detail}; ${REJOIN_ADVICE}`);
  }
}

/**
 * Every file checks out on its own, but together they contradict each other (for
 * example the log holds an entry of a term later than the durable current term, which
 * means the hard-state file was lost or replaced).
 */
export class StorageInconsistentError extends StorageError {
  override readonly name = "StorageInconsistentError";
  readonly code = "ERR_STORAGE_INCONSISTENT";

  constructor(file: string, detail: string) {
    super(file, `storage inconsistent in ${file}: ${detail}; ${REJOIN_ADVICE}`);
  }
}

/** Another live process (or this one) already has the data directory open. */
export class StorageLockedError extends StorageError {
  override readonly name = "StorageLockedError";
  readonly code = "ERR_STORAGE_LOCKED";

  constructor(
    file: string,
    readonly pid: number,
  ) {
    super(
      file,
      `data directory is in use: ${file} is held by process ${pid}; stop that process first ` +
        "or give this node its own data directory (never share one between nodes)",
    );
  }
}

/** The disk is full (ENOSPC, EDQUOT): nothing acknowledged is lost, but the node must stop. */
export class DiskFullError extends StorageError {
  override readonly name = "DiskFullError";
  readonly code = "ERR_DISK_FULL";

  constructor(
    file: string,
    readonly operation: string,
    cause: unknown,
  ) {
    super(
      file,
      `disk full while trying to ${operation} ${file}; the node stops so that it never ` +
        "acknowledges a write it could not make durable. Free space on the disk (or move the " +
        "data directory to a larger one) and restart the node",
      { cause },
    );
  }
}

/**
 * Any other I/O failure (EIO, EROFS, ...). After a failed fsync the state of the page
 * cache is unknown, so the node never retries: it stops, and restart runs recovery.
 */
export class StorageIoError extends StorageError {
  override readonly name = "StorageIoError";
  readonly code = "ERR_STORAGE_IO";

  constructor(
    file: string,
    readonly operation: string,
    readonly errno: string,
    cause: unknown,
  ) {
    super(file, `${errno} while trying to ${operation} ${file}; ${ioAdvice(errno)}`, { cause });
  }
}

/**
 * What to do after an I/O error: most mean the disk is failing, but a path through a file
 * or a directory this user may not write is the node's setting, not the disk.
 */
function ioAdvice(errno: string): string {
  switch (errno) {
    case "ENOTDIR":
      return "part of the path is a file, not a directory: give the node a data directory (--data, dataDir) whose path holds only directories";
    case "EACCES":
    case "EPERM":
      return "permission denied: run the node as the user that owns its data directory, or give it a directory that user may write";
    case "EROFS":
      return "the file system is read-only: remount it read-write, or give the node a data directory on another one, then restart the node";
    default:
      return (
        "an I/O error: the node stops because the disk can no longer be trusted. Check the " +
        "disk and the kernel log, then restart the node; if recovery then reports " +
        "corruption, wipe its data directory and restart it with --join"
      );
  }
}

/** The storage configuration has bad fields; `problems` lists every one of them. */
export class StorageConfigError extends StorageError {
  override readonly name = "StorageConfigError";
  readonly code = "ERR_STORAGE_CONFIG";

  constructor(readonly problems: readonly string[]) {
    super("storage configuration", `bad storage configuration: ${problems.join("; ")}`);
  }
}

/** Whether `error` is a Node.js system error with one of the given errno codes. */
export function hasErrno(error: unknown, ...codes: readonly string[]): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    "code" in error &&
    codes.includes((error as { code: unknown }).code as string)
  );
}

/**
 * Turns a failure of the file system into a catalogued error naming `file`. Catalogued
 * errors and assertion failures pass through unchanged.
 */
export function storageIoError(file: string, operation: string, error: unknown): Error {
  if (error instanceof StorageError) return error;
  if (hasErrno(error, "ENOSPC") || hasErrno(error, "EDQUOT")) {
    return new DiskFullError(file, operation, error);
  }
  if (typeof error === "object" && error !== null && "code" in error) {
    return new StorageIoError(file, operation, String((error as { code: unknown }).code), error);
  }
  if (error instanceof Error) return error;
  return new StorageIoError(file, operation, "EUNKNOWN", error);
}
