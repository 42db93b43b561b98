/**
 * The leases of the store: each has an id (the log index that granted it), a time to live
 * and a deadline in log time, and the keys attached to it, which are deleted when it ends.
 *
 * Deadlines are log time (`KvState.clockMs`), never a clock of this node, so every replica
 * ends the same leases at the same log index. Leases are kept in id order (a Map in
 * insertion order, and ids grow), which is the order they expire in when several are due
 * at once. `nextExpiryMs` is a lower bound on the earliest deadline, so that most applies
 * skip the scan; it is derived, rebuilt on restore, and not part of the replicated state.
 */

import { assert } from "../shared/assert.js";
import { addDigests, type Digest64, Hash64, subtractDigests, ZERO_DIGEST } from "./hash64.js";

export interface Lease {
  readonly id: number;
  readonly ttlMs: number;
  /** Log time at which the lease ends unless kept alive. */
  expiresAtMs: number;
  /** The keys attached to it. */
  readonly keys: Set<string>;
}

export class LeaseTable {
  private readonly leases = new Map<number, Lease>();
  /** No lease ends before this log time (it may be earlier than the true earliest). */
  private nextExpiryMs = Number.POSITIVE_INFINITY;
  /** The sum of `leaseDigest` over the leases, kept as they change. */
  private digestSum: Digest64 = ZERO_DIGEST;

  get size(): number {
    return this.leases.size;
  }

  /** The order-independent digest of the leases (see `leaseDigest`), in O(1). */
  get digest(): Digest64 {
    return this.digestSum;
  }

  get(id: number): Lease | undefined {
    return this.leases.get(id);
  }

  /**
   * The lease `id` if it is held at log time `nowMs`: one whose deadline has passed has
   * ended, even while it waits for its turn to be removed (at most
   * `leaseExpiryCountMaxPerApply` leases end per apply), so it can no longer be kept alive,
   * take keys or be read as held.
   */
  held(id: number, nowMs: number): Lease | undefined {
    const lease = this.leases.get(id);
    return lease !== undefined && lease.expiresAtMs > nowMs ? lease : undefined;
  }

  /** The leases in id order; the caller must not change the table while iterating. */
  values(): IterableIterator<Lease> {
    return this.leases.values();
  }

  /** The earliest deadline, or null without leases: when a full table has room again. */
  earliestExpiryMs(): number | null {
    let earliest: number | null = null;
    for (const lease of this.leases.values()) {
      if (earliest === null || lease.expiresAtMs < earliest) earliest = lease.expiresAtMs;
    }
    return earliest;
  }

  /** Adds a lease with no keys. Ids must grow: a lease id is the log index that granted it. */
  grant(id: number, ttlMs: number, expiresAtMs: number): Lease {
    assert(!this.leases.has(id), "a lease id is granted once");
    const lease: Lease = { id, ttlMs, expiresAtMs, keys: new Set() };
    this.leases.set(id, lease);
    this.digestSum = addDigests(this.digestSum, leaseDigest(lease));
    this.nextExpiryMs = Math.min(this.nextExpiryMs, expiresAtMs);
    return lease;
  }

  /** Moves a lease's deadline to `nowMs` + its time to live. */
  renew(lease: Lease, nowMs: number): void {
    assert(this.leases.get(lease.id) === lease, "renewing a lease that is held");
    this.digestSum = subtractDigests(this.digestSum, leaseDigest(lease));
    lease.expiresAtMs = nowMs + lease.ttlMs;
    this.digestSum = addDigests(this.digestSum, leaseDigest(lease));
  }

  /**
   * Every lease gets its full time to live from `nowMs` (a new master's term began),
   * those whose deadline passed while no master applied anything included: clients could
   * not keep them alive through the fail-over (as etcd does). Not one whose deadline had
   * passed by `previousMs`, the log time of the command before: it had ended already, and
   * was answered as ended, while it waited for its turn to be removed.
   */
  renewAll(nowMs: number, previousMs: number): void {
    for (const lease of this.leases.values()) {
      if (lease.expiresAtMs > previousMs) this.renew(lease, nowMs);
    }
    this.nextExpiryMs = this.earliestExpiryMs() ?? Number.POSITIVE_INFINITY;
  }

  /** Removes a lease; its keys are the caller's to delete. */
  remove(id: number): void {
    const lease = this.leases.get(id);
    assert(lease !== undefined && this.leases.delete(id), "removing a lease that is not held");
    this.digestSum = subtractDigests(this.digestSum, leaseDigest(lease));
  }

  /**
   * Up to `countMax` leases whose deadline is at or before `nowMs`, in id order. The
   * caller removes them; leases left over because of `countMax` are returned next time.
   */
  due(nowMs: number, countMax: number): Lease[] {
    if (nowMs < this.nextExpiryMs) return [];
    const due: Lease[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const lease of this.leases.values()) {
      if (lease.expiresAtMs <= nowMs && due.length < countMax) due.push(lease);
      else next = Math.min(next, lease.expiresAtMs);
    }
    this.nextExpiryMs = next;
    return due;
  }

  /** Rebuilds the derived bound after leases were loaded from a snapshot. */
  loaded(): void {
    this.nextExpiryMs = this.earliestExpiryMs() ?? Number.POSITIVE_INFINITY;
  }
}

/** The digest of one lease; the leases' digest is the sum of these. */
export function leaseDigest(lease: Pick<Lease, "id" | "ttlMs" | "expiresAtMs">): Digest64 {
  return new Hash64(0x1ea5e)
    .integer(lease.id)
    .integer(lease.ttlMs)
    .integer(lease.expiresAtMs)
    .digest();
}
