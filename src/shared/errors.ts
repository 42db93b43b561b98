/**
 * The catalogue of errors that cross an API boundary (HTTP, client library, CLI). Each has
 * a stable `code`; callers test `err.code`, never the message. HTTP maps codes to statuses
 * in one table (src/http/error-status.ts) and the CLI maps them to exit codes.
 * Bugs are not here: they are AssertionError (src/shared/assert.ts).
 */

import type { NodeId } from "../protocol/messages.js";

export abstract class ClusterError extends Error {
  abstract readonly code: string;
  override get name(): string {
    return this.constructor.name;
  }
}

/** This node is not the master; `masterHint` is who it believes is. */
export class NotMasterError extends ClusterError {
  readonly code = "ERR_NOT_MASTER";
  constructor(readonly masterHint: NodeId | null) {
    super(`not the master (master hint: ${masterHint ?? "unknown"})`);
  }
}

/** No master is known or reachable right now; retry after `retryAfterMs`. */
export class NoMasterError extends ClusterError {
  readonly code = "ERR_NO_MASTER";
  constructor(
    readonly retryAfterMs = 500,
    detail = "no master is reachable (an election may be under way)",
  ) {
    super(detail);
  }
}

/** The request did not complete within its deadline; it may or may not have taken effect. */
export class TimeoutError extends ClusterError {
  readonly code = "ERR_TIMEOUT";
}

/**
 * A write was proposed but this node lost the master role, or stopped, before learning its
 * fate. It may or may not be applied; retrying with the same idempotency key is safe.
 */
export class IndeterminateError extends ClusterError {
  readonly code = "ERR_INDETERMINATE";
}

/**
 * What an IndeterminateError's message advises. Embedded state machines have no
 * idempotency key of Baton's own: a command of theirs must carry its own to be retried.
 */
export const RETRY_ADVICE =
  "retry only what is safe to apply twice (through the HTTP API: with the same Idempotency-Key)";

/** Too many requests are waiting; retry after `retryAfterMs`. */
export class BusyError extends ClusterError {
  readonly code = "ERR_BUSY";
  constructor(readonly retryAfterMs = 100) {
    super("the master has too many uncommitted requests; retry shortly");
  }
}

/**
 * A write needs a new entry in a table that remembers requests for exactly-once execution
 * (a new idempotency key, or a new client session), and that table holds its limit of
 * entries still inside their window, none of which may be forgotten early. The write was
 * not applied; the same request, with the same key, may be sent again after `retryAfterMs`.
 */
export class TableFullError extends ClusterError {
  readonly code = "ERR_TABLE_FULL";
  constructor(
    readonly table: "sessions" | "idempotency" | "leases",
    readonly retryAfterMs: number,
  ) {
    const what =
      table === "sessions" ? "client sessions" : table === "leases" ? "leases" : "idempotency keys";
    super(
      `the write was not applied: the master holds its limit of ${what}, all too recent to forget`,
    );
  }
}

/**
 * The write would take the store past its quota (`quota`: most keys, or most bytes of keys
 * and values) of `limit`; nothing was applied. Deletes always work at the quota.
 */
export class QuotaExceededError extends ClusterError {
  readonly code = "ERR_QUOTA_EXCEEDED";
  constructor(
    readonly quota: "keys" | "bytes",
    readonly limit: number,
    readonly usage: number | null = null,
  ) {
    const what = quota === "keys" ? `${limit} keys` : `${limit} bytes of keys and values`;
    const flag = quota === "keys" ? "--quota-keys" : "--quota-bytes";
    super(
      `the write was not applied: the store would hold more than its quota of ${what}; ` +
        `delete keys (DELETE /v1/kv/{key}, DELETE /v1/kv?prefix=…) or raise ${flag} on every node`,
    );
  }
}

/** The node is shutting down. */
export class ShuttingDownError extends ClusterError {
  readonly code = "ERR_SHUTTING_DOWN";
  constructor() {
    super("the node is shutting down");
  }
}

/** A request field is invalid; `field` names it. */
export class InvalidInputError extends ClusterError {
  readonly code = "ERR_INVALID_INPUT";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** A request field exceeds its limit; `field` names it and `limit` gives the bound in bytes. */
export class TooLargeError extends ClusterError {
  readonly code = "ERR_TOO_LARGE";
  /** @param limitName what the limit is, when it is not the field's own size limit. */
  constructor(
    readonly field: string,
    readonly limit: number,
    actual?: number,
    limitName?: string,
  ) {
    super(
      `${field} exceeds the limit of ${limit} bytes${limitName === undefined ? "" : ` (${limitName})`}${actual === undefined ? "" : ` (got ${actual})`}`,
    );
  }
}

/** Storage failed (disk full, I/O error, corruption): the node stops rather than guess. */
export class StorageFailedError extends ClusterError {
  readonly code = "ERR_STORAGE_FAILED";
}

/**
 * The request cannot be carried out in the cluster's present state (a switchover to a
 * node that is not reachable, one while another is under way); nothing was changed.
 */
export class ConflictError extends ClusterError {
  readonly code = "ERR_CONFLICT";
}

/** A switchover was started but no new master took over in time; the old one serves on. */
export class SwitchoverFailedError extends ClusterError {
  readonly code = "ERR_SWITCHOVER_FAILED";
}

/**
 * The request carries no bearer token, or one this node does not accept (the node has a
 * tokens file). Nothing was done.
 */
export class UnauthenticatedError extends ClusterError {
  readonly code = "ERR_UNAUTHENTICATED";
}

/** The request's token is valid, but its role does not allow the request. Nothing was done. */
export class ForbiddenError extends ClusterError {
  readonly code = "ERR_FORBIDDEN";
}

/** A lease named by a request is not held: it was never granted, or it ended. */
export class LeaseNotFoundError extends ClusterError {
  readonly code = "ERR_LEASE_NOT_FOUND";
  constructor(readonly leaseId: number) {
    super(`lease ${leaseId} is not held (never granted, revoked or expired)`);
  }
}

/**
 * A watch asked for changes older than the oldest one the node still holds in its watch
 * history; `startRevision` is the oldest revision a watch may start from now.
 */
export class CompactedError extends ClusterError {
  readonly code = "ERR_COMPACTED";
  constructor(
    readonly fromRevision: number,
    readonly startRevision: number,
  ) {
    super(
      `the changes from revision ${fromRevision} are compacted; this node holds changes from revision ${startRevision} on`,
    );
  }
}
