/**
 * The commands that make the store more than single keys: deleting a prefix, transactions,
 * leases (grant, keep-alive, revoke, and a put attached to a lease), and the tick the master
 * proposes so that log time moves while leases wait to expire. This file owns their shapes,
 * their encoding (command format 2) and the checks that make one valid under a set of
 * limits.
 *
 * Format 2 is `[2, type, clientId | null, seq | null, idempotencyKey | null, body]`, with a
 * body per type (see `encodeBody`). Format 1 (`commands.ts`) still encodes every put
 * without a lease and every delete, so the log of a cluster that uses none of this reads
 * as before. Like `commands.ts`, it never depends on state and decoding never throws.
 */

import {
  type KvCommandProblem,
  kvPackr,
  type SessionTag,
  utf8ByteLength,
  type WriteOptions,
} from "./commands.js";
import type { KvLimits } from "./limits.js";

/** The command encoding version of the commands in this file (and of a put with a lease). */
export const STORE_COMMAND_FORMAT_VERSION = 2;

/** Deletes every key that starts with `prefix`, all at one revision. */
export interface DeleteRangeCommand extends WriteOptions {
  readonly type: "delete_range";
  /** Non-empty; deleting the whole store takes a prefix per first character. */
  readonly prefix: string;
}

/** One condition of a transaction, on the key's state before the transaction. */
export type TxnCompare =
  /** The key's revision equals this one; 0 means the key does not exist. */
  | { readonly key: string; readonly target: "revision"; readonly revision: number }
  /** The key exists and its value is exactly these bytes. */
  | { readonly key: string; readonly target: "value"; readonly value: Uint8Array }
  /** The key exists (true) or does not (false). */
  | { readonly key: string; readonly target: "exists"; readonly exists: boolean };

/** One change a transaction makes; a delete of a missing key changes nothing. */
export type TxnOp =
  | {
      readonly type: "put";
      readonly key: string;
      readonly value: Uint8Array;
      /** Attach the key to this lease (0: none). @default 0 */
      readonly lease?: number;
    }
  | { readonly type: "delete"; readonly key: string };

/**
 * If every comparison holds, applies `success`, else `failure`, all at one revision. The
 * same key may be changed twice; the later change wins.
 */
export interface TxnCommand extends WriteOptions {
  readonly type: "txn";
  readonly compare: readonly TxnCompare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}

/** Grants a lease that expires `ttlMs` of log time from now unless kept alive. */
export interface LeaseGrantCommand extends WriteOptions {
  readonly type: "lease_grant";
  readonly ttlMs: number;
}

/** Gives lease `id` its full time to live again, counted from now. */
export interface LeaseKeepAliveCommand extends WriteOptions {
  readonly type: "lease_keepalive";
  readonly id: number;
}

/** Ends lease `id` at once, deleting its keys. */
export interface LeaseRevokeCommand extends WriteOptions {
  readonly type: "lease_revoke";
  readonly id: number;
}

/**
 * Changes nothing by itself: it carries the master's time into the log so that leases
 * expire while nobody writes. Never carries a session or an idempotency key.
 */
export interface TickCommand extends WriteOptions {
  readonly type: "tick";
}

/**
 * Sets the store's quota (0: none), which is replicated state so that every replica
 * refuses the same writes. The master proposes it when the quota it was configured with
 * differs from the store's. Never carries a session or an idempotency key.
 */
export interface SetQuotaCommand extends WriteOptions {
  readonly type: "set_quota";
  readonly keyCountMax: number;
  readonly bytesMax: number;
}

export type StoreCommand =
  | SetQuotaCommand
  | DeleteRangeCommand
  | TxnCommand
  | LeaseGrantCommand
  | LeaseKeepAliveCommand
  | LeaseRevokeCommand
  | TickCommand;

/** A put that names a lease, which format 1 cannot carry. */
export interface LeasedPut extends WriteOptions {
  readonly type: "put";
  readonly key: string;
  readonly value: Uint8Array;
  readonly lease?: number;
}

type Encodable = StoreCommand | LeasedPut;

/** Encodes a format 2 command. The caller validates it first (`validateStoreCommand`). */
export function encodeStoreCommand(command: Encodable): Uint8Array {
  const options = command as WriteOptions;
  return kvPackr.pack([
    STORE_COMMAND_FORMAT_VERSION,
    command.type,
    options.session?.clientId ?? null,
    options.session?.seq ?? null,
    options.idempotencyKey ?? null,
    encodeBody(command),
  ]);
}

/** The part of a command that says what it does: what its fingerprint is taken over. */
export function encodeBody(command: Encodable): unknown[] {
  switch (command.type) {
    case "put":
      return [command.key, command.value, command.ifRevision ?? null, command.lease ?? 0];
    case "delete_range":
      return [command.prefix];
    case "txn":
      return [
        command.compare.map(encodeCompare),
        command.success.map(encodeOp),
        command.failure.map(encodeOp),
      ];
    case "lease_grant":
      return [command.ttlMs];
    case "lease_keepalive":
    case "lease_revoke":
      return [command.id];
    case "tick":
      return [];
    case "set_quota":
      return [command.keyCountMax, command.bytesMax];
  }
}

function encodeCompare(compare: TxnCompare): unknown[] {
  if (compare.target === "revision") return [compare.key, "revision", compare.revision];
  if (compare.target === "value") return [compare.key, "value", compare.value];
  return [compare.key, "exists", compare.exists];
}

function encodeOp(op: TxnOp): unknown[] {
  if (op.type === "put") return ["put", op.key, op.value, op.lease ?? 0];
  return ["delete", op.key];
}

export type DecodeStoreResult =
  | { readonly ok: true; readonly command: Encodable }
  | { readonly ok: false; readonly message: string };

/** Decodes the fields of a format 2 command (the array after its version). Never throws. */
export function decodeStoreCommand(fields: unknown[]): DecodeStoreResult {
  if (fields.length !== 6) return bad(`expected 6 fields, got ${fields.length}`);
  const [, type, clientId, seq, idempotencyKey, body] = fields;
  if ((clientId === null) !== (seq === null)) return bad("half a session tag");
  if (clientId !== null && (typeof clientId !== "string" || typeof seq !== "number")) {
    return bad("session tag has bad types");
  }
  if (idempotencyKey !== null && typeof idempotencyKey !== "string") {
    return bad("idempotencyKey is not a string");
  }
  if (!Array.isArray(body)) return bad("the body is not an array");
  const options: { session?: SessionTag; idempotencyKey?: string } = {};
  if (typeof clientId === "string") options.session = { clientId, seq: seq as number };
  if (typeof idempotencyKey === "string") options.idempotencyKey = idempotencyKey;
  const decoded = decodeBody(type, body);
  if (typeof decoded === "string") return bad(decoded);
  if (decoded.type === "tick" || decoded.type === "set_quota") {
    if (clientId !== null || idempotencyKey !== null)
      return bad(`a ${decoded.type} carries a session`);
    return { ok: true, command: decoded };
  }
  return { ok: true, command: { ...decoded, ...options } as Encodable };
}

function decodeBody(type: unknown, body: unknown[]): Encodable | string {
  switch (type) {
    case "put": {
      const [key, value, ifRevision, lease] = body;
      if (body.length !== 4 || typeof key !== "string") return "put has a bad key";
      if (!(value instanceof Uint8Array)) return "put value is not binary";
      if (ifRevision !== null && typeof ifRevision !== "number") return "bad ifRevision";
      if (typeof lease !== "number") return "put lease is not a number";
      const put: { -readonly [K in keyof LeasedPut]: LeasedPut[K] } = {
        type: "put",
        key,
        value: plainBytes(value),
      };
      if (typeof ifRevision === "number") put.ifRevision = ifRevision;
      if (lease !== 0) put.lease = lease;
      return put;
    }
    case "delete_range":
      if (body.length !== 1 || typeof body[0] !== "string") return "prefix is not a string";
      return { type, prefix: body[0] };
    case "txn":
      return decodeTxn(body);
    case "lease_grant":
      if (body.length !== 1 || typeof body[0] !== "number") return "ttlMs is not a number";
      return { type, ttlMs: body[0] };
    case "lease_keepalive":
    case "lease_revoke":
      if (body.length !== 1 || typeof body[0] !== "number") return "lease id is not a number";
      return { type, id: body[0] };
    case "tick":
      return body.length === 0 ? { type } : "a tick has a body";
    case "set_quota": {
      const [keyCountMax, bytesMax] = body;
      if (body.length !== 2 || typeof keyCountMax !== "number" || typeof bytesMax !== "number") {
        return "a quota is not two numbers";
      }
      return { type, keyCountMax, bytesMax };
    }
    default:
      return `unknown command type ${String(type)}`;
  }
}

function decodeTxn(body: unknown[]): TxnCommand | string {
  const [compare, success, failure] = body;
  if (body.length !== 3 || !Array.isArray(compare)) return "txn compare is not an array";
  if (!Array.isArray(success) || !Array.isArray(failure)) return "txn ops are not arrays";
  const compares: TxnCompare[] = [];
  for (const item of compare) {
    if (!Array.isArray(item) || item.length !== 3 || typeof item[0] !== "string") {
      return "a txn comparison is malformed";
    }
    const [key, target, operand] = item as [string, unknown, unknown];
    if (target === "revision" && typeof operand === "number") {
      compares.push({ key, target, revision: operand });
    } else if (target === "value" && operand instanceof Uint8Array) {
      compares.push({ key, target, value: plainBytes(operand) });
    } else if (target === "exists" && typeof operand === "boolean") {
      compares.push({ key, target, exists: operand });
    } else return "a txn comparison has a bad target";
  }
  const ops: TxnOp[][] = [[], []];
  for (const [branch, items] of [success, failure].entries()) {
    for (const item of items as unknown[]) {
      const op = decodeOp(item);
      if (op === null) return "a txn operation is malformed";
      ops[branch]!.push(op);
    }
  }
  return { type: "txn", compare: compares, success: ops[0]!, failure: ops[1]! };
}

function decodeOp(item: unknown): TxnOp | null {
  if (!Array.isArray(item) || typeof item[1] !== "string") return null;
  const [type, key, value, lease] = item;
  if (type === "delete" && item.length === 2) return { type, key };
  if (type !== "put" || item.length !== 4) return null;
  if (!(value instanceof Uint8Array) || typeof lease !== "number") return null;
  const op = { type, key, value: plainBytes(value) } as const;
  return lease === 0 ? op : { ...op, lease };
}

/** A plain Uint8Array over the same bytes (msgpackr may hand out a Buffer). */
function plainBytes(value: Uint8Array): Uint8Array {
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function bad(message: string): DecodeStoreResult {
  return { ok: false, message };
}

/**
 * Checks a format 2 command against `limits`, returning the first problem or null. The
 * messages name the field as the HTTP API spells it, since they reach the client as is.
 */
export function validateStoreCommand(
  command: StoreCommand | LeasedPut,
  limits: KvLimits,
): KvCommandProblem | null {
  if ((command as WriteOptions).ifRevision !== undefined && command.type !== "put") {
    return {
      reason: "malformed",
      message: `${command.type} takes no ifRevision`,
      field: "If-Match",
    };
  }
  switch (command.type) {
    case "put":
      if (command.lease !== undefined && !isLeaseId(command.lease)) {
        return {
          reason: "lease_invalid",
          message: "lease must be a lease id (an integer >= 1)",
          field: "lease",
        };
      }
      return null;
    case "delete_range":
      return checkKey(command.prefix, limits, "prefix");
    case "txn":
      return validateTxn(command, limits);
    case "lease_grant":
      return checkTtl(command.ttlMs, limits);
    case "lease_keepalive":
    case "lease_revoke":
      if (!isLeaseId(command.id)) {
        return {
          reason: "lease_invalid",
          message: "lease id must be an integer >= 1",
          field: "id",
        };
      }
      return null;
    case "tick":
      if (command.session !== undefined || command.idempotencyKey !== undefined) {
        return { reason: "malformed", message: "a tick carries no session" };
      }
      return null;
    case "set_quota":
      if (command.session !== undefined || command.idempotencyKey !== undefined) {
        return { reason: "malformed", message: "a quota carries no session" };
      }
      if (!isQuota(command.keyCountMax) || !isQuota(command.bytesMax)) {
        return { reason: "malformed", message: "a quota is an integer >= 0 (0: none)" };
      }
      return null;
  }
}

function isQuota(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function validateTxn(command: TxnCommand, limits: KvLimits): KvCommandProblem | null {
  const { compare, success, failure } = command;
  const max = limits.txnOpCountMax;
  for (const [field, list] of [
    ["compare", compare],
    ["success", success],
    ["failure", failure],
  ] as const) {
    if (list.length > max) {
      return {
        reason: "txn_invalid",
        message: `${field} holds ${list.length} items; the limit is ${max}`,
        field,
      };
    }
  }
  for (const [i, item] of compare.entries()) {
    const problem = checkKey(item.key, limits, `compare[${i}].key`);
    if (problem !== null) return problem;
    if (
      item.target === "revision" &&
      !(Number.isSafeInteger(item.revision) && item.revision >= 0)
    ) {
      return {
        reason: "txn_invalid",
        message: `compare[${i}].revision must be an integer >= 0`,
        field: `compare[${i}].revision`,
      };
    }
    if (item.target === "value" && item.value.byteLength > limits.valueBytesMax) {
      return tooLarge(`compare[${i}].value`, item.value.byteLength, limits);
    }
  }
  for (const [field, list] of [
    ["success", success],
    ["failure", failure],
  ] as const) {
    for (const [i, op] of list.entries()) {
      const problem = validateOp(op, `${field}[${i}]`, limits);
      if (problem !== null) return problem;
    }
  }
  return null;
}

function validateOp(op: TxnOp, item: string, limits: KvLimits): KvCommandProblem | null {
  // Named as the HTTP body spells it: success[0].put.key.
  const field = `${item}.${op.type}`;
  const problem = checkKey(op.key, limits, `${field}.key`);
  if (problem !== null || op.type === "delete") return problem;
  if (op.value.byteLength > limits.valueBytesMax) {
    return tooLarge(`${field}.value`, op.value.byteLength, limits);
  }
  if (op.lease !== undefined && !isLeaseId(op.lease)) {
    return {
      reason: "lease_invalid",
      message: `${field}.lease must be a lease id (>= 1)`,
      field: `${field}.lease`,
    };
  }
  return null;
}

function checkKey(key: string, limits: KvLimits, field: string): KvCommandProblem | null {
  const bytes = utf8ByteLength(key);
  if (bytes === null || bytes === 0) {
    return {
      reason: "key_invalid",
      message: `${field} must be non-empty, well-formed Unicode`,
      field,
    };
  }
  if (bytes > limits.keyBytesMax) {
    return {
      reason: "key_too_long",
      message: `${field} is ${bytes} bytes of UTF-8; the limit is ${limits.keyBytesMax}`,
      field,
    };
  }
  return null;
}

function checkTtl(ttlMs: number, limits: KvLimits): KvCommandProblem | null {
  if (
    Number.isSafeInteger(ttlMs) &&
    ttlMs >= limits.leaseTtlMsMin &&
    ttlMs <= limits.leaseTtlMsMax
  ) {
    return null;
  }
  return {
    reason: "lease_invalid",
    message: `ttlSeconds must be ${limits.leaseTtlMsMin / 1000} to ${limits.leaseTtlMsMax / 1000}`,
    field: "ttlSeconds",
  };
}

function tooLarge(field: string, bytes: number, limits: KvLimits): KvCommandProblem {
  return {
    reason: "value_too_large",
    message: `${field} is ${bytes} bytes; the limit is ${limits.valueBytesMax}`,
    field,
  };
}

function isLeaseId(id: number): boolean {
  return Number.isSafeInteger(id) && id >= 1;
}
