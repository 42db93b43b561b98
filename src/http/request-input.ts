/**
 * Reading a key-value request: the key from the path, the write preconditions and the
 * idempotency key from the headers, `stale` from the query, and the JSON schemas fastify
 * checks those headers and queries against. Every bad input becomes an `InvalidInputError`
 * that names the field (and `InputLimitError` when there is a bound), so that the client
 * is told exactly what to fix. Nothing here talks to the node.
 *
 * Keys: the key is everything after `/v1/kv/`, percent-decoded. A `/` may be sent as is or
 * as `%2F`, and both name the same key. Clients normalise `.` and `..` path segments and
 * some merge `//`, so keys holding such segments must percent-encode their dots (`%2E`).
 */

import type { KvLimits } from "../kv/index.js";
import { InvalidInputError } from "../shared/errors.js";
import { InputLimitError } from "./error-status.js";
import type { KvWriteOptions } from "./node-api.js";

/** The route every key-value request uses; the wildcard is the key. */
export const KV_ROUTE = "/v1/kv/*";

export interface KvParams {
  readonly "*": string;
}

export interface StaleQuery {
  readonly stale?: string;
}

/**
 * The JSON schemas for each key-value method. Header names are lower case because Node
 * gives them so. Duplicated headers arrive joined by ", " and fail the patterns, which is
 * right: a request with two preconditions or two idempotency keys is ambiguous.
 */
export function kvSchemas(limits: KvLimits) {
  const idempotencyKey = {
    type: "string",
    pattern: `^[\\x21-\\x7e]{1,${limits.idempotencyKeyBytesMax}}$`,
  };
  const ifMatch = { type: "string", pattern: '^(?:"[0-9]{1,16}"|[0-9]{1,16})$' };
  return {
    get: {
      querystring: {
        type: "object",
        properties: { stale: { type: "string", enum: ["true", "false", "1", "0", ""] } },
      },
    },
    put: {
      querystring: {
        type: "object",
        properties: { lease: { type: "string", pattern: "^[1-9][0-9]{0,15}$" } },
      },
      headers: {
        type: "object",
        properties: {
          "if-match": ifMatch,
          "if-none-match": { type: "string", pattern: "^\\*$" },
          "idempotency-key": idempotencyKey,
        },
      },
    },
    delete: {
      headers: {
        type: "object",
        properties: {
          "if-match": ifMatch,
          "if-none-match": { type: "string", pattern: "^\\*$" },
          "idempotency-key": idempotencyKey,
        },
      },
    },
  } as const;
}

/** What to tell the client about each field a schema checks, keyed by schema property. */
const FIELD_MESSAGES: Readonly<Record<string, readonly [field: string, message: string]>> = {
  "if-match": [
    "If-Match",
    'must be one revision as a quoted decimal, such as If-Match: "42" ("0": the key must ' +
      "not exist); weak tags, lists and * are not supported",
  ],
  "if-none-match": [
    "If-None-Match",
    'only If-None-Match: * is supported on writes (the key must not exist); use If-Match: "n" ' +
      "to compare with a revision",
  ],
  "idempotency-key": [
    "Idempotency-Key",
    "must be 1 to 255 visible ASCII characters (no spaces or control characters), sent once",
  ],
  stale: ["stale", "must be true or false"],
  lease: ["lease", "must be a lease id (an integer >= 1) from POST /v1/leases"],
};

/**
 * Turns a fastify validation failure into an `InvalidInputError` naming the field. `path`
 * is the failing property as Ajv reports it ("/if-match"); `context` is "headers" or
 * "querystring".
 */
export function validationError(path: string, context: string, limits: KvLimits) {
  const property = path.startsWith("/") ? path.slice(1) : path;
  const known = FIELD_MESSAGES[property];
  if (known === undefined) return new InvalidInputError(property || context, "is not valid");
  const [field, message] = known;
  if (field === "Idempotency-Key") {
    const limit = limits.idempotencyKeyBytesMax;
    return new InputLimitError(field, message.replace("255", String(limit)), limit);
  }
  return new InvalidInputError(field, message);
}

/** Where `text` has its first control character (C0, DEL or C1), or -1: no key holds one. */
export function controlCharacterAt(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x20 || (unit >= 0x7f && unit <= 0x9f)) return i;
  }
  return -1;
}

/**
 * The key named by the path, checked against `limits.keyBytesMax`. A key must be 1 to
 * `keyBytesMax` bytes of well-formed UTF-8 with no control characters (C0, DEL, C1), since
 * such characters break logs, terminals and the headers keys may travel in.
 * Throws `InvalidInputError` (400) naming the field "key", with the limit when too long.
 */
export function readKey(params: KvParams, limits: KvLimits): string {
  const key = params["*"];
  const control = controlCharacterAt(key);
  if (control !== -1) {
    throw new InvalidInputError("key", `must not contain control characters (found at ${control})`);
  }
  let bytes = 0;
  for (let i = 0; i < key.length; i++) {
    const unit = key.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit < 0xd800 || unit > 0xdfff) bytes += 3;
    else {
      // Percent-decoding never yields a lone surrogate, but UTF-8 cannot hold one, so a key
      // with one would silently change on its way through the log: refuse it outright.
      const next = key.charCodeAt(i + 1);
      if (unit > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
        throw new InvalidInputError("key", "must be well-formed Unicode");
      }
      bytes += 4;
      i++;
    }
  }
  if (bytes === 0) {
    throw new InputLimitError("key", "is empty; give one after /v1/kv/", limits.keyBytesMax);
  }
  if (bytes > limits.keyBytesMax) {
    const message = `${bytes} bytes of UTF-8; the limit is ${limits.keyBytesMax} bytes`;
    throw new InputLimitError("key", message, limits.keyBytesMax);
  }
  return key;
}

// Most writes carry no precondition and no idempotency key; they share one frozen object.
const NO_WRITE_OPTIONS: KvWriteOptions = Object.freeze({});

/**
 * The write options from headers already checked by `kvSchemas`: `If-Match: "n"` (or bare
 * digits) and `If-None-Match: *` become `ifRevision` (n, or 0: the key must not exist), and
 * `Idempotency-Key` is passed through unchanged. Giving both preconditions is refused.
 */
export function readWriteOptions(headers: Readonly<Record<string, unknown>>): KvWriteOptions {
  const ifMatch = headers["if-match"];
  const ifNoneMatch = headers["if-none-match"];
  const idempotencyKey = headers["idempotency-key"];
  if (ifMatch === undefined && ifNoneMatch === undefined && idempotencyKey === undefined) {
    return NO_WRITE_OPTIONS;
  }
  const options: { ifRevision?: number; idempotencyKey?: string } = {};
  if (typeof ifMatch === "string") {
    if (ifNoneMatch !== undefined) {
      throw new InvalidInputError("If-None-Match", "give If-Match or If-None-Match, not both");
    }
    const revision = Number(ifMatch.charCodeAt(0) === 0x22 ? ifMatch.slice(1, -1) : ifMatch);
    if (!Number.isSafeInteger(revision)) {
      throw new InvalidInputError("If-Match", `revision ${ifMatch} is not a safe integer`);
    }
    options.ifRevision = revision;
  } else if (ifNoneMatch !== undefined) {
    options.ifRevision = 0;
  }
  if (typeof idempotencyKey === "string") options.idempotencyKey = idempotencyKey;
  return options;
}

/** Whether `?stale` asks for a read of the local copy (`true`, `1`, or the bare flag). */
export function readStale(query: StaleQuery): boolean {
  const stale = query.stale;
  return stale !== undefined && stale !== "false" && stale !== "0";
}

/**
 * Whether the client wants the raw bytes: `Accept` names `application/octet-stream` and
 * does not name `application/json` before it. Quality values are not weighed.
 */
export function wantsOctetStream(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  const octet = accept.indexOf("application/octet-stream");
  if (octet < 0) return false;
  const json = accept.indexOf("application/json");
  return json < 0 || octet < json;
}
