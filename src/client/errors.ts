/**
 * The errors only the client library raises, added to the catalogue in src/shared/errors.ts
 * (which stays the single list of server-side codes). Each has a stable `code`; callers test
 * `err.code`, never the message. The "gave up" errors subclass the catalogue's NoMasterError,
 * TimeoutError, BusyError and TableFullError, so they keep those codes and `instanceof`
 * checks, and add what the caller needs to act: which endpoints were tried, the last error,
 * and the idempotency key that makes retrying a write safe.
 */

import {
  BusyError,
  ClusterError,
  IndeterminateError,
  NoMasterError,
  TableFullError,
  TimeoutError,
} from "../shared/errors.js";

/**
 * A conditional write (`ifRevision`, `If-Match`) found the key at another revision. The
 * write was not applied. `currentRevision` is 0 when the key does not exist.
 */
export class PreconditionFailedError extends ClusterError {
  readonly code = "ERR_PRECONDITION_FAILED";
  constructor(
    readonly key: string,
    readonly expectedRevision: number,
    readonly currentRevision: number,
  ) {
    super(
      `key ${JSON.stringify(key)} is at revision ${currentRevision}, not ${expectedRevision}: the write was not applied`,
    );
  }
}

/** One node could not be reached (refused, reset or silent) when it alone was asked. */
export class UnreachableError extends ClusterError {
  readonly code = "ERR_UNREACHABLE";
  constructor(
    readonly endpoint: string,
    detail: string,
  ) {
    super(`${endpoint} did not answer: ${detail}`);
  }
}

/**
 * A node answered with a status or body this client does not understand (a route that
 * does not exist, a malformed JSON body). Retrying would not help, so it is thrown at once.
 */
export class UnexpectedResponseError extends ClusterError {
  readonly code = "ERR_UNEXPECTED_RESPONSE";
  constructor(
    readonly endpoint: string,
    readonly status: number,
    detail: string,
    /** The code the node's JSON error named (ERR_INTERNAL, say), or null if none. */
    readonly serverCode: string | null = null,
  ) {
    super(
      `unexpected answer from ${endpoint} (HTTP ${status}${serverCode === null ? "" : ` ${serverCode}`}): ${detail}`,
    );
  }
}

/**
 * The write's idempotency key was first used for a different write (another key, value or
 * precondition), so the node refused this one (HTTP 422): nothing was applied. Sending it
 * again cannot change that, so it is thrown at once; send the write with a new key.
 */
export class IdempotencyKeyReusedError extends ClusterError {
  readonly code = "ERR_IDEMPOTENCY_KEY_REUSED";
  constructor(
    readonly idempotencyKey: string | null,
    readonly endpoint: string,
  ) {
    const key =
      idempotencyKey === null ? "the idempotency key" : `idempotency key ${idempotencyKey}`;
    super(
      `${key} was first used for a different write, so ${endpoint} did not apply this one; send it with a new key`,
    );
  }
}

/**
 * The client was closed; no further operation starts and pending retries stop. An operation
 * that had made attempts carries their `details` (null otherwise): a write whose attempt the
 * closing cut off may still be applied (`details.mayHaveApplied`), and sending it again, from
 * another client, with `details.idempotencyKey` applies it at most once.
 */
export class ClientClosedError extends ClusterError {
  readonly code = "ERR_CLIENT_CLOSED";
  constructor(readonly details: GiveUpDetails | null = null) {
    super(
      details?.mayHaveApplied === true
        ? `the client is closed; the write may have been applied: retry it with idempotency key ${details.idempotencyKey} to apply it at most once`
        : "the client is closed",
    );
  }
}

/** What an operation did before it gave up; carried by the two "gave up" errors below. */
export interface GiveUpDetails {
  /** Every endpoint an attempt was sent to, in the order first tried. */
  readonly endpointsTried: readonly string[];
  /** How many attempts were made. */
  readonly attemptCount: number;
  /** Milliseconds from the start of the operation to giving up. */
  readonly elapsedMs: number;
  /** A one-line description of the last failure, with the endpoint it came from. */
  readonly lastError: string;
  /** Whether any node answered at all (false: every connection was refused or failed). */
  readonly anyNodeAnswered: boolean;
  /**
   * The idempotency key of a write, else null. When a write may have been applied,
   * retrying it with this key applies it at most once.
   */
  readonly idempotencyKey: string | null;
  /** Whether a write may have been applied by an attempt whose answer was lost. */
  readonly mayHaveApplied: boolean;
}

/** No master could be reached before the deadline (code ERR_NO_MASTER). */
export class NoMasterReachableError extends NoMasterError {
  constructor(
    readonly details: GiveUpDetails,
    retryAfterMs: number,
    message: string,
  ) {
    super(retryAfterMs, message);
  }
}

/** The operation did not complete before its deadline (code ERR_TIMEOUT). */
export class DeadlineExceededError extends TimeoutError {
  constructor(
    readonly details: GiveUpDetails,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A master was reachable, but it refused the operation as overloaded (ERR_BUSY: too many
 * requests in flight) until the client gave up (code ERR_BUSY). Nothing was applied by the
 * refused attempts; `details.mayHaveApplied` tells whether an earlier attempt may have.
 */
export class MasterBusyError extends BusyError {
  constructor(
    readonly details: GiveUpDetails,
    retryAfterMs: number,
    message: string,
  ) {
    super(retryAfterMs);
    this.message = message;
  }
}

/**
 * A master was reachable, but the table the write needed a new entry in (`table`:
 * idempotency keys, client sessions or leases) stayed full until the client gave up (code
 * ERR_TABLE_FULL). Nothing was applied by the refused attempts; `details.mayHaveApplied`
 * tells whether an earlier attempt may have.
 */
export class MasterTableFullError extends TableFullError {
  constructor(
    readonly details: GiveUpDetails,
    table: "sessions" | "idempotency" | "leases",
    retryAfterMs: number,
    message: string,
  ) {
    super(table, retryAfterMs);
    this.message = message;
  }
}

/**
 * A write's attempt may have been applied (its answer was lost), and a later attempt was
 * refused for good (a token the next node does not take, an internal error): the write may
 * or may not be applied (code ERR_INDETERMINATE). `cause` is the refusal; retrying the
 * write with `details.idempotencyKey` applies it at most once. Thrown as the refusal alone,
 * the caller would likely send it again under a new key, and apply it twice.
 */
export class OutcomeUnknownError extends IndeterminateError {
  constructor(
    readonly details: GiveUpDetails,
    refusal: Error,
  ) {
    super(
      `the write may have been applied by an attempt whose answer was lost (${details.lastError}), and the next was refused: ${refusal.message}; retry it with idempotency key ${details.idempotencyKey} to apply it at most once`,
      { cause: refusal },
    );
  }
}
