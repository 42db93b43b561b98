/**
 * An `express-session` store on a Baton cluster: web sessions that survive the loss of the
 * master, because every session is a replicated key and the client follows the master.
 *
 *   import session from "express-session";
 *   import { createClient } from "baton-ha/client";
 *   import { createSessionStore } from "baton-ha/session-store";
 *   const store = createSessionStore(session.Store, { client: createClient({ endpoints }) });
 *   app.use(session({ store, secret, resave: false, saveUninitialized: false }));
 *
 * Each session is the key `<prefix><sid>`, holding `{"s": session}`. Sessions share leases,
 * so that the number of leases does not grow with the number of sessions (a node holds at
 * most 100 000, docs/api.md). A session saved now expires at E = now + its time to live:
 * the cookie's remaining `maxAge` (`ttlSecondsDefault` when the cookie has none, a second
 * when it is spent), at most 7 days. Its key is put on this store instance's lease for the
 * bucket of E: buckets are W seconds wide, W the smallest power of two at least TTL/256
 * (1 s up to a TTL of 256 s, 8 s for 30 minutes, 512 s for a day, 4096 s for 7 days), and
 * the bucket's lease is granted once, with a time to live from the sending of the grant to
 * the bucket's end, rounded up, plus a second: the cluster may end a lease a second early
 * (LEASE_EARLY_MS_MAX). So the cluster deletes the key on every node no sooner than E and
 * at most W plus about two seconds after it (W is less than 1/128 of the TTL). A cookie of
 * 7 days or more keeps its session 7 days from its last save, less up to W, because a lease
 * lasts at most 7 days. However many sessions there are, an instance holds about 257 live
 * leases per width in use (a time to live spans 256 widths at most), so about 257 when its
 * sessions have one time to live, and about 1 800 at most with every width from 1 s to
 * 4096 s in use, as wider buckets end where narrower ones do and share their leases; it
 * forgets a bucket once its end has passed.
 *
 * `set` and `touch` write the session on the lease of its new expiry; `touch` writes back
 * the stored data with the new cookie, as express-session's MemoryStore does. Both are a
 * transaction on the revision they read, so a concurrent save of the same session is never
 * overwritten with stale data: the one that loses reads again and starts over. A put that
 * answers LeaseNotFoundError (the bucket's lease ended early: revoked by an operator, or
 * this instance's guess of its end was wrong) forgets the bucket, grants a new lease and
 * starts over. With `touchAfterSeconds`, a touch that would move the session's end by
 * less than that (or than half its TTL) writes nothing: express-session touches on every
 * request that leaves the session unchanged, a read and a transaction each without it.
 * No session ever keeps a lease alive or revokes one, except a record of the
 * old format, `{"l": leaseId, "t": ttlSeconds, "s": session}`, which had a lease of its
 * own: it is still read, and its lease is revoked when the record is rewritten, destroyed,
 * found expired or cleared.
 *
 * A session whose cookie has expired is not handed out, even while its key is still there:
 * the key may outlive it by up to W and two seconds, and a fail-over gives every lease its
 * full time to live again, so a key may then outlive its session by up to its bucket
 * lease's time to live (the session's TTL, W and two seconds).
 *
 * It takes express-session's `Store` class as an argument rather than importing it, so the
 * client library does not depend on express-session; the store is an instance of it, with
 * the base class's `createSession`, `load` and `regenerate`. Callbacks are called outside
 * the store's promises, so one that throws is an uncaught exception, never a rejection.
 */

import { assert } from "../shared/assert.js";
import { InvalidInputError } from "../shared/errors.js";
import type { BatonClient } from "./client.js";
import { LEASE_EARLY_MS_MAX } from "./lock.js";

/** The code of the error a write attached to a lease that has ended is refused with. */
const LEASE_NOT_FOUND = "ERR_LEASE_NOT_FOUND";

export interface SessionStoreOptions {
  readonly client: BatonClient;
  /** Prepended to each session id to make its key. @default "sess/" */
  readonly prefix?: string;
  /** Time to live of a session whose cookie has no `maxAge`, in seconds. @default 86400 */
  readonly ttlSecondsDefault?: number;
  /**
   * express-session calls `touch` on every request that leaves its session unchanged, and
   * each touch is a read and a transaction on the cluster. With this set, a touch writes
   * only when the session's new expiry is at least this many seconds (and at least half
   * its time to live) past the one this instance last wrote or read; the others return at
   * once and write nothing. An idle session may then end up to that much before its cookie
   * says. 0: every touch writes. @default 0
   */
  readonly touchAfterSeconds?: number;
}

/** A session as express-session hands it over: plain data with its cookie. */
export interface StoredSession {
  cookie?:
    | {
        maxAge?: number | null;
        originalMaxAge?: number | null;
        /** When the cookie expires: a Date, or its JSON (an ISO string) once stored. */
        expires?: Date | string | null;
      }
    | undefined;
  [field: string]: unknown;
}

/**
 * How many times a save starts over when another save of the session came first or its
 * bucket's lease had ended.
 */
const SAVE_ATTEMPTS_MAX = 8;

/** The longest time to live a node grants a lease (docs/api.md), in seconds. */
export const SESSION_TTL_SECONDS_MAX = 604_800;

/** A bucket is about this many times narrower than the time to live of its sessions. */
const BUCKETS_PER_TTL = 256;

/**
 * The most buckets an instance can hold at once: widths are 1 s to 4096 s (13 powers of
 * two), and at most 257 buckets of one width end within a time to live of that width.
 */
const BUCKET_COUNT_MAX = 13 * (BUCKETS_PER_TTL + 1);

/**
 * The latest a bucket may end after the save that picks it, in ms: its lease's time to live
 * (this, in whole seconds, plus LEASE_EARLY_MS_MAX) must not pass a lease's longest.
 */
const BUCKET_END_MS_MAX = SESSION_TTL_SECONDS_MAX * 1000 - LEASE_EARLY_MS_MAX;

type Callback<T = unknown> = (error?: unknown, result?: T) => void;

/** The methods express-session calls on a store; the instance also has the base class's. */
export interface BatonSessionStore {
  get(sid: string, callback: Callback<StoredSession | null>): void;
  set(sid: string, session: StoredSession, callback?: Callback): void;
  destroy(sid: string, callback?: Callback): void;
  touch(sid: string, session: StoredSession, callback?: Callback): void;
  all(callback: Callback<Record<string, StoredSession>>): void;
  length(callback: Callback<number>): void;
  clear(callback?: Callback): void;
}

/** What is stored under a session's key; `l` only in records of the old format. */
interface Record_ {
  readonly l?: number;
  readonly s: StoredSession;
}

/**
 * A store for express-session: `Store` is express-session's `Store` class (`session.Store`),
 * which the returned object is an instance of.
 */
export function createSessionStore<S extends object>(
  Store: new () => S,
  options: SessionStoreOptions,
): S & BatonSessionStore {
  // From JavaScript anything may come: name the field, as the client does.
  if (typeof options !== "object" || options === null) {
    throw new InvalidInputError("options", "pass an object with the client: { client }");
  }
  const client: unknown = options.client;
  if (
    typeof client !== "object" ||
    client === null ||
    typeof (client as { txn?: unknown }).txn !== "function"
  ) {
    throw new InvalidInputError("client", "must be a client made by createClient");
  }
  const prefix: unknown = options.prefix ?? "sess/";
  if (typeof prefix !== "string" || prefix === "") {
    // An empty prefix would make clear() refuse and all() read the whole store.
    throw new InvalidInputError("prefix", 'must be a non-empty string, such as "sess/"');
  }
  const ttlDefault = options.ttlSecondsDefault ?? 86_400;
  if (!Number.isInteger(ttlDefault) || ttlDefault < 1 || ttlDefault > SESSION_TTL_SECONDS_MAX) {
    throw new InvalidInputError(
      "ttlSecondsDefault",
      `must be a whole number of seconds from 1 to ${SESSION_TTL_SECONDS_MAX} (a lease's longest time to live), not ${ttlDefault}`,
    );
  }
  const touchAfter = options.touchAfterSeconds ?? 0;
  if (!Number.isInteger(touchAfter) || touchAfter < 0 || touchAfter > SESSION_TTL_SECONDS_MAX) {
    throw new InvalidInputError(
      "touchAfterSeconds",
      `must be a whole number of seconds from 0 to ${SESSION_TTL_SECONDS_MAX}, not ${touchAfter}`,
    );
  }
  const records = new SessionRecords(options.client, prefix, ttlDefault, touchAfter * 1000);
  const methods: BatonSessionStore = {
    get: (sid, callback) => settle(records.current(sid), callback),
    set: (sid, session, callback) =>
      settle(
        records.update(sid, () => session),
        callback,
      ),
    destroy: (sid, callback) => settle(records.destroy(sid), callback),
    // As express-session's MemoryStore: the stored data with the request's cookie.
    touch: (sid, session, callback) =>
      settle(
        records.touchWanted(sid, session)
          ? records.update(sid, (stored) => stored && { ...stored, cookie: session.cookie })
          : Promise.resolve(),
        callback,
      ),
    all: (callback) =>
      settle(
        (async () => {
          const sessions: Record<string, StoredSession> = {};
          for await (const [sid, session] of records.live()) sessions[sid] = session;
          return sessions;
        })(),
        callback,
      ),
    length: (callback) =>
      settle(
        (async () => {
          let count = 0;
          for await (const _ of records.live()) count++;
          return count;
        })(),
        callback,
      ),
    clear: (callback) => settle(records.clear(), callback),
  };
  return Object.assign(new Store(), methods);
}

/** The sessions' keys under one prefix, and the leases of this store instance. */
class SessionRecords {
  private readonly leases: BucketLeases;
  /** When each session this instance last wrote or read ends, for `touchAfterSeconds`. */
  private readonly ends = new SessionEnds();

  constructor(
    private readonly client: BatonClient,
    private readonly prefix: string,
    private readonly ttlSecondsDefault: number,
    private readonly touchAfterMs: number,
  ) {
    this.leases = new BucketLeases(client);
  }

  /**
   * Whether a touch of the session should write: always without `touchAfterSeconds`, and
   * when this instance knows of no end for it; otherwise when the touch moves its end by
   * `touchAfterSeconds`, or by half its time to live, whichever is less (so a session
   * shorter than `touchAfterSeconds` is still kept alive while it is used), either way (a
   * cookie made shorter is written too).
   */
  touchWanted(sid: string, session: StoredSession): boolean {
    if (this.touchAfterMs === 0) return true;
    const knownEndMs = this.ends.get(sid);
    if (knownEndMs === undefined) return true;
    const ttlMs = this.ttlMsOf(session);
    const movedMs = Math.abs(performance.now() + ttlMs - knownEndMs);
    return movedMs >= Math.min(this.touchAfterMs, ttlMs / 2);
  }

  /** The session, or null: none, or its cookie expired (its key is deleted, as MemoryStore). */
  async current(sid: string): Promise<StoredSession | null> {
    const { record, revision } = await this.readAt(sid);
    this.remember(sid, record);
    if (record === null || !expired(record.s)) return record?.s ?? null;
    const key = this.keyOf(sid);
    const deleted = await this.client.txn({
      compare: [{ key, revision }],
      success: [{ delete: { key } }],
    });
    if (deleted.succeeded && record.l !== undefined) await this.client.revokeLease(record.l);
    return null;
  }

  // Writes what `next` makes of the stored session (null: write nothing), on the lease of its
  // expiry's bucket, as a transaction on the revision read: a save that lost to another
  // reads again and starts over, so it never writes over newer data with what it read.
  async update(
    sid: string,
    next: (stored: StoredSession | null) => StoredSession | null,
  ): Promise<void> {
    const key = this.keyOf(sid);
    for (let attempt = 1; ; attempt++) {
      const { record, revision } = await this.readAt(sid);
      const session = next(record === null || expired(record.s) ? null : record.s);
      if (session === null) {
        this.ends.delete(sid);
        return;
      }
      const bucket = this.leases.bucketFor(this.ttlMsOf(session));
      const lease = await bucket.lease;
      const value = JSON.stringify({ s: session } satisfies Record_);
      const outcome = await this.client
        .txn({
          compare: [revision === 0 ? { key, exists: false } : { key, revision }],
          success: [{ put: { key, value, lease } }],
        })
        .then(
          (written) => (written.succeeded ? "written" : "changed"),
          (error: unknown) => {
            // By its code, not its class: a CommonJS application may hold the client of
            // `require("baton-ha")`, whose error classes are not this bundle's.
            const ended = (error as { code?: unknown } | null)?.code === LEASE_NOT_FOUND;
            if (!ended || attempt >= SAVE_ATTEMPTS_MAX) throw error;
            return "lease ended";
          },
        );
      if (outcome === "written") {
        this.ends.set(sid, performance.now() + this.ttlMsOf(session));
        // The key has left an old-format record's own lease, so revoking it deletes nothing.
        if (record?.l !== undefined) await this.client.revokeLease(record.l);
        return;
      }
      if (outcome === "lease ended") this.leases.forget(bucket);
      if (attempt >= SAVE_ATTEMPTS_MAX) {
        throw new Error(
          `session ${sid} changed under ${attempt} saves in a row; the last was not written`,
        );
      }
    }
  }

  async destroy(sid: string): Promise<void> {
    this.ends.delete(sid);
    const { record } = await this.readAt(sid);
    await this.client.delete(this.keyOf(sid));
    if (record?.l !== undefined) await this.client.revokeLease(record.l);
  }

  /** Every session handed out, with its id: readable, and its cookie not expired. */
  async *live(): AsyncGenerator<[string, StoredSession]> {
    for await (const item of this.client.rangeAll(this.prefix)) {
      const record = item.value === null ? null : parse(item.value);
      if (record !== null && !expired(record.s)) {
        yield [item.key.slice(this.prefix.length), record.s];
      }
    }
  }

  // Revokes the own lease of every old-format record first (deleting its key), then deletes
  // the prefix: no lease of a cleared session outlives it. Bucket leases are shared, so they
  // stay and end at their buckets' ends.
  async clear(): Promise<void> {
    const own = new Set<number>();
    for await (const item of this.client.rangeAll(this.prefix)) {
      const lease = item.value === null ? undefined : parse(item.value)?.l;
      if (lease !== undefined) own.add(lease);
    }
    for (const lease of own) await this.client.revokeLease(lease);
    await this.client.deleteRange(this.prefix);
    this.ends.clear();
  }

  // What a read tells of the session's end: its cookie's expiry, by this process's clock.
  // A cookie without one (a browser-session cookie) says nothing: its end is known only
  // once this instance writes it, and a read (express-session reads before every touch)
  // keeps the end that write left. A session gone is forgotten.
  private remember(sid: string, record: Record_ | null): void {
    if (record === null) {
      this.ends.delete(sid);
      return;
    }
    const expires = record.s.cookie?.expires;
    const at = expires === undefined || expires === null ? Number.NaN : new Date(expires).getTime();
    if (Number.isNaN(at)) return;
    // The key lives on a lease of at most SESSION_TTL_SECONDS_MAX (ttlMsOf), from the write
    // that set the cookie's expiry, at `originalMaxAge` before it: a longer cookie's expiry
    // is not the session's end here (a 30-day cookie's seemed 23 days off at every touch,
    // which then always wrote).
    const longestMs = SESSION_TTL_SECONDS_MAX * 1000;
    const original = record.s.cookie?.originalMaxAge;
    const leftMs =
      typeof original === "number"
        ? at - Date.now() - Math.max(0, original - longestMs)
        : Math.min(at - Date.now(), longestMs);
    this.ends.set(sid, performance.now() + leftMs);
  }

  private keyOf(sid: string): string {
    return `${this.prefix}${sid}`;
  }

  // The cookie's remaining time in ms (none: a browser-session cookie, the default; spent:
  // a second), up to a lease's longest.
  private ttlMsOf(session: StoredSession): number {
    const maxAge = session.cookie?.maxAge;
    const ms = typeof maxAge === "number" ? Math.max(1000, maxAge) : this.ttlSecondsDefault * 1000;
    return Math.min(ms, SESSION_TTL_SECONDS_MAX * 1000);
  }

  /** The record and the revision it was written at (0: no key). */
  private async readAt(sid: string): Promise<{ record: Record_ | null; revision: number }> {
    const entry = await this.client.get(this.keyOf(sid));
    return entry === null
      ? { record: null, revision: 0 }
      : { record: parse(entry.text()), revision: entry.revision };
  }
}

/** The most sessions whose end an instance remembers; the least recently used go first. */
const SESSION_ENDS_MAX = 100_000;

/**
 * When sessions end, by performance.now(), in ms: the ones this instance last wrote or
 * read, at most SESSION_ENDS_MAX (about 10 MB). What another instance writes meanwhile is
 * not seen here: a touch skipped here leaves the session as the last write, of any
 * instance, made it.
 */
class SessionEnds {
  private readonly endsMs = new Map<string, number>();

  get(sid: string): number | undefined {
    return this.endsMs.get(sid);
  }

  set(sid: string, endMs: number): void {
    this.endsMs.delete(sid);
    this.endsMs.set(sid, endMs);
    if (this.endsMs.size > SESSION_ENDS_MAX) {
      this.endsMs.delete(this.endsMs.keys().next().value as string);
    }
  }

  delete(sid: string): void {
    this.endsMs.delete(sid);
  }

  clear(): void {
    this.endsMs.clear();
  }
}

/** A bucket of expiry times and the promise of its lease's id. */
interface Bucket {
  /** When the bucket ends, by performance.now(), in ms: a multiple of its width. */
  readonly endMs: number;
  readonly lease: Promise<number>;
}

/**
 * A store instance's leases, one per bucket, each granted once: concurrent saves into one
 * bucket share the grant in flight. Times are performance.now(), so a jump of the wall
 * clock moves no bucket; a lease's time to live is a duration, counted by the cluster.
 */
class BucketLeases {
  private readonly buckets = new Map<number, Bucket>();

  constructor(private readonly client: BatonClient) {}

  /** The bucket for a session that expires `ttlMs` from now. */
  bucketFor(ttlMs: number): Bucket {
    const nowMs = performance.now();
    const endMs = bucketEndMs(nowMs, ttlMs);
    const known = this.buckets.get(endMs);
    if (known !== undefined) return known;
    // No later save picks a bucket that has ended: it picks one that ends after now.
    for (const ended of this.buckets.keys()) if (ended <= nowMs) this.buckets.delete(ended);
    const bucket: Bucket = { endMs, lease: this.grant(endMs) };
    this.buckets.set(endMs, bucket);
    assert(this.buckets.size <= BUCKET_COUNT_MAX, "more buckets than widths allow");
    // Whoever asked awaits the grant and gets its failure; the next save grants anew.
    bucket.lease.catch(() => this.forget(bucket));
    return bucket;
  }

  /** Drops the bucket (its lease ended or was never granted), unless replaced already. */
  forget(bucket: Bucket): void {
    if (this.buckets.get(bucket.endMs) === bucket) this.buckets.delete(bucket.endMs);
  }

  // The lease must last until the bucket's end from the moment the grant is sent (the node
  // counts from when it applies the grant, later), plus the second it may end early.
  private async grant(endMs: number): Promise<number> {
    const sentAtMs = performance.now();
    const ttlSeconds =
      Math.max(0, Math.ceil((endMs - sentAtMs) / 1000)) + LEASE_EARLY_MS_MAX / 1000;
    assert(ttlSeconds >= 1 && ttlSeconds <= SESSION_TTL_SECONDS_MAX, "bucket lease too long");
    return (await this.client.grantLease(ttlSeconds)).id;
  }
}

/**
 * When the bucket of a session that expires `ttlMs` after `nowMs` ends, in ms: the first
 * multiple of its width W at or after the expiry, W the smallest power of two seconds at
 * least TTL/256; or, when a lease could not last that long, the last multiple one can.
 */
function bucketEndMs(nowMs: number, ttlMs: number): number {
  let widthMs = 1000;
  while (widthMs * BUCKETS_PER_TTL < ttlMs) widthMs *= 2;
  const latestMs = Math.floor((nowMs + BUCKET_END_MS_MAX) / widthMs) * widthMs;
  return Math.min(Math.ceil((nowMs + ttlMs) / widthMs) * widthMs, latestMs);
}

/** Whether the session's cookie has an expiry, and it has passed. */
function expired(session: StoredSession): boolean {
  const expires = session.cookie?.expires;
  if (expires === undefined || expires === null) return false;
  const at = new Date(expires).getTime();
  return !Number.isNaN(at) && at <= Date.now();
}

/** A record of either format; null when it is not one (a key written by someone else). */
function parse(text: string): Record_ | null {
  try {
    const record = JSON.parse(text) as { l?: unknown; s?: unknown } | null;
    if (typeof record !== "object" || record === null) return null;
    const { l, s } = record;
    if (typeof s !== "object" || s === null || Array.isArray(s)) return null;
    const session = s as StoredSession;
    return Number.isSafeInteger(l) && (l as number) > 0
      ? { l: l as number, s: session }
      : { s: session };
  } catch {
    return null;
  }
}

/**
 * Calls a node-style callback with the promise's outcome, outside the promise's chain: a
 * callback that throws is an uncaught exception, as a throw from any callback is, and
 * never an unhandled rejection.
 */
function settle<T>(promise: Promise<T>, callback: Callback<T> | undefined): void {
  promise.then(
    (result) => queueMicrotask(() => callback?.(null, result)),
    (error: unknown) => queueMicrotask(() => callback?.(error)),
  );
}
