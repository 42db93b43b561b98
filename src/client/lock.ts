/**
 * Locks and leader election built on leases, with a fencing token.
 *
 * A lock is one key. Taking it: grant a lease, then a transaction "if the key does not
 * exist, put it attached to my lease"; if someone holds it, watch the key until it is
 * deleted (released, or its holder's lease expired) and try again. The holder keeps its
 * lease alive every third of its time to live; when that fails for good (the lease ended,
 * or no keep-alive sent in the last TTL has been answered, say because the holder is cut
 * off) the lock is lost and `lost` aborts. Releasing revokes the lease, which deletes the key at once.
 *
 * The fencing token is the revision at which the holder put the key. Every later holder
 * puts it at a later revision, so a resource that remembers the largest token it has seen
 * and refuses smaller ones cannot be changed by a holder that lost the lock without knowing
 * it (a long pause, a partition): holding a lock is a belief, the token is a proof.
 *
 * An election is a lock whose key's value names the leader: `campaign` takes it, `leader`
 * reads it, `observe` follows it.
 */

import { InvalidInputError, LeaseNotFoundError } from "../shared/errors.js";
import type { BatonClient } from "./client.js";

export interface LockOptions {
  /**
   * Seconds the lock outlives its holder's last keep-alive: how long others wait after a
   * holder dies without releasing. @default 10
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
  /** Aborts when the lock is lost: the lease ended, or could not be kept alive in time. */
  readonly lost: AbortSignal;
  /** Releases the lock (deleting its key) and stops keeping it alive. */
  release(): Promise<void>;
}

/**
 * Takes the lock `key`, waiting while another holds it. Resolves with the lock and its
 * fencing token; rejects when `options.signal` aborts (leaving no lease behind).
 */
export async function lock(
  client: BatonClient,
  key: string,
  options: LockOptions = {},
): Promise<Lock> {
  const ttlSeconds = options.ttlSeconds ?? 10;
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new InvalidInputError("ttlSeconds", "must be a whole number of seconds >= 1");
  }
  const grantSentAt = performance.now();
  const lease = await client.grantLease(ttlSeconds);
  const keeper = new LeaseKeeper(client, lease.id, ttlSeconds, grantSentAt);
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      const attempt = await client.txn({
        compare: [{ key, exists: false }],
        success: [{ put: { key, value: options.value ?? "", lease: lease.id } }],
        failure: [],
      });
      if (attempt.succeeded) {
        return {
          key,
          leaseId: lease.id,
          fencingToken: attempt.revision,
          lost: keeper.lost,
          release: async () => {
            keeper.stop();
            await client.revokeLease(lease.id);
          },
        };
      }
      await untilDeleted(client, key, attempt.revision + 1, options.signal, keeper.lost);
      keeper.lost.throwIfAborted();
    }
  } catch (error) {
    keeper.stop();
    await client.revokeLease(lease.id).catch(() => null);
    throw error;
  }
}

/** Waits until `key` is deleted at or after `fromRevision` (or is already gone). */
async function untilDeleted(
  client: BatonClient,
  key: string,
  fromRevision: number,
  ...signals: (AbortSignal | undefined)[]
): Promise<void> {
  const controller = new AbortController();
  const stop = AbortSignal.any([controller.signal, ...signals.filter((s) => s !== undefined)]);
  // The key may have gone between the failed transaction and the watch's start; the watch
  // from that revision on sees its delete either way.
  for await (const change of client.watch(key, { fromRevision, signal: stop })) {
    if (change.key === key && change.type === "delete") break;
  }
  stop.throwIfAborted();
}

/**
 * Keeps a lease alive every third of its TTL, and aborts `lost` once the lease may have
 * ended: a TTL after the *sending* of the last request that renewed it (the node renewed it
 * at some moment after that, so it lives at least that long), whether or not a keep-alive
 * is still waiting for its answer. A holder cut off from the cluster keeps trying for the
 * client's whole deadline; waiting for that before giving up would let it believe it held
 * the lock after another had taken it.
 */
class LeaseKeeper {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private expiry: NodeJS.Timeout | null = null;
  private keeping = false;

  constructor(
    private readonly client: BatonClient,
    private readonly leaseId: number,
    private readonly ttlSeconds: number,
    /** When the request that last renewed the lease was sent (performance.now()). */
    private keptFrom: number,
  ) {
    this.timer = setInterval(() => this.keep(), (ttlSeconds * 1000) / 3);
    this.timer.unref();
    this.armExpiry();
  }

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
  }

  private armExpiry(): void {
    if (this.expiry !== null) clearTimeout(this.expiry);
    const left = this.keptFrom + this.ttlSeconds * 1000 - performance.now();
    this.expiry = setTimeout(
      () => {
        this.lose(new Error(`lease ${this.leaseId} was not kept alive within its TTL`));
      },
      Math.max(0, left),
    );
    this.expiry.unref();
  }

  private keep(): void {
    if (this.keeping || this.controller.signal.aborted) return;
    this.keeping = true;
    const sentAt = performance.now();
    this.client
      .keepAliveLease(this.leaseId)
      .then(
        () => {
          if (this.controller.signal.aborted || sentAt <= this.keptFrom) return;
          this.keptFrom = sentAt;
          this.armExpiry();
        },
        (error: unknown) => {
          // A lease that ended is lost for good; other failures are tried again next time.
          if (error instanceof LeaseNotFoundError) this.lose(error);
        },
      )
      .finally(() => {
        this.keeping = false;
      });
  }

  private lose(reason: Error): void {
    this.stop();
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
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
 * the seat is empty. Ends when `signal` aborts.
 */
export async function* observe(
  client: BatonClient,
  election: string,
  signal?: AbortSignal,
): AsyncGenerator<{ value: string; fencingToken: number } | null> {
  const page = await client.range(election, { limit: 1 });
  const first = page.items[0];
  yield first?.key === election ? { value: first.value ?? "", fencingToken: first.revision } : null;
  const options = { fromRevision: page.revision + 1, ...(signal ? { signal } : {}) };
  for await (const change of client.watch(election, options)) {
    if (change.key !== election) continue;
    yield change.type === "put"
      ? { value: change.value ?? "", fencingToken: change.revision }
      : null;
  }
}
