/**
 * The simulated clients. Each client runs one operation at a time (read, write, delete or
 * compare-and-set on a few keys), looks for the master by following redirects, and gives
 * up after a deadline. Like the real client library, it gives every write an idempotency
 * key before its first attempt and sends every retry with that same key, so a retried
 * write is applied at most once; some clients also tag writes with a session and its
 * sequence number (dissertation §6.3). A write refused because the master's exactly-once
 * table is full is sent again, unchanged, after the time the refusal names. Every
 * operation lands in the history with its invocation and completion times; an operation
 * given up on is indeterminate ("info"): it may or may not have taken effect.
 *
 * The store's compare-and-set compares revisions, the history's compares values: a client
 * asks the checker which revision wrote the value it expects. Values are unique, so the
 * two agree as long as no write is applied twice, and a write applied twice shows.
 */

import type { Prng } from "../core/prng.js";
import type { KvCommand, SessionTag } from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import type { HistoryOp, KvOp } from "./checkers/linearizability.js";
import type { ClientAnswer, ClientRequest } from "./sim-node.js";
import { casAsTxn, casTxn } from "./store-ops.js";

export interface ClientTimings {
  /** Wait for one attempt's answer before trying another node. @default 200 */
  readonly attemptTimeoutMs: number;
  /** Give up on an operation (record it indeterminate) after this long. @default 4000 */
  readonly operationDeadlineMs: number;
  /** Pause between operations, at most. @default 20 */
  readonly thinkMsMax: number;
}

export const DEFAULT_CLIENT_TIMINGS: ClientTimings = Object.freeze({
  attemptTimeoutMs: 200,
  operationDeadlineMs: 4000,
  thinkMsMax: 20,
});

interface Current {
  readonly history: HistoryOp;
  readonly request: Omit<ClientRequest, "attempt">;
  attempt: number;
  target: NodeId;
}

/** How a client tags its writes for exactly-once execution. */
export interface ClientStyle {
  /** Tag writes with a session too, not only an idempotency key. */
  readonly sessions: boolean;
  /** Share of writes that are deletes. */
  readonly deleteShare: number;
  /** The revision that wrote `value` to `key`, if it was ever written (the checker knows). */
  readonly revisionOf: (key: string, value: string) => number | undefined;
}

/** A revision no key ever has: a compare-and-set on a value never written must fail. */
const NEVER = Number.MAX_SAFE_INTEGER;

const encoder = new TextEncoder();

/** What a client wants the cluster to do next. */
export type ClientAction =
  | {
      readonly kind: "send";
      readonly to: NodeId;
      readonly request: ClientRequest;
      readonly delayMs: number;
    }
  | { readonly kind: "timeout"; readonly attempt: number; readonly afterMs: number }
  | { readonly kind: "next"; readonly afterMs: number };

export class SimClient {
  /** Writes begun: numbers values and idempotency keys, so both are unique. */
  private seq = 0;
  /** The session's number (a new one after its session expired) and its last seq. */
  private sessionCount = 1;
  private sessionSeq = 0;
  private attemptSeq = 0;
  private current: Current | null = null;
  private readonly lastSeen = new Map<string, string | null>();
  private guess: NodeId;

  constructor(
    readonly id: number,
    private readonly nodes: readonly NodeId[],
    private readonly keys: readonly string[],
    private readonly prng: Prng,
    private readonly timings: ClientTimings,
    private readonly history: HistoryOp[],
    private readonly nextOpId: () => number,
    private readonly style: ClientStyle,
  ) {
    this.guess = prng.pick(nodes);
  }

  get busy(): boolean {
    return this.current !== null;
  }

  /** Starts a new operation at `now`. */
  begin(now: number): ClientAction[] {
    const key = this.prng.pick(this.keys);
    const roll = this.prng.next();
    let op: KvOp;
    let request: Omit<ClientRequest, "attempt">;
    if (roll < 0.4) {
      op = { kind: "read" };
      request = { client: this.id, opId: 0, readKey: key };
    } else {
      const value = `${this.id}.${this.seq + 1}`;
      if (roll < 0.75 - this.style.deleteShare) op = { kind: "write", value };
      else if (roll < 0.75) op = { kind: "delete" };
      else op = { kind: "cas", expected: this.casExpectation(key), value };
      this.seq++;
      request = { client: this.id, opId: 0, command: this.command(key, op) };
    }
    const history: HistoryOp = {
      id: this.nextOpId(),
      client: this.id,
      key,
      op,
      invokedAt: now,
      completedAt: null,
      outcome: "info",
    };
    this.history.push(history);
    this.current = {
      history,
      request: { ...request, opId: history.id },
      attempt: 0,
      target: this.guess,
    };
    return this.send(0);
  }

  /** The command for a write, with its idempotency key (and session), built once. */
  private command(key: string, op: Exclude<KvOp, { kind: "read" }>): KvCommand {
    const options: { idempotencyKey: string; session?: SessionTag } = {
      idempotencyKey: `c${this.id}-${this.seq}`,
    };
    if (this.style.sessions) {
      options.session = { clientId: `c${this.id}s${this.sessionCount}`, seq: ++this.sessionSeq };
    }
    if (op.kind === "delete") return { type: "delete", key, ...options };
    const value = encoder.encode(op.value);
    if (op.kind === "write") return { type: "put", key, value, ...options };
    const ifRevision =
      op.expected === null ? 0 : (this.style.revisionOf(key, op.expected) ?? NEVER);
    if (casAsTxn(this.seq)) return casTxn(key, ifRevision, value, options);
    return { type: "put", key, value, ifRevision, ...options };
  }

  private casExpectation(key: string): string | null {
    if (this.lastSeen.has(key) && this.prng.chance(0.8)) return this.lastSeen.get(key) ?? null;
    return this.prng.chance(0.5) ? null : `${this.prng.int(1, 5)}.${this.prng.int(1, 30)}`;
  }

  private send(delayMs: number): ClientAction[] {
    const current = this.current!;
    current.attempt = ++this.attemptSeq;
    return [
      {
        kind: "send",
        to: current.target,
        request: { ...current.request, attempt: current.attempt },
        delayMs,
      },
      {
        kind: "timeout",
        attempt: current.attempt,
        afterMs: delayMs + this.timings.attemptTimeoutMs,
      },
    ];
  }

  /** An answer arrived at `now`. Answers to earlier attempts of the same operation count. */
  onAnswer(
    now: number,
    request: ClientRequest,
    answer: ClientAnswer,
    from: NodeId,
  ): ClientAction[] {
    const current = this.current;
    if (current === null || request.opId !== current.history.id) return [];
    if (answer.kind === "ok") return this.finish(now, answer.output);
    if (answer.kind === "session_expired") {
      // The store cannot tell a retry from a new request any more: the outcome is unknown,
      // and the client starts a new session, as the session contract asks.
      this.sessionCount++;
      this.sessionSeq = 0;
      return this.giveUp(now);
    }
    if (this.expired(now)) return this.giveUp(now);
    if (answer.kind === "redirect") {
      current.target = answer.masterHint ?? this.otherNode(from);
      this.guess = current.target;
      return this.send(answer.masterHint === null ? 10 : 1);
    }
    // A refusal from a full table applied nothing: the same request, later.
    if (answer.kind === "busy") return this.send(answer.retryAfterMs);
    return this.send(this.prng.int(5, 30));
  }

  /** An attempt timed out; try another node unless a newer attempt is under way. */
  onTimeout(now: number, attempt: number): ClientAction[] {
    const current = this.current;
    if (current === null || attempt !== current.attempt) return [];
    if (this.expired(now)) return this.giveUp(now);
    current.target = this.otherNode(current.target);
    this.guess = current.target;
    return this.send(0);
  }

  private finish(now: number, output: string | boolean | null): ClientAction[] {
    const current = this.current!;
    const h = current.history;
    h.completedAt = now;
    h.outcome = "ok";
    if (h.op.kind === "read") {
      h.output = output;
      this.lastSeen.set(h.key, output as string | null);
    } else if (h.op.kind === "cas") {
      h.output = output;
      if (output === true) this.lastSeen.set(h.key, h.op.value);
    } else if (h.op.kind === "write") {
      this.lastSeen.set(h.key, h.op.value);
    } else if (h.op.kind === "delete") {
      h.output = output;
      this.lastSeen.set(h.key, null);
    }
    this.current = null;
    return [{ kind: "next", afterMs: this.prng.next() * this.timings.thinkMsMax }];
  }

  private giveUp(_now: number): ClientAction[] {
    // Indeterminate: completedAt stays null and the outcome "info".
    this.current = null;
    return [{ kind: "next", afterMs: this.prng.next() * this.timings.thinkMsMax }];
  }

  private expired(now: number): boolean {
    return now - this.current!.history.invokedAt > this.timings.operationDeadlineMs;
  }

  private otherNode(not: NodeId): NodeId {
    const others = this.nodes.filter((n) => n !== not);
    return others.length === 0 ? not : this.prng.pick(others);
  }
}
