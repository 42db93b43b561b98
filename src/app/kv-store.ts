/**
 * The store API (ranges, prefix deletes, transactions, leases, watches) of a node running
 * the built-in key-value state machine: `KvStoreApi` over a BatonNode and its
 * `KvStateMachine`. Writes are validated before they are proposed, so bad input never
 * reaches the log; reads pass a read barrier (ReadIndex) first unless stale, so a range is
 * linearizable like a single-key read; watches read this node's own history.
 *
 * It also owns the lease ticker: while this node is the master and leases are held, it
 * proposes a tick every LEASE_TICK_MS, so that log time (which leases expire by) keeps
 * moving when nobody writes, and a lease ends within about a tick of its deadline. On the
 * same beat, a master whose configured quota differs from the replicated one proposes its
 * own (`set_quota`), so the quota follows the master's configuration through the log.
 */

import { InputLimitError } from "../http/error-status.js";
import type { KvStoreApi } from "../http/store-api.js";
import {
  type ChangeListener,
  encodeCommand,
  type KvCommand,
  type KvRange,
  type KvRangeOptions,
  type KvResult,
  type KvStateMachine,
  type KvWatchStart,
  validateCommand,
} from "../kv/index.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import { InvalidInputError, TooLargeError } from "../shared/errors.js";
import {
  checkQuota,
  defaultStoreQuota,
  quotaDiffers,
  quotaRefusal,
  type StoreQuota,
} from "./store-quota.js";

/** Milliseconds between the master's ticks while leases are held. */
export const LEASE_TICK_MS = 250;

/** The part of a BatonNode the store uses. */
export interface StoreNode {
  readonly role: string;
  propose(command: Uint8Array): Promise<unknown>;
  readBarrier(): Promise<void>;
}

export class KvStore implements KvStoreApi {
  private ticker: NodeJS.Timeout | null = null;
  private ticking = false;

  constructor(
    private readonly node: StoreNode,
    private readonly stateMachine: KvStateMachine,
    /** The quota this node proposes when it is the master. */
    readonly quota: StoreQuota = defaultStoreQuota(),
  ) {}

  async propose(command: KvCommand): Promise<KvResult> {
    // The types keep a TypeScript caller's keys strings and values bytes; a JavaScript
    // caller's string value would be proposed, committed and only then refused as a
    // malformed command, and a missing key would fail with a bare TypeError.
    const shape = shapeProblem(command);
    if (shape !== null) throw new InvalidInputError(shape.field, shape.message);
    const limits = this.stateMachine.limits;
    const problem = validateCommand(command, limits);
    if (problem !== null) {
      if (problem.reason === "value_too_large") {
        const size = command.type === "put" ? command.value.length : undefined;
        throw new TooLargeError(problem.field ?? "value", limits.valueBytesMax, size);
      }
      const field = problem.field ?? fieldOf(problem.reason);
      const detail = withoutField(field, problem.message);
      if (problem.reason === "key_too_long") {
        throw new InputLimitError(field, detail, limits.keyBytesMax);
      }
      throw new InvalidInputError(field, detail);
    }
    // Only the master's copy is current enough to refuse on (see store-quota.ts): a
    // backup forwards the write, and the master's check or the state machine decides.
    if (this.node.role === "master" && !quotaDiffers(this.quota, this.stateMachine)) {
      checkQuota(command, this.stateMachine);
    }
    const result = (await this.node.propose(encodeCommand(command))) as KvResult;
    if (!result.ok && result.code === "quota_exceeded") {
      // The state machine's refusal, answered as the edge check's refusal is.
      throw quotaRefusal(command, result, this.stateMachine);
    }
    return result;
  }

  async range(options: KvRangeOptions, read: { readonly stale: boolean }): Promise<KvRange> {
    if (!read.stale) await this.node.readBarrier();
    return this.stateMachine.range(options);
  }

  async lease(id: number): Promise<{ id: number; ttlMs: number; remainingMs: number } | null> {
    await this.node.readBarrier();
    return this.stateMachine.lease(id);
  }

  revision(): number {
    return this.stateMachine.revision;
  }

  watch(fromRevision: number, listener: ChangeListener): KvWatchStart {
    return this.stateMachine.watch(fromRevision, listener);
  }

  watchStartRevision(): number {
    return this.stateMachine.watchStartRevision;
  }

  /** Starts proposing ticks while this node is the master and leases are held. */
  startLeaseTicker(): void {
    if (this.ticker !== null) return;
    this.ticker = setInterval(() => this.maybeTick(), LEASE_TICK_MS);
    this.ticker.unref();
  }

  stopLeaseTicker(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  private maybeTick(): void {
    // One tick at a time: a master that cannot commit must not pile them up.
    if (this.ticking || this.node.role !== "master") return;
    let command: KvCommand;
    if (quotaDiffers(this.quota, this.stateMachine)) {
      command = { type: "set_quota", ...this.quota };
    } else if (this.stateMachine.leaseCount > 0) {
      command = { type: "tick" };
    } else return;
    this.ticking = true;
    this.node
      .propose(encodeCommand(command))
      .then((result) => {
        // The quota was checked when the node was created, and a tick cannot fail: a
        // refusal is a bug, and proposing the same command again would only repeat it
        // four times a second for ever.
        const answer = result as KvResult | null;
        assert(
          answer === null || answer.ok,
          `the state machine refused this master's own ${command.type}: ${JSON.stringify(answer)}`,
        );
      })
      .catch((error: unknown) => {
        // Losing the master role or a busy log only delays expiry or the quota; a bug
        // still surfaces.
        rethrowIfBug(error);
      })
      .finally(() => {
        this.ticking = false;
      });
  }
}

/** The first key that is not a string or value that is not bytes in `command`, or null. */
function shapeProblem(command: KvCommand): { field: string; message: string } | null {
  const notKey = (field: string, key: unknown) =>
    typeof key === "string" ? null : { field, message: `must be a string, not ${typeOf(key)}` };
  const notValue = (field: string, value: unknown) =>
    value instanceof Uint8Array
      ? null
      : { field, message: `must be a Uint8Array (bytes), not ${typeOf(value)}` };
  switch (command.type) {
    case "put":
      return notKey("key", command.key) ?? notValue("value", command.value);
    case "delete":
      return notKey("key", command.key);
    case "txn": {
      const compare = Array.isArray(command.compare) ? command.compare : [];
      for (const [i, c] of compare.entries()) {
        const problem = notKey(`compare[${i}].key`, c?.key);
        if (problem !== null) return problem;
      }
      for (const branch of ["success", "failure"] as const) {
        const ops = Array.isArray(command[branch]) ? command[branch] : [];
        for (const [i, op] of ops.entries()) {
          const at = `${branch}[${i}].${op?.type}`;
          const problem =
            notKey(`${at}.key`, op?.key) ??
            (op?.type === "put" ? notValue(`${at}.value`, op.value) : null);
          if (problem !== null) return problem;
        }
      }
      return null;
    }
    default:
      return null;
  }
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

/**
 * A problem's message without the field it starts with ("key is 1025 bytes" → "1025
 * bytes"), since the error names the field first: "key: key is ..." said it twice.
 */
function withoutField(field: string, message: string): string {
  for (const lead of [`${field} is `, `${field} `]) {
    if (message.startsWith(lead)) return message.slice(lead.length);
  }
  return message;
}

/** The request field a problem without its own field is about. */
function fieldOf(reason: string): string {
  if (reason.startsWith("key")) return "key";
  if (reason.startsWith("if_revision")) return "If-Match";
  if (reason.startsWith("idempotency")) return "Idempotency-Key";
  if (reason.startsWith("value")) return "value";
  if (reason.startsWith("lease")) return "lease";
  return "request";
}
