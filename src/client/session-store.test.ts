/**
 * The session store's own rules, on a stand-in for the client that keeps keys and leases
 * in memory and grants leases as a node does (1 s to 7 days): how long a session's lease
 * lives, and that an expired cookie's session is not handed out. The store on a real
 * cluster, with express and a fail-over, is test/integration/session-store.test.ts.
 */

import { describe, expect, it } from "vitest";
import { InvalidInputError, LeaseNotFoundError } from "../shared/errors.js";
import type { BatonClient } from "./client.js";
import {
  createSessionStore,
  SESSION_TTL_SECONDS_MAX,
  type StoredSession,
} from "./session-store.js";
import type { TxnRequest } from "./store-client.js";

class FakeCluster {
  readonly keys = new Map<string, { value: string; lease: number | null; revision: number }>();
  readonly leases = new Map<number, number>();
  private nextLease = 1;
  private revision = 0;
  /** Called before a write that attaches a key to `lease`, and after it (done or not). */
  beforeWrite: (lease: number | null) => Promise<void> = async () => {};
  afterWrite: (lease: number | null) => void = () => {};
  beforeRevoke: (lease: number) => Promise<void> = async () => {};

  private putKey(key: string, value: string, lease: number | null): void {
    if (lease !== null && !this.leases.has(lease)) throw new LeaseNotFoundError(lease);
    this.keys.set(key, { value, lease, revision: ++this.revision });
  }

  client(): BatonClient {
    const fakeKeys = this.keys;
    const fake = {
      get: async (key: string) => {
        const entry = this.keys.get(key);
        return entry === undefined ? null : { text: () => entry.value, revision: entry.revision };
      },
      put: async (key: string, value: string, options: { lease?: number | null } = {}) => {
        const lease = options.lease ?? null;
        await this.beforeWrite(lease);
        try {
          this.putKey(key, value, lease);
        } finally {
          this.afterWrite(lease);
        }
      },
      txn: async (request: TxnRequest) => {
        const op = request.success?.[0];
        const lease = op !== undefined && "put" in op ? (op.put.lease ?? null) : null;
        await this.beforeWrite(lease);
        try {
          const holds = (request.compare ?? []).every((c) => {
            const entry = this.keys.get(c.key);
            if ("exists" in c) return (entry !== undefined) === c.exists;
            if ("revision" in c) return entry?.revision === c.revision;
            return entry?.value === c.value;
          });
          if (holds) {
            for (const item of request.success ?? []) {
              if ("put" in item) this.putKey(item.put.key, item.put.value, item.put.lease ?? null);
            }
          }
          return { succeeded: holds, revision: this.revision };
        } finally {
          this.afterWrite(lease);
        }
      },
      rangeAll: async function* (this: void, prefix: string) {
        for (const [key, entry] of [...fakeKeys].sort(([a], [b]) => (a < b ? -1 : 1))) {
          if (key.startsWith(prefix)) yield { key, value: entry.value };
        }
      },
      delete: async (key: string) => {
        this.keys.delete(key);
      },
      grantLease: async (ttlSeconds: number) => {
        if (ttlSeconds < 1 || ttlSeconds > SESSION_TTL_SECONDS_MAX) {
          throw new InvalidInputError("ttlSeconds", "out of range");
        }
        const id = this.nextLease++;
        this.leases.set(id, ttlSeconds);
        return { id, ttlSeconds };
      },
      keepAliveLease: async (id: number) => {
        const ttlSeconds = this.leases.get(id);
        if (ttlSeconds === undefined) throw new LeaseNotFoundError(id);
        return { id, ttlSeconds };
      },
      revokeLease: async (id: number) => {
        await this.beforeRevoke(id);
        if (!this.leases.delete(id)) return null;
        for (const [key, entry] of this.keys) if (entry.lease === id) this.keys.delete(key);
        return { revision: ++this.revision };
      },
    };
    return fake as unknown as BatonClient;
  }
}

class BaseStore {}

function call<T>(method: (callback: (error?: unknown, result?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    method((error, result) => (error ? reject(error) : resolve(result as T))),
  );
}

const DAY_MS = 86_400_000;

function sessionFor(maxAge: number | null, expires: Date | null = null): StoredSession {
  return { cookie: { maxAge, originalMaxAge: maxAge, expires }, user: "alice" };
}

describe("session store", () => {
  it("session store: a cookie longer than a lease's 7 days gets a 7-day lease, not an error", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    const thirtyDays = sessionFor(30 * DAY_MS, new Date(Date.now() + 30 * DAY_MS));
    await call((done) => store.set("a", thirtyDays, done));
    expect([...cluster.leases.values()]).toEqual([SESSION_TTL_SECONDS_MAX]);
    expect(await call<StoredSession | null>((done) => store.get("a", done))).toMatchObject({
      user: "alice",
    });
    // touch keeps the same lease alive.
    await call((done) => store.touch("a", thirtyDays, done));
    expect([...cluster.leases.keys()]).toEqual([1]);
  });

  it("session store: the lease lives as long as the cookie: its remaining maxAge, a day without one, a second when spent", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("minutes", sessionFor(30 * 60_000), done));
    await call((done) => store.set("browser", sessionFor(null), done));
    await call((done) => store.set("spent", sessionFor(-5), done));
    expect([...cluster.leases.values()]).toEqual([1800, 86_400, 1]);
  });

  it("session store: a session whose cookie expired is not handed out, and its key goes", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    // As after a fail-over, which gives the lease its full time to live again.
    await call((done) => store.set("old", sessionFor(60_000, new Date(Date.now() - 1000)), done));
    await call((done) => store.set("new", sessionFor(60_000, new Date(Date.now() + 60_000)), done));
    expect(
      Object.keys(await call<Record<string, StoredSession>>((done) => store.all(done))),
    ).toEqual(["new"]);
    expect(await call((done) => store.get("old", done))).toBeNull();
    expect(cluster.keys.has("sess/old")).toBe(false);
    expect(await call<StoredSession | null>((done) => store.get("new", done))).toMatchObject({
      user: "alice",
    });
  });

  it("session store: two saves of one session at once never leave it on a revoked lease", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("s", sessionFor(60_000), done));
    expect([...cluster.leases.keys()]).toEqual([1]);
    // Save A keeps lease 1 (same time to live); save B moves the session to a new lease and
    // revokes lease 1. The worst order: B writes, then A writes on lease 1, then B revokes it.
    let bWrote = (): void => {};
    const bWriting = new Promise<void>((resolve) => {
      bWrote = resolve;
    });
    let aWrote = (): void => {};
    const aWriting = new Promise<void>((resolve) => {
      aWrote = resolve;
    });
    let aFirst = true;
    cluster.beforeWrite = async (lease) => {
      if (lease === 1 && aFirst) await bWriting;
    };
    cluster.afterWrite = (lease) => {
      if (lease === 1 && aFirst) {
        aFirst = false;
        aWrote();
      } else if (lease === 2) bWrote();
    };
    cluster.beforeRevoke = async (lease) => {
      if (lease === 1) await aWriting;
    };
    await Promise.all([
      call((done) => store.set("s", { ...sessionFor(60_000), user: "A" }, done)),
      call((done) => store.set("s", { ...sessionFor(30_000), user: "B" }, done)),
    ]);
    const stored = cluster.keys.get("sess/s");
    expect(stored).toBeDefined();
    expect(cluster.leases.has(stored!.lease!)).toBe(true);
  });

  it("session store: a default time to live a lease cannot have is refused at once, naming the limit", () => {
    const client = new FakeCluster().client();
    for (const ttlSecondsDefault of [0, 1.5, SESSION_TTL_SECONDS_MAX + 1]) {
      expect(() => createSessionStore(BaseStore, { client, ttlSecondsDefault })).toThrow(
        /ttlSecondsDefault must be a whole number of seconds from 1 to 604800/,
      );
    }
  });
});
