/**
 * The CLI's exit codes and the one place that turns an error into an exit code and a
 * one-line message that says what to do next. Catalogued errors are recognised by their
 * `code`, never by their message or class, so that errors crossing module copies still map.
 */

import { errorStatus } from "../../http/error-status.js";
import type { CliIo } from "./cli-io.js";

export const ExitCode = {
  /** The command did what was asked. */
  ok: 0,
  /** A key was not found, a precondition failed, or the cluster is unhealthy. */
  failed: 1,
  /** The command line or the input was wrong. */
  usage: 2,
  /** No master or no node could be reached in time. */
  unavailable: 3,
  /** The cluster refused the request: no token, an unknown one, or one without the role. */
  denied: 4,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What to do when no node answered because nothing listens (or none answered in time). */
export const START_HINT =
  "is the cluster running? start one with `baton demo`, or point --endpoints (or BATON_ENDPOINTS) at it";

interface ErrorLike {
  readonly code?: unknown;
  readonly message?: unknown;
  readonly details?: {
    readonly anyNodeAnswered?: boolean;
    readonly endpointsTried?: readonly string[];
    readonly lastError?: string;
  };
  readonly key?: unknown;
  readonly currentRevision?: unknown;
}

/** The errors by which a TLS client refuses a node's certificate (OpenSSL's codes). */
const UNTRUSTED_CERTIFICATE =
  /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT|CERT_SIGNATURE_FAILURE/;

/**
 * What to do when no node answered for a reason other than nothing listening: the nodes'
 * certificate is not trusted, or an http:// endpoint met a node that speaks HTTPS (it
 * closes the connection). Null when the last error says neither.
 */
export function connectionHint(
  lastError: string | undefined,
  tried: readonly string[],
): string | null {
  if (lastError === undefined) return null;
  if (/ERR_TLS_CERT_ALTNAME_INVALID/.test(lastError)) {
    return `the node's certificate does not name the host in its URL (${lastError}): reach it by a name or address its certificate lists (baton certs node --host …)`;
  }
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(lastError)) {
    return `the node's certificate is not valid now (${lastError}): issue the nodes new certificates (baton certs node … --force), or check this machine's clock`;
  }
  if (UNTRUSTED_CERTIFICATE.test(lastError)) {
    return `the node's certificate is not one this command trusts (${lastError}): give the cluster's CA certificate with --ca <file> (or BATON_CA)`;
  }
  const plain = tried.some((endpoint) => endpoint.startsWith("http://"));
  if (plain && /other side closed|UND_ERR_SOCKET|ECONNRESET/.test(lastError)) {
    return `the node closed the connection without an answer (${lastError}): if the nodes serve HTTPS, give their URLs as https://… (with --ca <file> or BATON_CA)`;
  }
  return null;
}

/** Writes "baton: <what happened>: <what to do>" to stderr and returns the exit code. */
export function reportError(io: CliIo, error: unknown): ExitCode {
  const [code, message] = describe(error);
  io.stderr.write(`baton: ${message}\n`);
  return code;
}

function describe(error: unknown): [ExitCode, string] {
  const e = (typeof error === "object" && error !== null ? error : {}) as ErrorLike;
  const message = inCliWords(typeof e.message === "string" ? e.message : String(error));
  switch (e.code) {
    case "ERR_NO_MASTER":
      if (e.details?.anyNodeAnswered === false) {
        const tried = e.details.endpointsTried?.join(", ") ?? "the endpoints";
        const hint = connectionHint(e.details.lastError, e.details.endpointsTried ?? []);
        return [ExitCode.unavailable, `no node answered at ${tried}: ${hint ?? START_HINT}`];
      }
      return [
        ExitCode.unavailable,
        `the cluster has no master (${e.details?.lastError ?? message}): an election may be under way or most nodes are down; check \`baton status\` and retry`,
      ];
    case "ERR_TIMEOUT":
      return [
        ExitCode.unavailable,
        `${message}: check \`baton status\`, or allow more time with --timeout`,
      ];
    case "ERR_UNREACHABLE":
      return [ExitCode.unavailable, `${message}: ${START_HINT}`];
    case "ERR_BUSY":
    case "ERR_TABLE_FULL":
    case "ERR_SHUTTING_DOWN":
    case "ERR_INDETERMINATE":
      return [ExitCode.unavailable, withCliAdvice(message, e.code)];
    case "ERR_PRECONDITION_FAILED": {
      const key = typeof e.key === "string" ? e.key : "the key";
      const advice = `read it with \`baton get ${shellWord(key)}\` and retry with --if-revision ${String(e.currentRevision)}`;
      return [ExitCode.failed, withCliAdvice(message, "ERR_PRECONDITION_FAILED", advice)];
    }
    case "ERR_QUOTA_EXCEEDED":
      return [ExitCode.failed, message];
    case "ERR_LEASE_NOT_FOUND":
    case "ERR_COMPACTED":
    case "ERR_SWITCHOVER_FAILED":
      return [ExitCode.failed, withCliAdvice(message, e.code)];
    case "ERR_INVALID_INPUT":
    case "ERR_TOO_LARGE":
      return [ExitCode.usage, `invalid input: ${message}`];
    case REFUSED:
      return [ExitCode.failed, message];
    case "ERR_UNAUTHENTICATED":
    case "ERR_FORBIDDEN":
      // The node's message already says what to do (which token, which role).
      return [ExitCode.denied, message];
    case "ERR_UNEXPECTED_RESPONSE":
      return [ExitCode.failed, `${message}: is --endpoints pointing at Baton nodes?`];
    default:
      return [ExitCode.failed, message];
  }
}

/**
 * A field of a request as the command line gave it, for the node's ERR_INVALID_INPUT
 * answers that name the field: `peerAddress` was given as `--peer-address`.
 */
export interface GivenField {
  /** The flag ("--peer-address") or argument ("the ID argument") it came from. */
  readonly given: string;
  /** The value as given, shown after the flag; absent for one the message shows anyway. */
  readonly value?: string;
  /**
   * What to do when the node refuses a well-formed value of this field (an id already a
   * member, or not one): such a refusal is exit 1, not bad usage. Absent for a field the
   * node finds fault with only when it is malformed.
   */
  readonly refused?: string;
}

/** The code of a request the node refused although it was well formed: exit 1. */
const REFUSED = "ERR_REFUSED_INPUT";

/**
 * `error` in the terms of the command line when it is the node's ERR_INVALID_INPUT for one
 * of `fields`: the flag or argument the user gave instead of the JSON field's name, and
 * what to do with the command instead of the HTTP API's advice. Anything else as it is.
 */
export function inCommandTerms(
  error: unknown,
  fields: Readonly<Record<string, GivenField>>,
): unknown {
  const e = (typeof error === "object" && error !== null ? error : {}) as ErrorLike & {
    readonly field?: unknown;
  };
  if (e.code !== "ERR_INVALID_INPUT" || typeof e.field !== "string") return error;
  const field = Object.hasOwn(fields, e.field) ? fields[e.field] : undefined;
  if (field === undefined || typeof e.message !== "string") return error;
  let detail = withoutAdvice(e.message, e.code);
  if (detail.startsWith(`${e.field}: `)) detail = detail.slice(e.field.length + 2);
  if (field.refused !== undefined) {
    return { code: REFUSED, message: `${detail}; nothing was changed; ${field.refused}` };
  }
  const value = field.value === undefined ? "" : ` ${shellWord(field.value)}`;
  return {
    code: "ERR_INVALID_INPUT",
    message: `${field.given}${value}: ${detail}; correct ${field.given} and run the command again`,
  };
}

/**
 * What to do, in the terms of the command line, for the codes whose advice in a node's
 * answer names the HTTP API (a header, a route, a request field). A node's message ends
 * with its code's advice, also when the client quotes it as a give-up's last error.
 */
const MAY_HAVE_APPLIED =
  "the write may or may not have taken effect: read it back (`baton get`) before running the command again";

const CLI_ADVICE: Readonly<Record<string, string>> = {
  ERR_NOT_MASTER: "run the command again shortly (it finds the master itself)",
  ERR_NO_MASTER: "run the command again shortly; a fail-over usually completes in under a second",
  ERR_TIMEOUT: MAY_HAVE_APPLIED,
  ERR_INDETERMINATE: MAY_HAVE_APPLIED,
  ERR_BUSY: "it is too busy for this now; run the command again shortly",
  ERR_TABLE_FULL:
    "run the command again shortly; more writes arrive than the exactly-once window holds",
  ERR_QUOTA_EXCEEDED:
    "delete keys, or start the nodes with a larger --quota-keys or --quota-bytes, then run the command again",
  ERR_SHUTTING_DOWN: "run the command again; it goes to another node",
  ERR_INVALID_INPUT: "correct it and run the command again",
  ERR_CONFLICT: "nothing was changed; check `baton status` and act on what it shows",
  ERR_SWITCHOVER_FAILED:
    "the master serves on; check with `baton status` that the chosen backup is up and caught up, then run the command again",
  ERR_LEASE_NOT_FOUND: "grant a new one with `baton lease grant SECONDS` and use its id",
  ERR_COMPACTED: "list the keys again (`baton list`) and watch from a later revision",
  ERR_PRECONDITION_FAILED: "read the key for its current revision and retry with --if-revision",
  // The CLI makes a new key for every command it runs.
  ERR_IDEMPOTENCY_KEY_REUSED: "run the command again; it sends a new key",
};

/**
 * `message` with every node's advice that names the HTTP API said in the CLI's terms
 * instead. Advice is found as the catalogue spells it, never by guessing at wording.
 */
export function inCliWords(message: string): string {
  let words = message;
  for (const [code, advice] of Object.entries(CLI_ADVICE)) {
    words = words.replaceAll(`; ${errorStatus(code).advice}`, `; ${advice}`);
  }
  return words;
}

/**
 * `message` ending with `advice` (by default the CLI's for `code`), said once: a node's
 * advice inside it, as in a give-up's "(…; last error: …)", is left out there.
 */
function withCliAdvice(message: string, code: string, advice?: string): string {
  // What inCliWords made of the node's advice, or the node's own for a code it leaves.
  const given = CLI_ADVICE[code] ?? errorStatus(code).advice;
  return `${message.replaceAll(`; ${given}`, "")}; ${advice ?? given}`;
}

/** `message` without the advice the node's HTTP API appends to errors of `code`. */
function withoutAdvice(message: string, code: string): string {
  const advice = `; ${errorStatus(code).advice}`;
  return message.endsWith(advice) ? message.slice(0, -advice.length) : message;
}

/** Quotes `word` for a shell when it holds anything but safe characters. */
export function shellWord(word: string): string {
  return /^[\w./:@%+=-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
