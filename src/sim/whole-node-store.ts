/**
 * The whole-node simulator's clients for the store beyond single-key puts and reads:
 * compare-and-set (as a put with `ifRevision` or as a transaction), transactions over two
 * keys, range reads, prefix deletes, and lease holders that grant, attach a key, keep
 * alive, revoke or let expire, with the master's lease ticker that keeps log time moving.
 *
 * Each operation goes into the one history the linearizability checker reads, as what it
 * is to each key's register: a transaction over two keys is a compare-and-set on the first
 * and, when it succeeded (or may have), a write of the second; a range read is a read of
 * every key at once; a prefix delete is a delete of every key. What the per-key registers
 * cannot see is judged by its own checker: torn range reads (`checkers/range-atomicity.ts`)
 * and leases that end early (`checkers/leases.ts`). This file only asks and records; it
 * never decides a verdict.
 */

import {
  encodeCommand,
  type KvCommand,
  type KvResult,
  type KvStateMachine,
  type SessionTag,
} from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import { writeName } from "./checkers/exactly-once.js";
import type { LeaseChecker } from "./checkers/leases.js";
import type { HistoryOp, KvOp } from "./checkers/linearizability.js";
import type { RangeAtomicityChecker } from "./checkers/range-atomicity.js";
import { casAsTxn, casTxn } from "./store-ops.js";

/** Every workload key starts with this; lease keys do not, so no prefix delete takes them. */
export const KEY_PREFIX = "k";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the clients need of the run. */
export interface StoreHost {
  readonly now: number;
  readonly keys: readonly string[];
  readonly rangeAtomicity: RangeAtomicityChecker;
  readonly leases: LeaseChecker;
  record(client: number, key: string, op: KvOp): HistoryOp;
  /** The next number in the order of the run's events (see HistoryOp.completedSeq). */
  nextSeq(): number;
  saw(client: number, key: string, value: string | null): void;
  lastSeenBy(client: number, key: string): string | null | undefined;
  revisionOf(key: string, value: string): number | undefined;
  /** The tags of `client`'s write number `n`: made once, sent with every retry. */
  writeTags(client: number, n: number): WriteTags;
  /**
   * Sends a command until it is answered; null when the deadline passes first, or when the
   * store answers that `client`'s session expired (the outcome is then unknown too).
   */
  submit(
    command: Uint8Array,
    deadline: number,
    client?: number,
  ): Promise<{ readonly result: KvResult; readonly node: NodeId } | null>;
  barrierRead<T>(
    deadline: number,
    read: (kv: KvStateMachine, node: NodeId) => T,
  ): Promise<{ readonly value: T } | null>;
  log(line: string): void;
}

/**
 * What makes a write exactly-once: an idempotency key, a session and its sequence number
 * (a session-tagged client), or both.
 */
export interface WriteTags {
  readonly idempotencyKey?: string;
  readonly session?: SessionTag;
}

/** A revision no key ever has: a compare-and-set on a value never written fails. */
const NEVER = Number.MAX_SAFE_INTEGER;

/** One client's one operation on the store. */
export class StoreClient {
  constructor(
    private readonly host: StoreHost,
    private readonly client: number,
    private readonly n: number,
    private readonly deadline: number,
  ) {}

  /** This operation's tags, made on first use and kept for its retries. */
  private tags: WriteTags | null = null;

  private writeTags(): WriteTags {
    this.tags ??= this.host.writeTags(this.client, this.n);
    return this.tags;
  }

  /** The tags of this operation's writes, named on each history entry they change. */
  private tagged(...entries: HistoryOp[]): WriteTags {
    const tags = this.writeTags();
    for (const entry of entries) entry.writeName = writeName(tags);
    return tags;
  }

  private complete(entry: HistoryOp, output?: string | null | boolean): void {
    entry.outcome = "ok";
    entry.completedAt = this.host.now;
    entry.completedSeq = this.host.nextSeq();
    if (output !== undefined) entry.output = output;
  }

  /** The value this client expects `key` to hold (what it last saw), and its revision. */
  private expectation(key: string): { expected: string | null; revision: number } {
    const expected = this.host.lastSeenBy(this.client, key) ?? null;
    const revision = expected === null ? 0 : (this.host.revisionOf(key, expected) ?? NEVER);
    return { expected, revision };
  }

  /** If `key` holds what this client last saw, put a new value (every other one a txn). */
  async cas(key: string): Promise<void> {
    const { expected, revision } = this.expectation(key);
    const value = `c${this.client}-${this.n}`;
    const entry = this.host.record(this.client, key, { kind: "cas", expected, value });
    const options = this.tagged(entry);
    const command: KvCommand = casAsTxn(this.n)
      ? casTxn(key, revision, encoder.encode(value), options)
      : { type: "put", key, value: encoder.encode(value), ifRevision: revision, ...options };
    const answer = await this.host.submit(encodeCommand(command), this.deadline, this.client);
    if (answer === null) return;
    const { result } = answer;
    const succeeded = result.ok
      ? (result.succeeded ?? true)
      : result.code === "precondition_failed"
        ? false
        : null;
    if (succeeded === null) throw new Error(`cas answered ${JSON.stringify(result)}`);
    this.complete(entry, succeeded);
    if (succeeded) this.host.saw(this.client, key, value);
    this.host.log(`client ${this.client}: op ${entry.id} cas ${key} ${JSON.stringify(result)}`);
  }

  /**
   * "If `key` holds what this client last saw, put new values in it and in another key":
   * a compare-and-set of the first and, if it succeeded, a write of the second, at one
   * revision.
   */
  async txnTwoKeys(key: string): Promise<void> {
    const other = this.host.keys.find((k) => k !== key)!;
    const { expected, revision } = this.expectation(key);
    const first = `c${this.client}-${this.n}`;
    const second = `c${this.client}-${this.n}b`;
    const entry = this.host.record(this.client, key, { kind: "cas", expected, value: first });
    const write = this.host.record(this.client, other, { kind: "write", value: second });
    const command: KvCommand = {
      type: "txn",
      compare: [{ key, target: "revision", revision }],
      success: [
        { type: "put", key, value: encoder.encode(first) },
        { type: "put", key: other, value: encoder.encode(second) },
      ],
      failure: [],
      ...this.tagged(entry, write),
    };
    const answer = await this.host.submit(encodeCommand(command), this.deadline, this.client);
    if (answer === null) return; // Both may or may not have taken effect.
    const { result } = answer;
    if (!result.ok) throw new Error(`txn answered ${JSON.stringify(result)}`);
    const succeeded = result.succeeded === true;
    this.complete(entry, succeeded);
    if (succeeded) {
      this.complete(write);
      this.host.saw(this.client, key, first);
      this.host.saw(this.client, other, second);
    } else {
      write.outcome = "fail"; // The branch that ran put nothing.
    }
    this.host.log(
      `client ${this.client}: op ${entry.id}+${write.id} txn ${key},${other} ${JSON.stringify(result)}`,
    );
  }

  /** Every workload key in one read, consistent at one revision, after a read barrier. */
  async rangeRead(): Promise<void> {
    const entries = this.host.keys.map((key) =>
      this.host.record(this.client, key, { kind: "read" }),
    );
    const read = await this.host.barrierRead(this.deadline, (kv, node) => {
      const page = kv.range({
        prefix: KEY_PREFIX,
        after: null,
        limit: 1000,
        valueBytesMax: Number.POSITIVE_INFINITY,
      });
      this.host.rangeAtomicity.checkRange(node, page.revision, page.items);
      return page;
    });
    if (read === null) {
      for (const entry of entries) entry.outcome = "fail"; // A read changes nothing.
      return;
    }
    const values = new Map(read.value.items.map((i) => [i.key, decoder.decode(i.value)]));
    for (const entry of entries) {
      const value = values.get(entry.key) ?? null;
      entry.servedRevision = read.value.revision;
      this.complete(entry, value);
      this.host.saw(this.client, entry.key, value);
    }
    this.host.log(
      `client ${this.client}: range read at revision ${read.value.revision}: ${[...values].join(" ")}`,
    );
  }

  /** Deletes every workload key at one revision. */
  async deletePrefix(): Promise<void> {
    const entries = this.host.keys.map((key) =>
      this.host.record(this.client, key, { kind: "delete" }),
    );
    const command: KvCommand = {
      type: "delete_range",
      prefix: KEY_PREFIX,
      ...this.tagged(...entries),
    };
    const answer = await this.host.submit(encodeCommand(command), this.deadline, this.client);
    if (answer === null) return;
    if (!answer.result.ok) throw new Error(`delete_range answered ${JSON.stringify(answer)}`);
    for (const entry of entries) {
      this.complete(entry); // Whether each key existed is not said.
      this.host.saw(this.client, entry.key, null);
    }
    this.host.log(`client ${this.client}: delete prefix ${JSON.stringify(answer.result)}`);
  }
}

/** What a lease holder needs of the run besides a store client's. */
export interface LeaseHost extends StoreHost {
  /** Clients still run (false once the faults are over and clients are told to stop). */
  readonly clientsRunning: boolean;
  readonly prng: { int(min: number, max: number): number; chance(p: number): boolean };
  sleep(ms: number): Promise<void>;
  /** Counts a request in flight, so that the run waits for its answer before it ends. */
  busy(delta: 1 | -1): void;
}

/**
 * A client that holds leases one after another: grant one (1 to 3 s), attach a key to
 * it, keep it alive a few times, then revoke it or let it expire. Every answered grant
 * and keep-alive is a promise the lease checker holds the cluster to.
 */
export async function holdLeases(host: LeaseHost, holder: number): Promise<void> {
  let n = 0;
  const send = async (command: KvCommand) => {
    host.busy(1);
    try {
      const sentAt = host.now;
      const answer = await host.submit(encodeCommand(command), host.now + 4000);
      return answer === null ? null : { result: answer.result, sentAt };
    } finally {
      host.busy(-1);
    }
  };
  while (host.clientsRunning) {
    const key = (what: string) => `lease${holder}-${++n}-${what}`;
    const ttlMs = host.prng.int(1000, 3000);
    const granted = await send({ type: "lease_grant", ttlMs, idempotencyKey: key("grant") });
    if (granted === null || !granted.result.ok || granted.result.lease === undefined) {
      await host.sleep(100);
      continue;
    }
    const id = granted.result.lease.id;
    host.leases.promised(
      id,
      ttlMs,
      granted.result.lease.ttlMs,
      granted.sentAt,
      `the grant of lease ${id}`,
    );
    host.log(`lease holder ${holder}: granted lease ${id} for ${ttlMs} ms`);
    host.leases.attaching(id, `lease${holder}`, `lease ${id}`);
    await send({
      type: "put",
      key: `lease${holder}`,
      value: encoder.encode(`lease ${id}`),
      lease: id,
      idempotencyKey: key("put"),
    });
    for (let k = host.prng.int(0, 4); k > 0 && host.clientsRunning; k--) {
      await host.sleep(host.prng.int(Math.floor(ttlMs / 4), Math.floor(ttlMs / 2)));
      const kept = await send({ type: "lease_keepalive", id, idempotencyKey: key("keep") });
      if (kept === null) continue;
      if (!kept.result.ok || kept.result.lease === undefined) break; // It ended.
      const what = `a keep-alive of lease ${id}`;
      host.leases.promised(id, ttlMs, kept.result.lease.ttlMs, kept.sentAt, what);
    }
    if (host.prng.chance(0.3)) {
      await send({ type: "lease_revoke", id, idempotencyKey: key("revoke") });
    } else {
      await host.sleep(ttlMs + host.prng.int(0, 500)); // Let it expire.
    }
  }
}

/** The master's lease ticker, as the key-value server runs it (`src/app/kv-store.ts`). */
export const LEASE_TICK_MS = 250;
