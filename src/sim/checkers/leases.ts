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
 * lease gone) and asks the applying node's store which promised leases it still holds.
 * A lease seen gone must have taken its key with it: the key a holder attached to it may
 * not hold that attachment's value any more (the workload holds at most two leases at a
 * time, far below the leases one apply ends, so a lease past its deadline is gone by the
 * end of the apply that passed it). The promise is the time to live the client asked for,
 * and an answer naming another is a violation too: a store that shortened a lease and
 * said so would otherwise be held only to its own word. It never changes what nodes do; a
 * broken promise throws SafetyViolation.
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
  private readonly ended = new Set<number>();
  /** The key a holder attached (or tried to attach) to each lease, and the value it put. */
  private readonly attachments = new Map<number, { key: string; value: string }>();
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
    if (this.ended.has(id)) return;
    const until = sentAtMs + askedTtlMs;
    const known = this.promises.get(id);
    if (known === undefined || known.untilMs < until)
      this.promises.set(id, { untilMs: until, sentAtMs, what });
  }

  /** A holder is sending a put of `key` = `value` attached to lease `id`. */
  attaching(id: number, key: string, value: string): void {
    this.attachments.set(id, { key, value });
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
    if (command?.type === "lease_revoke" && result.ok) this.revoked.add(command.id);
    for (const [id, promise] of this.promises) {
      if (held(id)) continue;
      this.promises.delete(id);
      this.ended.add(id);
      const attached = this.attachments.get(id);
      if (attached !== undefined) {
        this.attachments.delete(id);
        this.keysChecked++;
        if (valueAt(attached.key) === attached.value) {
          throw new SafetyViolation(
            `lease ${id} is gone (${this.revoked.has(id) ? "revoked" : "expired"}) but its key ${JSON.stringify(attached.key)} still holds ${JSON.stringify(attached.value)}`,
          );
        }
      }
      if (this.revoked.has(id)) continue;
      this.expired++;
      const slack = slackMs(promise.sentAtMs);
      if (nowMs + slack < promise.untilMs) {
        throw new SafetyViolation(
          `lease ${id} ended early: ${promise.what} promised it until ${promise.untilMs.toFixed(1)} ms, and it was gone at ${nowMs.toFixed(1)} ms (allowed ${slack} ms for wall clocks stepped forward since it was sent)`,
        );
      }
    }
  }
}
