/**
 * What a node may answer a request with besides a result: one of the refusals that say the
 * cluster cannot serve it now (no master, not the master, a timeout, busy, shutting down,
 * a storage failure, an outcome unknown), which a client waits out or reports, and for
 * some requests a few more that the request itself explains (`expected`: a member change
 * that conflicts with one in progress, a switchover to a node that is not a voter). Any
 * other error is a bug on the request's path (forwarding, read barriers, switchovers,
 * member changes), even when the client would reach the master anyway by trying another
 * node: a TypeError, a plain Error, and the API's own errors that no well-formed request
 * of that kind earns (ERR_INVALID_INPUT for a proposal a backup forwards, say). An
 * AssertionError is the node's own invariant and is reported as itself.
 */

import { AssertionError } from "../../shared/assert.js";
import { ClusterError } from "../../shared/errors.js";

/** The refusals any request may get while the cluster cannot serve it. */
const TRANSIENT: ReadonlySet<string> = new Set([
  "ERR_NOT_MASTER",
  "ERR_NO_MASTER",
  "ERR_TIMEOUT",
  "ERR_INDETERMINATE",
  "ERR_BUSY",
  "ERR_SHUTTING_DOWN",
  "ERR_STORAGE_FAILED",
]);

/** What a member change may be refused with besides: the request explains these. */
export const MEMBER_CHANGE_REFUSALS = ["ERR_CONFLICT", "ERR_INVALID_INPUT"] as const;

/** What a switchover to a random member may be refused with besides. */
export const SWITCHOVER_REFUSALS = [
  "ERR_CONFLICT",
  "ERR_INVALID_INPUT",
  "ERR_SWITCHOVER_FAILED",
] as const;

/**
 * Null when `error` is a refusal a node may give to what was asked (the transient ones,
 * and the codes in `expected`); otherwise the error that fails the run, naming `what`.
 */
export function unexpectedRefusal(
  what: string,
  error: unknown,
  expected: readonly string[] = [],
): Error | null {
  if (error instanceof ClusterError) {
    if (TRANSIENT.has(error.code) || expected.includes(error.code)) return null;
    return new Error(
      `${what}: the node refused with ${error.code}, which no such request earns (${error.message})`,
      { cause: error },
    );
  }
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
