/**
 * Locks and leader election built on leases, with a fencing token.
 *
 * A lock is one key. Taking it: grant a lease, then a transaction "if the key does not
 * exist, put it attached to my lease"; if someone holds it, watch the key until it is
 * deleted (released, or its holder's lease expired) and try again. The holder keeps its
 * lease alive every third of its time to live less a second; when that fails for good (the
 * lease ended, or no keep-alive sent in the last TTL less a second has been answered, say
 * because the holder is cut off) the lock is lost and `lost` aborts: the second is how much
 * sooner the cluster may end a lease (LEASE_EARLY_MS_MAX). The holder also watches its key:
 * anyone may delete it (a delete, a prefix delete, a transaction, a revoked lease), and
 * another client may then take the lock while this holder's lease lives on, so any change
 * of the key after the holder put it aborts `lost` too. Releasing stops that watch and
 * revokes the lease, which deletes the key at once.
 *
 * The fencing token is the revision at which the holder put the key. Every later holder
 * puts it at a later revision, so a resource that remembers the largest token it has seen
 * and refuses smaller ones cannot be changed by a holder that lost the lock without knowing
 * it (a long pause, a partition): holding a lock is a belief, the token is a proof.
 *
 * An election is a lock whose key's value names the leader: `campaign` takes it, `leader`
 * reads it, `observe` follows it.
 */

import {
  BusyError,
  CompactedError,
  IndeterminateError,
  InvalidInputError,
  LeaseNotFoundError,
  NoMasterError,
  NotMasterError,
  ShuttingDownError,
  StorageFailedError,
  TableFullError,
  TimeoutError,
} from "../shared/errors.js";
import type { BatonClient } from "./client.js";
import { UnreachableError } from "./errors.js";
import { systemClock } from "./retry.js";
import { linkedSignal } from "./store-client.js";

/**
 * How much sooner than its time to live the cluster may end a lease: log time, by which
 * leases end, moves on by up to a second per entry when the master's clock jumps ahead
 * (`logTimeStepMsMax`, docs/api.md). A holder counts its lock lost this much early.
 */
export const LEASE_EARLY_MS_MAX = 1000;

export interface LockOptions {
  /**
   * Seconds the lock outlives its holder's last keep-alive: how long others wait after a
   * holder dies without releasing. At least 2: the holder counts the lock lost a second
   * before the cluster could end it (LEASE_EARLY_MS_MAX). @default 10
   */
  readonly ttlSeconds?: number;
  /** The value stored in the key (who holds it). @default "" */
  readonly value?: string;
  /** Gives up waiting: `lock` then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface Lock {
  readonly key: string;
  readonly leaseId: number;
  /** The revision at which this holder took the lock; larger for every later holder. */
  readonly fencingToken: number;
  /**
   * Aborts when the lock is lost: the lease ended, could not be kept alive in time, or the
   * key was changed (deleted, or written over) by anyone after this holder put it.
   */
  readonly lost: AbortSignal;
  /**
   * Whether the lock is still held, asked of the clock as well as of `lost`: after a long
   * synchronous task the timer that aborts `lost` may not have run yet. Ask it right
   * before acting on what the lock protects (and pass the fencing token along). False
   * once released.
   */
  held(): boolean;
  /** Releases the lock (deleting its key), stops keeping it alive and watching its key. */
  release(): Promise<void>;
}

/** The first wait before trying again after the cluster could not be reached, in ms. */
const OUTAGE_RETRY_MS_MIN = 250;
/** The longest such wait, in ms. */
const OUTAGE_RETRY_MS_MAX = 2000;

/**
 * Takes the lock `key`, waiting while another holds it. Resolves with the lock and its
 * fencing token; rejects only when `options.signal` aborts (leaving no lease behind) or
 * the cluster refuses the requests for good (a token without the role, a full quota). A
 * lease that lapses while its owner waits (the cluster was out of reach for longer than
 * the TTL) is replaced by a new one, and a lock whose lease lapsed while the transaction
 * that took it was under way is given back and taken again: a lock returned is never
 * already lost. A request that gives up for want of a master or in time (the client's
 * deadline) does not end the wait either: the lease it was made with is revoked (or left
 * to lapse, when the revoke cannot get through, so a transaction that went through after
 * all holds the key only until then) and the wait goes on with a new one.
 */
export async function lock(
  client: BatonClient,
  key: string,
  options: LockOptions = {},
): Promise<Lock> {
  const ttlSeconds = options.ttlSeconds ?? 10;
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 2) {
    throw new InvalidInputError(
      "ttlSeconds",
      `must be a whole number of seconds >= 2 (a lock counts itself lost ${LEASE_EARLY_MS_MAX} ms before its lease could end)`,
    );
  }
  let outages = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const grantSentAt = performance.now();
    let lease: { id: number };
    try {
      // A grant answered after the caller gave up is revoked, not left to lapse.
      lease = await unlessAborted(client.grantLease(ttlSeconds), options.signal, (late) => {
        client.revokeLease(late.id).catch(() => null);
      });
    } catch (error) {
      if (!outage(error) || options.signal?.aborted === true) throw error;
      await pauseUnlessAborted(outageRetryMs(outages++), options.signal);
      continue;
    }
    const keeper = new LeaseKeeper(client, lease.id, ttlSeconds, grantSentAt);
    try {
      const token = await takeWithLease(client, key, lease.id, options, keeper);
      if (token !== null) {
        // Given up while the transaction that took it was on its way: give it back.
        options.signal?.throwIfAborted();
        keeper.watchKey(key, token);
        let released = false;
        return {
          key,
          leaseId: lease.id,
          fencingToken: token,
          lost: keeper.lost,
          held: () => !released && !keeper.lostNow(),
          release: async () => {
            released = true;
            keeper.stop();
            await client.revokeLease(lease.id);
          },
        };
      }
    } catch (error) {
      keeper.stop();
      const revoked = client.revokeLease(lease.id).catch(() => null);
      // Given up: the revoke goes on without the caller (a transaction still on its way
      // then finds the lease gone, or puts the key on it until it is revoked or lapses).
      if (options.signal?.aborted === true) throw error;
      await revoked;
      if (!outage(error)) throw error;
      await pauseUnlessAborted(outageRetryMs(outages++), options.signal);
      continue;
    }
    // The lease lapsed (or may have): revoking it deletes the key if it was put on it.
    keeper.stop();
    await client.revokeLease(lease.id).catch(() => null);
  }
}

/**
 * Whether `error` says the cluster could not be reached or had no master in time (another
 * try may succeed), rather than that it refused the request for good.
 */
function outage(error: unknown): boolean {
  return (
    error instanceof NoMasterError ||
    error instanceof NotMasterError ||
    error instanceof TimeoutError ||
    error instanceof IndeterminateError ||
    error instanceof BusyError ||
    error instanceof TableFullError ||
    error instanceof ShuttingDownError ||
    error instanceof StorageFailedError ||
    error instanceof UnreachableError
  );
}

/**
 * `promise`, or the signal's reason as soon as `signal` aborts: a grant or a transaction
 * can retry for the client's whole deadline, which a caller that gave up should not wait
 * out. What the promise gives after that goes to `late` (its failure nowhere).
 */
function unlessAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  late: (value: T) => void = () => {},
): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      settled = true;
      reject(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (settled) late(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        if (!settled) reject(error);
      },
    );
  });
}

/** Waits `ms` (the retry loop's own sleep); throws the signal's reason once it aborts. */
async function pauseUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await systemClock.sleep(ms, signal);
  signal?.throwIfAborted();
}

function outageRetryMs(count: number): number {
  return Math.min(OUTAGE_RETRY_MS_MAX, OUTAGE_RETRY_MS_MIN * 2 ** Math.min(count, 10));
}

/**
 * Tries to put `key` on lease `leaseId`, waiting while another holds it: the fencing token
 * once taken, or null when the lease is lost (or ended) first.
 */
async function takeWithLease(
  client: BatonClient,
  key: string,
  leaseId: number,
  options: LockOptions,
  keeper: LeaseKeeper,
): Promise<number | null> {
  for (;;) {
    options.signal?.throwIfAborted();
    if (keeper.lostNow()) return null;
    let attempt: { succeeded: boolean; revision: number };
    try {
      const request = {
        compare: [{ key, exists: false }],
        success: [{ put: { key, value: options.value ?? "", lease: leaseId } }],
        failure: [],
      };
      // Given up while it is on its way: the caller revokes the lease it puts the key on.
      attempt = await unlessAborted(client.txn(request), options.signal);
    } catch (error) {
      if (error instanceof LeaseNotFoundError) return null;
      throw error;
    }
    // Taken with a lease that may have ended meanwhile: not a lock to hand out. Asked of
    // the clock, not of `lost`: its timer may not have run yet in this turn.
    if (keeper.lostNow()) return null;
    if (attempt.succeeded) return attempt.revision;
    await untilDeleted(client, key, attempt.revision + 1, options.signal, keeper.lost);
  }
}

/**
 * Waits until `key` is deleted at or after `fromRevision` (or is already gone), `lost`
 * aborts, or the watch's revision is compacted (the caller tries again either way); throws
 * when `signal` aborts.
 */
async function untilDeleted(
  client: BatonClient,
  key: string,
  fromRevision: number,
  signal: AbortSignal | undefined,
  lost: AbortSignal,
): Promise<void> {
  const stop = linkedSignal([lost, signal]);
  // The key may have gone between the failed transaction and the watch's start; the watch
  // from that revision on sees its delete either way.
  try {
    for await (const change of client.watch(key, { fromRevision, signal: stop.signal })) {
      if (change.key === key && change.type === "delete") break;
    }
  } catch (error) {
    // Every node's history starts after the revision (a quiet key, much written elsewhere,
    // or nodes restarted): the transaction tells whether the key is still held.
    if (!(error instanceof CompactedError)) throw error;
  } finally {
    stop.dispose();
  }
  signal?.throwIfAborted();
}

/**
 * Keeps a lease alive and aborts `lost` once the lease may have ended, or once the lock's
 * key changed after the holder put it (see watchKey): LEASE_EARLY_MS_MAX
 * before a TTL after the *sending* of the last request that renewed it (the node renewed it
 * at some moment after that), whether or not a keep-alive is still waiting for its answer.
 * A holder cut off from the cluster keeps trying for the client's whole deadline; waiting
 * for that before giving up would let it believe it held the lock after another had taken
 * it. A keep-alive goes out a third of that time after the sending of the last renewal
 * (the grant's included), at once when that moment has passed.
 */
class LeaseKeeper {
  private readonly controller = new AbortController();
  /** How long after a renewal was sent the lease surely still lives. */
  private readonly safeMs: number;
  private next: NodeJS.Timeout | null = null;
  private expiry: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Ends the watch of the lock's key (stop() aborts it). */
  private readonly watching = new AbortController();

  constructor(
    private readonly client: BatonClient,
    private readonly leaseId: number,
    ttlSeconds: number,
    /** When the request that last renewed the lease was sent (performance.now()). */
    private keptFrom: number,
  ) {
    this.safeMs = ttlSeconds * 1000 - LEASE_EARLY_MS_MAX;
    this.armExpiry();
    this.scheduleKeep(this.keptFrom + this.safeMs / 3 - performance.now());
  }

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * Whether the lease may have ended by now, by the clock (the expiry timer may not have
   * run yet in this turn); aborts `lost` at once when it may have.
   */
  lostNow(): boolean {
    const { signal } = this.controller;
    if (!signal.aborted && !this.stopped && performance.now() >= this.keptFrom + this.safeMs) {
      this.lose(new Error(`lease ${this.leaseId} was not kept alive within its TTL`));
    }
    return signal.aborted;
  }

  /**
   * Aborts `lost` when `key` changes after `fencingToken`, the revision at which the holder
   * put it: a delete lets another client take the lock while this lease lives on, and a
   * put over the key means it no longer names this holder. The watch ends with stop() (a
   * release, or the loss) and when the client closes.
   */
  watchKey(key: string, fencingToken: number): void {
    this.followKey(key, fencingToken).catch(() => {
      // The cluster refused the watch for good (a token that may not read, say): the lease
      // alone then tells whether the lock is held.
    });
  }

  /** Stops keeping the lease alive; an answer still on its way changes nothing. */
  stop(): void {
    this.stopped = true;
    this.watching.abort();
    if (this.next !== null) clearTimeout(this.next);
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.next = null;
    this.expiry = null;
  }

  private scheduleKeep(delayMs: number): void {
    if (this.stopped) return;
    this.next = setTimeout(() => this.keep(), Math.max(0, delayMs));
    this.next.unref();
  }

  private armExpiry(): void {
    if (this.expiry !== null) clearTimeout(this.expiry);
    const left = this.keptFrom + this.safeMs - performance.now();
    this.expiry = setTimeout(
      () => {
        this.lose(new Error(`lease ${this.leaseId} was not kept alive within its TTL`));
      },
      Math.max(0, left),
    );
    this.expiry.unref();
  }

  private keep(): void {
    this.next = null;
    if (this.stopped) return;
    const sentAt = performance.now();
    this.client.keepAliveLease(this.leaseId).then(
      () => {
        if (this.stopped) return;
        if (sentAt > this.keptFrom) {
          this.keptFrom = sentAt;
          this.armExpiry();
        }
        this.scheduleKeep(this.keptFrom + this.safeMs / 3 - performance.now());
      },
      (error: unknown) => {
        if (this.stopped) return;
        // A lease that ended is lost for good; after any other failure (the client's own
        // retries ran out) the next keep-alive goes soon, until the expiry decides.
        if (error instanceof LeaseNotFoundError) this.lose(error);
        else this.scheduleKeep(Math.min(this.safeMs / 3, 250));
      },
    );
  }

  private async followKey(key: string, fencingToken: number): Promise<void> {
    const { signal } = this.watching;
    let fromRevision = fencingToken + 1;
    while (!signal.aborted) {
      try {
        for await (const change of this.client.watch(key, { fromRevision, signal })) {
          // The watch is of a prefix: "locks/a" also sees "locks/ab".
          if (change.key !== key || this.stopped) continue;
          this.lose(new Error(keyChanged(key, change.type, change.revision, this.leaseId)));
          return;
        }
        return; // stopped, or the client closed
      } catch (error) {
        if (!(error instanceof CompactedError)) throw error;
      }
      // No node holds the changes since then any more: the key itself tells whether it is
      // still the one this holder put, and the watch goes on from the revision read. Read
      // until a read gets through: giving up here would leave the key unwatched for as long
      // as the lease lives.
      let page: Awaited<ReturnType<BatonClient["range"]>> | null = null;
      for (let failures = 0; page === null; failures++) {
        try {
          page = await this.client.range(key, { limit: 1 });
        } catch (error) {
          if (!outage(error)) throw error;
          await systemClock.sleep(outageRetryMs(failures), signal);
          if (signal.aborted) return;
        }
      }
      const item = page.items[0];
      if (this.stopped) return;
      if (item?.key !== key) {
        this.lose(new Error(keyChanged(key, "delete", null, this.leaseId)));
        return;
      }
      if (item.revision !== fencingToken) {
        this.lose(new Error(keyChanged(key, "put", item.revision, this.leaseId)));
        return;
      }
      fromRevision = page.revision + 1;
    }
  }

  private lose(reason: Error): void {
    this.stop();
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
}

/** Why a holder lost its lock to a change of its key, `revision` null when not known. */
function keyChanged(
  key: string,
  type: "put" | "delete",
  revision: number | null,
  leaseId: number,
): string {
  const at = revision === null ? "" : ` at revision ${revision}`;
  return type === "delete"
    ? `the lock's key ${JSON.stringify(key)} was deleted${at} (by a delete, a prefix delete, a transaction or the end of lease ${leaseId}): another client may hold the lock now`
    : `the lock's key ${JSON.stringify(key)} was written over${at}: it no longer names this holder`;
}

/** A leadership won by `campaign`: a lock whose value names the leader. */
export type Leadership = Lock;

/**
 * Campaigns in `election` (a key) as `value`: resolves once this caller is the leader.
 * The fencing token orders leaders: a later leader always has a larger one.
 */
export function campaign(
  client: BatonClient,
  election: string,
  value: string,
  options: Omit<LockOptions, "value"> = {},
): Promise<Leadership> {
  return lock(client, election, { ...options, value });
}

/** The current leader of `election` and its fencing token, or null when there is none. */
export async function leader(
  client: BatonClient,
  election: string,
): Promise<{ value: string; fencingToken: number } | null> {
  const current = await client.get(election);
  return current === null ? null : { value: current.text(), fencingToken: current.revision };
}

/**
 * Every change of leader of `election` from now on: the new leader's value, or null when
 * the seat is empty. Ends when `signal` aborts. When no node holds the changes since its
 * last read any more (ERR_COMPACTED), it reads the seat again and yields it if it changed.
 */
export async function* observe(
  client: BatonClient,
  election: string,
  signal?: AbortSignal,
): AsyncGenerator<{ value: string; fencingToken: number } | null> {
  let last: { value: string; fencingToken: number } | null | undefined;
  while (signal?.aborted !== true) {
    const page = await client.range(election, { limit: 1 });
    const first = page.items[0];
    const seat =
      first?.key === election ? { value: first.value ?? "", fencingToken: first.revision } : null;
    if (last === undefined || seat?.fencingToken !== last?.fencingToken) {
      last = seat;
      yield seat;
    }
    const options = { fromRevision: page.revision + 1, ...(signal ? { signal } : {}) };
    try {
      for await (const change of client.watch(election, options)) {
        if (change.key !== election) continue;
        last =
          change.type === "put"
            ? { value: change.value ?? "", fencingToken: change.revision }
            : null;
        yield last;
      }
      return;
    } catch (error) {
      if (!(error instanceof CompactedError)) throw error;
    }
  }
}
