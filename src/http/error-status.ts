/**
 * The one table that maps every error code the HTTP API can answer with to its status, and
 * the functions that turn a catalogued error (src/shared/errors.ts), a failed key-value
 * result or an HTTP-layer problem into the JSON body every error answer has:
 * `{"error": "<what went wrong and what to do>", "code": "ERR_...", ...details}`.
 *
 * Codes are a stable contract (clients test `code`, never the message), so a code is only
 * ever added here, never renamed or given another status. Anything not in the catalogue is
 * a bug or an unexpected failure: it is answered 500 and flagged so the caller logs it.
 */

import type { FastifyReply } from "fastify";
import type { KvResult } from "../kv/index.js";
import {
  BusyError,
  ClusterError,
  CompactedError,
  InvalidInputError,
  LeaseNotFoundError,
  NoMasterError,
  NotMasterError,
  QuotaExceededError,
  TableFullError,
  TooLargeError,
} from "../shared/errors.js";
import { WRONG_ROLE_ADVICE } from "../shared/health.js";

/** How an error code is answered. */
export interface ErrorStatus {
  /** The HTTP status code. */
  readonly status: number;
  /** Whether the answer carries `Retry-After`: the request may succeed if sent again later. */
  readonly retry: boolean;
  /** What the client should do, appended to the message so that every answer says it. */
  readonly advice: string;
}

const RETRY = "retry after the number of seconds in Retry-After";

/**
 * Every code the HTTP API answers with. The first group comes from the error catalogue
 * (thrown by the node), the second from key-value results, the third from this layer.
 */
export const ERROR_STATUS: Readonly<Record<string, ErrorStatus>> = Object.freeze({
  ERR_NOT_MASTER: {
    status: 503,
    retry: true,
    advice: `send the request to the master (GET /v1/status names it), or ${RETRY}`,
  },
  ERR_NO_MASTER: {
    status: 503,
    retry: true,
    advice: `${RETRY}; a fail-over usually completes in under a second`,
  },
  ERR_TIMEOUT: {
    status: 503,
    retry: true,
    advice: `a write may or may not have taken effect; ${RETRY}, with the same Idempotency-Key`,
  },
  ERR_INDETERMINATE: {
    status: 503,
    retry: true,
    advice: `the write may or may not have taken effect; ${RETRY}, with the same Idempotency-Key`,
  },
  // Also the answer of a node whose watch or event-stream places are all taken, which
  // says nothing of the master: the advice names neither.
  ERR_BUSY: { status: 503, retry: true, advice: `it is too busy for this now; ${RETRY}` },
  ERR_TABLE_FULL: {
    status: 503,
    retry: true,
    advice: `${RETRY}, with the same Idempotency-Key; more writes arrive than the exactly-once window holds`,
  },
  ERR_QUOTA_EXCEEDED: {
    status: 507,
    retry: false,
    advice:
      "resend once there is room; GET /metrics shows baton_kv_keys and baton_kv_bytes against baton_kv_quota_keys and baton_kv_quota_bytes",
  },
  ERR_SHUTTING_DOWN: {
    status: 503,
    retry: true,
    advice: `send the request to another node, or ${RETRY}`,
  },
  ERR_STORAGE_FAILED: {
    status: 503,
    retry: true,
    advice: "this node is stopping; send the request to another node",
  },
  ERR_INVALID_INPUT: { status: 400, retry: false, advice: "correct the named field and resend" },
  ERR_CONFLICT: {
    status: 409,
    retry: false,
    advice: "nothing was changed; read GET /v1/status and act on what it shows",
  },
  ERR_SWITCHOVER_FAILED: {
    status: 503,
    retry: true,
    advice: `the master serves on; check that the chosen backup is up and caught up, or ${RETRY}`,
  },
  ERR_TOO_LARGE: { status: 413, retry: false, advice: "send at most the limit" },
  ERR_UNAUTHENTICATED: {
    status: 401,
    retry: false,
    advice:
      "send Authorization: Bearer <token> with a token made by `baton certs token` " +
      "(the CLI takes --token, --token-file or BATON_TOKEN)",
  },
  ERR_FORBIDDEN: {
    status: 403,
    retry: false,
    // Also the browser guard's answer on a node without tokens, where a token's role is
    // beside the point: the message before it says what is allowed.
    advice: "nothing was done (roles: read < readwrite < admin)",
  },

  ERR_LEASE_NOT_FOUND: {
    status: 404,
    retry: false,
    advice: "grant a new lease with POST /v1/leases and use its id",
  },
  ERR_COMPACTED: {
    status: 410,
    retry: false,
    advice:
      "read the keys again with GET /v1/kv?prefix=… and watch from the revision that answer gives, plus 1",
  },
  ERR_PRECONDITION_FAILED: {
    status: 412,
    retry: false,
    advice: 'read the key for its current revision and resend with If-Match: "<revision>"',
  },
  ERR_NOT_FOUND: {
    status: 404,
    retry: false,
    advice: "the key was never written, or was deleted",
  },
  ERR_SESSION_STALE: {
    status: 409,
    retry: false,
    advice: "this request number was already answered; do not resend it",
  },
  ERR_SESSION_EXPIRED: {
    status: 409,
    retry: false,
    advice: "the outcome is unknown; open a new session and read before writing again",
  },
  ERR_IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    retry: false,
    advice: "use a new Idempotency-Key for a different request",
  },

  ERR_NO_ROUTE: {
    status: 404,
    retry: false,
    advice:
      "the API serves /v1/kv/{key}, /v1/kv?prefix=, /v1/txn, /v1/leases, /v1/watch, /v1/status, " +
      "/v1/members, /v1/switchover, /v1/events, /v1/snapshot, /v1/faults (when enabled), " +
      "/health, /health/master, /health/backup and /metrics, and the dashboard at /",
  },
  ERR_METHOD_NOT_ALLOWED: {
    status: 405,
    retry: false,
    advice: "use one of the methods in the Allow header",
  },
  ERR_REQUEST_TIMEOUT: {
    status: 408,
    retry: false,
    advice: "send the whole request, headers and body, without pausing; the connection is closed",
  },
  ERR_WRONG_ROLE: { status: 503, retry: false, advice: WRONG_ROLE_ADVICE },
  ERR_DASHBOARD_MISSING: {
    status: 503,
    retry: false,
    advice:
      "its files are copied into dist/dashboard by `npm run build`: build the project " +
      "(or install the package, which ships them) and restart the node; the API works without them",
  },
  ERR_FAULTS_DISABLED: {
    status: 403,
    retry: false,
    advice:
      "start the node with --allow-fault-injection (baton demo does) to kill, pause or " +
      "partition it on purpose",
  },
  ERR_FAULTS_LOOPBACK_ONLY: {
    status: 403,
    retry: false,
    advice:
      "send it from the node's machine (its dashboard opened there, curl on 127.0.0.1, or an SSH tunnel)",
  },
  ERR_INTERNAL: {
    status: 500,
    retry: false,
    advice: "this is a bug in Baton and has been logged; retrying may not help",
  },
});

/** The JSON body of every error answer. */
export interface ErrorBody {
  readonly error: string;
  readonly code: string;
  readonly [detail: string]: unknown;
}

/** A fully described error answer, ready to send. */
export interface ErrorAnswer {
  readonly status: number;
  /** The `Retry-After` value in whole seconds (at least 1), or null for none. */
  readonly retryAfterSeconds: number | null;
  readonly body: ErrorBody;
  /** True when the error is not in the catalogue: a bug or an unexpected failure to log. */
  readonly unexpected: boolean;
}

/**
 * An invalid field with a numeric bound, such as a key longer than `keyBytesMax`. It is an
 * `InvalidInputError` (400, ERR_INVALID_INPUT) whose answer also names the limit.
 */
export class InputLimitError extends InvalidInputError {
  constructor(
    field: string,
    message: string,
    readonly limit: number,
  ) {
    super(field, message);
  }
}

/** Whole seconds for `Retry-After` from milliseconds, rounded up and never below 1. */
export function retryAfterSeconds(retryAfterMs: number): number {
  if (!(retryAfterMs > 1000)) return 1;
  return Math.ceil(retryAfterMs / 1000);
}

/** The status entry for `code`; unknown codes are answered as internal errors. */
export function errorStatus(code: string): ErrorStatus {
  return ERROR_STATUS[code] ?? (ERROR_STATUS.ERR_INTERNAL as ErrorStatus);
}

/** Builds the answer for `code` with `message` and extra body fields. */
export function errorAnswer(
  code: string,
  message: string,
  details: Readonly<Record<string, unknown>> = {},
  retryAfterMs = 1000,
): ErrorAnswer {
  const entry = errorStatus(code);
  return {
    status: entry.status,
    retryAfterSeconds: entry.retry ? retryAfterSeconds(retryAfterMs) : null,
    body: { error: `${message}; ${entry.advice}`, code, ...details },
    unexpected: false,
  };
}

/**
 * Describes any thrown value. Catalogued errors keep their code and gain their details
 * (`field`, `limit`, `master`); anything else becomes ERR_INTERNAL with `unexpected` set,
 * and its message is not shown, since it may hold internals the client has no use for.
 */
export function describeError(error: unknown): ErrorAnswer {
  if (!(error instanceof ClusterError) || ERROR_STATUS[error.code] === undefined) {
    return { ...errorAnswer("ERR_INTERNAL", "internal error"), unexpected: true };
  }
  return errorAnswer(error.code, error.message, errorDetails(error), retryAfterMsOf(error));
}

function errorDetails(error: ClusterError): Readonly<Record<string, unknown>> {
  if (error instanceof InputLimitError) return { field: error.field, limit: error.limit };
  if (error instanceof InvalidInputError) return { field: error.field };
  if (error instanceof TooLargeError) return { field: error.field, limit: error.limit };
  if (error instanceof NotMasterError) return { master: error.masterHint };
  if (error instanceof LeaseNotFoundError) return { field: "lease", lease: error.leaseId };
  if (error instanceof CompactedError) {
    return { field: "fromRevision", startRevision: error.startRevision };
  }
  if (error instanceof TableFullError) {
    return { table: error.table, retryAfterMs: error.retryAfterMs };
  }
  // Retry-After counts whole seconds, at least 1: a node that knows a shorter wait (a
  // fail-over's next master, usually within a few hundred ms) says it in the body too,
  // where the client library reads it first.
  if (error instanceof NoMasterError || error instanceof BusyError) {
    return { retryAfterMs: error.retryAfterMs };
  }
  if (error instanceof QuotaExceededError) {
    const details = { quota: error.quota, limit: error.limit };
    return error.usage === null ? details : { ...details, usage: error.usage };
  }
  return {};
}

function retryAfterMsOf(error: ClusterError): number {
  if (
    error instanceof NoMasterError ||
    error instanceof BusyError ||
    error instanceof TableFullError
  ) {
    return error.retryAfterMs;
  }
  return 1000;
}

/** The request field each invalid-command reason is about. */
const INVALID_FIELDS: Readonly<Record<string, string>> = {
  key_invalid: "key",
  key_too_long: "key",
  value_too_large: "value",
  if_revision_invalid: "If-Match",
  idempotency_key_invalid: "Idempotency-Key",
  session_invalid: "session",
  lease_invalid: "lease",
  txn_invalid: "txn",
  malformed: "request",
};

/**
 * Describes a key-value result that is not `ok`, for the request on `key`; `limits`, the
 * store's, names the limit a value too large broke (`limit`, as every 413 does).
 */
export function describeKvFailure(
  result: Extract<KvResult, { ok: false }>,
  key: string,
  limits?: { readonly valueBytesMax: number },
): ErrorAnswer {
  switch (result.code) {
    case "precondition_failed":
      return errorAnswer(
        "ERR_PRECONDITION_FAILED",
        result.currentRevision === 0
          ? "the key does not exist, so its revision does not match"
          : `the key is at revision ${result.currentRevision}, not the one given`,
        { key, currentRevision: result.currentRevision },
      );
    case "not_found":
      return notFoundAnswer(key);
    case "session_stale":
      return errorAnswer("ERR_SESSION_STALE", "delayed duplicate request", {
        lastSeq: result.lastSeq,
      });
    case "session_expired":
      return errorAnswer("ERR_SESSION_EXPIRED", "the client session expired");
    case "idempotency_key_reused":
      return errorAnswer(
        "ERR_IDEMPOTENCY_KEY_REUSED",
        "the Idempotency-Key was first used with a different request",
      );
    case "invalid_command": {
      const field = INVALID_FIELDS[result.reason] ?? "request";
      if (result.reason === "value_too_large") {
        const limit = limits === undefined ? {} : { limit: limits.valueBytesMax };
        return errorAnswer("ERR_TOO_LARGE", result.message, { field, ...limit });
      }
      return errorAnswer("ERR_INVALID_INPUT", result.message, { field });
    }
    case "table_full":
      return describeError(new TableFullError(result.table, result.retryAfterMs));
    case "lease_not_found":
      return describeError(new LeaseNotFoundError(result.leaseId));
    case "quota_exceeded":
      return describeError(new QuotaExceededError(result.quota, result.limit));
  }
}

/** The answer for a key that has no value. Built once per call: it names the key. */
export function notFoundAnswer(key: string): ErrorAnswer {
  return errorAnswer("ERR_NOT_FOUND", "key not found", { key });
}

/** Sends `answer`, with `Retry-After` when it has one. */
export function sendErrorAnswer(reply: FastifyReply, answer: ErrorAnswer): FastifyReply {
  reply.code(answer.status);
  if (answer.retryAfterSeconds !== null) reply.header("retry-after", answer.retryAfterSeconds);
  return reply.send(answer.body);
}
