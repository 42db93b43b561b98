/**
 * The simulated clients. Each client runs one operation at a time (read, write or
 * compare-and-set on a few keys), looks for the master by following redirects, retries
 * on timeouts with the same session sequence number (so a retried write is applied at
 * most once), and gives up after a deadline. Every operation lands in the history with
 * its invocation and completion times; an operation given up on is indeterminate
 * ("info"): it may or may not have taken effect.
 */

import type { Prng } from "../core/prng.js";
import type { NodeId } from "../protocol/messages.js";
import type { HistoryOp, KvOp } from "./checkers/linearizability.js";
import type { SimOp } from "./sim-kv.js";
import type { ClientAnswer, ClientRequest } from "./sim-node.js";

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
  private seq = 0;
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
      const simOp: SimOp =
        roll < 0.75
          ? { kind: "write", key, value }
          : { kind: "cas", key, expected: this.casExpectation(key), value };
      op =
        simOp.kind === "write"
          ? { kind: "write", value }
          : { kind: "cas", expected: simOp.expected, value };
      this.seq++;
      request = {
        client: this.id,
        opId: 0,
        command: { client: this.id, seq: this.seq, op: simOp },
      };
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
    if (this.expired(now)) return this.giveUp(now);
    if (answer.kind === "redirect") {
      current.target = answer.masterHint ?? this.otherNode(from);
      this.guess = current.target;
      return this.send(answer.masterHint === null ? 10 : 1);
    }
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
