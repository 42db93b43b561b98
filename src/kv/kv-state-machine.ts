/**
 * The built-in replicated key-value and session store: Baton's `StateMachine` for the
 * server's HTTP API. It applies put and delete commands (with compare-and-set), prefix
 * deletes, transactions and leases, answers reads (single keys and ordered ranges) for the
 * runtime, keeps the recent changes for watches, deduplicates retried requests through
 * client sessions (Raft dissertation §6.3) and idempotency keys, and streams and restores
 * snapshots.
 *
 * Leases end by log time too: a lease's deadline is log time plus its time to live, and a
 * command of a later term than the last one gives every lease its full time to live again,
 * because a new master cannot know how much of it passed under the old one. The master
 * proposes ticks while leases are held, so log time keeps moving when nobody writes.
 *
 * It must be purely deterministic: what `apply` does depends only on the state, the
 * command bytes and the apply context. Every table expires entries in an order fixed by
 * the log, and refuses a new entry when it is full of live ones, so all replicas forget
 * and refuse the same things at the same index. The store's quota is replicated state as
 * well (set by a `set_quota` command, never read from this node's configuration), so
 * every replica refuses the same writes for it. It must never forget a live entry: that
 * would apply a retried request twice. It must never throw for a bad command (a committed
 * command is applied on every replica, so it fails as a result value everywhere); it
 * throws only for bugs, and `restore` throws `KvSnapshotError` for a bad snapshot.
 *
 * Time comes from `context.time`, the master's clock stamped into each log entry, never
 * from this node's clock. The tables expire by log time, derived from those stamps: it
 * starts at 0, and each command advances it by the difference between its stamp and the
 * previous command's, clamped to 0..`logTimeStepMsMax` (1 s by default). Differences, not
 * the largest stamp seen, because a master clock that jumps forward by an hour moves the
 * largest stamp by an hour and expires every entry at once (and one that jumps back
 * freezes expiry for as long); with differences either jump, or a new master whose clock
 * disagrees with the old one's, moves log time by at most one step. The price is paid in
 * the safe direction: when commands are further apart than a step, log time runs slower
 * than the clock and entries are kept longer than their window, never shorter. A request
 * refused because a table is full is told to retry within one step, so waiting clients'
 * own retries keep log time moving until the oldest entry expires.
 */

import { assert } from "../shared/assert.js";
import type {
  ApplyContext,
  IncrementalRestore,
  SnapshotOptions,
  StateMachine,
} from "../shared/state-machine.js";
import { ChangeHistory, type ChangeListener, type KvChange } from "./change-history.js";
import {
  commandFingerprint,
  decodeCommand,
  freezeResult,
  type KvCommand,
  type KvCommandProblem,
  type KvQuotaName,
  type KvResult,
  utf8ByteLength,
  validateCommand,
} from "./commands.js";
import { addDigests, type Digest64, formatDigest, subtractDigests, ZERO_DIGEST } from "./hash64.js";
import { KeyIndex } from "./key-index.js";
import {
  preserveForSnapshot,
  type RestoredState,
  readSnapshot,
  readSnapshotChunks,
  type SnapshotCursor,
  SnapshotReader,
  type SnapshotSource,
  writeSnapshot,
  writeSnapshotChunks,
} from "./kv-snapshot.js";
import {
  createKvState,
  type DataEntry,
  dataEntryDigest,
  digestKvState,
  type KvState,
  summedStateDigest,
} from "./kv-state.js";
import type { Lease } from "./lease-table.js";
import { defaultKvLimits, isValidKvLimits, type KvLimits } from "./limits.js";
import type {
  DeleteRangeCommand,
  SetQuotaCommand,
  TxnCommand,
  TxnCompare,
  TxnOp,
} from "./store-commands.js";
import { storedBytes, storedEquals, storedLength, toStoredValue } from "./stored-value.js";

/** What a read returns: the stored bytes and the revision that wrote them. */
export interface KvEntry {
  /** The stored bytes. Shared with the store: the caller must not modify them. */
  readonly value: Uint8Array;
  /** Log index of the command that last modified the key. */
  readonly revision: number;
}

/** One key of a range read. */
export interface KvRangeItem extends KvEntry {
  readonly key: string;
}

export interface KvRangeOptions {
  /** List only keys that start with this ("" for all). */
  readonly prefix: string;
  /** List only keys after this one (a continuation); null to start at the prefix. */
  readonly after: string | null;
  /** Most keys listed, at least 1. */
  readonly limit: number;
  /**
   * Stop before a key whose value would take the page past this many bytes of values
   * (the first key is always listed). Infinity for no bound.
   */
  readonly valueBytesMax: number;
}

/** A page of a range read, consistent at `revision`. */
export interface KvRange {
  /** The store's revision the page was read at. */
  readonly revision: number;
  readonly items: readonly KvRangeItem[];
  /** Whether keys after the last one listed match too (read them with `after`). */
  readonly more: boolean;
}

/** A watch that started: the changes already held, and how to stop the live ones. */
export type KvWatchStart =
  | { readonly ok: true; readonly backlog: readonly KvChange[]; readonly cancel: () => void }
  | { readonly ok: false; readonly startRevision: number };

const NOT_FOUND = freezeResult({ ok: false, code: "not_found" });
const SESSION_EXPIRED = freezeResult({ ok: false, code: "session_expired" });
const IDEMPOTENCY_KEY_REUSED = freezeResult({ ok: false, code: "idempotency_key_reused" });

export class KvStateMachine implements StateMachine<KvResult> {
  private state: KvState;
  /** Snapshots being streamed; `apply` copies entries for them before changing them. */
  private readonly snapshots = new Set<SnapshotCursor>();
  /**
   * The next Map position (see `DataEntry.position`). Local to this node and never reset,
   * not even by `restore`, so positions keep growing in Map insertion order.
   */
  private nextPosition = 1;
  /** True while `restore` reads its stream; an `apply` then would be silently lost. */
  private restoring = false;
  /** The keys in order, for range reads (local, rebuilt on restore). */
  private keyIndex: KeyIndex;
  /** Recent changes, for watches (local, started over on restore). */
  private readonly history: ChangeHistory;
  /** The sum of `dataEntryDigest` over the keys (derived, rebuilt on restore). */
  private dataDigest: Digest64 = ZERO_DIGEST;
  /** Bytes of keys (UTF-8) and values held, what the bytes quota counts (derived). */
  private dataBytes = 0;

  constructor(readonly limits: KvLimits = defaultKvLimits()) {
    assert(isValidKvLimits(limits), "limits must be positive integers (use parseKvLimits)");
    this.state = createKvState(limits);
    this.keyIndex = this.newKeyIndex();
    this.history = new ChangeHistory(limits.watchHistoryCountMax, limits.watchHistoryBytesMax);
  }

  /** Number of keys. */
  get size(): number {
    return this.state.data.size;
  }

  /** Bytes of keys (their UTF-8 encoding) and values held: what the bytes quota counts. */
  get bytes(): number {
    return this.dataBytes;
  }

  /** The replicated quota: most keys and most bytes, each 0 when there is none. */
  get quota(): { readonly keyCountMax: number; readonly bytesMax: number } {
    return { keyCountMax: this.state.quotaKeyCountMax, bytesMax: this.state.quotaBytesMax };
  }

  /** Log index of the last command that modified a key; 0 before any. */
  get revision(): number {
    return this.state.revision;
  }

  /** Number of client sessions held, counting expired ones not yet removed. */
  get sessionCount(): number {
    return this.state.sessions.size;
  }

  /** Number of idempotency keys held, counting expired ones not yet removed. */
  get idempotencyKeyCount(): number {
    return this.state.idempotency.size;
  }

  /** Log time in milliseconds: what the tables expire by (see the opening comment). */
  get logTimeMs(): number {
    return this.state.clockMs;
  }

  /** Number of leases held. */
  get leaseCount(): number {
    return this.state.leases.size;
  }

  /** The oldest revision a watch may start from; older ones are compacted. */
  get watchStartRevision(): number {
    return this.history.startRevision;
  }

  /** Number of watches subscribed to live changes. */
  get watchCount(): number {
    return this.history.listenerCount;
  }

  /** Number of snapshots whose streams are still open (each costs copy-on-write work). */
  get activeSnapshotCount(): number {
    return this.snapshots.size;
  }

  /**
   * The value and revision of `key`, or null when it does not exist. Reads are not
   * commands: the runtime serves them after ReadIndex (dissertation §6.4) or, for stale
   * reads, straight from the local copy.
   */
  get(key: string): KvEntry | null {
    const entry = this.state.data.get(key);
    if (entry === undefined) return null;
    return { value: storedBytes(entry.value), revision: entry.revision };
  }

  /**
   * A page of keys in order, read from this node's state as it is now: consistent at one
   * revision, since nothing is applied while it is read. Linearizable when the caller has
   * passed a read barrier first, like `get`.
   */
  range(options: KvRangeOptions): KvRange {
    const { data } = this.state;
    let valueBytes = 0;
    let listed = 0;
    const accept = (key: string): boolean => {
      valueBytes += storedLength(data.get(key)!.value);
      // The first key is listed whatever its size, so that every page makes progress.
      return listed++ === 0 || valueBytes <= options.valueBytesMax;
    };
    const { prefix, after, limit } = options;
    const { keys, more } = this.keyIndex.scan(prefix, after, limit, accept);
    const items = keys.map((key) => {
      const entry = data.get(key)!;
      return { key, value: storedBytes(entry.value), revision: entry.revision };
    });
    return { revision: this.state.revision, items, more };
  }

  /** The lease `id` with its time to live and log time left, or null when not held. */
  lease(id: number): { id: number; ttlMs: number; remainingMs: number; keys: number } | null {
    const lease = this.state.leases.held(id, this.state.clockMs);
    if (lease === undefined) return null;
    const remainingMs = Math.max(0, lease.expiresAtMs - this.state.clockMs);
    return { id, ttlMs: lease.ttlMs, remainingMs, keys: lease.keys.size };
  }

  /**
   * Starts a watch of every change from `fromRevision` on: the changes already held come
   * back at once as `backlog`, later ones reach `listener` as they are applied. Fails with
   * the oldest revision held when `fromRevision` is older (compacted).
   */
  watch(fromRevision: number, listener: ChangeListener): KvWatchStart {
    const backlog = this.history.since(fromRevision);
    if (backlog === null) return { ok: false, startRevision: this.history.startRevision };
    return { ok: true, backlog, cancel: this.history.subscribe(listener) };
  }

  /**
   * Applies one committed command. `context.index` must grow from call to call (anything
   * else is a bug in the runtime); `context.time` is rounded down to whole milliseconds
   * (a time before 0 counts as 0) and advances log time by its difference from the
   * previous command's, clamped to 0..`limits.logTimeStepMsMax`. Bad command bytes give
   * an `invalid_command` result.
   */
  apply(command: Uint8Array, context: ApplyContext): KvResult {
    try {
      return this.applyCommand(command, context);
    } finally {
      this.history.flush();
    }
  }

  private applyCommand(command: Uint8Array, context: ApplyContext): KvResult {
    const { state } = this;
    assert(Number.isSafeInteger(context.index), "index must be an integer");
    assert(context.index > state.lastIndex, "commands must be applied once, in log order");
    assert(Number.isFinite(context.time), "time must be a number of milliseconds");
    assert(!this.restoring, "apply while a restore replaces the state");
    // Whole milliseconds, and the same rounding on every replica, keeps the tables
    // identical; a fractional, early or jumping time must not crash or age every replica.
    const stampMs = Math.max(0, Math.floor(context.time));
    const stepMs = state.lastIndex === 0 ? 0 : stampMs - state.stampMs;
    const previousMs = state.clockMs;
    state.clockMs += Math.min(Math.max(stepMs, 0), this.limits.logTimeStepMsMax);
    state.stampMs = stampMs;
    state.lastIndex = context.index;
    state.sessions.expire(state.clockMs, this.limits.expiryCountMaxPerApply);
    state.idempotency.expire(state.clockMs, this.limits.expiryCountMaxPerApply);
    if (context.term > state.term) {
      // A new master: it cannot know how long its predecessor's leases had left, so every
      // lease still held at the command before gets its full time to live again (as etcd
      // does).
      state.term = context.term;
      state.leases.renewAll(state.clockMs, previousMs);
    }
    this.expireLeases(context.index);
    const decoded = decodeCommand(command);
    if (!decoded.ok) return invalid(decoded.problem);
    const problem = validateCommand(decoded.command, this.limits);
    if (problem !== null) return invalid(problem);
    return this.applySession(decoded.command, context.index);
  }

  /**
   * Streams the state as of this call in chunks of at most `limits.snapshotChunkBytesMax`
   * bytes. `apply` may keep running while the chunks are consumed. The iterable is single
   * use. The consumer must read it to the end or end it early through the iterator's
   * `return()` (`for await … break` does); an iterator dropped half-read keeps copying
   * changed entries for a snapshot that will never read them. `options.pause` is awaited
   * after every frame (about 64 KiB of keys, or 512 sessions or idempotency keys).
   */
  snapshot(options?: SnapshotOptions): AsyncIterable<Uint8Array> {
    const cursor: SnapshotCursor = {
      positionMax: this.nextPosition - 1,
      readPosition: 0,
      preserved: new Map(),
    };
    this.snapshots.add(cursor);
    const release = (): void => {
      this.snapshots.delete(cursor);
    };
    const chunks = writeSnapshot(
      this.snapshotSource(cursor),
      this.limits.snapshotChunkBytesMax,
      options?.pause,
    );
    return releasingIterable(chunks, release);
  }

  /**
   * The same chunks as `snapshot()`, all at once, for a caller without an event loop (the
   * simulator, which stores them and restores them with `restoreChunks`). Costs memory
   * for the whole snapshot, so the runtime streams with `snapshot()` instead.
   */
  snapshotChunks(): Uint8Array[] {
    const cursor: SnapshotCursor = {
      positionMax: this.nextPosition - 1,
      readPosition: 0,
      preserved: new Map(),
    };
    return Array.from(
      writeSnapshotChunks(this.snapshotSource(cursor), this.limits.snapshotChunkBytesMax),
    );
  }

  private snapshotSource(cursor: SnapshotCursor): SnapshotSource {
    const { state } = this;
    return {
      meta: {
        revision: state.revision,
        clockMs: state.clockMs,
        stampMs: state.stampMs,
        lastIndex: state.lastIndex,
        term: state.term,
        quotaKeyCountMax: state.quotaKeyCountMax,
        quotaBytesMax: state.quotaBytesMax,
      },
      data: state.data,
      dataCount: state.data.size,
      sessions: Array.from(state.sessions.entries()),
      idempotency: Array.from(state.idempotency.entries()),
      leases: Array.from(state.leases.values(), (l) => [l.id, l.ttlMs, l.expiresAtMs] as const),
      cursor,
    };
  }

  /**
   * Replaces the whole state with the one `chunks` carry, which may be split at any byte.
   * Throws `KvSnapshotError` (code `ERR_KV_SNAPSHOT_INVALID`) when they are not an intact
   * snapshot in a supported format, and then leaves the current state untouched.
   */
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    assert(!this.restoring, "two restores at once");
    this.restoring = true;
    let restored: RestoredState;
    try {
      restored = await readSnapshot(chunks, this.limits, () => this.nextPosition++);
    } finally {
      this.restoring = false;
    }
    // Snapshots still streaming keep reading the old state, which nothing changes any more.
    this.snapshots.clear();
    this.replaceState(restored);
  }

  /**
   * A restore that reads the snapshot as its bytes arrive and replaces the state only at
   * `install` (see `IncrementalRestore`). The state it builds is its own: `apply` goes on
   * with the current one meanwhile, and positions for both come from the one counter, so
   * each Map still has them in insertion order.
   */
  beginRestore(): IncrementalRestore {
    const reader = new SnapshotReader(this.limits, () => this.nextPosition++);
    let installed = false;
    return {
      push: (chunk) => {
        assert(!installed, "bytes pushed into a restore already installed");
        reader.push(chunk);
      },
      install: () => {
        assert(!installed, "a restore installed twice");
        assert(!this.restoring, "an install while another restore replaces the state");
        installed = true;
        const restored = reader.finish();
        this.snapshots.clear();
        this.replaceState(restored);
      },
    };
  }

  /**
   * `restore` from chunks already in memory, without an event loop: the same checks, and
   * the same `KvSnapshotError` leaving the current state untouched.
   */
  restoreChunks(chunks: Iterable<Uint8Array>): void {
    assert(!this.restoring, "a restore while another replaces the state");
    const restored = readSnapshotChunks(chunks, this.limits, () => this.nextPosition++);
    this.snapshots.clear();
    this.replaceState(restored);
  }

  /**
   * Swaps in a restored state and rebuilds what is derived from it. The data digest comes
   * from the read, which summed it to verify the snapshot.
   */
  private replaceState({ state, dataDigest }: RestoredState): void {
    this.state = state;
    this.keyIndex = this.newKeyIndex();
    this.dataDigest = dataDigest;
    this.dataBytes = 0;
    for (const [key, entry] of state.data) {
      this.keyIndex.insert(key);
      this.dataBytes += entryBytes(key, storedLength(entry.value));
    }
    // No change between the restored revision and its last index touched a key.
    this.history.reset(state.revision + 1);
  }

  private newKeyIndex(): KeyIndex {
    return new KeyIndex((key) => this.state.data.has(key));
  }

  /**
   * A digest of the whole replicated state as 16 hex digits: equal on every replica that
   * applied the same log, whether it got there by applying or by restoring a snapshot.
   * O(1): each table keeps the sum of its entries' digests as they change (see
   * `summedStateDigest`), so any caller may ask for it on any request.
   */
  stateHash(): string {
    const { state } = this;
    const digest = summedStateDigest(state, {
      dataCount: state.data.size,
      data: this.dataDigest,
      sessionCount: state.sessions.size,
      sessions: state.sessions.digest,
      idempotencyCount: state.idempotency.size,
      idempotency: state.idempotency.digest,
      leaseCount: state.leases.size,
      leases: state.leases.digest,
    });
    return formatDigest(digest);
  }

  /**
   * `stateHash()` recomputed from scratch in one pass over everything, without the sums
   * kept as the state changes: for tests and checks that the two agree.
   */
  stateHashRecomputed(): string {
    return formatDigest(digestKvState(this.state));
  }

  /**
   * Answers a retry from the client's session, or applies the command once and records
   * its result there. A client keeps one request outstanding, so the session needs only
   * its last seq and result (dissertation §6.3).
   */
  private applySession(command: KvCommand, index: number): KvResult {
    const { session } = command;
    if (session === undefined) return this.applyIdempotent(command, index);
    const { sessions, clockMs } = this.state;
    const record = sessions.get(session.clientId, clockMs);
    if (record === undefined) {
      // An unknown session may only be opened by the client's first request: a later seq
      // could be a retry whose session expired, so applying it might apply it twice. The
      // one retry this cannot catch is of seq 1 itself after its session expired, which
      // needs a retry outliving the TTL. A session is never evicted to open another.
      if (session.seq !== 1) return SESSION_EXPIRED;
      if (!sessions.hasRoom(clockMs)) return this.tableFull("sessions");
    } else if (session.seq === record.lastSeq) {
      sessions.set(session.clientId, record, clockMs);
      return record.result;
    } else if (session.seq < record.lastSeq) {
      return freezeResult({ ok: false, code: "session_stale", lastSeq: record.lastSeq });
    }
    const result = this.applyIdempotent(command, index);
    // A refusal applied nothing and is not the request's answer: the client sends the same
    // seq again later, which must then be applied, not answered with the refusal.
    if (isRefusal(result)) return result;
    sessions.set(session.clientId, { lastSeq: session.seq, result }, clockMs);
    return result;
  }

  /**
   * Answers a repeated idempotency key with its first result, or applies the command and
   * records the result under the key. A repeated key with a different command is refused
   * (the IETF Idempotency-Key draft answers it with 422) rather than answered with the
   * other command's result, which would tell the client its command was applied when it
   * was not. A new key when the table is full of live keys is refused, not applied: the
   * table never forgets a live key to make room, so a retry is always answered from it.
   */
  private applyIdempotent(command: KvCommand, index: number): KvResult {
    const key = command.idempotencyKey;
    if (key === undefined) return this.execute(command, index);
    const { idempotency, clockMs } = this.state;
    const fingerprint = commandFingerprint(command);
    const record = idempotency.get(key, clockMs);
    if (record !== undefined) {
      return sameDigest(record.fingerprint, fingerprint) ? record.result : IDEMPOTENCY_KEY_REUSED;
    }
    if (!idempotency.hasRoom(clockMs)) return this.tableFull("idempotency");
    const result = this.execute(command, index);
    // Like a full table, a quota refusal applied nothing: the same request may come again.
    if (isRefusal(result)) return result;
    idempotency.set(key, { fingerprint: Object.freeze(fingerprint), result }, clockMs);
    return result;
  }

  /**
   * The refusal of a request that needs a new entry in a full `table`. It tells the client
   * to retry when the oldest entry expires, but within one log-time step at most: when
   * nothing else is written, the retries are what move log time on.
   */
  private tableFull(table: "sessions" | "idempotency"): KvResult {
    const { clockMs } = this.state;
    const expiryMs = this.state[table].oldestExpiryMs();
    assert(expiryMs !== null, "a full table holds an entry");
    // A table restored from a snapshot taken under a larger limit may still be over it
    // after hasRoom removed its share of expired entries: the retry then comes at once and
    // removes more.
    const retryAfterMs = Math.min(Math.max(1, expiryMs - clockMs), this.limits.logTimeStepMsMax);
    return freezeResult({ ok: false, code: "table_full", table, retryAfterMs });
  }

  /** Carries out a command that is new (not a retry). */
  private execute(command: KvCommand, index: number): KvResult {
    switch (command.type) {
      case "put":
      case "delete":
        return this.executeKey(command, index);
      case "delete_range":
        return this.deleteRange(command, index);
      case "txn":
        return this.executeTxn(command, index);
      case "lease_grant":
        return this.grantLease(command.ttlMs, index);
      case "lease_keepalive": {
        const lease = this.state.leases.held(command.id, this.state.clockMs);
        if (lease === undefined) return leaseNotFound(command.id);
        this.state.leases.renew(lease, this.state.clockMs);
        return this.leaseResult(lease);
      }
      case "lease_revoke": {
        const lease = this.state.leases.held(command.id, this.state.clockMs);
        if (lease === undefined) return leaseNotFound(command.id);
        this.endLease(lease, index);
        return freezeResult({ ok: true, revision: this.state.revision });
      }
      case "tick":
        return freezeResult({ ok: true, revision: this.state.revision });
      case "set_quota":
        return this.setQuota(command);
    }
  }

  private setQuota(command: SetQuotaCommand): KvResult {
    this.state.quotaKeyCountMax = command.keyCountMax;
    this.state.quotaBytesMax = command.bytesMax;
    return freezeResult({ ok: true, revision: this.state.revision });
  }

  /**
   * The refusal of a change that adds `keyCount` keys and `byteCount` bytes, or null when
   * it fits the quota. Only growth is refused: a change that adds no keys (or no bytes)
   * passes that quota even when the store is over it, so deletes and shrinking writes
   * always work, also after the quota was lowered below what the store holds.
   */
  private overQuota(keyCount: number, byteCount: number): KvResult | null {
    const { quotaKeyCountMax, quotaBytesMax, data } = this.state;
    if (quotaKeyCountMax > 0 && keyCount > 0 && data.size + keyCount > quotaKeyCountMax) {
      return quotaExceeded("keys", quotaKeyCountMax);
    }
    if (quotaBytesMax > 0 && byteCount > 0 && this.dataBytes + byteCount > quotaBytesMax) {
      return quotaExceeded("bytes", quotaBytesMax);
    }
    return null;
  }

  /** Applies a put or delete to the keys, honouring `ifRevision`. */
  private executeKey(command: KvCommand & { type: "put" | "delete" }, index: number): KvResult {
    const { data } = this.state;
    const current = data.get(command.key);
    const currentRevision = current?.revision ?? 0;
    const { ifRevision } = command;
    if (command.type === "delete" && current === undefined) {
      // With no key there is nothing to delete; a precondition naming a revision fails,
      // as HTTP's If-Match fails when there is no current representation.
      if (ifRevision !== undefined && ifRevision !== 0) return preconditionFailed(0);
      return NOT_FOUND;
    }
    if (ifRevision !== undefined && ifRevision !== currentRevision) {
      return preconditionFailed(currentRevision);
    }
    if (command.type === "put") {
      const lease = command.lease ?? 0;
      if (lease !== 0 && this.state.leases.held(lease, this.state.clockMs) === undefined) {
        return leaseNotFound(lease);
      }
      const refusal =
        current === undefined
          ? this.overQuota(1, entryBytes(command.key, command.value.byteLength))
          : this.overQuota(0, command.value.byteLength - storedLength(current.value));
      if (refusal !== null) return refusal;
      this.setKey(command.key, command.value, lease, index);
    } else {
      this.removeKey(command.key, index);
    }
    return freezeResult({ ok: true, revision: index });
  }

  /** Deletes every key under the prefix, in key order, at one revision. */
  private deleteRange(command: DeleteRangeCommand, index: number): KvResult {
    const { keys } = this.keyIndex.scan(command.prefix, null, Number.MAX_SAFE_INTEGER, () => true);
    for (const key of keys) this.removeKey(key, index);
    return freezeResult({ ok: true, revision: this.state.revision, deleted: keys.length });
  }

  /**
   * Compares, then applies one branch, at one revision. A branch that names a lease not
   * held fails as a whole before it changes anything, so a transaction is all or nothing.
   */
  private executeTxn(command: TxnCommand, index: number): KvResult {
    const succeeded = command.compare.every((compare) => this.holds(compare));
    const ops: readonly TxnOp[] = succeeded ? command.success : command.failure;
    for (const op of ops) {
      const { clockMs } = this.state;
      if (
        op.type === "put" &&
        op.lease !== undefined &&
        !this.state.leases.held(op.lease, clockMs)
      ) {
        return leaseNotFound(op.lease);
      }
    }
    const refusal = this.txnGrowth(ops);
    if (refusal !== null) return refusal;
    for (const op of ops) {
      if (op.type === "put") this.setKey(op.key, op.value, op.lease ?? 0, index);
      else if (this.state.data.has(op.key)) this.removeKey(op.key, index);
    }
    return freezeResult({ ok: true, revision: this.state.revision, succeeded });
  }

  /** The quota refusal of a transaction branch, from its net effect, or null. */
  private txnGrowth(ops: readonly TxnOp[]): KvResult | null {
    // The bytes each key the branch touches will hold, null for deleted: later ops win.
    const after = new Map<string, number | null>();
    for (const op of ops) {
      after.set(op.key, op.type === "put" ? entryBytes(op.key, op.value.byteLength) : null);
    }
    let keyCount = 0;
    let byteCount = 0;
    for (const [key, bytes] of after) {
      const current = this.state.data.get(key);
      const before = current === undefined ? null : entryBytes(key, storedLength(current.value));
      keyCount += (bytes === null ? 0 : 1) - (before === null ? 0 : 1);
      byteCount += (bytes ?? 0) - (before ?? 0);
    }
    return this.overQuota(keyCount, byteCount);
  }

  private holds(compare: TxnCompare): boolean {
    const entry = this.state.data.get(compare.key);
    switch (compare.target) {
      case "revision":
        return (entry?.revision ?? 0) === compare.revision;
      case "exists":
        return (entry !== undefined) === compare.exists;
      case "value":
        return entry !== undefined && storedEquals(entry.value, compare.value);
    }
  }

  /** Grants lease `index` (a lease's id is the log index that granted it). */
  private grantLease(ttlMs: number, index: number): KvResult {
    const { leases, clockMs } = this.state;
    if (leases.size >= this.limits.leaseCountMax) {
      const earliest = leases.earliestExpiryMs();
      assert(earliest !== null, "a full lease table holds a lease");
      const retryAfterMs = Math.min(Math.max(earliest - clockMs, 1), this.limits.logTimeStepMsMax);
      return freezeResult({ ok: false, code: "table_full", table: "leases", retryAfterMs });
    }
    return this.leaseResult(leases.grant(index, ttlMs, clockMs + ttlMs));
  }

  private leaseResult(lease: Lease): KvResult {
    const summary = Object.freeze({ id: lease.id, ttlMs: lease.ttlMs });
    return freezeResult({ ok: true, revision: this.state.revision, lease: summary });
  }

  /** Ends the leases whose deadline has passed in log time, deleting their keys. */
  private expireLeases(index: number): void {
    const due = this.state.leases.due(this.state.clockMs, this.limits.leaseExpiryCountMaxPerApply);
    for (const lease of due) this.endLease(lease, index);
  }

  /** Removes a lease and deletes its keys, in key order. */
  private endLease(lease: Lease, index: number): void {
    const keys = [...lease.keys].sort();
    for (const key of keys) this.removeKey(key, index);
    assert(lease.keys.size === 0, "a lease ends with no keys");
    this.state.leases.remove(lease.id);
  }

  /** Sets a key (new or replaced) at revision `index`, moving it to lease `lease` (0: none). */
  private setKey(key: string, value: Uint8Array, lease: number, index: number): void {
    const { data, leases } = this.state;
    const current = data.get(key);
    if (current !== undefined) {
      this.preserve(key, current);
      if (current.lease !== 0 && current.lease !== lease)
        leases.get(current.lease)!.keys.delete(key);
    } else {
      this.keyIndex.insert(key);
    }
    if (lease !== 0) {
      const held = leases.get(lease);
      assert(held !== undefined, "a key is attached to a lease that is held");
      held.keys.add(key);
    }
    if (current !== undefined) this.forgetEntry(key, current);
    // A replaced key keeps its position, so it stays where a snapshot expects it.
    const position = current?.position ?? this.nextPosition++;
    // The decoded command's value is its own copy (see kvPackr), the store's to keep.
    const entry = { value: toStoredValue(value, true), revision: index, position, lease };
    data.set(key, entry);
    this.dataDigest = addDigests(this.dataDigest, dataEntryDigest(key, entry));
    this.dataBytes += entryBytes(key, value.byteLength);
    this.state.revision = index;
    this.history.record({ type: "put", key, value, revision: index });
  }

  /** Deletes a key that exists at revision `index`. */
  private removeKey(key: string, index: number): void {
    const { data, leases } = this.state;
    const current = data.get(key);
    assert(current !== undefined, "deleting a key that exists");
    this.preserve(key, current);
    if (current.lease !== 0) {
      const held = leases.get(current.lease);
      assert(held?.keys.delete(key) === true, "a leased key is in its lease");
    }
    data.delete(key);
    this.forgetEntry(key, current);
    this.keyIndex.remove();
    this.state.revision = index;
    this.history.record({ type: "delete", key, value: null, revision: index });
  }

  /** Takes an entry that is replaced or deleted out of the digest and the byte count. */
  private forgetEntry(key: string, entry: DataEntry): void {
    this.dataDigest = subtractDigests(this.dataDigest, dataEntryDigest(key, entry));
    this.dataBytes -= entryBytes(key, storedLength(entry.value));
  }

  /** Copy-on-write: hands the entry about to change to every snapshot that still needs it. */
  private preserve(key: string, entry: DataEntry): void {
    for (const cursor of this.snapshots) preserveForSnapshot(cursor, key, entry);
  }
}

function invalid(problem: KvCommandProblem): KvResult {
  const { reason, message } = problem;
  return freezeResult({ ok: false, code: "invalid_command", reason, message });
}

function quotaExceeded(quota: KvQuotaName, limit: number): KvResult {
  return freezeResult({ ok: false, code: "quota_exceeded", quota, limit });
}

/** A refusal that applied nothing and must not be recorded as the request's answer. */
function isRefusal(result: KvResult): boolean {
  return !result.ok && (result.code === "table_full" || result.code === "quota_exceeded");
}

/** What a key holding `valueBytes` bytes counts against the bytes quota. */
function entryBytes(key: string, valueBytes: number): number {
  const keyBytes = utf8ByteLength(key);
  assert(keyBytes !== null, "a stored key is well-formed Unicode");
  return keyBytes + valueBytes;
}

function leaseNotFound(leaseId: number): KvResult {
  return freezeResult({ ok: false, code: "lease_not_found", leaseId });
}

function preconditionFailed(currentRevision: number): KvResult {
  return freezeResult({ ok: false, code: "precondition_failed", currentRevision });
}

function sameDigest(a: Digest64, b: Digest64): boolean {
  return a.hi === b.hi && a.lo === b.lo;
}

/**
 * Wraps a snapshot generator so that `release` runs however the stream ends: at its end,
 * on an error, or on `return()`, including a `return()` before the first chunk, when an
 * async generator would skip its own `finally`.
 */
function releasingIterable(
  chunks: AsyncGenerator<Uint8Array>,
  release: () => void,
): AsyncIterable<Uint8Array> {
  const iterator: AsyncIterableIterator<Uint8Array> = {
    async next() {
      try {
        const step = await chunks.next();
        if (step.done === true) release();
        return step;
      } catch (error) {
        release();
        throw error;
      }
    },
    async return() {
      release();
      return chunks.return(undefined);
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
