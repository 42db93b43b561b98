/**
 * The commands the key-value state machine applies, the results it returns, and their
 * byte encodings (MessagePack through msgpackr). The encodings are part of the replicated
 * log and of snapshots, so they are versioned and only ever extended, never changed.
 *
 * This file owns the shape of a command and the checks that make a command valid under a
 * set of limits. It must never depend on state: whether a command succeeds (a revision
 * matches, a key exists, a retry is a duplicate) is decided by `KvStateMachine`. Decoding
 * never throws for bad bytes; it returns a problem value, because a committed command is
 * applied on every replica and must fail the same way everywhere.
 */

import { Packr } from "msgpackr";
import { type Digest64, Hash64 } from "./hash64.js";
import type { KvLimits } from "./limits.js";
import {
  decodeStoreCommand,
  encodeBody,
  encodeStoreCommand,
  STORE_COMMAND_FORMAT_VERSION,
  type StoreCommand,
  validateStoreCommand,
} from "./store-commands.js";

/** The version of the command encoding written by `encodeCommand`. */
export const COMMAND_FORMAT_VERSION = 1;

/**
 * Tags a command with the client's session for exactly-once execution (Raft dissertation
 * §6.3). A client numbers its requests 1, 2, 3, … and keeps at most one outstanding: it
 * sends `seq` n + 1 only after it has the result of n.
 */
export interface SessionTag {
  /** Chosen by the client, unique per client process (a random UUID, say). */
  readonly clientId: string;
  /**
   * Positive integer; a session is opened by its request with `seq` 1. A request with a
   * higher `seq` for a session the store does not know (expired or evicted) is refused
   * with `session_expired`; the client then starts a new session under a new `clientId`.
   */
  readonly seq: number;
}

/** What every write may carry besides its operation. */
export interface WriteOptions {
  /**
   * Compare-and-set: apply only if the key's current revision equals this one; 0 means
   * "the key must not exist".
   */
  readonly ifRevision?: number;
  /** The client session this request belongs to, for exactly-once execution. */
  readonly session?: SessionTag;
  /**
   * An HTTP `Idempotency-Key`: a repeated key is answered with the first result without
   * applying the command again.
   */
  readonly idempotencyKey?: string;
}

/** Sets `key` to `value`. */
export interface PutCommand extends WriteOptions {
  readonly type: "put";
  readonly key: string;
  readonly value: Uint8Array;
  /**
   * Attaches the key to this lease, so that it is deleted when the lease ends; a put
   * without one detaches the key from its lease. Encoded in format 2.
   */
  readonly lease?: number;
}

/** Removes `key`. */
export interface DeleteCommand extends WriteOptions {
  readonly type: "delete";
  readonly key: string;
}

export type KvCommand = PutCommand | DeleteCommand | StoreCommand;

/** Why a command is invalid; the HTTP layer maps `value_too_large` to 413, the rest to 400. */
export type KvInvalidReason =
  | "malformed"
  | "key_invalid"
  | "key_too_long"
  | "value_too_large"
  | "if_revision_invalid"
  | "session_invalid"
  | "idempotency_key_invalid"
  | "lease_invalid"
  | "txn_invalid";

/** A command that cannot be applied, and why, in words meant for the client. */
export interface KvCommandProblem {
  readonly reason: KvInvalidReason;
  readonly message: string;
  /**
   * The field of the HTTP request at fault, when the reason alone does not say (the
   * commands of `store-commands.ts` name it). Not part of a result.
   */
  readonly field?: string;
}

/**
 * The outcome of applying a command. Every outcome is a value; none is an exception.
 * - `ok`: the command was applied (or had been, for a retry); `revision` is the log index
 *   that made the change, the key's new revision for a put.
 * - `precondition_failed`: `ifRevision` did not match; `currentRevision` is 0 when the key
 *   does not exist.
 * - `not_found`: a delete of a key that does not exist.
 * - `session_stale`: `seq` is below the session's last one; the client already has that
 *   result, so this is a delayed duplicate and was not applied.
 * - `session_expired`: the session is unknown (expired or evicted) and `seq` > 1, so a
 *   retry cannot be told from a new request; not applied, and the client must treat the
 *   outcome of its outstanding request as unknown and open a new session.
 * - `idempotency_key_reused`: the idempotency key was first used with a different command;
 *   not applied (the IETF Idempotency-Key draft's 422).
 * - `table_full`: the request needs a new entry in `table` (a new idempotency key, or a new
 *   session), and that table holds its limit of live entries, none of which may be
 *   forgotten before its window ends; not applied and not recorded, so the very same
 *   request may be sent again, after `retryAfterMs` milliseconds of log time.
 * - `quota_exceeded`: the command would take the store past its quota of `quota` (keys or
 *   bytes of keys and values), whose value is `limit`; not applied and not recorded, so
 *   the very same request may be sent again once keys were deleted or the quota raised.
 *   A command that does not grow the store (a delete, a smaller value) is never refused.
 * - `invalid_command`: the bytes or fields are bad; not applied.
 */
export type KvResult =
  | KvOk
  | { readonly ok: false; readonly code: "precondition_failed"; readonly currentRevision: number }
  | { readonly ok: false; readonly code: "not_found" }
  | { readonly ok: false; readonly code: "session_stale"; readonly lastSeq: number }
  | { readonly ok: false; readonly code: "session_expired" }
  | { readonly ok: false; readonly code: "idempotency_key_reused" }
  | { readonly ok: false; readonly code: "lease_not_found"; readonly leaseId: number }
  | {
      readonly ok: false;
      readonly code: "table_full";
      readonly table: KvTable;
      readonly retryAfterMs: number;
    }
  | {
      readonly ok: false;
      readonly code: "quota_exceeded";
      readonly quota: KvQuotaName;
      readonly limit: number;
    }
  | {
      readonly ok: false;
      readonly code: "invalid_command";
      readonly reason: KvInvalidReason;
      readonly message: string;
    };

/**
 * A command that was applied. `revision` is the store's revision after it (the log index
 * of the command when it changed a key). Commands beyond put and delete say more:
 * `deleted` (delete_range: how many keys), `succeeded` (txn: which branch ran), `lease`
 * (lease_grant and lease_keepalive: the lease's id and time to live in milliseconds).
 */
export interface KvOk {
  readonly ok: true;
  readonly revision: number;
  readonly deleted?: number;
  readonly succeeded?: boolean;
  readonly lease?: { readonly id: number; readonly ttlMs: number };
}

export type KvErrorCode = Extract<KvResult, { ok: false }>["code"];

/** The quotas of the store: most keys, most bytes of keys and values. */
export type KvQuotaName = "keys" | "bytes";

/** The tables that remember requests for exactly-once execution. */
export type KvTable = "sessions" | "idempotency" | "leases";

export type DecodeCommandResult =
  | { readonly ok: true; readonly command: KvCommand }
  | { readonly ok: false; readonly problem: KvCommandProblem };

/** Records (msgpackr's shared structures) off, so every encoding decodes on any node. */
const KV_PACK_OPTIONS = {
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: "number",
} as const;

/**
 * One MessagePack codec for commands, results and snapshots; binary data is copied out of
 * the input, so that a value the store or the watch history keeps never pins a log buffer.
 */
export const kvPackr = new Packr({ ...KV_PACK_OPTIONS, copyBuffers: true });

/**
 * kvPackr without the copy, for snapshot frames only: their binary data (the values) come
 * back as views of the frame, which the reader copies out at once (see stored-value.ts)
 * and does not keep. A copy per value (an ArrayBuffer of its own each) was a sixth of
 * restoring a million keys.
 */
export const kvFrameUnpackr = new Packr({ ...KV_PACK_OPTIONS, copyBuffers: false });

/**
 * Encodes a command for the log, as the array
 * `[version, type, key, value | null, ifRevision | null, clientId | null, seq | null,
 * idempotencyKey | null]`. It does not check limits: call `validateCommand` first to
 * reject bad input before it is proposed.
 */
export function encodeCommand(command: KvCommand): Uint8Array {
  if (command.type !== "delete" && (command.type !== "put" || command.lease !== undefined)) {
    return encodeStoreCommand(command);
  }
  return kvPackr.pack([
    COMMAND_FORMAT_VERSION,
    command.type,
    command.key,
    command.type === "put" ? command.value : null,
    command.ifRevision ?? null,
    command.session?.clientId ?? null,
    command.session?.seq ?? null,
    command.idempotencyKey ?? null,
  ]);
}

/**
 * Decodes a command written by `encodeCommand`, checking its structure and field types.
 * Never throws; bad bytes give `{ok: false, problem: {reason: "malformed"}}`. Limits are
 * not checked here (see `validateCommand`).
 */
export function decodeCommand(bytes: Uint8Array): DecodeCommandResult {
  let decoded: unknown;
  try {
    decoded = kvPackr.unpack(bytes);
  } catch (error) {
    return malformed(`not MessagePack: ${(error as Error).message}`);
  }
  if (!Array.isArray(decoded)) return malformed("not an array");
  const [version, type, key, value, ifRevision, clientId, seq, idempotencyKey] = decoded;
  if (version === STORE_COMMAND_FORMAT_VERSION) {
    const store = decodeStoreCommand(decoded);
    return store.ok ? { ok: true, command: store.command as KvCommand } : malformed(store.message);
  }
  if (version !== COMMAND_FORMAT_VERSION) {
    return malformed(`unknown command format version ${String(version)}`);
  }
  if (decoded.length !== 8) return malformed(`expected 8 fields, got ${decoded.length}`);
  if (typeof key !== "string") return malformed("key is not a string");
  if (ifRevision !== null && typeof ifRevision !== "number") {
    return malformed("ifRevision is not a number");
  }
  if ((clientId === null) !== (seq === null)) return malformed("half a session tag");
  if (clientId !== null && (typeof clientId !== "string" || typeof seq !== "number")) {
    return malformed("session tag has bad types");
  }
  if (idempotencyKey !== null && typeof idempotencyKey !== "string") {
    return malformed("idempotencyKey is not a string");
  }
  const options = writeOptions(ifRevision, clientId, seq, idempotencyKey);
  if (type === "put") {
    if (!(value instanceof Uint8Array)) return malformed("put value is not binary");
    const plain = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return { ok: true, command: { type: "put", key, value: plain, ...options } };
  }
  if (type === "delete") {
    if (value !== null) return malformed("delete carries a value");
    return { ok: true, command: { type: "delete", key, ...options } };
  }
  return malformed(`unknown command type ${String(type)}`);
}

function writeOptions(
  ifRevision: unknown,
  clientId: unknown,
  seq: unknown,
  idempotencyKey: unknown,
): WriteOptions {
  // The optional fields are left out rather than set to undefined, so that decoded commands
  // compare equal to the ones that were encoded (exactOptionalPropertyTypes).
  const options: { ifRevision?: number; session?: SessionTag; idempotencyKey?: string } = {};
  if (typeof ifRevision === "number") options.ifRevision = ifRevision;
  if (typeof clientId === "string" && typeof seq === "number") {
    options.session = { clientId, seq };
  }
  if (typeof idempotencyKey === "string") options.idempotencyKey = idempotencyKey;
  return options;
}

function malformed(message: string): DecodeCommandResult {
  return { ok: false, problem: { reason: "malformed", message: `malformed command: ${message}` } };
}

/**
 * Checks a command against `limits`, returning the first problem or null. The proposer
 * calls it to answer bad input with 400/413 before proposing; `apply` calls it again, so a
 * bad command that reaches the log fails identically on every replica.
 */
export function validateCommand(command: KvCommand, limits: KvLimits): KvCommandProblem | null {
  if (command.type !== "put" && command.type !== "delete") {
    return validateStoreCommand(command, limits) ?? validateWriteOptions(command, limits);
  }
  const keyBytes = utf8ByteLength(command.key);
  if (keyBytes === null || keyBytes === 0) {
    return { reason: "key_invalid", message: "key must be non-empty, well-formed Unicode" };
  }
  if (keyBytes > limits.keyBytesMax) {
    return {
      reason: "key_too_long",
      message: `key is ${keyBytes} bytes of UTF-8; the limit is ${limits.keyBytesMax}`,
    };
  }
  if (command.type === "put" && command.value.byteLength > limits.valueBytesMax) {
    return {
      reason: "value_too_large",
      message: `value is ${command.value.byteLength} bytes; the limit is ${limits.valueBytesMax}`,
    };
  }
  if (command.type === "put" && command.lease !== undefined) {
    const problem = validateStoreCommand(command, limits);
    if (problem !== null) return problem;
  }
  return validateWriteOptions(command, limits);
}

function validateWriteOptions(options: WriteOptions, limits: KvLimits): KvCommandProblem | null {
  const { ifRevision, session, idempotencyKey } = options;
  if (ifRevision !== undefined && !(Number.isSafeInteger(ifRevision) && ifRevision >= 0)) {
    return { reason: "if_revision_invalid", message: "ifRevision must be an integer >= 0" };
  }
  if (session !== undefined) {
    const bytes = utf8ByteLength(session.clientId);
    if (bytes === null || bytes === 0 || bytes > limits.clientIdBytesMax) {
      return {
        reason: "session_invalid",
        message: `clientId must be 1 to ${limits.clientIdBytesMax} bytes of well-formed UTF-8`,
      };
    }
    if (!(Number.isSafeInteger(session.seq) && session.seq >= 1)) {
      return { reason: "session_invalid", message: "seq must be an integer >= 1" };
    }
  }
  if (idempotencyKey !== undefined) {
    const bytes = utf8ByteLength(idempotencyKey);
    if (bytes === null || bytes === 0 || bytes > limits.idempotencyKeyBytesMax) {
      return {
        reason: "idempotency_key_invalid",
        message: `idempotency key must be 1 to ${limits.idempotencyKeyBytesMax} bytes of UTF-8`,
      };
    }
  }
  return null;
}

/**
 * The number of bytes `text` takes in UTF-8, or null when it holds a lone surrogate (which
 * UTF-8 cannot represent, so the key would silently change on its way through the log).
 */
export function utf8ByteLength(text: string): number | null {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return null;
      bytes += 4;
      i++;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) return null;
    else bytes += 3;
  }
  return bytes;
}

/**
 * A digest of what a command does (its type, key, value and precondition), leaving out how
 * it is delivered (session and idempotency key). An idempotency key remembers it, to tell
 * a true retry from a different request that reuses the key.
 */
export function commandFingerprint(command: KvCommand): Digest64 {
  if (command.type !== "delete" && (command.type !== "put" || command.lease !== undefined)) {
    return new Hash64(0x6b77)
      .string(command.type)
      .bytes(kvPackr.pack(encodeBody(command)))
      .digest();
  }
  const hash = new Hash64(0x6b76).string(command.type).string(command.key);
  if (command.type === "put") hash.bytes(command.value);
  hash.boolean(command.ifRevision !== undefined).integer(command.ifRevision ?? 0);
  return hash.digest();
}

/** A result as a plain array, the form results take inside snapshots and `encodeResult`. */
export type KvResultWire = readonly [string, ...(number | string)[]];

/** Converts a result to its array form. */
export function resultToWire(result: KvResult): KvResultWire {
  if (result.ok) {
    if (result.deleted !== undefined) return ["ok", result.revision, "deleted", result.deleted];
    if (result.succeeded !== undefined) {
      return ["ok", result.revision, "succeeded", result.succeeded ? 1 : 0];
    }
    if (result.lease !== undefined) {
      return ["ok", result.revision, "lease", result.lease.id, result.lease.ttlMs];
    }
    return ["ok", result.revision];
  }
  switch (result.code) {
    case "precondition_failed":
      return [result.code, result.currentRevision];
    case "session_stale":
      return [result.code, result.lastSeq];
    case "invalid_command":
      return [result.code, result.reason, result.message];
    case "table_full":
      return [result.code, result.table, result.retryAfterMs];
    case "lease_not_found":
      return [result.code, result.leaseId];
    case "quota_exceeded":
      return [result.code, result.quota, result.limit];
    default:
      return [result.code];
  }
}

const INVALID_REASONS: ReadonlySet<string> = new Set<KvInvalidReason>([
  "malformed",
  "key_invalid",
  "key_too_long",
  "value_too_large",
  "if_revision_invalid",
  "session_invalid",
  "idempotency_key_invalid",
  "lease_invalid",
  "txn_invalid",
]);

/** Converts an array form back to a frozen result, or null when it is not a valid one. */
export function resultFromWire(wire: unknown): KvResult | null {
  if (!Array.isArray(wire)) return null;
  const [code, first, second] = wire;
  const count = wire.length;
  const integer = Number.isSafeInteger(first) && (first as number) >= 0;
  if (code === "ok" && count === 2 && integer) return freezeResult({ ok: true, revision: first });
  if (code === "ok" && integer) return okFromWire(first, wire.slice(2));
  if (code === "lease_not_found" && count === 2 && integer) {
    return freezeResult({ ok: false, code, leaseId: first });
  }
  if (code === "precondition_failed" && count === 2 && integer) {
    return freezeResult({ ok: false, code, currentRevision: first });
  }
  if (code === "session_stale" && count === 2 && integer) {
    return freezeResult({ ok: false, code, lastSeq: first });
  }
  if (code === "invalid_command" && count === 3 && INVALID_REASONS.has(first)) {
    if (typeof second !== "string") return null;
    return freezeResult({ ok: false, code, reason: first, message: second });
  }
  const table = first === "sessions" || first === "idempotency" || first === "leases";
  if (code === "table_full" && count === 3 && table) {
    if (!(Number.isSafeInteger(second) && (second as number) >= 0)) return null;
    return freezeResult({ ok: false, code, table: first, retryAfterMs: second });
  }
  if (code === "quota_exceeded" && count === 3 && (first === "keys" || first === "bytes")) {
    if (!(Number.isSafeInteger(second) && (second as number) >= 0)) return null;
    return freezeResult({ ok: false, code, quota: first, limit: second });
  }
  if (count !== 1) return null;
  if (code === "not_found" || code === "session_expired" || code === "idempotency_key_reused") {
    return freezeResult({ ok: false, code });
  }
  return null;
}

/** The extra fields of an ok result, or null when they are not valid. */
function okFromWire(revision: number, extra: unknown[]): KvResult | null {
  const [tag, first, second] = extra;
  const count = (value: unknown): value is number =>
    Number.isSafeInteger(value) && (value as number) >= 0;
  if (tag === "deleted" && extra.length === 2 && count(first)) {
    return freezeResult({ ok: true, revision, deleted: first });
  }
  if (tag === "succeeded" && extra.length === 2 && (first === 0 || first === 1)) {
    return freezeResult({ ok: true, revision, succeeded: first === 1 });
  }
  if (tag === "lease" && extra.length === 3 && count(first) && count(second)) {
    return freezeResult({ ok: true, revision, lease: Object.freeze({ id: first, ttlMs: second }) });
  }
  return null;
}

/** Encodes a result, for a backup that forwards a request and relays the master's answer. */
export function encodeResult(result: KvResult): Uint8Array {
  return kvPackr.pack(resultToWire(result));
}

/** Decodes `encodeResult` bytes; null when they are not a valid result. Never throws. */
export function decodeResult(bytes: Uint8Array): KvResult | null {
  try {
    return resultFromWire(kvPackr.unpack(bytes));
  } catch {
    return null;
  }
}

/**
 * Freezes a result. Results are shared between the session and idempotency tables and the
 * caller of `apply`, so a caller that mutated one would change replicated state.
 */
export function freezeResult(result: KvResult): KvResult {
  return Object.freeze(result);
}

/** Mixes a result into a hash, field by field in a fixed order. */
export function hashResult(hash: Hash64, result: KvResult): Hash64 {
  const wire = resultToWire(result);
  hash.word(wire.length);
  for (const field of wire) {
    if (typeof field === "number") hash.word(0).integer(field);
    else hash.word(1).string(field);
  }
  return hash;
}
