/**
 * The client against a fake three-node cluster (harness/doubles/fake-cluster.ts) on 127.0.0.1:
 * finding the master, following a fail-over, exactly-once writes across retries,
 * Retry-After, giving up clearly, and the meaning of each answer. Delays are kept to a few
 * milliseconds; the few tests that measure real waits assert generous bounds.
 */

import { afterEach, describe, expect, it } from "vitest";
import { FakeCluster, type Interceptor } from "../../harness/doubles/fake-cluster.js";
import {
  type BatonClient,
  BusyError,
  ClientClosedError,
  type ClientOptions,
  createClient,
  DeadlineExceededError,
  InvalidInputError,
  MasterBusyError,
  MasterTableFullError,
  NoMasterError,
  NoMasterReachableError,
  OutcomeUnknownError,
  PreconditionFailedError,
  SwitchoverFailedError,
  TableFullError,
  TimeoutError,
  UnexpectedResponseError,
} from "../../src/client/index.js";
import { describeError, sendErrorAnswer } from "../../src/http/error-status.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function cluster(...args: Parameters<typeof FakeCluster.start>): Promise<FakeCluster> {
  const fake = await FakeCluster.start(...args);
  cleanups.push(() => fake.close());
  return fake;
}

function client(options: ClientOptions): BatonClient {
  const c = createClient({ retryDelayMsMin: 1, retryDelayMsMax: 10, ...options });
  cleanups.push(() => c.close());
  return c;
}

function idempotencyKeys(fake: FakeCluster, method = "PUT"): string[] {
  return fake.requestsTo(method, "/v1/kv/").map((r) => String(r.headers["idempotency-key"]));
}

/** An interceptor that answers `method` requests with `error`, as a node's HTTP layer does. */
function refuse(method: string, error: Error): Interceptor {
  return (request, reply) => {
    if (request.method !== method) return false;
    sendErrorAnswer(reply, describeError(error));
    return true;
  };
}

function expectRejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error as Error,
  );
}

describe("client: master", () => {
  it("client: sends writes straight to the master once it has asked a node (backups forward)", async () => {
    const fake = await cluster(3, 2);
    const c = client({ endpoints: fake.urls });
    for (let i = 0; i < 3; i++) await c.put(`k${i}`, `v${i}`);
    expect(fake.requests[0]?.url).toBe("/v1/status");
    expect(fake.requestsTo("PUT", "/v1/kv/").map((r) => r.nodeId)).toEqual([2, 2, 2]);
    expect(fake.requestsTo("GET", "/v1/status")).toHaveLength(1);
  });

  it("client: finds the master by trying each node (backups answer 503, no URLs advertised)", async () => {
    const fake = await cluster(3, 3, {
      backupMode: "unavailable",
      advertiseUrls: false,
      retryAfter: null,
    });
    const c = client({ endpoints: fake.urls.map((u) => u.replace("http://", "")) });
    expect(await c.put("a", "1")).toEqual({ revision: 1 });
    expect(await c.put("b", "2")).toEqual({ revision: 2 });
    const puts = fake.requestsTo("PUT", "/v1/kv/");
    expect(puts.map((r) => r.nodeId)).toEqual([1, 2, 3, 3]);
    expect(new Set(puts.slice(0, 3).map((r) => r.headers["idempotency-key"])).size).toBe(1);
  });

  it("client: follows a fail-over (master's server closed mid-run, new master after 100 ms)", async () => {
    const fake = await cluster(3, 1, { retryAfter: "1" });
    const c = client({ endpoints: fake.urls, retryAfterMsMax: 20 });
    await c.put("k", "before");
    await fake.kill(1);
    setTimeout(() => fake.elect(2), 100);
    for (let i = 0; i < 5; i++) await c.put("k", `after-${i}`);
    expect(fake.appliedCount).toBe(6);
    expect((await c.get("k"))?.text()).toBe("after-4");
    // Writes may go through a forwarding backup until the client next asks who the master
    // is (at most every 250 ms while it does not know); after that they go to node 2.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await c.put("k", "direct");
    expect(fake.requestsTo("PUT", "/v1/kv/").at(-1)?.nodeId).toBe(2);
  });

  it("client: leaves a hung master once the others name a newer one (well before the attempt timeout)", async () => {
    const fake = await cluster(3, 1);
    const c = client({ endpoints: fake.urls, attemptTimeoutMs: 5_000, masterCheckAfterMs: 50 });
    await c.put("k", "before");
    // A paused process: its connections stay open and nothing is ever answered.
    fake.node(1).intercept = () => true;
    setTimeout(() => fake.elect(2), 100);
    const started = performance.now();
    await c.put("k", "after");
    expect(performance.now() - started).toBeLessThan(2_000);
    const puts = fake.requestsTo("PUT", "/v1/kv/");
    expect(puts.at(-1)?.nodeId).toBe(2);
    // The same logical write, so the same key on the retry.
    expect(new Set(puts.slice(1).map((r) => r.headers["idempotency-key"])).size).toBe(1);
    expect((await c.get("k"))?.text()).toBe("after");
  });
});

describe("client: exactly-once", () => {
  it("client: a write retried after its answer was lost reuses its Idempotency-Key (master dies after applying)", async () => {
    const fake = await cluster(3, 1, { retryAfter: null });
    fake.node(1).intercept = (request) => {
      if (request.method !== "PUT") return false;
      // The master applies the write and dies before answering; node 3 takes over.
      fake.write(request);
      request.raw.socket.destroy();
      void fake.kill(1).then(() => setTimeout(() => fake.elect(3), 30));
      return true;
    };
    const c = client({ endpoints: fake.urls });
    expect(await c.put("once", "v")).toEqual({ revision: 1 });
    expect(fake.appliedCount).toBe(1);
    const keys = idempotencyKeys(fake);
    expect(keys.length).toBeGreaterThanOrEqual(2);
    expect(new Set(keys).size).toBe(1);
  });

  it("client: every logical write gets its own Idempotency-Key (clientId prefix)", async () => {
    const fake = await cluster(1, 1);
    const c = client({ endpoints: fake.urls, clientId: "app-7" });
    await c.put("a", "1");
    await c.put("a", "2");
    await c.delete("a");
    const keys = [...idempotencyKeys(fake), ...idempotencyKeys(fake, "DELETE")];
    expect(new Set(keys).size).toBe(3);
    for (const key of keys) expect(key).toMatch(/^app-7-[0-9a-f]{12}-\d+$/);
  });

  it("client: a caller's idempotency key is sent as given (two calls, one application)", async () => {
    const fake = await cluster(1, 1);
    const c = client({ endpoints: fake.urls });
    const first = await c.put("k", "v", { idempotencyKey: "order-42" });
    const second = await c.put("k", "v", { idempotencyKey: "order-42" });
    expect(second).toEqual(first);
    expect(fake.appliedCount).toBe(1);
  });
});

/** The PUT was sent three times (two refusals), each send `minMs` to `maxMs` after the last. */
function expectRetriedAfter(
  fake: Awaited<ReturnType<typeof cluster>>,
  minMs: number,
  maxMs: number,
) {
  const at = fake.requestsTo("PUT", "/v1/kv/").map((r) => r.at);
  expect(at).toHaveLength(3);
  for (let i = 1; i < at.length; i++) {
    const gap = at[i]! - at[i - 1]!;
    expect(gap).toBeGreaterThanOrEqual(minMs);
    expect(gap).toBeLessThan(maxMs);
  }
}

describe("client: retries and giving up", () => {
  it("client: honours Retry-After, capped by retryAfterMsMax (503 twice, then an answer)", async () => {
    const fake = await cluster(1, 1);
    let refusals = 2;
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "PUT" || refusals-- <= 0) return false;
      reply.header("retry-after", "5").code(503).send({ error: "busy", code: "ERR_BUSY" });
      return true;
    };
    const c = client({ endpoints: fake.urls, retryAfterMsMax: 200 });
    await c.put("k", "v");
    expectRetriedAfter(fake, 190, 1000);
  });

  it("client: waits the node's retryAfterMs on ERR_NO_MASTER, not Retry-After's whole second (a fail-over's pause)", async () => {
    const fake = await cluster(1, 1);
    let refusals = 2;
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "PUT" || refusals-- <= 0) return false;
      // As a backup answers after holding a forwarded write while no master was known.
      sendErrorAnswer(reply, describeError(new NoMasterError(200)));
      return true;
    };
    const c = client({ endpoints: fake.urls, retryAfterMsMax: 1000 });
    await c.put("k", "v");
    expectRetriedAfter(fake, 190, 600);
  });

  it("client: gives up with NoMasterError after the deadline (every node answers 503)", async () => {
    const fake = await cluster(3, null, { retryAfter: null });
    const c = client({ endpoints: fake.urls, deadlineMs: 300 });
    const started = performance.now();
    const error = await expectRejection(c.put("k", "v"));
    const elapsed = performance.now() - started;
    expect(error).toBeInstanceOf(NoMasterError);
    expect(error).toBeInstanceOf(NoMasterReachableError);
    expect((error as NoMasterError).code).toBe("ERR_NO_MASTER");
    // Within the deadline, or just before it when the next attempt would not fit.
    expect(error.message).toMatch(
      /no master available (within 300 ms|in \d+ ms, giving up before the 300 ms deadline)/,
    );
    for (const url of fake.urls) expect(error.message).toContain(url);
    expect(error.message).toContain("last error");
    expect(error.message).toContain("ERR_NO_MASTER");
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2000);
    const details = (error as NoMasterReachableError).details;
    expect(details.anyNodeAnswered).toBe(true);
    expect(new Set(idempotencyKeys(fake)).size).toBe(1);
  });

  it("client: gives up with NoMasterError naming every endpoint (every node down)", async () => {
    const fake = await cluster(3, 1);
    const urls = fake.urls;
    for (const node of fake.nodes) await fake.kill(node.id);
    const c = client({ endpoints: urls, deadlineMs: 200 });
    const error = await expectRejection(c.put("k", "v"));
    expect((error as NoMasterError).code).toBe("ERR_NO_MASTER");
    expect(error.message).toContain(`no node answered at ${urls.join(", ")}`);
    expect(error.message).toMatch(/ECONNREFUSED/);
    // A refused connection delivers nothing, so the write is known not to have applied.
    expect((error as NoMasterReachableError).details.mayHaveApplied).toBe(false);
    expect(error.message).not.toContain("may have been applied");
  });

  it("client: gives up with TimeoutError when a node never answers (write may have applied)", async () => {
    const fake = await cluster(1, 1);
    fake.node(1).intercept = (request) => request.method === "PUT";
    const c = client({ endpoints: fake.urls, deadlineMs: 300, attemptTimeoutMs: 100 });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "key-1" }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as TimeoutError).code).toBe("ERR_TIMEOUT");
    expect(error.message).toMatch(
      /did not complete (within 300 ms|in \d+ ms, giving up before the 300 ms deadline)/,
    );
    expect(error.message).toContain("idempotency key key-1");
    expect((error as DeadlineExceededError).details.mayHaveApplied).toBe(true);
    expect(new Set(idempotencyKeys(fake))).toEqual(new Set(["key-1"]));
  });

  it("client: a write answered ERR_SHUTTING_DOWN may have applied (the stopping node had proposed it)", async () => {
    const fake = await cluster(1, 1);
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "PUT") return false;
      reply.code(503).send({ error: "the node is shutting down", code: "ERR_SHUTTING_DOWN" });
      return true;
    };
    const c = client({ endpoints: fake.urls, deadlineMs: 300 });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "key-2" }));
    expect(error.message).toContain("ERR_SHUTTING_DOWN");
    expect(error.message).toContain("idempotency key key-2");
    expect((error as NoMasterReachableError).details.mayHaveApplied).toBe(true);
  });

  it("client: gives up with BusyError, not ERR_NO_MASTER, when a reachable master keeps answering ERR_BUSY", async () => {
    const fake = await cluster(3, 1, { retryAfter: null });
    // Every node answers as the master does, or as a backup passing on its answer.
    for (const node of fake.nodes) node.intercept = refuse("PUT", new BusyError(100));
    const c = client({ endpoints: fake.urls, deadlineMs: 1_000, retryAfterMsMax: 20 });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "key-b" }));
    expect(error).toBeInstanceOf(BusyError);
    expect(error).toBeInstanceOf(MasterBusyError);
    expect(error).not.toBeInstanceOf(NoMasterError);
    expect((error as BusyError).code).toBe("ERR_BUSY");
    expect(error.message).toContain("the master was still too busy to take it");
    expect(error.message).toContain("ERR_BUSY");
    const details = (error as MasterBusyError).details;
    expect(details.anyNodeAnswered).toBe(true);
    expect(details.idempotencyKey).toBe("key-b");
    // ERR_BUSY is answered before the write is proposed: nothing was applied.
    expect(details.mayHaveApplied).toBe(false);
    expect(error.message).not.toContain("may have been applied");
  });

  it("client: gives up with TableFullError naming the table when the master's lease table stays full", async () => {
    const fake = await cluster(1, 1, { retryAfter: null });
    fake.node(1).intercept = refuse("POST", new TableFullError("leases", 10));
    // A deadline a loaded machine's first connection cannot use up alone: the test wants retries.
    const c = client({ endpoints: fake.urls, deadlineMs: 1_000, retryAfterMsMax: 20 });
    const error = await expectRejection(c.grantLease(10));
    expect(error).toBeInstanceOf(TableFullError);
    expect(error).toBeInstanceOf(MasterTableFullError);
    expect((error as TableFullError).code).toBe("ERR_TABLE_FULL");
    expect((error as TableFullError).table).toBe("leases");
    expect(error.message).toContain("the master's table of leases was still full");
    expect((error as MasterTableFullError).details.mayHaveApplied).toBe(false);
    expect(fake.requestsTo("POST", "/v1/leases").length).toBeGreaterThan(1);
  });

  it("client: a master's refusal after an attempt whose answer was lost says the write may have applied", async () => {
    const fake = await cluster(1, 1, { retryAfter: null });
    const tableFull = refuse("PUT", new TableFullError("idempotency", 10));
    let first = true;
    fake.node(1).intercept = (request, reply, node) => {
      if (request.method !== "PUT" || !first) return tableFull(request, reply, node);
      first = false;
      return true; // never answered
    };
    const c = client({
      endpoints: fake.urls,
      deadlineMs: 400,
      attemptTimeoutMs: 100,
      retryAfterMsMax: 20,
    });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "key-t" }));
    expect((error as TableFullError).code).toBe("ERR_TABLE_FULL");
    expect((error as TableFullError).table).toBe("idempotency");
    expect((error as MasterTableFullError).details.mayHaveApplied).toBe(true);
    expect(error.message).toContain("retry it with idempotency key key-t");
  });

  it("client: refused connections after the master's ERR_BUSY do not turn it into ERR_NO_MASTER (a backup down)", async () => {
    const fake = await cluster(2, 1, { retryAfter: null });
    const urls = fake.urls;
    await fake.kill(2);
    fake.node(1).intercept = refuse("PUT", new BusyError(100));
    const c = client({ endpoints: urls, deadlineMs: 300, retryAfterMsMax: 20 });
    const error = await expectRejection(c.put("k", "v"));
    expect((error as BusyError).code).toBe("ERR_BUSY");
    expect((error as MasterBusyError).details.endpointsTried).toEqual(urls);
  });

  it("client: a master that keeps answering ERR_TIMEOUT gives up with ERR_TIMEOUT (the write may have applied)", async () => {
    const fake = await cluster(1, 1, { retryAfter: null });
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "PUT") return false;
      reply.code(503).send({ error: "not committed in time", code: "ERR_TIMEOUT" });
      return true;
    };
    const c = client({ endpoints: fake.urls, deadlineMs: 300 });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "key-o" }));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as TimeoutError).code).toBe("ERR_TIMEOUT");
    expect((error as DeadlineExceededError).details.mayHaveApplied).toBe(true);
    expect(error.message).toContain("idempotency key key-o");
  });

  it("client: a give-up before the deadline says how long it waited, not the deadline (the next attempt would pass it)", async () => {
    // Retry-After 250 ms: attempts near 0, 250 and 500 ms; a fourth would end past 600.
    const fake = await cluster(1, null, { retryAfter: "0.25" });
    const c = client({ endpoints: fake.urls, deadlineMs: 600 });
    const error = await expectRejection(c.put("k", "v"));
    expect((error as NoMasterError).code).toBe("ERR_NO_MASTER");
    const waited = /no master available in (\d+) ms, giving up before the 600 ms deadline/.exec(
      error.message,
    );
    expect(waited).not.toBeNull();
    const waitedMs = Number(waited?.[1]);
    expect(waitedMs).toBe((error as NoMasterReachableError).details.elapsedMs);
    expect(waitedMs).toBeLessThan(600);
    expect(error.message).not.toContain("within 600 ms");
  });

  it("client: a write cut off by close() carries its idempotency key and may have applied", async () => {
    const fake = await cluster(1, 1);
    fake.node(1).intercept = (request) => request.method === "PUT"; // never answered
    const c = createClient({ endpoints: fake.urls, attemptTimeoutMs: 200 });
    cleanups.push(() => fake.close());
    const pending = expectRejection(c.put("k", "v", { idempotencyKey: "key-c" }));
    setTimeout(() => void c.close(), 50);
    const error = await pending;
    expect(error).toBeInstanceOf(ClientClosedError);
    expect((error as ClientClosedError).code).toBe("ERR_CLIENT_CLOSED");
    const details = (error as ClientClosedError).details;
    expect(details?.idempotencyKey).toBe("key-c");
    expect(details?.mayHaveApplied).toBe(true);
    expect(error.message).toContain("retry it with idempotency key key-c");
  });

  it("client: a slow status answer takes at most half an attempt, never leaving the request itself a moment", async () => {
    const fake = await cluster(3, 2);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    fake.node(1).intercept = async (request) => {
      if (request.url.startsWith("/v1/status")) await sleep(450);
      return false;
    };
    fake.node(2).intercept = async (request) => {
      if (request.method === "PUT") await sleep(300);
      return false;
    };
    const c = client({ endpoints: fake.urls, attemptTimeoutMs: 600 });
    expect(await c.put("k", "v")).toEqual({ revision: 1 });
    // Had the look-up taken 450 of the attempt's 600 ms, the put would have had 150 ms and
    // timed out, and so would every later attempt that began with a look-up.
    expect(fake.requestsTo("PUT", "/v1/kv/")).toHaveLength(1);
  });

  it("client: a write whose only request was a status look-up that went unanswered was never sent, and does not say it may have applied", async () => {
    const fake = await cluster(1, null, { retryAfter: null });
    const hang = (): Promise<boolean> => new Promise(() => {});
    // Every status look-up hangs; the write itself, never sent, would have been refused.
    fake.node(1).intercept = (request) =>
      request.url.startsWith("/v1/status") ? hang() : Promise.resolve(false);
    const c = client({
      endpoints: fake.urls,
      deadlineMs: 150,
      attemptTimeoutMs: 100,
      attemptCountMax: 1,
    });
    const error = await expectRejection(c.put("k", "v"));
    expect(fake.requestsTo("PUT", "/v1/kv/")).toEqual([]);
    expect(error).toBeInstanceOf(NoMasterReachableError);
    expect(error.message).not.toContain("may have been applied");
    expect(error.message).toContain("asking it for the master");
  });

  it("client: the read that learns a key's revision after a bare 412 shares the write's deadline", async () => {
    const fake = await cluster(1, 1, { preconditionRevision: false, retryAfter: null });
    // The read gets what is left, and at least one attempt (100 ms here).
    const c = client({ endpoints: fake.urls, deadlineMs: 1000, attemptTimeoutMs: 100 });
    const started = performance.now();
    fake.node(1).intercept = (request, reply) => {
      const busy = request.method === "GET" || performance.now() - started < 600;
      if (request.url.startsWith("/v1/status") || !busy) return false;
      reply.code(503).send({ error: "busy", code: "ERR_BUSY" });
      return true;
    };
    // The key is absent: the 412 carries neither currentRevision nor an ETag.
    const error = await expectRejection(c.put("absent", "v", { ifRevision: 7 }));
    const elapsed = performance.now() - started;
    expect(fake.requestsTo("GET", "/v1/kv/").length).toBeGreaterThan(0);
    expect((error as BusyError).code).toBe("ERR_BUSY");
    // 600 ms of refusals, then the read: the shared deadline ends it near 1,000 ms, a
    // deadline of its own would near 1,600 ms.
    expect(elapsed).toBeLessThan(1350);
  });

  it("client: a switchover whose answer is lost is not sent again (the retry would hand over twice)", async () => {
    const fake = await cluster(3, 1);
    for (const node of fake.nodes) {
      node.intercept = (request) => request.url.startsWith("/v1/switchover");
    }
    const c = client({ endpoints: fake.urls, deadlineMs: 400 });
    const error = await expectRejection(c.switchover());
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(error.message).toContain("it may have been carried out, so it is not sent again");
    expect((error as DeadlineExceededError).details.mayHaveApplied).toBe(true);
    expect(fake.requestsTo("POST", "/v1/switchover")).toHaveLength(1);
    // Answered, it is an ordinary request.
    for (const node of fake.nodes) node.intercept = null;
    expect(await c.switchover()).toEqual({ master: 1, term: expect.any(Number) });
  });

  it("client: a switchover the master keeps answering ERR_SWITCHOVER_FAILED is asked again, then gives up with that code", async () => {
    const fake = await cluster(3, 1);
    for (const node of fake.nodes) {
      node.intercept = (request, reply) => {
        if (!request.url.startsWith("/v1/switchover")) return false;
        reply
          .code(503)
          .send({ error: "node 2 did not take over in time", code: "ERR_SWITCHOVER_FAILED" });
        return true;
      };
    }
    const c = client({ endpoints: fake.urls, deadlineMs: 400 });
    const error = await expectRejection(c.switchover(2));
    expect(error).toBeInstanceOf(SwitchoverFailedError);
    expect((error as SwitchoverFailedError).code).toBe("ERR_SWITCHOVER_FAILED");
    expect(error.message).toContain("did not take over in time");
    expect(fake.requestsTo("POST", "/v1/switchover").length).toBeGreaterThan(1);
  });

  it("client: a switchover refused once, then sent again and cut short by the deadline, may have been carried out: said so, not the earlier refusal", async () => {
    const fake = await cluster(3, 1);
    let asked = 0;
    for (const node of fake.nodes) {
      node.intercept = (request, reply) => {
        if (!request.url.startsWith("/v1/switchover")) return false;
        // Refused once, then never answered: the second attempt runs into the deadline.
        if (asked++ === 0) {
          reply
            .code(503)
            .send({ error: "node 2 did not take over in time", code: "ERR_SWITCHOVER_FAILED" });
        }
        return true;
      };
    }
    const c = client({ endpoints: fake.urls, deadlineMs: 600, attemptTimeoutMs: 100 });
    const error = await expectRejection(c.switchover(2));
    expect(fake.requestsTo("POST", "/v1/switchover")).toHaveLength(2);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(error.message).toContain("it may have been carried out, so it is not sent again");
    expect((error as DeadlineExceededError).details.mayHaveApplied).toBe(true);
  });

  it("client: a switchover answered ERR_TIMEOUT (it may have happened) is not sent again", async () => {
    const fake = await cluster(3, 1);
    fake.node(1).intercept = (request, reply) => {
      if (!request.url.startsWith("/v1/switchover")) return false;
      reply.code(503).send({ error: "no answer in time", code: "ERR_TIMEOUT" });
      return true;
    };
    const c = client({ endpoints: fake.urls, deadlineMs: 400 });
    const error = await expectRejection(c.switchover());
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(error.message).toContain("could not say whether it was done");
    expect(fake.requestsTo("POST", "/v1/switchover")).toHaveLength(1);
  });

  it("client: a membership change answered ERR_NO_MASTER (proposed, not committed in time) is not sent again: it may still commit", async () => {
    const fake = await cluster(3, 1);
    fake.node(1).intercept = (request, reply) => {
      if (!request.url.startsWith("/v1/members")) return false;
      reply.code(503).send({
        error: "the change was not committed within 5000 ms",
        code: "ERR_NO_MASTER",
        retryAfterMs: 200,
      });
      return true;
    };
    const c = client({ endpoints: fake.urls, deadlineMs: 2000 });
    const error = await expectRejection(c.removeMember(3));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as DeadlineExceededError).details.mayHaveApplied).toBe(true);
    expect(error.message).toContain("check the cluster");
    // Sent again, it would have been refused (no such member, a change in flight) for a
    // change that happened.
    expect(fake.requestsTo("DELETE", "/v1/members/3")).toHaveLength(1);
  });

  it("client: a write refused for good after an attempt whose answer was lost may still be applied: OutcomeUnknownError with the key, not the refusal alone", async () => {
    const fake = await cluster(3, 1);
    let puts = 0;
    for (const node of fake.nodes) {
      node.intercept = (request, reply) => {
        if (request.method !== "PUT") return false;
        // The first never answers (it may have been applied); the next hits a bug.
        if (puts++ > 0) reply.code(500).send({ error: "internal", code: "ERR_INTERNAL" });
        return true;
      };
    }
    const c = client({ endpoints: fake.urls, deadlineMs: 3000, attemptTimeoutMs: 100 });
    const error = await expectRejection(c.put("k", "v", { idempotencyKey: "order-7" }));
    expect(error).toBeInstanceOf(OutcomeUnknownError);
    expect(error).toMatchObject({
      code: "ERR_INDETERMINATE",
      details: { mayHaveApplied: true, idempotencyKey: "order-7" },
    });
    expect(error.message).toContain("retry it with idempotency key order-7");
    expect((error as OutcomeUnknownError).cause).toBeInstanceOf(UnexpectedResponseError);
    // Refused on the first attempt, the refusal is thrown as it is.
    const fresh = await cluster(3, 1);
    for (const node of fresh.nodes) {
      node.intercept = (request, reply) => {
        if (request.method !== "PUT") return false;
        reply.code(500).send({ error: "internal", code: "ERR_INTERNAL" });
        return true;
      };
    }
    const first = await expectRejection(client({ endpoints: fresh.urls }).put("k", "v"));
    expect(first).not.toBeInstanceOf(OutcomeUnknownError);
    // The node's own code is kept, and said.
    expect(first).toMatchObject({ status: 500, serverCode: "ERR_INTERNAL" });
    expect(first.message).toContain("(HTTP 500 ERR_INTERNAL)");
    expect(first).toBeInstanceOf(UnexpectedResponseError);
  });

  it("client: does not retry 400 (invalid input)", async () => {
    const fake = await cluster(3, 1);
    for (const node of fake.nodes) {
      node.intercept = (request, reply) => {
        if (request.method !== "PUT") return false;
        reply.code(400).send({ error: "key: too long", code: "ERR_INVALID_INPUT", field: "key" });
        return true;
      };
    }
    const c = client({ endpoints: fake.urls });
    const error = await expectRejection(c.put("k", "v"));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).code).toBe("ERR_INVALID_INPUT");
    expect((error as InvalidInputError).field).toBe("key");
    expect(error.message).toBe("key: too long");
    expect(fake.requestsTo("PUT", "/v1/kv/")).toHaveLength(1);
  });

  it("client: does not retry 413 (value too large)", async () => {
    const fake = await cluster(1, 1);
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "PUT") return false;
      reply.code(413).send({
        error: "value exceeds the limit of 4 bytes",
        code: "ERR_TOO_LARGE",
        field: "value",
        limit: 4,
      });
      return true;
    };
    const c = client({ endpoints: fake.urls });
    const error = await expectRejection(c.put("k", "too large"));
    expect((error as { code?: string }).code).toBe("ERR_TOO_LARGE");
    expect((error as { limit?: number }).limit).toBe(4);
    expect(fake.requestsTo("PUT", "/v1/kv/")).toHaveLength(1);
  });

  it("client: close stops an operation that is retrying (no master)", async () => {
    const fake = await cluster(1, null, { retryAfter: null });
    const c = createClient({ endpoints: fake.urls, retryDelayMsMin: 20, retryDelayMsMax: 20 });
    cleanups.push(() => fake.close());
    const pending = expectRejection(c.put("k", "v"));
    setTimeout(() => void c.close(), 50);
    const error = await pending;
    expect((error as { code?: string }).code).toBe("ERR_CLIENT_CLOSED");
    await expect(c.get("k")).rejects.toMatchObject({ code: "ERR_CLIENT_CLOSED" });
  });

  it("client: rejects invalid options, naming every bad field", () => {
    expect(() => createClient({ endpoints: [] })).toThrow(/endpoints/);
    expect(() => createClient({ endpoints: ["ftp://x"] })).toThrow(/http/);
    expect(() =>
      createClient({ endpoints: ["127.0.0.1:1"], deadlineMs: 0, attemptTimeoutMs: -1 }),
    ).toThrow(/deadlineMs.*attemptTimeoutMs/);
  });

  it("client: options of the wrong shape from JavaScript are InvalidInputError naming the field, not a TypeError", () => {
    const untyped = createClient as (options?: unknown) => unknown;
    const field = (options: unknown): string | undefined => {
      try {
        untyped(options);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidInputError);
        return (error as InvalidInputError).field;
      }
      return undefined;
    };
    expect(field(undefined)).toBe("options");
    expect(field(null)).toBe("options");
    expect(field({})).toBe("endpoints");
    expect(field({ endpoints: "http://127.0.0.1:8101" })).toBe("endpoints");
    expect(field({ endpoints: [8101] })).toBe("endpoints");
    expect(field({ endpoints: ["http://127.0.0.1:8101"], token: 123 })).toBe("token");
    expect(field({ endpoints: ["http://127.0.0.1:8101"], clientId: 7 })).toBe("clientId");
    expect(field({ endpoints: ["http://127.0.0.1:8101"], ca: 42 })).toBe("ca");
    expect(field({ endpoints: ["http://127.0.0.1:8101"], ca: {} })).toBe("ca");
    // Node.js runs a longer timer after 1 ms: every attempt would time out at once.
    expect(() => untyped({ endpoints: ["http://127.0.0.1:8101"], attemptTimeoutMs: 3e9 })).toThrow(
      /attemptTimeoutMs must be at most 2147483647/,
    );
    expect(() =>
      untyped({ endpoints: ["http://127.0.0.1:8101"], masterCheckAfterMs: 3e9 }),
    ).toThrow(/masterCheckAfterMs must be a number from 0 to 2147483647/);
  });

  it("client: arguments of the wrong shape from JavaScript are InvalidInputError naming the field, and nothing is sent", async () => {
    const fake = await cluster(1, 1);
    const c = client({ endpoints: fake.urls });
    const untyped = c as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const field = async (call: Promise<unknown>): Promise<string | undefined> => {
      const error = await expectRejection(call);
      expect(error).toBeInstanceOf(InvalidInputError);
      return (error as InvalidInputError).field;
    };
    // A missing revision (`entry?.revision` of an absent key) once sent a write with no
    // condition at all.
    expect(await field(untyped.cas!("lock", undefined, "me"))).toBe("expectedRevision");
    expect(await field(untyped.cas!("lock", "3", "me"))).toBe("expectedRevision");
    expect(await field(untyped.put!("k", "v", { idempotencyKey: 123 }))).toBe("idempotencyKey");
    expect(await field(untyped.status!(123))).toBe("endpoint");
    expect(await field(untyped.range!(undefined))).toBe("prefix");
    expect(await field(untyped.put!("k", "v", "fast"))).toBe("options");
    const watch = (c.watch as (prefix: unknown) => AsyncIterable<unknown>)(undefined);
    expect(await field(watch[Symbol.asyncIterator]().next())).toBe("prefix");
    // Half a surrogate pair: no UTF-8 key holds it (it was a URIError, or U+FFFD in a prefix).
    expect(await field(c.put("a\ud800", "v"))).toBe("key");
    expect(await field(c.get("\udc00b"))).toBe("key");
    expect(await field(c.range("p\ud800"))).toBe("prefix");
    expect(await field(c.deleteRange("p\udfff"))).toBe("prefix");
    const half = c.watch("w\ud800")[Symbol.asyncIterator]().next();
    expect(await field(half)).toBe("prefix");
    // A whole pair is one character like any other.
    await c.put("emoji-\ud83d\ude00", "v");
    expect(fake.requestsTo("PUT", "/v1/kv/")).toHaveLength(1);
    expect(fake.requestsTo("PUT", "/v1/kv/emoji-")).toHaveLength(1);
    // null, which a default parameter does not replace, stands for no options.
    await untyped.put!("k", "v", null);
    expect(await untyped.get!("k", null)).toMatchObject({ revision: 2 });
    expect(await untyped.delete!("k", null)).toMatchObject({ revision: 3 });
  });
});

describe("client: answers", () => {
  it("client: cas applies only at the expected revision (0: key absent)", async () => {
    const fake = await cluster(3, 1);
    const c = client({ endpoints: fake.urls });
    expect(await c.cas("lock", 0, "a")).toEqual({ ok: true, revision: 1 });
    expect(await c.cas("lock", 0, "b")).toEqual({ ok: false, currentRevision: 1 });
    expect(await c.cas("lock", 1, "b")).toEqual({ ok: true, revision: 2 });
    expect(fake.requestsTo("PUT", "/v1/kv/").map((r) => r.headers["if-match"])).toEqual([
      '"0"',
      '"0"',
      '"1"',
    ]);
  });

  it("client: put with a stale ifRevision throws PreconditionFailedError (412 without currentRevision)", async () => {
    const fake = await cluster(1, 1, { preconditionRevision: false });
    const c = client({ endpoints: fake.urls });
    await c.put("k", "v1");
    await c.put("k", "v2");
    const error = await expectRejection(c.put("k", "v3", { ifRevision: 1 }));
    expect(error).toBeInstanceOf(PreconditionFailedError);
    expect(error).toMatchObject({
      code: "ERR_PRECONDITION_FAILED",
      expectedRevision: 1,
      currentRevision: 2,
    });
    const deleted = await expectRejection(c.delete("k", { ifRevision: 7 }));
    expect(deleted).toMatchObject({ code: "ERR_PRECONDITION_FAILED", currentRevision: 2 });
  });

  it("client: get and delete answer null for a missing key (404)", async () => {
    const fake = await cluster(3, 1);
    const c = client({ endpoints: fake.urls });
    expect(await c.get("missing")).toBeNull();
    expect(await c.delete("missing")).toBeNull();
    await c.put("present", "x");
    expect(await c.delete("present")).toEqual({ revision: 2 });
    expect(await c.get("present")).toBeNull();
  });

  it("client: binary values and odd keys round-trip exactly (octet-stream)", async () => {
    const fake = await cluster(3, 1);
    const c = client({ endpoints: fake.urls });
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const key = "a/b c?d%é";
    const { revision } = await c.put(key, bytes);
    const got = await c.get(key);
    expect(got?.key).toBe(key);
    expect(got?.revision).toBe(revision);
    expect([...(got?.value ?? [])]).toEqual([...bytes]);
    const get = fake.requestsTo("GET", "/v1/kv/")[0];
    expect(get?.url).toBe(`/v1/kv/${encodeURIComponent(key)}`);
    expect(String(get?.headers.accept)).toContain("application/octet-stream");
    expect(fake.requestsTo("PUT", "/v1/kv/")[0]?.headers["content-type"]).toBe(
      "application/octet-stream",
    );
    // A key of only dots is a dot segment that proxies and URL parsers rewrite.
    await c.put("..", "dots");
    expect(fake.requestsTo("PUT", "/v1/kv/").at(-1)?.url).toBe("/v1/kv/%2E%2E");
    expect((await c.get(".."))?.text()).toBe("dots");
  });

  it("client: get reads the JSON form when a node answers with it", async () => {
    const fake = await cluster(1, 1);
    const c = client({ endpoints: fake.urls });
    await c.put("k", "héllo");
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "GET" || !request.url.startsWith("/v1/kv/")) return false;
      reply.send({ key: "k", value: "héllo", revision: 1 });
      return true;
    };
    const got = await c.get("k", { stale: true });
    expect(got?.text()).toBe("héllo");
    expect(got?.revision).toBe(1);
    expect(fake.requestsTo("GET", "/v1/kv/")[0]?.url).toBe("/v1/kv/k?stale=true");
  });

  it("client: a watch its caller ends leaves the master known (the next write asks no node for it)", async () => {
    const fake = await cluster(3, 2);
    fake.node(2).intercept = (request, reply) => {
      if (!request.url.startsWith("/v1/watch")) return false;
      reply.hijack();
      reply.raw.writeHead(200, { "content-type": "text/event-stream" });
      reply.raw.write(": watching\n\n");
      return true;
    };
    const c = client({ endpoints: fake.urls });
    await c.put("a", "1");
    const lookUps = fake.requestsTo("GET", "/v1/status").length;
    const stop = new AbortController();
    const watching = (async () => {
      for await (const _ of c.watch("a", { signal: stop.signal })) break;
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fake.requestsTo("GET", "/v1/watch")).toHaveLength(1);
    stop.abort();
    await watching;
    // Past the look-up interval (250 ms), so that a forgotten master would be looked up.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await c.put("b", "2");
    // Before, the ended watch counted as a failure of the master: it was forgotten, and the
    // next write began with a look-up.
    expect(fake.requestsTo("GET", "/v1/status")).toHaveLength(lookUps);
  });

  it("client: status and clusterStatus report each node (one node down)", async () => {
    const fake = await cluster(3, 1);
    const urls = fake.urls;
    await fake.kill(3);
    const c = client({ endpoints: urls, attemptTimeoutMs: 500 });
    const one = await c.status(urls[1]!);
    expect(one).toMatchObject({ id: 2, role: "backup", master: 1 });
    expect((await c.status()).role).toBe("master");
    const all = await c.clusterStatus();
    expect(all.map((s) => s.endpoint)).toEqual(urls);
    expect(all[0]?.status?.role).toBe("master");
    expect(all[2]?.status).toBeUndefined();
    expect(all[2]?.error).toMatch(/ECONNREFUSED/);
    await expect(c.status(urls[2]!)).rejects.toMatchObject({ code: "ERR_UNREACHABLE" });
  });
});
