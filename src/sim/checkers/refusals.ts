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
