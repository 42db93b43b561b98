/**
 * What a node may answer a request with besides a result: one of the API's own errors
 * (src/shared/errors.ts: no master, a timeout, busy, shutting down, a storage failure…),
 * which a client waits out or reports. Anything else (a TypeError, a RangeError, a plain
 * Error) is a bug on the request's path (forwarding, read barriers, switchovers, member
 * changes), even when the client would reach the master anyway by trying another node.
 * An AssertionError is the node's own invariant and is reported as itself.
 */

import { AssertionError } from "../../shared/assert.js";
import { ClusterError } from "../../shared/errors.js";

/**
 * Null when `error` is a refusal a node may give; otherwise the error that fails the run,
 * naming `what` was asked.
 */
export function unexpectedRefusal(what: string, error: unknown): Error | null {
  if (error instanceof ClusterError) return null;
  if (error instanceof AssertionError) return error;
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new Error(
    `${what}: the node refused with an error that is not one of the API's (${text})`,
    {
      cause: error,
    },
  );
}

/**
 * The refusals of a write that say it was not applied (docs/embedding.md's error table):
 * never proposed (busy, too large, the node stopped or stopping, no master reached in
 * time) or overtaken by a new master before it committed (ERR_NO_MASTER). A client may
 * send such a write again as a new request; a refusal of this kind for a write that some
 * master applied is a bug. ERR_INDETERMINATE and ERR_TIMEOUT say nothing either way.
 */
const NOT_APPLIED: ReadonlySet<string> = new Set([
  "ERR_BUSY",
  "ERR_TOO_LARGE",
  "ERR_SHUTTING_DOWN",
  "ERR_STORAGE_FAILED",
  "ERR_NO_MASTER",
  "ERR_NOT_MASTER",
]);

/** Whether `error` says its write was not applied (see NOT_APPLIED). */
export function notApplied(error: unknown): boolean {
  return error instanceof ClusterError && NOT_APPLIED.has(error.code);
}
