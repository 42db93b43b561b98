/**
 * lock.ts against a hand-driven client, on fake timers: what a real cluster cannot be
 * made to do on cue (a grant answered late, a keep-alive answered after the release, a
 * lease that lapses while its owner waits, a compacted watch).
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CompactedError,
  ForbiddenError,
  LeaseNotFoundError,
  NoMasterError,
  TimeoutError,
} from "../shared/errors.js";
import type { BatonClient } from "./client.js";
import { LEASE_EARLY_MS_MAX, lock } from "./lock.js";
import type { RangePage, WatchChange } from "./store-client.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
});

afterEach(() => {
  vi.useRealTimers();
});

const later = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const never = (): Promise<never> => new Promise(() => {});
/** "resolved", or the error a promise rejected with, as text. */
const outcomeOf = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => "resolved",
    (error: unknown) => String(error),
  );

/** A client answering as the handlers say; leases granted get ids 1, 2, … */
interface FakeHandlers {
  grant?: (id: number) => Promise<void>;
  keepAlive?: (id: number) => Promise<void>;
  txn?: (lease: number) => Promise<{ succeeded: boolean; revision: number }>;
  /** Every watch, the waiter's and the holder's of its own key, from `fromRevision`. */
  watch?: (signal: AbortSignal, fromRevision: number) => AsyncGenerator<WatchChange>;
  range?: () => Promise<RangePage>;
  revoke?: (id: number) => Promise<void>;
}

function fakeClient(handlers: FakeHandlers) {
  let leases = 0;
  const revoked: number[] = [];
  const keptAlive: number[] = [];
  const client = {
    grantLease: async (ttlSeconds: number) => {
      const id = ++leases;
      await handlers.grant?.(id);
      return { id, ttlSeconds };
    },
    keepAliveLease: async (id: number) => {
      keptAlive.push(id);
      await handlers.keepAlive?.(id);
      return { id, ttlSeconds: 0 };
    },
    revokeLease: async (id: number) => {
      revoked.push(id);
      await handlers.revoke?.(id);
      return { revision: 0 };
    },
    txn: async (request: { success: { put: { lease: number } }[] }) =>
      handlers.txn?.(request.success[0]!.put.lease) ?? { succeeded: true, revision: 7 },
    watch: (_key: string, options: { signal: AbortSignal; fromRevision: number }) =>
      handlers.watch?.(options.signal, options.fromRevision) ??
      (async function* () {
        await new Promise((resolve) => options.signal.addEventListener("abort", resolve));
      })(),
    range: async () => handlers.range?.() ?? { revision: 0, items: [], next: null },
  };
  return { client: client as unknown as BatonClient, revoked, keptAlive };
}

describe("lock: timing of the lease", () => {
  it("counts the lock lost a second before a TTL after the last renewal was sent", async () => {
    const { client } = fakeClient({ keepAlive: never });
    const held = await lock(client, "k", { ttlSeconds: 3 });
    await vi.advanceTimersByTimeAsync(3000 - LEASE_EARLY_MS_MAX - 1);
    expect(held.lost.aborted).toBe(false);
    // Before, at the TTL itself: the cluster may end the lease up to a second sooner.
    await vi.advanceTimersByTimeAsync(1);
    expect(held.lost.aborted).toBe(true);
  });

  it("held() asks the clock: after a long synchronous task, before the timer that aborts `lost` ran, it is false already", async () => {
    const { client } = fakeClient({ keepAlive: never });
    const held = await lock(client, "k", { ttlSeconds: 3 });
    expect(held.held()).toBe(true);
    // The event loop was held for 2.5 s: no timer ran, performance.now() moved on.
    const start = performance.now();
    const now = vi.spyOn(performance, "now").mockReturnValue(start + 2500);
    expect(held.lost.aborted).toBe(false);
    expect(held.held()).toBe(false);
    expect(held.lost.aborted).toBe(true);
    now.mockRestore();
    const again = await lock(fakeClient({}).client, "k2", { ttlSeconds: 3 });
    expect(again.held()).toBe(true);
    await again.release();
    expect(again.held()).toBe(false);
  });

  it("refuses a TTL that leaves no time once the second is taken off", async () => {
    const { client } = fakeClient({});
    await expect(lock(client, "k", { ttlSeconds: 1 })).rejects.toThrow(/ttlSeconds.*>= 2/);
  });

  it("a grant answered late is kept alive at once, not a third of the TTL later", async () => {
    // A grant retried through a fail-over: answered 4.5 s after it was sent, of 6 s.
    const { client, keptAlive } = fakeClient({
      grant: (id) => (id === 1 ? later(4500) : later(0)),
    });
    const taking = lock(client, "k", { ttlSeconds: 6 });
    await vi.advanceTimersByTimeAsync(4500);
    const held = await taking;
    expect(held.leaseId).toBe(1);
    await vi.advanceTimersByTimeAsync(1); // a timer of 0 ms fires after 1, as in Node.js
    expect(keptAlive).toEqual([1]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(held.lost.aborted).toBe(false);
  });

  it("a keep-alive answered after the release changes nothing", async () => {
    let answer: (() => void) | null = null;
    const { client } = fakeClient({
      keepAlive: () =>
        new Promise<void>((resolve) => {
          answer = resolve;
        }),
    });
    const held = await lock(client, "k", { ttlSeconds: 4 });
    await vi.advanceTimersByTimeAsync(1000); // the first keep-alive goes out
    expect(answer).not.toBeNull();
    await held.release();
    answer!();
    await vi.advanceTimersByTimeAsync(10_000);
    // Before, the late answer armed the expiry again, and `lost` aborted a TTL later.
    expect(held.lost.aborted).toBe(false);
  });

  it("a keep-alive refused after the release (the lease is gone) does not abort `lost`", async () => {
    let refuse: (() => void) | null = null;
    const { client } = fakeClient({
      keepAlive: (id) =>
        new Promise<void>((_resolve, reject) => {
          refuse = () => reject(new LeaseNotFoundError(id));
        }),
    });
    const held = await lock(client, "k", { ttlSeconds: 4 });
    await vi.advanceTimersByTimeAsync(1000);
    await held.release();
    refuse!();
    await vi.advanceTimersByTimeAsync(1);
    expect(held.lost.aborted).toBe(false);
  });
});

describe("lock: waiting", () => {
  it("a lease that lapses while its owner waits is replaced, and the wait goes on", async () => {
    let held = true;
    let deleted: () => void = () => {};
    const gone = new Promise<void>((resolve) => {
      deleted = resolve;
    });
    const { client, revoked } = fakeClient({
      // The first lease cannot be kept alive (the cluster is out of reach for a while).
      keepAlive: (id) => (id === 1 ? never() : Promise.resolve()),
      // Held at revision 7 by another, deleted at 9, taken at 10.
      txn: async () => ({ succeeded: !held, revision: held ? 7 : 10 }),
      watch: async function* (signal, fromRevision) {
        await Promise.race([
          gone,
          new Promise((resolve) => signal.addEventListener("abort", resolve)),
        ]);
        if (signal.aborted) return;
        if (fromRevision <= 9) yield { type: "delete", key: "k", value: null, revision: 9 };
        await new Promise((resolve) => signal.addEventListener("abort", resolve));
      },
    });
    const taking = lock(client, "k", { ttlSeconds: 2 });
    await vi.advanceTimersByTimeAsync(2000);
    held = false;
    deleted();
    await vi.advanceTimersByTimeAsync(10);
    // Before, `lock` rejected with "lease 1 was not kept alive within its TTL".
    const taken = await taking;
    expect(taken.leaseId).toBe(2);
    expect(taken.lost.aborted).toBe(false);
    expect(revoked).toEqual([1]);
  });

  it("a lock whose lease lapsed while the transaction was under way is taken again", async () => {
    let txns = 0;
    const { client, revoked } = fakeClient({
      keepAlive: (id) => (id === 1 ? never() : Promise.resolve()),
      // The first transaction is answered only after the first lease may have ended.
      txn: async () => {
        txns++;
        if (txns === 1) await later(1500);
        return { succeeded: true, revision: 7 + txns };
      },
    });
    const taking = lock(client, "k", { ttlSeconds: 2 });
    await vi.advanceTimersByTimeAsync(1500);
    const taken = await taking;
    // Before, the lock came back with `lost` already aborted.
    expect(taken.lost.aborted).toBe(false);
    expect(taken.leaseId).toBe(2);
    expect(taken.fencingToken).toBe(9);
    expect(revoked).toEqual([1]);
  });

  it("a lock answered in the turn its lease's window closed, before the expiry timer ran, is taken again", async () => {
    let skewMs = 0;
    const clock = performance.now.bind(performance);
    const now = vi.spyOn(performance, "now").mockImplementation(() => clock() + skewMs);
    let txns = 0;
    const { client, revoked } = fakeClient({
      txn: async () => {
        // The first answer is handled after the window closed; no timer has run since.
        if (++txns === 1) skewMs = 5000;
        return { succeeded: true, revision: 7 + txns };
      },
    });
    try {
      const taken = await lock(client, "k", { ttlSeconds: 2 });
      // Before, lease 1's lock came back, and `lost` aborted as soon as its timer ran.
      expect(taken.leaseId).toBe(2);
      expect(taken.lost.aborted).toBe(false);
      expect(revoked).toEqual([1]);
    } finally {
      now.mockRestore();
    }
  });

  it("a watch from a compacted revision sends the waiter back to its transaction", async () => {
    let txns = 0;
    const { client } = fakeClient({
      txn: async () => ({ succeeded: ++txns === 2, revision: 7 + txns }),
      // biome-ignore lint/correctness/useYield: a watch that fails before any change
      watch: async function* () {
        throw new CompactedError(8, 20);
      },
    });
    // Before, `lock` rejected with ERR_COMPACTED.
    const taken = await lock(client, "k", { ttlSeconds: 5 });
    expect(taken.fencingToken).toBe(9);
    expect(txns).toBe(2);
  });
});

describe("lock: the holder's key", () => {
  /** A watch that yields `changes` to the holder's watch (from revision 8) and then waits. */
  function holderWatch(changes: WatchChange[], fromRevisions: number[] = []) {
    return async function* (signal: AbortSignal, fromRevision: number) {
      fromRevisions.push(fromRevision);
      if (fromRevision === 8) yield* changes;
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
    };
  }

  it("a delete of the key by another aborts `lost` at once, though the lease lives on", async () => {
    const fromRevisions: number[] = [];
    const { client } = fakeClient({
      watch: holderWatch([{ type: "delete", key: "k", value: null, revision: 12 }], fromRevisions),
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    // Before, `lost` followed only the lease, which the keep-alives kept alive.
    expect(held.lost.aborted).toBe(true);
    expect(String(held.lost.reason)).toContain('"k" was deleted at revision 12');
    expect(fromRevisions).toEqual([8]); // the revision after the one the holder put it at
  });

  it("a put over the key aborts `lost`; a change of a longer key under it does not", async () => {
    const { client } = fakeClient({
      watch: holderWatch([
        { type: "put", key: "k2", value: "x", revision: 11 },
        { type: "delete", key: "k2", value: null, revision: 12 },
      ]),
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(held.lost.aborted).toBe(false);
    const { client: other } = fakeClient({
      watch: holderWatch([{ type: "put", key: "k", value: "someone else", revision: 13 }]),
    });
    const overwritten = await lock(other, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    expect(String(overwritten.lost.reason)).toContain('"k" was written over at revision 13');
    await held.release();
  });

  it("a compacted watch of the key reads it: still the holder's, the watch goes on from there", async () => {
    const fromRevisions: number[] = [];
    let watches = 0;
    const { client } = fakeClient({
      watch: async function* (signal, fromRevision) {
        fromRevisions.push(fromRevision);
        if (++watches === 1) throw new CompactedError(8, 20);
        await new Promise((resolve) => signal.addEventListener("abort", resolve));
      },
      range: async () => ({
        revision: 30,
        items: [{ key: "k", value: "", revision: 7 }],
        next: null,
      }),
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    expect(held.lost.aborted).toBe(false);
    expect(fromRevisions).toEqual([8, 31]);
    await held.release();
  });

  it("a compacted watch of the key reads it: gone, the lock is lost", async () => {
    const { client } = fakeClient({
      // biome-ignore lint/correctness/useYield: a watch that fails before any change
      watch: async function* () {
        throw new CompactedError(8, 20);
      },
      range: async () => ({
        revision: 30,
        items: [{ key: "k/other", value: "", revision: 9 }],
        next: null,
      }),
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    expect(String(held.lost.reason)).toContain('"k" was deleted (by a delete');
  });

  it("a compacted watch of the key whose read finds no master reads again until it gets through", async () => {
    let reads = 0;
    const { client } = fakeClient({
      // biome-ignore lint/correctness/useYield: a watch that fails before any change
      watch: async function* () {
        throw new CompactedError(8, 20);
      },
      range: async () => {
        reads++;
        if (reads <= 2) throw new NoMasterError();
        return { revision: 30, items: [], next: null };
      },
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    expect(reads).toBe(1);
    expect(held.lost.aborted).toBe(false);
    // Before, the failed read ended the watch for good: a delete was never noticed.
    await vi.advanceTimersByTimeAsync(250 + 500);
    expect(reads).toBe(3);
    expect(String(held.lost.reason)).toContain('"k" was deleted (by a delete');
  });

  it("release ends the watch of the key, and a change seen after it changes nothing", async () => {
    let watchSignal: AbortSignal | null = null;
    const { client } = fakeClient({
      watch: async function* (signal) {
        watchSignal = signal;
        await new Promise((resolve) => signal.addEventListener("abort", resolve));
        // The revoke's own delete, delivered as the watch ends.
        yield { type: "delete", key: "k", value: null, revision: 9 };
      },
    });
    const held = await lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(1);
    expect(watchSignal!.aborted).toBe(false);
    await held.release();
    await vi.advanceTimersByTimeAsync(1);
    expect(watchSignal!.aborted).toBe(true);
    expect(held.lost.aborted).toBe(false);
  });
});

describe("lock: giving up and outages", () => {
  it("a lock taken after the signal aborted is given back, not returned", async () => {
    const stop = new AbortController();
    const { client, revoked } = fakeClient({
      txn: async () => {
        await later(100);
        return { succeeded: true, revision: 7 };
      },
    });
    const taking = lock(client, "k", { ttlSeconds: 10, signal: stop.signal });
    const outcome = outcomeOf(taking);
    await vi.advanceTimersByTimeAsync(50);
    stop.abort(new Error("gave up"));
    await vi.advanceTimersByTimeAsync(100);
    expect(await outcome).toBe("Error: gave up");
    expect(revoked).toEqual([1]);
  });

  it("a signal that aborts while a transaction and then a revoke are on their way (an outage) ends the wait at once", async () => {
    const stop = new AbortController();
    const { client, revoked } = fakeClient({
      txn: async () => {
        await later(5000);
        return { succeeded: true, revision: 7 };
      },
      revoke: () => later(3000),
    });
    const taking = lock(client, "k", { ttlSeconds: 10, signal: stop.signal });
    const outcome = outcomeOf(taking);
    await vi.advanceTimersByTimeAsync(50);
    stop.abort(new Error("gave up"));
    await vi.advanceTimersByTimeAsync(1);
    expect(await outcome).toBe("Error: gave up");
    // The lease is given back all the same, without the caller waiting for it.
    expect(revoked).toEqual([1]);
    await vi.advanceTimersByTimeAsync(10_000);
  });

  it("a grant answered after the signal aborted is revoked, and the wait ended when it aborted", async () => {
    const stop = new AbortController();
    const { client, revoked } = fakeClient({ grant: () => later(5000) });
    const taking = lock(client, "k", { ttlSeconds: 10, signal: stop.signal });
    const outcome = outcomeOf(taking);
    await vi.advanceTimersByTimeAsync(50);
    stop.abort(new Error("gave up"));
    await vi.advanceTimersByTimeAsync(1);
    expect(await outcome).toBe("Error: gave up");
    expect(revoked).toEqual([]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(revoked).toEqual([1]);
  });

  it("a grant or a transaction that finds no master in time does not end the wait", async () => {
    let grants = 0;
    let txns = 0;
    const { client, revoked } = fakeClient({
      grant: async () => {
        if (++grants === 1) throw new NoMasterError();
      },
      txn: async () => {
        // The first answer was lost at the deadline: it may have gone through.
        if (++txns === 1) throw new TimeoutError("put: no answer within 10000 ms");
        return { succeeded: true, revision: 12 };
      },
    });
    const taking = lock(client, "k", { ttlSeconds: 10 });
    await vi.advanceTimersByTimeAsync(250 + 500);
    const held = await taking;
    expect(held).toMatchObject({ leaseId: 3, fencingToken: 12 });
    // The lease of the transaction that may have gone through is given back.
    expect(revoked).toEqual([2]);
    await held.release();
  });

  it("a refusal for good (the token may not write) ends the wait", async () => {
    const { client, revoked } = fakeClient({
      txn: async () => {
        throw new ForbiddenError('token "reader" has role read');
      },
    });
    await expect(lock(client, "k", { ttlSeconds: 10 })).rejects.toBeInstanceOf(ForbiddenError);
    expect(revoked).toEqual([1]);
  });
});
