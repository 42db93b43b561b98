/**
 * Locks and leader election from the client library over the real HTTP API and state
 * machine on a one-node stand-in: mutual exclusion, fencing tokens that grow with every
 * holder, release, a waiter taking over when a holder's lease is revoked, and a holder
 * that notices its key deleted under it.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import {
  type BatonClient,
  campaign,
  createClient,
  leader,
  lock,
  observe,
} from "../../src/client/index.js";
import { createHttpServer } from "../../src/http/server.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ node: LocalKvNode; clients: () => BatonClient }> {
  const node = new LocalKvNode(1);
  const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
  const { url } = await server.listen("127.0.0.1", 0);
  cleanups.push(() => server.close());
  return {
    node,
    clients: () => {
      const c = createClient({ endpoints: [url], retryDelayMsMin: 1, retryDelayMsMax: 10 });
      cleanups.push(() => c.close());
      return c;
    },
  };
}

/** Resolves once `signal` aborts; rejects after `ms`. */
function lostWithin(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) return resolve();
    const timeout = setTimeout(() => reject(new Error(`lost did not abort within ${ms} ms`)), ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timeout);
      resolve();
    });
  });
}

/** Resolves once `condition` holds, checking every 10 ms; rejects after 2 s. */
async function until(condition: () => boolean): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 10) {
    if (waitedMs >= 2000) throw new Error("the condition did not hold within 2 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("client: locks", () => {
  it("lock: one holder at a time; the next holder's fencing token is larger", async () => {
    const { clients } = await setup();
    const a = clients();
    const b = clients();
    const first = await lock(a, "locks/job", { value: "a" });
    let secondHeld = false;
    const second = lock(b, "locks/job", { value: "b" }).then((held) => {
      secondHeld = true;
      return held;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(secondHeld).toBe(false);
    expect((await a.get("locks/job"))?.text()).toBe("a");
    await first.release();
    const next = await second;
    expect(next.fencingToken).toBeGreaterThan(first.fencingToken);
    expect((await b.get("locks/job"))?.text()).toBe("b");
    await next.release();
    expect(await a.get("locks/job")).toBeNull();
  });

  it("lock: a holder whose lease ends loses the lock, and a waiter takes it", async () => {
    const { clients } = await setup();
    const a = clients();
    const held = await lock(a, "locks/x", { ttlSeconds: 3 });
    const waiter = lock(clients(), "locks/x");
    // Someone revokes the holder's lease (an operator, or expiry after a partition).
    await a.revokeLease(held.leaseId);
    const next = await waiter;
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    await new Promise<void>((resolve) => {
      if (held.lost.aborted) resolve();
      held.lost.addEventListener("abort", () => resolve());
    });
    expect(held.lost.aborted).toBe(true);
    await next.release();
  });

  it("lock: a holder cut off from the cluster loses the lock a second before a TTL after its last answered keep-alive was sent, though a keep-alive is still waiting", async () => {
    const { clients } = await setup();
    const real = clients();
    let cut = false;
    // The holder's keep-alives stop being answered: a client cut off from every node keeps
    // trying for its whole deadline (10 s), far past the lease's 2 s.
    const holder = new Proxy(real, {
      get(target, key) {
        if (key === "keepAliveLease" && cut) return () => new Promise(() => {});
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const before = performance.now();
    const held = await lock(holder, "locks/cut", { ttlSeconds: 2 });
    cut = true;
    await new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error("the lock was never lost")), 3000);
      held.lost.addEventListener("abort", () => {
        clearTimeout(timeout);
        resolve();
      });
    });
    const lostAfter = performance.now() - before;
    expect(lostAfter).toBeLessThan(1500);
    expect(lostAfter).toBeGreaterThan(900);
    expect(String(held.lost.reason)).toContain("was not kept alive within its TTL");
    await held.release();
  });

  it("lock: a holder whose key someone deletes loses the lock at once, and a waiter takes it (lease still kept alive)", async () => {
    const { clients } = await setup();
    const held = await lock(clients(), "locks/d", { ttlSeconds: 10 });
    const waiter = lock(clients(), "locks/d");
    const deletedAt = performance.now();
    await clients().delete("locks/d");
    const next = await waiter;
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    // Before, `lost` never aborted: the holder kept its lease alive while another held the lock.
    await lostWithin(held.lost, 2000);
    expect(performance.now() - deletedAt).toBeLessThan(2000);
    expect(String(held.lost.reason)).toContain('"locks/d" was deleted at revision');
    await Promise.all([held.release(), next.release()]);
  });

  it("lock: a prefix delete ends the locks under it, not a lock whose key is a shorter prefix", async () => {
    const { clients } = await setup();
    const short = await lock(clients(), "locks/a", { ttlSeconds: 10 });
    const long = await lock(clients(), "locks/ab", { ttlSeconds: 10 });
    await clients().deleteRange("locks/ab");
    await lostWithin(long.lost, 2000);
    expect(short.lost.aborted).toBe(false);
    await Promise.all([short.release(), long.release()]);
  });

  it("lock: an operator revoking the holder's lease aborts lost at once, not at the next keep-alive", async () => {
    const { clients } = await setup();
    const held = await lock(clients(), "locks/r", { ttlSeconds: 10 });
    const revokedAt = performance.now();
    await clients().revokeLease(held.leaseId);
    await lostWithin(held.lost, 2000);
    // The next keep-alive would have gone out 3 s after the grant.
    expect(performance.now() - revokedAt).toBeLessThan(2000);
    await held.release();
  });

  it("lock: release and client.close end the holder's watch of its key", async () => {
    const { clients, node } = await setup();
    const held = await lock(clients(), "locks/w", { ttlSeconds: 10 });
    await until(() => node.stateMachine.watchCount === 1);
    await held.release();
    await until(() => node.stateMachine.watchCount === 0);
    const c = clients();
    const again = await lock(c, "locks/w", { ttlSeconds: 10 });
    await until(() => node.stateMachine.watchCount === 1);
    await c.close();
    await until(() => node.stateMachine.watchCount === 0);
    expect(again.lost.aborted).toBe(false);
  });

  it("lock: waiting ends when the signal aborts, leaving no lease behind", async () => {
    const { clients, node } = await setup();
    const held = await lock(clients(), "locks/y");
    const controller = new AbortController();
    const waiting = lock(clients(), "locks/y", { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("gave up")), 50);
    await expect(waiting).rejects.toThrow("gave up");
    // Its lease is revoked without the caller waiting for the answer.
    await until(() => node.stateMachine.leaseCount === 1);
    await held.release();
  });

  it("election: campaign, leader and observe follow the leader", async () => {
    const { clients } = await setup();
    const watcher = clients();
    const controller = new AbortController();
    const seen: (string | null)[] = [];
    const following = (async () => {
      for await (const current of observe(watcher, "election/main", controller.signal)) {
        seen.push(current?.value ?? null);
        if (seen.length === 3) controller.abort();
      }
    })();
    const one = await campaign(clients(), "election/main", "node-1");
    expect(await leader(watcher, "election/main")).toEqual({
      value: "node-1",
      fencingToken: one.fencingToken,
    });
    await one.release();
    await following;
    expect(seen).toEqual([null, "node-1", null]);
  });
});
