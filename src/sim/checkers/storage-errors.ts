/**
 * Which storage errors the faults injected into a simulated disk explain. A node stops on
 * a storage error, or refuses to start, as it must when its disk failed; the simulator
 * then restarts it, or wipes it and has the operator replace it. That is right only when a
 * fault it injected struck that process (`SimFileSystem.strikes`, emptied when the
 * process ends) and the error is what the storage code makes of that fault:
 *
 * - an errno the simulated disk made up (an EIO forced or drawn on a write or an fsync, a
 *   read of a damaged range, an ENOSPC past its capacity) reaches the node as the
 *   catalogued error `storageIoError` makes of it, with the errno as its cause:
 *   ERR_DISK_FULL for ENOSPC, ERR_STORAGE_IO for the others;
 * - a read that returned a flipped bit succeeds, and the check that fails names the file
 *   read: a log segment fails with ERR_WAL_CORRUPT, a snapshot with ERR_SNAPSHOT_CORRUPT,
 *   the hard state with ERR_HARD_STATE_CORRUPT, the identity with ERR_STORAGE_INCONSISTENT.
 *   Every record, header and file has a CRC, so a single flipped bit never gets as far as
 *   the checks across files (ERR_WAL_MISSING_SEGMENT, ERR_STORAGE_INCONSISTENT on the
 *   hard state).
 *
 * Any other storage error is a bug of the storage layer. Loose still: where in the file a
 * flipped bit was read is not matched with the offset the error names (a record's start,
 * a trailer's), a flipped byte written over still counts when read, and what the
 * operator's recovery tool struck on a stopped machine counts for the next process.
 */

import type { StorageError, StorageErrorCode } from "../../storage/errors.js";
import type { SimFsStrike } from "../sim-fs.js";

/** Whether one of `strikes` explains `error` (see above). */
export function explainedByStrikes(error: StorageError, strikes: readonly SimFsStrike[]): boolean {
  const causes: unknown[] = [];
  for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) {
    causes.push(cause);
  }
  return strikes.some((strike) => {
    if (strike.error !== null) {
      const errno = (strike.error as { code?: unknown }).code;
      const expected = errno === "ENOSPC" ? "ERR_DISK_FULL" : "ERR_STORAGE_IO";
      return error.code === expected && causes.includes(strike.error);
    }
    return error.file === strike.path && error.code === flipDetectedAs(strike.path);
  });
}

/** The error a flipped bit in the file at `path` is detected as; null for another file. */
export function flipDetectedAs(path: string): StorageErrorCode | null {
  if (path.endsWith(".seg")) return "ERR_WAL_CORRUPT";
  if (path.endsWith(".snap")) return "ERR_SNAPSHOT_CORRUPT";
  if (path.endsWith("/hard-state")) return "ERR_HARD_STATE_CORRUPT";
  if (path.endsWith("/identity")) return "ERR_STORAGE_INCONSISTENT";
  return null;
}

/** The strikes, for a verdict. */
export function describeStrikes(strikes: readonly SimFsStrike[]): string {
  if (strikes.length === 0) return "none struck";
  return strikes
    .map((s) => {
      const what = s.error === null ? "a flipped bit read" : (s.error as { code?: unknown }).code;
      return `${String(what)} in ${s.path}`;
    })
    .join(", ");
}
