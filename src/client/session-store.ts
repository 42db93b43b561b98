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
 * Each session is the key `<prefix><sid>`, holding `{"l": leaseId, "t": ttlSeconds, "s":
 * session}` and attached to a lease whose time to live is the cookie's remaining
 * `maxAge` (a day when the cookie has none), so the cluster deletes it when it expires,
 * on every node at once. `touch` keeps the lease alive; a `set` with a new time to live
 * moves the key to a new lease and revokes the old one. A lease lasts at most 7 days
 * (docs/api.md), so a cookie that lasts longer keeps its session for 7 days from its last
 * request. A session whose cookie has expired is not handed out, even while its key is
 * still there (a fail-over gives every lease its full time to live again).
 *
 * It takes express-session's `Store` class as an argument rather than importing it, so the
 * client library does not depend on express-session; the store is an instance of it, with
 * the base class's `createSession`, `load` and `regenerate`.
 */

import { LeaseNotFoundError } from "../shared/errors.js";
import type { BatonClient } from "./client.js";

export interface SessionStoreOptions {
  readonly client: BatonClient;
  /** Prepended to each session id to make its key. @default "sess/" */
  readonly prefix?: string;
  /** Time to live of a session whose cookie has no `maxAge`, in seconds. @default 86400 */
  readonly ttlSecondsDefault?: number;
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

/** How many times a save starts over when another save of the session came first. */
const SAVE_ATTEMPTS_MAX = 8;

/** The longest time to live a node grants a lease (docs/api.md), in seconds. */
export const SESSION_TTL_SECONDS_MAX = 604_800;

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

/** What is stored under a session's key. */
interface Record_ {
  readonly l: number;
  readonly t: number;
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
  const { client } = options;
  const prefix = options.prefix ?? "sess/";
  const ttlDefault = options.ttlSecondsDefault ?? 86_400;
  if (!Number.isInteger(ttlDefault) || ttlDefault < 1 || ttlDefault > SESSION_TTL_SECONDS_MAX) {
    throw new RangeError(
      `ttlSecondsDefault must be a whole number of seconds from 1 to ${SESSION_TTL_SECONDS_MAX} (a lease's longest time to live), not ${ttlDefault}`,
    );
  }
  const keyOf = (sid: string): string => `${prefix}${sid}`;
  // The cookie's remaining time (none: a browser-session cookie, the default; spent: a
  // second), up to a lease's longest.
  const ttlOf = (session: StoredSession): number => {
    const maxAge = session.cookie?.maxAge;
    const seconds = typeof maxAge === "number" ? Math.max(1, Math.ceil(maxAge / 1000)) : ttlDefault;
    return Math.min(seconds, SESSION_TTL_SECONDS_MAX);
  };
  /** The record and the revision it was written at (0: no key). */
  const readAt = async (sid: string): Promise<{ record: Record_ | null; revision: number }> => {
    const entry = await client.get(keyOf(sid));
    return entry === null
      ? { record: null, revision: 0 }
      : { record: parse(entry.text()), revision: entry.revision };
  };
  const read = async (sid: string): Promise<Record_ | null> => (await readAt(sid)).record;
  // As express-session's own MemoryStore: a session whose cookie expired is gone.
  const current = async (sid: string): Promise<StoredSession | null> => {
    const record = await read(sid);
    if (record === null || !expired(record.s)) return record?.s ?? null;
    await client.revokeLease(record.l);
    await client.delete(keyOf(sid));
    return null;
  };
  // The write is a transaction on the revision the save read: two saves of one session at
  // once (two requests of one user) could otherwise interleave so that one moved the key to
  // a new lease and revoked the old one just after the other had put the key back on it,
  // deleting the session. The save that loses reads again and starts over.
  const save = async (sid: string, session: StoredSession): Promise<void> => {
    const ttl = ttlOf(session);
    const key = keyOf(sid);
    for (let attempt = 1; ; attempt++) {
      const { record: existing, revision } = await readAt(sid);
      let lease: number | null = null;
      if (existing !== null && existing.t === ttl) {
        lease = await client.keepAliveLease(existing.l).then(
          (kept) => kept.id,
          (error: unknown) => {
            if (error instanceof LeaseNotFoundError) return null;
            throw error;
          },
        );
      }
      const granted = lease === null;
      lease ??= (await client.grantLease(ttl)).id;
      const record: Record_ = { l: lease, t: ttl, s: session };
      const written = await client.txn({
        compare: [revision === 0 ? { key, exists: false } : { key, revision }],
        success: [{ put: { key, value: JSON.stringify(record), lease } }],
        failure: [],
      });
      if (written.succeeded) {
        // The key has moved to the new lease, so revoking the old one deletes nothing.
        if (existing !== null && existing.l !== lease) await client.revokeLease(existing.l);
        return;
      }
      if (granted) await client.revokeLease(lease);
      if (attempt >= SAVE_ATTEMPTS_MAX) {
        throw new Error(
          `session ${sid} changed under ${attempt} saves in a row; the last was not written`,
        );
      }
    }
  };
  const methods: BatonSessionStore = {
    get: (sid, callback) => settle(current(sid), callback),
    set: (sid, session, callback) => settle(save(sid, session), callback),
    destroy: (sid, callback) =>
      settle(
        read(sid).then(async (existing) => {
          if (existing !== null) await client.revokeLease(existing.l);
          await client.delete(keyOf(sid));
        }),
        callback,
      ),
    touch: (sid, session, callback) =>
      settle(
        read(sid).then(async (existing) => {
          if (existing === null) return;
          if (existing.t !== ttlOf(session)) return save(sid, session);
          try {
            await client.keepAliveLease(existing.l);
          } catch (error) {
            if (!(error instanceof LeaseNotFoundError)) throw error;
          }
        }),
        callback,
      ),
    all: (callback) =>
      settle(
        (async () => {
          const sessions: Record<string, StoredSession> = {};
          for await (const item of client.rangeAll(prefix)) {
            const record = item.value === null ? null : parse(item.value);
            if (record !== null && !expired(record.s)) {
              sessions[item.key.slice(prefix.length)] = record.s;
            }
          }
          return sessions;
        })(),
        callback,
      ),
    length: (callback) =>
      settle(
        (async () => {
          let count = 0;
          for await (const _ of client.rangeAll(prefix, { keysOnly: true })) count++;
          return count;
        })(),
        callback,
      ),
    clear: (callback) => settle(client.deleteRange(prefix), callback),
  };
  return Object.assign(new Store(), methods);
}

/** Whether the session's cookie has an expiry, and it has passed. */
function expired(session: StoredSession): boolean {
  const expires = session.cookie?.expires;
  if (expires === undefined || expires === null) return false;
  const at = new Date(expires).getTime();
  return !Number.isNaN(at) && at <= Date.now();
}

function parse(text: string): Record_ | null {
  try {
    const record = JSON.parse(text) as Partial<Record_>;
    if (typeof record.l !== "number" || typeof record.t !== "number") return null;
    if (typeof record.s !== "object" || record.s === null) return null;
    return record as Record_;
  } catch {
    return null;
  }
}

/** Calls a node-style callback with the promise's outcome. */
function settle<T>(promise: Promise<T>, callback: Callback<T> | undefined): void {
  promise.then(
    (result) => callback?.(null, result),
    (error: unknown) => callback?.(error),
  );
}
