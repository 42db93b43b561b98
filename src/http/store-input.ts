/**
 * Reading the store requests: the range and watch queries, the transaction and lease
 * bodies, and lease ids in paths. Every bad input becomes an `InvalidInputError` naming the
 * field as the client wrote it (`limit`, `success[2].put.key`, `ttlSeconds`), and an
 * `InputLimitError` when it passes a bound, so that the client knows exactly what to fix.
 * Nothing here talks to the node; the commands built here are checked again by
 * `validateCommand` before they are proposed.
 */

import type { KvLimits, TxnCommand, TxnCompare, TxnOp } from "../kv/index.js";
import { utf8ByteLength } from "../kv/index.js";
import { InvalidInputError } from "../shared/errors.js";
import { InputLimitError } from "./error-status.js";
import { controlCharacterAt } from "./request-input.js";

/** Most keys one range page lists (`limit`). */
export const RANGE_LIMIT_MAX = 10_000;
/** Keys a range page lists when the request gives no `limit`. */
export const RANGE_LIMIT_DEFAULT = 1000;
/**
 * Most bytes of values one range page carries; a page stops before the key that would
 * pass it (but always lists one key), and says `next`.
 */
export const RANGE_VALUE_BYTES_MAX = 4 * 1024 * 1024;

export interface RangeQuery {
  readonly prefix: string;
  readonly after: string | null;
  readonly limit: number;
  readonly keysOnly: boolean;
  readonly stale: boolean;
}

type Query = Readonly<Record<string, unknown>>;

/** A request's query as fastify parsed it, and its URL as sent (for what the parse hides). */
export interface QueryRequest {
  readonly query: unknown;
  readonly url: string;
}

/** `GET /v1/kv?prefix=P&limit=N&after=TOKEN&keysOnly=true&stale=true`. */
export function readRangeQuery(request: QueryRequest, limits: KvLimits): RangeQuery {
  const query = request.query as Query;
  const prefix = readPrefix(request, limits, false);
  const limit = readInteger(query, "limit", 1, RANGE_LIMIT_MAX) ?? RANGE_LIMIT_DEFAULT;
  const token = readString(query, "after");
  const after = token === undefined ? null : decodeToken(token, limits);
  return {
    prefix,
    after,
    limit,
    keysOnly: readFlag(query, "keysOnly"),
    stale: readFlag(query, "stale"),
  };
}

/** `DELETE /v1/kv?prefix=P`: the prefix, which must be given and not be empty. */
export function readDeletePrefix(request: QueryRequest, limits: KvLimits): string {
  return readPrefix(request, limits, true);
}

/** `GET /v1/watch?prefix=P&fromRevision=R`: R null means "changes after now". */
export function readWatchQuery(
  request: QueryRequest,
  limits: KvLimits,
): { prefix: string; fromRevision: number | null } {
  const query = request.query as Query;
  const prefix = readPrefix(request, limits, false);
  const fromRevision = readInteger(query, "fromRevision", 1, Number.MAX_SAFE_INTEGER) ?? null;
  return { prefix, fromRevision };
}

/** The continuation token for a page that ended at `key`: opaque to clients. */
export function encodeToken(key: string): string {
  return Buffer.from(key, "utf8").toString("base64url");
}

/** Refuses bytes that are not UTF-8 (a forged token), where toString() would put U+FFFD. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeToken(token: string, limits: KvLimits): string {
  let key = "";
  if (/^[A-Za-z0-9_-]*$/.test(token)) {
    try {
      // U+FFFD is a character a key may hold; only bytes that are not UTF-8 are refused.
      key = strictUtf8.decode(Buffer.from(token, "base64url"));
    } catch {
      key = "";
    }
  }
  const bytes = utf8ByteLength(key);
  if (key === "" || bytes === null || bytes > limits.keyBytesMax) {
    throw new InvalidInputError("after", "is not a token from a previous page's next");
  }
  return key;
}

/**
 * The `prefix` of a query, checked as a key is (docs/api.md, Keys): percent-encoded UTF-8
 * with no control characters, at most `keyBytesMax` bytes. In a query, unlike a path, `+`
 * is a space, as forms and `URLSearchParams` (the client library, the dashboard) send it.
 */
function readPrefix(request: QueryRequest, limits: KvLimits, required: boolean): string {
  const prefix = readString(request.query as Query, "prefix");
  if (prefix === undefined || prefix === "") {
    if (!required) return "";
    throw new InvalidInputError("prefix", "must be given and not be empty (the keys to delete)");
  }
  checkPercentEncoding(request.url, "prefix");
  const bytes = utf8ByteLength(prefix);
  if (bytes === null) throw new InvalidInputError("prefix", "must be well-formed Unicode");
  if (bytes > limits.keyBytesMax) {
    const message = `${bytes} bytes of UTF-8; the limit is ${limits.keyBytesMax} bytes`;
    throw new InputLimitError("prefix", message, limits.keyBytesMax);
  }
  // No key holds one (readKey refuses them), so such a prefix names no key.
  const control = controlCharacterAt(prefix);
  if (control !== -1) {
    const message = `must not contain control characters, as keys do not (found at ${control})`;
    throw new InvalidInputError("prefix", message);
  }
  return prefix;
}

/**
 * Throws `InvalidInputError` naming `field` when its value in `url`'s query is not valid
 * percent-encoded UTF-8 (`%ZZ`, or `%C3` with no byte after it). The query parser keeps
 * such a value as literal text, which would name other keys than the client meant; a path
 * with bad percent-encoding is refused too.
 */
function checkPercentEncoding(url: string, field: string): void {
  const start = url.indexOf("?");
  if (start === -1 || !url.includes("%", start)) return;
  for (const pair of url.slice(start + 1).split("&")) {
    const equals = pair.indexOf("=");
    const name = equals === -1 ? pair : pair.slice(0, equals);
    if (decodeQueryPart(name) !== field) continue;
    if (equals !== -1 && decodeQueryPart(pair.slice(equals + 1)) === null) {
      throw new InvalidInputError(field, "is not valid percent-encoded UTF-8");
    }
  }
}

/** A name or value of a query, decoded as the query parser does, or null when it cannot be. */
function decodeQueryPart(text: string): string | null {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    return null;
  }
}

function readString(query: Query, field: string): string | undefined {
  const value = query[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new InvalidInputError(field, "must be given once");
  return value;
}

function readFlag(query: Query, field: string): boolean {
  const value = readString(query, field);
  if (value === undefined || value === "false" || value === "0") return false;
  if (value === "" || value === "true" || value === "1") return true;
  throw new InvalidInputError(field, "must be true or false");
}

function readInteger(query: Query, field: string, min: number, max: number): number | undefined {
  const text = readString(query, field);
  if (text === undefined) return undefined;
  const value = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    if (max === Number.MAX_SAFE_INTEGER) {
      // No bound but the number's own: the answer names no limit.
      throw new InvalidInputError(field, `must be an integer >= ${min}, got ${text}`);
    }
    throw new InputLimitError(field, `must be an integer from ${min} to ${max}, got ${text}`, max);
  }
  return value;
}

/** A lease id from a path (`/v1/leases/{id}`) or a query (`?lease=id`). */
export function readLeaseId(text: unknown, field: string): number {
  const value = typeof text === "string" && /^[0-9]{1,16}$/.test(text) ? Number(text) : 0;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidInputError(field, "must be a lease id (an integer >= 1) from POST /v1/leases");
  }
  return value;
}

/** The JSON object of a request body; `body` must be one. */
function readJsonObject(body: Buffer | undefined): Record<string, unknown> {
  let json: unknown;
  try {
    // Strict: bytes that are not UTF-8 would otherwise be stored as U+FFFD, silently.
    json = JSON.parse(strictUtf8.decode(body ?? Buffer.alloc(0)));
  } catch {
    throw new InvalidInputError("body", "must be a JSON object in UTF-8");
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InvalidInputError("body", "must be a JSON object");
  }
  return json as Record<string, unknown>;
}

function checkFields(object: Record<string, unknown>, allowed: readonly string[], at: string) {
  for (const field of Object.keys(object)) {
    if (!allowed.includes(field)) {
      const where = at === "" ? field : `${at}.${field}`;
      throw new InvalidInputError(where, `is not a known field (expected ${allowed.join(", ")})`);
    }
  }
}

/** `POST /v1/leases` body `{"ttlSeconds": N}`: the time to live in milliseconds. */
export function readLeaseGrant(body: Buffer | undefined, limits: KvLimits): number {
  const json = readJsonObject(body);
  checkFields(json, ["ttlSeconds"], "");
  const ttl = json.ttlSeconds;
  const min = Math.ceil(limits.leaseTtlMsMin / 1000);
  const max = Math.floor(limits.leaseTtlMsMax / 1000);
  if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < min || ttl > max) {
    const message = `must be a whole number of seconds from ${min} to ${max}`;
    throw new InputLimitError("ttlSeconds", message, max);
  }
  return ttl * 1000;
}

const encoder = new TextEncoder();

/**
 * `POST /v1/txn` body: `{"compare":[…],"success":[…],"failure":[…]}`, each part optional
 * (an empty list), values as UTF-8 text. Item counts are checked against
 * `limits.txnOpCountMax`.
 */
export function readTxnBody(
  body: Buffer | undefined,
  limits: KvLimits,
): Pick<TxnCommand, "compare" | "success" | "failure"> {
  const json = readJsonObject(body);
  checkFields(json, ["compare", "success", "failure"], "");
  const compare = readList(json, "compare", limits).map((item, i) =>
    readCompare(item, `compare[${i}]`),
  );
  const success = readList(json, "success", limits).map((item, i) => readOp(item, `success[${i}]`));
  const failure = readList(json, "failure", limits).map((item, i) => readOp(item, `failure[${i}]`));
  return { compare, success, failure };
}

function readList(json: Record<string, unknown>, field: string, limits: KvLimits): unknown[] {
  const list = json[field] ?? [];
  if (!Array.isArray(list)) throw new InvalidInputError(field, "must be a list");
  if (list.length > limits.txnOpCountMax) {
    const message = `holds ${list.length} items; the limit is ${limits.txnOpCountMax}`;
    throw new InputLimitError(field, message, limits.txnOpCountMax);
  }
  return list;
}

function readObject(value: unknown, at: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidInputError(at, "must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function readKeyField(object: Record<string, unknown>, at: string): string {
  const key = object.key;
  if (typeof key !== "string" || key === "") {
    throw new InvalidInputError(`${at}.key`, "must be a non-empty string");
  }
  // The rule of a key in a URL (readKey), so that every key a transaction writes can be
  // read, changed and deleted through /v1/kv/{key} too.
  const control = controlCharacterAt(key);
  if (control !== -1) {
    throw new InvalidInputError(
      `${at}.key`,
      `must not contain control characters (found at ${control})`,
    );
  }
  return key;
}

/**
 * A value given as JSON text, as its UTF-8 bytes. A lone surrogate (`"\ud800"`) has no
 * UTF-8 form: encoding would store U+FFFD in its place, so it is refused, as in a key.
 */
function readValueField(value: unknown, at: string): Uint8Array {
  if (typeof value !== "string") throw new InvalidInputError(at, "must be a string");
  if (utf8ByteLength(value) === null) {
    throw new InvalidInputError(at, "must be well-formed Unicode (a lone surrogate has no UTF-8)");
  }
  return encoder.encode(value);
}

function readCompare(item: unknown, at: string): TxnCompare {
  const object = readObject(item, at);
  checkFields(object, ["key", "revision", "value", "exists"], at);
  const key = readKeyField(object, at);
  const targets = ["revision", "value", "exists"].filter((t) => object[t] !== undefined);
  if (targets.length !== 1) {
    throw new InvalidInputError(at, "must give exactly one of revision, value or exists");
  }
  const { revision, value, exists } = object;
  if (revision !== undefined) {
    if (typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < 0) {
      throw new InvalidInputError(`${at}.revision`, "must be an integer >= 0 (0: no such key)");
    }
    return { key, target: "revision", revision };
  }
  if (value !== undefined) {
    return { key, target: "value", value: readValueField(value, `${at}.value`) };
  }
  if (typeof exists !== "boolean") {
    throw new InvalidInputError(`${at}.exists`, "must be true or false");
  }
  return { key, target: "exists", exists };
}

function readOp(item: unknown, at: string): TxnOp {
  const object = readObject(item, at);
  checkFields(object, ["put", "delete"], at);
  if ((object.put === undefined) === (object.delete === undefined)) {
    throw new InvalidInputError(at, 'must be {"put":{"key","value"}} or {"delete":{"key"}}');
  }
  if (object.delete !== undefined) {
    const del = readObject(object.delete, `${at}.delete`);
    checkFields(del, ["key"], `${at}.delete`);
    return { type: "delete", key: readKeyField(del, `${at}.delete`) };
  }
  const put = readObject(object.put, `${at}.put`);
  checkFields(put, ["key", "value", "lease"], `${at}.put`);
  const key = readKeyField(put, `${at}.put`);
  const value = readValueField(put.value, `${at}.put.value`);
  if (put.lease === undefined) return { type: "put", key, value };
  const lease = put.lease;
  if (typeof lease !== "number" || !Number.isSafeInteger(lease) || lease < 1) {
    throw new InvalidInputError(`${at}.put.lease`, "must be a lease id (an integer >= 1)");
  }
  return { type: "put", key, value, lease };
}
