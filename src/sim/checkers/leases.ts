/**
 * The lease checker: a lease never ends early. A client that sent a grant or a keep-alive
 * at virtual time s and got it answered was promised the lease until s + ttl; the lease may
 * end before that only when it is revoked. Log time, which leases expire by, comes from the
 * master's wall clock and moves on by at most `logTimeStepMsMax` per entry, so a wall clock
 * stepped forward may bring an expiry forward by that much and no more; the checker allows
 * that step for every forward jump made since the promise was sent, and nothing else. (A
 * jump before it went into log time before the grant or keep-alive was applied, which set
 * the deadline from that log time; a new master's first entry, which may carry another
 * node's earlier jump, renews every lease from its own log time.)
 *
 * It watches the first application of every index (the earliest moment anyone can see a
 * lease gone) and asks the applying node's store which leases it still holds, from the
 * grant's application on, so that it knows when each ended. An answer that arrives after
 * the end is judged against it too: a keep-alive sent before the end must not have been
 * promised beyond it, and one sent after the end was seen may not be answered at all (the
 * lease is gone, and only a retry of an earlier application may repeat its answer). A
 * lease seen gone must have taken its key with it: the key a holder attached to it may not
 * hold that attachment's value then or ever after (the workload holds at most two leases
 * at a time, far below the leases one apply ends, so a lease past its deadline is gone by
 * the end of the apply that passed it); and every application of a put attached to a
 * lease, on any node, must find the lease held. The promise is the time to live the
 * client asked for, and an answer naming another is a violation too: a store that
 * shortened a lease and said so would otherwise be held only to its own word. It never
 * changes what nodes do; a broken promise throws SafetyViolation.
 */

import type { KvCommand, KvResult } from "../../kv/index.js";
import { SafetyViolation } from "./safety.js";

interface LeasePromise {
  /** Virtual ms until which the lease must be held, by the latest answered request. */
  untilMs: number;
  /** When that request was sent (virtual ms). */
  readonly sentAtMs: number;
  /** The request that promised it, for the explanation. */
  readonly what: string;
}

export class LeaseChecker {
  private readonly promises = new Map<number, LeasePromise>();
  private readonly revoked = new Set<number>();
  /** Leases granted or promised and not seen gone yet. */
  private readonly live = new Set<number>();
  /** When each lease was first seen gone (virtual ms). */
  private readonly ended = new Map<number, number>();
  /** The key a holder attached (or tried to attach) to each lease, and the value it put. */
  private readonly attachments = new Map<number, { key: string; value: string }>();
  /** Per key, the values attached to leases seen gone, with the lease: never seen again. */
  private readonly goneValues = new Map<string, Map<string, number>>();
  /** The latest `slackMs` given to `applied`, for an answer that arrives after the end. */
  private slackMs: (sinceMs: number) => number = () => 0;
  /** Leases that ended by expiry, checked. */
  expired = 0;
  /** Leases seen gone whose attached key was checked. */
  keysChecked = 0;

  /**
   * A client's grant or keep-alive of `id`, asking for `askedTtlMs`, sent at `sentAtMs`,
   * was answered with `answeredTtlMs`.
   */
  promised(
    id: number,
    askedTtlMs: number,
    answeredTtlMs: number,
    sentAtMs: number,
    what: string,
  ): void {
    if (answeredTtlMs !== askedTtlMs) {
      throw new SafetyViolation(
        `${what} asked for ${askedTtlMs} ms and was answered with a time to live of ${answeredTtlMs} ms`,
      );
    }
    const until = sentAtMs + askedTtlMs;
    const endedAt = this.ended.get(id);
    if (endedAt !== undefined) {
      // Answered after the lease was seen gone at `endedAt`.
      if (sentAtMs > endedAt) {
        throw new SafetyViolation(
          `${what}, sent at ${sentAtMs.toFixed(1)} ms, was answered ok, but lease ${id} was gone at ${endedAt.toFixed(1)} ms`,
        );
      }
      const slack = this.slackMs(sentAtMs);
      if (!this.revoked.has(id) && endedAt + slack < until) {
        throw new SafetyViolation(
          `lease ${id} ended early: ${what} promised it until ${until.toFixed(1)} ms, and it was gone at ${endedAt.toFixed(1)} ms (allowed ${slack} ms for wall clocks stepped forward since it was sent; the answer came after the end)`,
        );
      }
      return;
    }
    this.live.add(id);
    const known = this.promises.get(id);
    if (known === undefined || known.untilMs < until)
      this.promises.set(id, { untilMs: until, sentAtMs, what });
  }

  /** A holder is sending a put of `key` = `value` attached to lease `id`. */
  attaching(id: number, key: string, value: string): void {
    if (this.ended.has(id)) this.forbid(id, key, value);
    else this.attachments.set(id, { key, value });
  }

  /** `key` may never hold `value` again: the lease it was attached to is gone. */
  private forbid(id: number, key: string, value: string): void {
    const values = this.goneValues.get(key) ?? new Map<string, number>();
    this.goneValues.set(key, values);
    values.set(value, id);
  }

  /**
   * Call after every application of an index, on every node, with the applying store's
   * view after it: a put (a transaction's included) that the command carried out at
   * `index` attached its key to its lease there, so the lease must be held (else the key
   * would outlive it for ever). A retry answered from the idempotency table carried
   * nothing out: its answer's revision is an earlier index's.
   */
  appliedOnNode(
    node: number,
    index: number,
    command: KvCommand | null,
    result: KvResult,
    held: (id: number) => boolean,
  ): void {
    if (command === null || !result.ok || result.revision !== index) return;
    const puts =
      command.type === "put"
        ? [command]
        : command.type === "txn"
          ? (result.succeeded === true ? command.success : command.failure).filter(
              (op) => op.type === "put",
            )
          : [];
    for (const put of puts) {
      if (put.lease === undefined || put.lease === 0 || held(put.lease)) continue;
      throw new SafetyViolation(
        `node ${node} applied a put of ${JSON.stringify(put.key)} attached to lease ${put.lease} at index ${index}, where that lease is not held: the key would outlive it`,
      );
    }
  }

  /**
   * Call after the first application of an index, at virtual time `nowMs`: `held(id)` says
   * whether the applying store still holds lease `id`, `valueAt(key)` what it holds under a
   * key (null: nothing); `slackMs(sinceMs)` is how far forward wall clocks may have moved
   * log time since virtual time `sinceMs`.
   */
  applied(
    command: KvCommand | null,
    result: KvResult,
    nowMs: number,
    held: (id: number) => boolean,
    valueAt: (key: string) => string | null,
    slackMs: (sinceMs: number) => number,
  ): void {
    this.slackMs = slackMs;
    if (command?.type === "lease_revoke" && result.ok) this.revoked.add(command.id);
    const granted = command?.type === "lease_grant" && result.ok ? result.lease?.id : undefined;
    if (granted !== undefined && !this.ended.has(granted)) this.live.add(granted);
    for (const id of this.live) {
      if (held(id)) continue;
      this.live.delete(id);
      this.ended.set(id, nowMs);
      const attached = this.attachments.get(id);
      if (attached !== undefined) {
        this.attachments.delete(id);
        this.keysChecked++;
        if (valueAt(attached.key) === attached.value) {
          throw new SafetyViolation(
            `lease ${id} is gone (${this.revoked.has(id) ? "revoked" : "expired"}) but its key ${JSON.stringify(attached.key)} still holds ${JSON.stringify(attached.value)}`,
          );
        }
        this.forbid(id, attached.key, attached.value);
      }
      const promise = this.promises.get(id);
      if (promise === undefined) continue;
      this.promises.delete(id);
      if (this.revoked.has(id)) continue;
      this.expired++;
      const slack = slackMs(promise.sentAtMs);
      if (nowMs + slack < promise.untilMs) {
        throw new SafetyViolation(
          `lease ${id} ended early: ${promise.what} promised it until ${promise.untilMs.toFixed(1)} ms, and it was gone at ${nowMs.toFixed(1)} ms (allowed ${slack} ms for wall clocks stepped forward since it was sent)`,
        );
      }
    }
    for (const [key, values] of this.goneValues) {
      const value = valueAt(key);
      const id = value === null ? undefined : values.get(value);
      if (id !== undefined) {
        throw new SafetyViolation(
          `lease ${id} is gone but its key ${JSON.stringify(key)} holds ${JSON.stringify(value)} again, at ${nowMs.toFixed(1)} ms`,
        );
      }
    }
  }
}
