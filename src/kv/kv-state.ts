/**
 * The replicated state of the key-value store as plain tables, and its digest. Everything
 * here is part of what replicas must agree on: the keys with their values and revisions,
 * the client sessions, the idempotency keys, the store's revision, the log clock (log time
 * and the last master timestamp it was advanced from) and the index of the last command
 * applied.
 *
 * This file owns the shape of the state and the definition of its digest, which both
 * `KvStateMachine.stateHash()` and snapshot verification use (formats 1 to 3 kept theirs,
 * to verify old snapshots). It must never decide what a
 * command does (that is `kv-state-machine.ts`) nor how state is streamed (`kv-snapshot.ts`).
 */

import { hashResult, type KvResult } from "./commands.js";
import { type ExpiringSlot, ExpiringTable } from "./expiring-table.js";
import { addDigests, type Digest64, Hash64, ZERO_DIGEST } from "./hash64.js";
import { type Lease, LeaseTable, leaseDigest } from "./lease-table.js";
import type { KvLimits } from "./limits.js";
import type { StoredValue } from "./stored-value.js";

/**
 * One key's value. Entries are immutable and replaced on every change, so a snapshot may
 * hold on to the entry it saw.
 */
export interface DataEntry {
  /** The value's bytes, small ones held compactly (see stored-value.ts). */
  readonly value: StoredValue;
  /** Log index of the command that last modified the key (etcd's mod_revision). */
  readonly revision: number;
  /**
   * Where the entry sits in the Map's insertion order: assigned from an increasing counter
   * when the key is inserted and kept when its value is replaced in place. Local to this
   * node (not replicated, not hashed); snapshots use it to tell which keys they have read.
   */
  readonly position: number;
  /** The lease the key is attached to, 0 for none. */
  readonly lease: number;
}

/** What a client session remembers: its last request and that request's result. */
export interface SessionRecord {
  readonly lastSeq: number;
  readonly result: KvResult;
}

/** What an idempotency key remembers: what the first request did and what it returned. */
export interface IdempotencyRecord {
  readonly fingerprint: Digest64;
  readonly result: KvResult;
}

/** The scalar part of the state. */
export interface KvMeta {
  /** Log index of the last command that modified a key; 0 before any. */
  revision: number;
  /**
   * Log time in milliseconds, the clock every table expires by. It starts at 0 and each
   * command advances it by the difference between its `context.time` and the previous
   * command's, clamped to 0..`logTimeStepMsMax` (see `kv-state-machine.ts`), so it never
   * goes backwards and a master's clock jump moves it by at most one step.
   */
  clockMs: number;
  /**
   * The master's timestamp of the last command applied (`context.time` in whole
   * milliseconds, 0 or more): where the next command's advance is measured from.
   */
  stampMs: number;
  /** Log index of the last command applied, modifying or not; 0 before any. */
  lastIndex: number;
  /**
   * Term of the last command applied; 0 before any. When a command of a later term is
   * applied, every lease gets its full time to live again (a new master took over).
   */
  term: number;
  /**
   * Most keys the store holds, 0 for no quota. Replicated (set by a `set_quota` command
   * the master proposes from its configuration), so that every replica refuses the same
   * writes even while nodes are restarted with a new `--quota-keys`. Format 4.
   */
  quotaKeyCountMax: number;
  /** Most bytes of keys (UTF-8) and values the store holds, 0 for no quota. Format 4. */
  quotaBytesMax: number;
}

export interface KvState extends KvMeta {
  readonly data: Map<string, DataEntry>;
  readonly sessions: ExpiringTable<SessionRecord>;
  readonly idempotency: ExpiringTable<IdempotencyRecord>;
  readonly leases: LeaseTable;
}

/** An empty state whose tables follow `limits`. */
export function createKvState(limits: KvLimits): KvState {
  return {
    data: new Map(),
    sessions: new ExpiringTable(limits.sessionCountMax, limits.sessionTtlMs, sessionDigest),
    idempotency: new ExpiringTable(
      limits.idempotencyKeyCountMax,
      limits.idempotencyWindowMs,
      idempotencyDigest,
    ),
    leases: new LeaseTable(),
    revision: 0,
    clockMs: 0,
    stampMs: 0,
    lastIndex: 0,
    term: 0,
    quotaKeyCountMax: 0,
    quotaBytesMax: 0,
  };
}

/** The digest of one client session as the summed digest (format 4) counts it. */
export function sessionDigest(clientId: string, slot: ExpiringSlot<SessionRecord>): Digest64 {
  const hash = new Hash64(0x5e55).string(clientId).integer(slot.timeMs);
  return hashResult(hash.integer(slot.value.lastSeq), slot.value.result).digest();
}

/** The digest of one idempotency key as the summed digest (format 4) counts it. */
export function idempotencyDigest(key: string, slot: ExpiringSlot<IdempotencyRecord>): Digest64 {
  const hash = new Hash64(0x1de4).string(key).integer(slot.timeMs);
  return hashResult(hash.digestValue(slot.value.fingerprint), slot.value.result).digest();
}

/** The parts of the summed digest: each table's size and the sum of its entries' digests. */
export interface KvDigestParts {
  readonly dataCount: number;
  readonly data: Digest64;
  readonly sessionCount: number;
  readonly sessions: Digest64;
  readonly idempotencyCount: number;
  readonly idempotency: Digest64;
  readonly leaseCount: number;
  readonly leases: Digest64;
}

/**
 * The digest of a state (snapshot format 4 and `stateHash()`): the scalars, then every
 * table as its size and the sum of its entries' digests. Sums do not depend on order, so
 * the state machine keeps each one up to date as entries change and the digest costs O(1).
 * What the sum gives up against formats 1 to 3, which hashed the sessions and idempotency
 * keys in order: two tables with the same entries whose order differs only among entries
 * used at the same log time digest alike (each entry's time is hashed, so any other order
 * difference shows).
 */
export function summedStateDigest(meta: KvMeta, parts: KvDigestParts): Digest64 {
  const hash = new Hash64(5);
  hash.integer(meta.revision).integer(meta.clockMs).integer(meta.lastIndex);
  hash.integer(meta.stampMs).integer(meta.term);
  hash.integer(meta.quotaKeyCountMax).integer(meta.quotaBytesMax);
  hash.integer(parts.dataCount).digestValue(parts.data);
  hash.integer(parts.sessionCount).digestValue(parts.sessions);
  hash.integer(parts.idempotencyCount).digestValue(parts.idempotency);
  hash.integer(parts.leaseCount).digestValue(parts.leases);
  return hash.digest();
}

/** Sums `digestOf` over `entries`. */
export function sumDigests<T>(entries: Iterable<T>, digestOf: (entry: T) => Digest64): Digest64 {
  let sum = ZERO_DIGEST;
  for (const entry of entries) sum = addDigests(sum, digestOf(entry));
  return sum;
}

/** The digest of one key's entry; the data digest is the sum of these over all keys. */
export function dataEntryDigest(key: string, entry: DataEntry): Digest64 {
  const hash = new Hash64(1).string(key).integer(entry.revision);
  const { value } = entry;
  if (typeof value === "string") hash.byteString(value);
  else hash.bytes(value);
  // Only a leased key hashes its lease, so that the digests of format 1 and 2 hold.
  if (entry.lease !== 0) hash.word(0x1ea5e).integer(entry.lease);
  return hash.digest();
}

/** The snapshot formats whose digest hashed the tables in order (`stateDigest`). */
export type SnapshotDigestFormat = 1 | 2 | 3;

/**
 * The digest of a whole state, given the sum of its data entries' digests. The data part
 * is a sum so that it does not depend on the order of keys (a restored replica inserts
 * them in a different order); the tables are hashed in order, because their order (by
 * last use) decides which entries expire first. `format` 1 is the digest of snapshot
 * format 1, which had no `stampMs`, and 2 of format 2, which had no term and no leases;
 * they exist only to verify such snapshots.
 */
export function stateDigest(
  meta: KvMeta,
  dataCount: number,
  dataDigest: Digest64,
  sessions: Iterable<[string, ExpiringSlot<SessionRecord>]>,
  idempotency: Iterable<[string, ExpiringSlot<IdempotencyRecord>]>,
  format: SnapshotDigestFormat = 3,
  leases: Iterable<Lease> = [],
): Digest64 {
  const hash = new Hash64(format + 1);
  hash.integer(meta.revision).integer(meta.clockMs).integer(meta.lastIndex);
  if (format !== 1) hash.integer(meta.stampMs);
  hash.integer(dataCount).digestValue(dataDigest);
  let count = 0;
  for (const [clientId, slot] of sessions) {
    hash.string(clientId).integer(slot.timeMs).integer(slot.value.lastSeq);
    hashResult(hash, slot.value.result);
    count++;
  }
  hash.integer(count);
  count = 0;
  for (const [key, slot] of idempotency) {
    hash.string(key).integer(slot.timeMs).digestValue(slot.value.fingerprint);
    hashResult(hash, slot.value.result);
    count++;
  }
  hash.integer(count);
  if (format === 3) {
    // The term is hashed even though it only decides when leases are renewed, so that a
    // snapshot's header cannot be corrupted unnoticed. (A replica restored from a format 2
    // snapshot, whose term is unknown, hashes differently from one that applied the same
    // entries until it applies the next entry, which sets the term.)
    hash.integer(meta.term);
    count = 0;
    for (const lease of leases) {
      hash.integer(lease.id).integer(lease.ttlMs).integer(lease.expiresAtMs);
      count++;
    }
    hash.integer(count);
  }
  return hash.digest();
}

/**
 * The digest of `state` (format 4), recomputed in one pass over everything, without the
 * sums the tables keep: the reference the incremental digest is checked against.
 */
export function digestKvState(state: KvState): Digest64 {
  return summedStateDigest(state, {
    dataCount: state.data.size,
    data: sumDigests(state.data, ([key, entry]) => dataEntryDigest(key, entry)),
    sessionCount: state.sessions.size,
    sessions: sumDigests(state.sessions.entries(), ([id, slot]) => sessionDigest(id, slot)),
    idempotencyCount: state.idempotency.size,
    idempotency: sumDigests(state.idempotency.entries(), ([k, slot]) => idempotencyDigest(k, slot)),
    leaseCount: state.leases.size,
    leases: sumDigests(state.leases.values(), leaseDigest),
  });
}
