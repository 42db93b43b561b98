/**
 * The session store's own rules, on a stand-in for the client that keeps keys and leases
 * in memory, grants leases as a node does (1 s to 7 days) and ends them, deleting their
 * keys, once the fake clock passes their time to live: how long a session's key lives, how
 * few leases sessions share, that an expired cookie's session is not handed out, and what
 * becomes of records of the old format. The store on a real cluster, with express and a
 * fail-over, is test/integration/session-store.test.ts.
 */

import type { AddressInfo } from "node:net";
import express from "express";
import session from "express-session";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { InvalidInputError, LeaseNotFoundError, TableFullError } from "../shared/errors.js";
import type { BatonClient } from "./client.js";
import {
  createSessionStore,
  SESSION_TTL_SECONDS_MAX,
  type StoredSession,
} from "./session-store.js";
import type { TxnRequest } from "./store-client.js";

interface FakeLease {
  readonly ttlSeconds: number;
  /** When it ends, by performance.now() (faked), in ms. */
  endsAtMs: number;
}

class FakeCluster {
  readonly keys = new Map<string, { value: string; lease: number | null; revision: number }>();
  /** The leases held now; ended ones are dropped (with their keys) at the next request. */
  readonly leases = new Map<number, FakeLease>();
  /** The time to live of every grant asked for, in order, refused ones included. */
  readonly grants: number[] = [];
  private nextLease = 1;
  private revision = 0;
  /** Called before a write that attaches a key to `lease`, and after it (done or not). */
  beforeWrite: (lease: number | null) => Promise<void> = async () => {};
  afterWrite: (lease: number | null) => void = () => {};
  beforeRevoke: (lease: number) => Promise<void> = async () => {};
  /** Called before a grant is answered; throw to refuse it. */
  beforeGrant: () => Promise<void> = async () => {};

  /** Grants a lease directly, as another client would. */
  grant(ttlSeconds: number): number {
    const id = this.nextLease++;
    this.leases.set(id, { ttlSeconds, endsAtMs: performance.now() + ttlSeconds * 1000 });
    return id;
  }

  /** Ends a lease and deletes its keys, as a revoke by an operator or its expiry does. */
  end(id: number): boolean {
    if (!this.leases.delete(id)) return false;
    for (const [key, entry] of this.keys) if (entry.lease === id) this.keys.delete(key);
    this.revision++;
    return true;
  }

  /** When the lease of `key` ends (performance.now() ms); undefined without key or lease. */
  endOf(key: string): number | undefined {
    this.expire();
    const lease = this.keys.get(key)?.lease;
    return lease === null || lease === undefined ? undefined : this.leases.get(lease)?.endsAtMs;
  }

  /** Ends every lease whose time has passed by the fake clock, as log time does. */
  expire(): void {
    const nowMs = performance.now();
    for (const [id, lease] of this.leases) if (lease.endsAtMs <= nowMs) this.end(id);
  }

  private putKey(key: string, value: string, lease: number | null): void {
    if (lease !== null && !this.leases.has(lease)) throw new LeaseNotFoundError(lease);
    this.keys.set(key, { value, lease, revision: ++this.revision });
  }

  private apply(request: TxnRequest): boolean {
    const holds = (request.compare ?? []).every((c) => {
      const entry = this.keys.get(c.key);
      if ("exists" in c) return (entry !== undefined) === c.exists;
      if ("revision" in c) return (entry?.revision ?? 0) === c.revision;
      return entry?.value === c.value;
    });
    const ops = (holds ? request.success : request.failure) ?? [];
    // A branch that names a lease that is not held fails as a whole, changing nothing.
    for (const op of ops) {
      const lease = "put" in op ? op.put.lease : undefined;
      if (lease !== undefined && !this.leases.has(lease)) throw new LeaseNotFoundError(lease);
    }
    for (const op of ops) {
      if ("put" in op) this.putKey(op.put.key, op.put.value, op.put.lease ?? null);
      else this.keys.delete(op.delete.key);
    }
    return holds;
  }

  private async *items(prefix: string) {
    this.expire();
    for (const [key, entry] of [...this.keys].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (key.startsWith(prefix)) yield { key, value: entry.value, revision: entry.revision };
    }
  }

  client(): BatonClient {
    const fake = {
      get: async (key: string) => {
        this.expire();
        const entry = this.keys.get(key);
        return entry === undefined ? null : { text: () => entry.value, revision: entry.revision };
      },
      put: async (key: string, value: string, options: { lease?: number | null } = {}) => {
        this.expire();
        const lease = options.lease ?? null;
        await this.beforeWrite(lease);
        try {
          this.putKey(key, value, lease);
        } finally {
          this.afterWrite(lease);
        }
      },
      txn: async (request: TxnRequest) => {
        this.expire();
        const op = request.success?.[0];
        const lease = op !== undefined && "put" in op ? (op.put.lease ?? null) : null;
        await this.beforeWrite(lease);
        try {
          return { succeeded: this.apply(request), revision: this.revision };
        } finally {
          this.afterWrite(lease);
        }
      },
      rangeAll: (prefix: string) => this.items(prefix),
      delete: async (key: string) => {
        this.expire();
        this.keys.delete(key);
      },
      deleteRange: async (prefix: string) => {
        this.expire();
        let deleted = 0;
        for (const key of this.keys.keys()) {
          if (key.startsWith(prefix) && this.keys.delete(key)) deleted++;
        }
        return { revision: ++this.revision, deleted };
      },
      grantLease: async (ttlSeconds: number) => {
        this.expire();
        this.grants.push(ttlSeconds);
        await this.beforeGrant();
        if (
          !Number.isInteger(ttlSeconds) ||
          ttlSeconds < 1 ||
          ttlSeconds > SESSION_TTL_SECONDS_MAX
        ) {
          throw new InvalidInputError("ttlSeconds", "out of range");
        }
        return { id: this.grant(ttlSeconds), ttlSeconds };
      },
      keepAliveLease: async (id: number) => {
        this.expire();
        const lease = this.leases.get(id);
        if (lease === undefined) throw new LeaseNotFoundError(id);
        lease.endsAtMs = performance.now() + lease.ttlSeconds * 1000;
        return { id, ttlSeconds: lease.ttlSeconds };
      },
      revokeLease: async (id: number) => {
        this.expire();
        await this.beforeRevoke(id);
        return this.end(id) ? { revision: this.revision } : null;
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

const SECOND_MS = 1000;
const DAY_MS = 86_400_000;

/** A session whose cookie has `maxAge` ms left, and expires then unless told otherwise. */
function sessionFor(
  maxAge: number | null,
  expires: Date | null = maxAge === null ? null : new Date(Date.now() + maxAge),
): StoredSession {
  return { cookie: { maxAge, originalMaxAge: maxAge, expires }, user: "alice" };
}

function oldRecord(lease: number, session: StoredSession): string {
  return JSON.stringify({ l: lease, t: 60, s: session });
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date", "performance"] });
});

afterEach(() => {
  vi.useRealTimers();
});

describe("session store", () => {
  it("session store: a cookie longer than a lease's 7 days is kept 7 days less a bucket on a lease a node grants, not an error", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    const savedAt = performance.now();
    const thirtyDays = sessionFor(30 * DAY_MS);
    await call((done) => store.set("a", thirtyDays, done));
    expect(cluster.grants).toHaveLength(1);
    expect(cluster.grants[0]).toBeLessThanOrEqual(SESSION_TTL_SECONDS_MAX);
    // The width for a 7-day time to live is 4096 s.
    const lifeMs = cluster.endOf("sess/a")! - savedAt;
    expect(lifeMs).toBeGreaterThanOrEqual(7 * DAY_MS - 4096 * SECOND_MS);
    expect(lifeMs).toBeLessThanOrEqual(7 * DAY_MS);
    expect(await call<StoredSession | null>((done) => store.get("a", done))).toMatchObject({
      user: "alice",
    });
    // touch at the same moment lands in the same bucket: no new lease.
    await call((done) => store.touch("a", thirtyDays, done));
    expect(cluster.grants).toHaveLength(1);
  });

  it("session store: the key lives until the cookie's expiry (its remaining maxAge, a day without one, a second when spent) and at most W + 2 s more", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    vi.advanceTimersByTime(12_345);
    const savedAt = performance.now();
    await call((done) => store.set("minutes", sessionFor(30 * 60_000), done));
    await call((done) => store.set("browser", sessionFor(null), done));
    await call((done) => store.set("spent", sessionFor(-5, null), done));
    // Widths: 1800 s / 256 -> 8 s; 86 400 s / 256 -> 512 s; a second -> 1 s. The lease ends
    // at least a second after the expiry, the most the cluster may end it early.
    for (const [sid, expiryMs, widthMs] of [
      ["minutes", 30 * 60_000, 8 * SECOND_MS],
      ["browser", DAY_MS, 512 * SECOND_MS],
      ["spent", SECOND_MS, SECOND_MS],
    ] as const) {
      const lifeMs = cluster.endOf(`sess/${sid}`)! - savedAt;
      expect(lifeMs, sid).toBeGreaterThanOrEqual(expiryMs + SECOND_MS);
      expect(lifeMs, sid).toBeLessThanOrEqual(expiryMs + widthMs + 2 * SECOND_MS);
    }
    vi.advanceTimersByTime(30 * 60_000 + 8 * SECOND_MS + 2 * SECOND_MS);
    cluster.expire();
    expect([...cluster.keys.keys()]).toEqual(["sess/browser"]);
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

  it("session store: two saves of one session at once leave the last written on a live lease", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("s", sessionFor(60_000), done));
    expect([...cluster.leases.keys()]).toEqual([1]);
    // Save A stays in lease 1's bucket; save B (a shorter cookie) goes to lease 2's. A's
    // write waits until B has written, so A's transaction finds the revision moved on.
    let bWrote = (): void => {};
    const bWriting = new Promise<void>((resolve) => {
      bWrote = resolve;
    });
    let aFirst = true;
    cluster.beforeWrite = async (lease) => {
      if (lease === 1 && aFirst) await bWriting;
    };
    cluster.afterWrite = (lease) => {
      if (lease === 1 && aFirst) aFirst = false;
      else if (lease === 2) bWrote();
    };
    await Promise.all([
      call((done) => store.set("s", { ...sessionFor(60_000), user: "A" }, done)),
      call((done) => store.set("s", { ...sessionFor(30_000), user: "B" }, done)),
    ]);
    const stored = cluster.keys.get("sess/s");
    expect(stored).toBeDefined();
    expect(cluster.leases.has(stored!.lease!)).toBe(true);
    // A started over on the revision B wrote, and wrote last.
    expect(JSON.parse(stored!.value)).toMatchObject({ s: { user: "A" } });
  });

  it("session store: a default time to live a lease cannot have is refused at once, naming the limit", () => {
    const client = new FakeCluster().client();
    for (const ttlSecondsDefault of [0, 1.5, SESSION_TTL_SECONDS_MAX + 1]) {
      expect(() => createSessionStore(BaseStore, { client, ttlSecondsDefault })).toThrow(
        /ttlSecondsDefault.*must be a whole number of seconds from 1 to 604800/,
      );
    }
  });

  it("session store: options of the wrong shape from JavaScript are InvalidInputError naming the field", () => {
    const client = new FakeCluster().client();
    const untyped = createSessionStore as (Store: unknown, options: unknown) => unknown;
    const field = (options: unknown): string | undefined => {
      try {
        untyped(BaseStore, options);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidInputError);
        return (error as InvalidInputError).field;
      }
      return undefined;
    };
    expect(field(undefined)).toBe("options");
    expect(field({})).toBe("client");
    expect(field({ client: "http://127.0.0.1:8101" })).toBe("client");
    // An empty prefix made clear() refuse and all() read the whole store.
    expect(field({ client, prefix: "" })).toBe("prefix");
    expect(field({ client, prefix: 7 })).toBe("prefix");
    expect(field({ client, touchAfterSeconds: -1 })).toBe("touchAfterSeconds");
    expect(field({ client })).toBeUndefined();
  });

  it("session store: touch with a later cookie expiry keeps the session readable past the old expiry (rolling: true, resave: false)", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("s", { ...sessionFor(60_000), visits: 1 }, done));
    vi.advanceTimersByTime(50_000);
    // express-session hands touch the request's session, its cookie moved on by rolling.
    await call((done) => store.touch("s", { ...sessionFor(60_000), visits: 99 }, done));
    vi.advanceTimersByTime(30_000); // 80 s after the set: its cookie and its lease are over
    const read = await call<StoredSession | null>((done) => store.get("s", done));
    // The stored data, with the new cookie, as express-session's MemoryStore keeps it.
    expect(read).toMatchObject({ user: "alice", visits: 1 });
    expect(new Date(read!.cookie!.expires!).getTime()).toBe(Date.now() + 30_000);
    vi.advanceTimersByTime(30_000 + 3 * SECOND_MS); // past the new expiry, its W and slack
    cluster.expire();
    expect(cluster.keys.has("sess/s")).toBe(false);
  });

  it("session store: touch never writes over a concurrent save with stale data", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("s", { ...sessionFor(60_000), cart: "old" }, done));
    // Hold touch's write until a set from another request of the same user has written.
    let holding = true;
    let touchWaiting = (): void => {};
    const touchHeld = new Promise<void>((resolve) => {
      touchWaiting = resolve;
    });
    let release = (): void => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    cluster.beforeWrite = async () => {
      if (!holding) return;
      holding = false;
      touchWaiting();
      await released;
    };
    const touching = call((done) => store.touch("s", sessionFor(120_000), done));
    await touchHeld;
    await call((done) => store.set("s", { ...sessionFor(60_000), cart: "new" }, done));
    release();
    await touching;
    const read = await call<StoredSession | null>((done) => store.get("s", done));
    expect(read).toMatchObject({ cart: "new" });
    expect(new Date(read!.cookie!.expires!).getTime()).toBe(Date.now() + 120_000);
  });

  it("session store: with touchAfterSeconds a touch writes only once the end moved that far (or half the TTL), and reads nothing before", async () => {
    const cluster = new FakeCluster();
    const client = cluster.client();
    const gets = vi.spyOn(client, "get");
    const txns = vi.spyOn(client, "txn");
    const store = createSessionStore(BaseStore, { client, touchAfterSeconds: 60 });
    await call((done) => store.set("s", sessionFor(30 * 60_000), done));
    const calls = (): number => gets.mock.calls.length + txns.mock.calls.length;
    const afterSet = calls();
    for (let second = 1; second < 60; second++) {
      vi.advanceTimersByTime(SECOND_MS);
      await call((done) => store.touch("s", sessionFor(30 * 60_000), done));
    }
    expect(calls()).toBe(afterSet); // 59 touches, nothing asked of the cluster
    vi.advanceTimersByTime(SECOND_MS);
    await call((done) => store.touch("s", sessionFor(30 * 60_000), done));
    expect(txns.mock.calls.length).toBe(2);
    const read = await call<StoredSession | null>((done) => store.get("s", done));
    expect(new Date(read!.cookie!.expires!).getTime()).toBe(Date.now() + 30 * 60_000);
    // A session shorter than touchAfterSeconds is written once half its TTL has passed.
    await call((done) => store.set("short", sessionFor(40_000), done));
    const txnsBefore = txns.mock.calls.length;
    vi.advanceTimersByTime(19 * SECOND_MS);
    await call((done) => store.touch("short", sessionFor(40_000), done));
    expect(txns.mock.calls.length).toBe(txnsBefore);
    vi.advanceTimersByTime(SECOND_MS);
    await call((done) => store.touch("short", sessionFor(40_000), done));
    expect(txns.mock.calls.length).toBe(txnsBefore + 1);
    // A cookie made shorter is written at once.
    await call((done) => store.touch("s", sessionFor(60_000), done));
    expect(txns.mock.calls.length).toBe(txnsBefore + 2);
  });

  it("session store: with touchAfterSeconds a cookie longer than a lease's longest (30 days) writes no more often than a shorter one", async () => {
    const cluster = new FakeCluster();
    const client = cluster.client();
    const txns = vi.spyOn(client, "txn");
    const store = createSessionStore(BaseStore, { client, touchAfterSeconds: 60 });
    const month = 30 * 24 * 3600_000;
    await call((done) => store.set("s", sessionFor(month), done));
    const afterSet = txns.mock.calls.length;
    for (let second = 1; second < 60; second++) {
      vi.advanceTimersByTime(SECOND_MS);
      // As express-session does: a read before each touch.
      await call((done) => store.get("s", done));
      await call((done) => store.touch("s", sessionFor(month), done));
    }
    expect(txns.mock.calls.length).toBe(afterSet);
    vi.advanceTimersByTime(SECOND_MS);
    await call((done) => store.get("s", done));
    await call((done) => store.touch("s", sessionFor(month), done));
    expect(txns.mock.calls.length).toBe(afterSet + 1);
  });

  it("session store: with touchAfterSeconds a browser-session cookie (no maxAge) keeps the end this instance wrote across express-session's read before each touch", async () => {
    const cluster = new FakeCluster();
    const client = cluster.client();
    const txns = vi.spyOn(client, "txn");
    const store = createSessionStore(BaseStore, { client, touchAfterSeconds: 60 });
    await call((done) => store.set("s", sessionFor(null), done));
    expect(txns).toHaveBeenCalledTimes(1);
    for (let request = 0; request < 5; request++) {
      vi.advanceTimersByTime(SECOND_MS);
      await call<StoredSession | null>((done) => store.get("s", done));
      await call((done) => store.touch("s", sessionFor(null), done));
    }
    expect(txns).toHaveBeenCalledTimes(1);
  });

  it("session store: with touchAfterSeconds a session read from another instance's write is known, and a destroyed one is not touched back", async () => {
    const cluster = new FakeCluster();
    const writer = createSessionStore(BaseStore, { client: cluster.client() });
    const client = cluster.client();
    const txns = vi.spyOn(client, "txn");
    const store = createSessionStore(BaseStore, { client, touchAfterSeconds: 60 });
    await call((done) => writer.set("s", sessionFor(30 * 60_000), done));
    // Unknown here: the first touch writes; read first, the next ones do not.
    await call((done) => store.touch("s", sessionFor(30 * 60_000), done));
    expect(txns).toHaveBeenCalledTimes(1);
    await call((done) => writer.set("b", sessionFor(30 * 60_000), done));
    await call<StoredSession | null>((done) => store.get("b", done));
    vi.advanceTimersByTime(30 * SECOND_MS);
    await call((done) => store.touch("b", sessionFor(30 * 60_000), done));
    expect(txns).toHaveBeenCalledTimes(1);
    // Destroyed here, a touch (a request still in flight) writes nothing back.
    await call((done) => store.destroy("b", done));
    await call((done) => store.touch("b", sessionFor(30 * 60_000), done));
    expect(cluster.keys.has("sess/b")).toBe(false);
    // Without the option every touch writes (express-session's default behaviour).
    const plainClient = cluster.client();
    const plainTxns = vi.spyOn(plainClient, "txn");
    const plain = createSessionStore(BaseStore, { client: plainClient });
    await call((done) => plain.touch("s", sessionFor(30 * 60_000), done));
    await call((done) => plain.touch("s", sessionFor(30 * 60_000), done));
    expect(plainTxns).toHaveBeenCalledTimes(2);
  });

  it("session store: with real express-session, reads that leave the session unchanged write nothing for touchAfterSeconds, then one touch moves its end", async () => {
    const cluster = new FakeCluster();
    const client = cluster.client();
    const txns = vi.spyOn(client, "txn");
    const Store = session.Store as unknown as new () => session.Store;
    const app = express();
    app.use(
      session({
        store: createSessionStore(Store, { client, touchAfterSeconds: 60 }),
        secret: "test secret",
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge: 30 * 60_000 },
      }),
    );
    app.post("/login", (req, res) => {
      (req.session as unknown as { user: string }).user = "alice";
      res.json({ ok: true });
    });
    app.get("/me", (req, res) => {
      res.json({ user: (req.session as unknown as { user?: string }).user ?? null });
    });
    const server = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
      const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const login = await fetch(`${url}/login`, { method: "POST" });
      expect(await login.json()).toEqual({ ok: true });
      const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
      const me = async (): Promise<unknown> =>
        (await fetch(`${url}/me`, { headers: { cookie } })).json();
      expect(txns).toHaveBeenCalledTimes(1); // the login's save
      for (let i = 0; i < 5; i++) {
        vi.advanceTimersByTime(10 * SECOND_MS);
        expect(await me()).toEqual({ user: "alice" });
      }
      expect(txns).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(10 * SECOND_MS);
      expect(await me()).toEqual({ user: "alice" });
      expect(txns).toHaveBeenCalledTimes(2);
      expect(cluster.keys.size).toBe(1);
      const stored = JSON.parse([...cluster.keys.values()][0]!.value);
      expect(new Date(stored.s.cookie.expires).getTime()).toBe(Date.now() + 30 * 60_000);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("session store: touchAfterSeconds outside 0 to 7 days is refused at once, naming the option", () => {
    const client = new FakeCluster().client();
    for (const touchAfterSeconds of [-1, 1.5, SESSION_TTL_SECONDS_MAX + 1, Number.NaN]) {
      expect(() => createSessionStore(BaseStore, { client, touchAfterSeconds })).toThrow(
        /touchAfterSeconds: must be a whole number of seconds from 0 to 604800/,
      );
    }
  });

  it("session store: 1,000 sessions with one maxAge, created over 3 s, share a handful of leases", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    for (let batch = 0; batch < 10; batch++) {
      // A hundred saves at once share the grant in flight.
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          call((done) => store.set(`s${batch * 100 + i}`, sessionFor(30 * 60_000), done)),
        ),
      );
      vi.advanceTimersByTime(300);
    }
    expect(cluster.keys.size).toBe(1000);
    // 30 minutes / 256 -> buckets of 8 s: 3 s of expiries span at most two.
    expect(cluster.grants.length).toBeLessThanOrEqual(2);
    expect(cluster.leases.size).toBe(cluster.grants.length);
  });

  it("session store: a put on a lease that ended early is retried on a new lease, which later saves share", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("a", sessionFor(60_000), done));
    expect([...cluster.leases.keys()]).toEqual([1]);
    cluster.end(1); // revoked by an operator: its keys go with it
    await call((done) => store.set("b", sessionFor(60_000), done));
    await call((done) => store.set("c", sessionFor(60_000), done));
    expect(cluster.grants).toHaveLength(2);
    expect(cluster.keys.get("sess/b")?.lease).toBe(2);
    expect(cluster.keys.get("sess/c")?.lease).toBe(2);
    expect(await call<StoredSession | null>((done) => store.get("b", done))).toMatchObject({
      user: "alice",
    });
  });

  it("session store: a lease error from another copy of the client's classes (a CommonJS application's client) is known by its code", async () => {
    const cluster = new FakeCluster();
    const client = cluster.client();
    const txn = client.txn.bind(client);
    // As the client of `require("baton-ha")` throws it: the same code, another class.
    Object.assign(client, {
      txn: async (request: TxnRequest) => {
        try {
          return await txn(request);
        } catch (error) {
          if (!(error instanceof LeaseNotFoundError)) throw error;
          throw Object.assign(new Error(error.message), { name: error.name, code: error.code });
        }
      },
    });
    const store = createSessionStore(BaseStore, { client });
    await call((done) => store.set("a", sessionFor(60_000), done));
    cluster.end(1);
    await call((done) => store.set("b", sessionFor(60_000), done));
    expect(cluster.grants).toHaveLength(2);
    expect(cluster.keys.get("sess/b")?.lease).toBe(2);
  });

  it("session store: a failed grant is shared by the saves waiting on it, then forgotten", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    cluster.beforeGrant = async () => {
      throw new TableFullError("leases", 1000);
    };
    const failed = await Promise.allSettled([
      call((done) => store.set("a", sessionFor(60_000), done)),
      call((done) => store.set("b", sessionFor(60_000), done)),
    ]);
    expect(failed.map((outcome) => outcome.status)).toEqual(["rejected", "rejected"]);
    expect(cluster.grants).toHaveLength(1);
    cluster.beforeGrant = async () => {};
    await call((done) => store.set("a", sessionFor(60_000), done));
    expect(cluster.grants).toHaveLength(2);
    expect(cluster.keys.get("sess/a")?.lease).toBe(1);
  });

  it("session store: a long-running instance forgets buckets that ended (5,000 one-second buckets)", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    for (let i = 0; i < 5000; i++) {
      await call((done) => store.set("s", sessionFor(1000), done));
      vi.advanceTimersByTime(SECOND_MS);
    }
    expect(cluster.grants).toHaveLength(5000);
    expect(cluster.leases.size).toBeLessThanOrEqual(3);
  });

  it("session store: old-format records are read, and a save, destroy or expiry ends their own leases", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    const own = { a: cluster.grant(60), b: cluster.grant(60), c: cluster.grant(60) };
    cluster.keys.set("sess/a", {
      value: oldRecord(own.a, sessionFor(60_000)),
      lease: own.a,
      revision: 1,
    });
    cluster.keys.set("sess/b", {
      value: oldRecord(own.b, sessionFor(60_000)),
      lease: own.b,
      revision: 1,
    });
    const spent = sessionFor(60_000, new Date(Date.now() - 1));
    cluster.keys.set("sess/c", { value: oldRecord(own.c, spent), lease: own.c, revision: 1 });
    expect(await call<StoredSession | null>((done) => store.get("a", done))).toMatchObject({
      user: "alice",
    });
    await call((done) => store.destroy("a", done));
    expect(await call<StoredSession | null>((done) => store.get("c", done))).toBeNull();
    await call((done) => store.set("b", { ...sessionFor(60_000), user: "bob" }, done));
    expect([...cluster.keys.keys()]).toEqual(["sess/b"]);
    expect(JSON.parse(cluster.keys.get("sess/b")!.value)).toEqual({
      s: expect.objectContaining({ user: "bob" }),
    });
    expect([...cluster.leases.keys()]).toEqual([cluster.keys.get("sess/b")!.lease]);
  });

  it("session store: clear leaves no old-format lease behind", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("new", sessionFor(60_000), done));
    const bucketLease = cluster.keys.get("sess/new")!.lease;
    for (const sid of ["old1", "old2"]) {
      const lease = cluster.grant(86_400);
      cluster.keys.set(`sess/${sid}`, {
        value: oldRecord(lease, sessionFor(DAY_MS)),
        lease,
        revision: 1,
      });
    }
    cluster.keys.set("other/kept", { value: "x", lease: null, revision: 1 });
    await call((done) => store.clear(done));
    expect([...cluster.keys.keys()]).toEqual(["other/kept"]);
    // Only the shared bucket lease is left, to end at its bucket's end.
    expect([...cluster.leases.keys()]).toEqual([bucketLease]);
  });

  it("session store: length counts the sessions all() hands out (no expired or unreadable records)", async () => {
    const cluster = new FakeCluster();
    const store = createSessionStore(BaseStore, { client: cluster.client() });
    await call((done) => store.set("live", sessionFor(60_000), done));
    await call((done) => store.set("gone", sessionFor(60_000, new Date(Date.now() - 1)), done));
    cluster.keys.set("sess/junk", { value: "not json", lease: null, revision: 1 });
    cluster.keys.set("sess/array", { value: '{"s": []}', lease: null, revision: 1 });
    const all = await call<Record<string, StoredSession>>((done) => store.all(done));
    expect(Object.keys(all)).toEqual(["live"]);
    expect(await call<number>((done) => store.length(done))).toBe(1);
  });

  it("session store: a callback that throws is an uncaught exception, as from any callback, not an unhandled rejection", async () => {
    const store = createSessionStore(BaseStore, { client: new FakeCluster().client() });
    // Vitest's own listeners would fail the run on either; watch them alone for a moment.
    const vitestUncaught = process.listeners("uncaughtException");
    const vitestRejection = process.listeners("unhandledRejection");
    process.removeAllListeners("uncaughtException");
    process.removeAllListeners("unhandledRejection");
    const uncaught: unknown[] = [];
    const rejections: unknown[] = [];
    process.on("uncaughtException", (error) => uncaught.push(error));
    process.on("unhandledRejection", (reason) => rejections.push(reason));
    try {
      store.get("nobody", () => {
        throw new Error("callback failed");
      });
      for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.removeAllListeners("uncaughtException");
      process.removeAllListeners("unhandledRejection");
      for (const listener of vitestUncaught) process.on("uncaughtException", listener);
      for (const listener of vitestRejection) process.on("unhandledRejection", listener);
    }
    expect(rejections).toEqual([]);
    expect(uncaught).toEqual([expect.objectContaining({ message: "callback failed" })]);
  });
});
