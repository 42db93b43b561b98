/**
 * The client's store operations against the real HTTP API over the real state machine on
 * one-node stand-ins (harness/doubles/local-kv-node.ts): ranges, prefix deletes,
 * transactions, leases, and a watch that resumes on another node with no gap and no
 * duplicate when its node goes away.
 */

import { getEventListeners } from "node:events";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import {
  type BatonClient,
  CompactedError,
  createClient,
  IdempotencyKeyReusedError,
  InvalidInputError,
  LeaseNotFoundError,
  QuotaExceededError,
  type WatchChange,
} from "../../src/client/index.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand, type KvLimits } from "../../src/kv/index.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(
  node: LocalKvNode,
  watchProgressMs?: number,
  watchMasterlessMs?: number,
): Promise<{ server: HttpServer; url: string }> {
  const server = createHttpServer({
    api: node,
    logger: pino({ level: "silent" }),
    limits: node.stateMachine.limits,
    watchProgressMs,
    watchMasterlessMs,
  });
  const { url } = await server.listen("127.0.0.1", 0);
  cleanups.push(() => server.close());
  return { server, url };
}

/**
 * Node 1, the master, whose writes node 2 follows, each served over HTTP: a watch moves
 * from one to the other. `limits` go to both; `progressMs` to both servers, and
 * `masterlessMs` to node 1's.
 */
async function masterAndBackup(
  options: { limits?: Partial<KvLimits>; progressMs?: number; masterlessMs?: number } = {},
) {
  const primary = new LocalKvNode(1, options.limits);
  const backup = new LocalKvNode(2, options.limits);
  primary.followers.push(backup);
  const a = await serve(primary, options.progressMs, options.masterlessMs);
  const b = await serve(backup, options.progressMs);
  return { primary, backup, a, b };
}

function client(endpoints: string[]): BatonClient {
  const c = createClient({ endpoints, retryDelayMsMin: 1, retryDelayMsMax: 10 });
  cleanups.push(() => c.close());
  return c;
}

async function single(limits: Partial<KvLimits> = {}) {
  const node = new LocalKvNode(1, limits);
  const { url, server } = await serve(node);
  return { node, server, c: client([url]) };
}

describe("client: store operations", () => {
  it("client: range pages, rangeAll and deleteRange", async () => {
    const { c } = await single();
    for (let i = 0; i < 25; i++) await c.put(`k/${String(i).padStart(2, "0")}`, `v${i}`);
    await c.put("other", "x");
    const page = await c.range("k/", { limit: 10 });
    expect(page.items.map((i) => i.key)).toEqual(
      Array.from({ length: 10 }, (_, i) => `k/${String(i).padStart(2, "0")}`),
    );
    expect(page.items[3]).toEqual({ key: "k/03", value: "v3", revision: 4 });
    expect(page.revision).toBe(26);
    const all: string[] = [];
    for await (const item of c.rangeAll("k/", { limit: 7, keysOnly: true })) {
      expect(item.value).toBeNull();
      all.push(item.key);
    }
    expect(all).toHaveLength(25);
    expect(await c.deleteRange("k/")).toEqual({ revision: 27, deleted: 25 });
    expect((await c.range("")).items.map((i) => i.key)).toEqual(["other"]);
    await expect(c.range("", { limit: 0 })).rejects.toThrow(InvalidInputError);
  });

  it("client: txn compares and applies one branch", async () => {
    const { c } = await single();
    const { revision } = await c.put("cfg", "1");
    const swap = {
      compare: [{ key: "cfg", revision }],
      success: [{ put: { key: "cfg", value: "2" } }, { delete: { key: "old" } }],
      failure: [],
    };
    expect(await c.txn(swap)).toEqual({ succeeded: true, revision: 2 });
    expect(await c.txn(swap)).toEqual({ succeeded: false, revision: 2 });
    expect((await c.get("cfg"))?.text()).toBe("2");
    const bad = c.txn({ compare: [{ key: "cfg" } as never] });
    await expect(bad).rejects.toMatchObject({ code: "ERR_INVALID_INPUT", field: "compare[0]" });
  });

  it("client: leases attach keys, keep alive and revoke", async () => {
    const { c } = await single();
    const lease = await c.grantLease(30);
    expect(lease.ttlSeconds).toBe(30);
    await c.put("svc/a", "up", { lease: lease.id });
    expect(await c.keepAliveLease(lease.id)).toEqual(lease);
    expect(await c.revokeLease(lease.id)).toEqual({ revision: 4 });
    expect(await c.get("svc/a")).toBeNull();
    expect(await c.revokeLease(lease.id)).toBeNull();
    await expect(c.keepAliveLease(lease.id)).rejects.toThrow(LeaseNotFoundError);
    await expect(c.put("k", "v", { lease: lease.id })).rejects.toMatchObject({
      code: "ERR_LEASE_NOT_FOUND",
    });
  });

  it("client: an idempotency key sent again with a different write throws IdempotencyKeyReusedError (422, not applied)", async () => {
    const { c } = await single();
    const first = await c.put("order/42", "paid", { idempotencyKey: "order-42" });
    // The same write again is answered from the first result.
    expect(await c.put("order/42", "paid", { idempotencyKey: "order-42" })).toEqual(first);
    const error = await c.put("order/42", "refunded", { idempotencyKey: "order-42" }).then(
      () => new Error("expected a rejection"),
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
    expect((error as IdempotencyKeyReusedError).code).toBe("ERR_IDEMPOTENCY_KEY_REUSED");
    expect((error as IdempotencyKeyReusedError).idempotencyKey).toBe("order-42");
    expect(error.message).toContain("send it with a new key");
    expect((await c.get("order/42"))?.text()).toBe("paid");
    await expect(c.delete("order/42", { idempotencyKey: "order-42" })).rejects.toMatchObject({
      code: "ERR_IDEMPOTENCY_KEY_REUSED",
    });
  });

  it("client: a transaction, a prefix delete, a compare-and-set and a lease grant resent with their idempotency key apply once", async () => {
    const { c } = await single();
    await c.put("jobs/1", "a");
    // A transaction resent after a lost answer: the second send is answered from the first.
    const swap = {
      compare: [{ key: "jobs/1", value: "a" }],
      success: [{ put: { key: "jobs/1", value: "b" } }],
    };
    const first = await c.txn(swap, { idempotencyKey: "swap-1" });
    expect(await c.txn(swap, { idempotencyKey: "swap-1" })).toEqual(first);
    expect(first.succeeded).toBe(true);
    // A prefix delete resent does not delete what was written in between.
    const deleted = await c.deleteRange("jobs/", { idempotencyKey: "clear-1" });
    expect(deleted.deleted).toBe(1);
    await c.put("jobs/2", "new");
    expect(await c.deleteRange("jobs/", { idempotencyKey: "clear-1" })).toEqual(deleted);
    expect((await c.get("jobs/2"))?.text()).toBe("new");
    // A compare-and-set resent answers its own success, not the revision it made as
    // someone else's.
    const before = (await c.get("jobs/2"))!.revision;
    const cas = await c.cas("jobs/2", before, "mine", { idempotencyKey: "cas-1" });
    expect(cas.ok).toBe(true);
    expect(await c.cas("jobs/2", before, "mine", { idempotencyKey: "cas-1" })).toEqual(cas);
    // A grant resent gives the same lease, not a second one.
    const lease = await c.grantLease(5, { idempotencyKey: "lease-1" });
    expect(await c.grantLease(5, { idempotencyKey: "lease-1" })).toEqual(lease);
    await expect(c.txn(swap, { idempotencyKey: "has space" })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
  });
});

describe("client: watch", () => {
  it("watch: follows changes from a revision, then resumes on another node when its node goes", async () => {
    const { primary, backup, a, b } = await masterAndBackup();
    const writer = client([a.url]);
    await writer.put("w/0", "0");
    const watcher = client([a.url, b.url]);
    const controller = new AbortController();
    const seen: WatchChange[] = [];
    const done = (async () => {
      for await (const change of watcher.watch("w/", {
        fromRevision: 1,
        signal: controller.signal,
      })) {
        seen.push(change);
        if (seen.length === 3) {
          // The watched node goes away mid-stream. The backup resends revision 3, which the
          // client has delivered and skips, then the three changes of revision 4.
          await a.server.close();
          await backupTxn(primary);
        }
        if (seen.length === 6) controller.abort();
      }
    })();
    await writer.put("w/1", "1");
    await writer.txn({
      success: [{ put: { key: "w/2", value: "2" } }, { put: { key: "x", value: "x" } }],
    });
    await done;
    expect(seen.map((c) => `${c.type} ${c.key}@${c.revision}`)).toEqual([
      "put w/0@1",
      "put w/1@2",
      "put w/2@3",
      "put w/3@4",
      "put w/4@4",
      "delete w/0@4",
    ]);
  });

  it("watch: a watch of a quiet prefix resumes after the progress its node sent, not from its last change", async () => {
    // Histories of 3 changes: the writes elsewhere drop the quiet prefix's last change.
    const { primary, backup, a, b } = await masterAndBackup({
      limits: { watchHistoryCountMax: 3 },
      progressMs: 20,
    });
    const writer = client([a.url]);
    const watcher = client([a.url, b.url]);
    const { revision } = await writer.put("quiet/1", "1");
    const controller = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const change of watcher.watch("quiet/", {
        fromRevision: revision,
        signal: controller.signal,
      })) {
        seen.push(`${change.key}@${change.revision}`);
        if (change.key === "quiet/2") controller.abort();
      }
    })();
    for (let i = 0; i < 10; i++) await writer.put(`busy/${i}`, "x");
    // The node's progress comes within 20 ms; then the watched node goes.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await a.server.close();
    await backup.store.propose({
      type: "put",
      key: "quiet/2",
      value: new TextEncoder().encode("2"),
    });
    // Before, the watch resumed from revision 1 on the backup, compacted there: CompactedError.
    await done;
    expect(seen).toEqual([`quiet/1@${revision}`, `quiet/2@${revision + 11}`]);
  });

  it("watch: watches that end leave nothing on the caller's long-lived signal (AbortSignal.any kept an entry per watch)", async () => {
    const { c } = await single();
    const keep = new AbortController();
    for (let i = 0; i < 20; i++) {
      await c.put(`leak/${i}`, "x");
      for await (const _ of c.watch("leak/", { fromRevision: 1, signal: keep.signal })) break;
    }
    expect(getEventListeners(keep.signal, "abort")).toHaveLength(0);
    // Node.js's own record of signals made with AbortSignal.any from this one, which it
    // never prunes: none are made any more.
    const symbol = Object.getOwnPropertySymbols(keep.signal).find(
      (s) => s.description === "kDependantSignals",
    );
    const dependants = symbol === undefined ? undefined : Reflect.get(keep.signal, symbol);
    expect((dependants as Set<unknown> | undefined)?.size ?? 0).toBe(0);
  });

  it("watch: a watch on the master moves to a new master as soon as the client learns of one in a newer term (a hung master sends nothing, not even a close)", async () => {
    const { primary, backup, a, b } = await masterAndBackup();
    const watcher = client([a.url, b.url]);
    await watcher.status(a.url); // node 1 is the master, in term 1
    const controller = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const change of watcher.watch("m/", { signal: controller.signal })) {
        seen.push(`${change.key}@${change.revision}`);
        controller.abort();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Node 1 stays up but is no master any more: node 2 leads term 2, which the client
    // learns from a request of its own (here a status; a lock's keep-alive, say).
    backup.term = 2;
    await watcher.status(b.url);
    const put = await backup.store.propose({
      type: "put",
      key: "m/1",
      value: new TextEncoder().encode("1"),
    });
    if (!put.ok) throw new Error(`the put was refused: ${put.code}`);
    await done;
    expect(seen).toEqual([`m/1@${put.revision}`]);
  }, 10_000);

  it("watch: a watch from now of a prefix holding U+2028 resumes from where its first node started it, not from now again", async () => {
    const { primary, backup, a, b } = await masterAndBackup();
    const writer = client([a.url]);
    await writer.put("other", "x");
    const watcher = client([a.url, b.url]);
    const controller = new AbortController();
    const seen: string[] = [];
    const prefix = "line\u2028sep/";
    const done = (async () => {
      for await (const change of watcher.watch(prefix, { signal: controller.signal })) {
        seen.push(`${change.key}@${change.revision}`);
        controller.abort();
      }
    })();
    // The watch is open on node 1; it goes, and a change comes before the watch reopens.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await a.server.close();
    const put = await backup.store.propose({
      type: "put",
      key: `${prefix}1`,
      value: new TextEncoder().encode("1"),
    });
    if (!put.ok) throw new Error(`the put was refused: ${put.code}`);
    await done;
    expect(seen).toEqual([`${prefix}1@${put.revision}`]);
  });

  it("watch: a node that knows no master ends its watches, and the watch goes on on a node that gets the changes", async () => {
    const { primary, backup, a, b } = await masterAndBackup({ masterlessMs: 200 });
    const watcher = client([a.url, b.url]);
    const controller = new AbortController();
    const seen: string[] = [];
    let opened: () => void = () => {};
    const watching = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const done = (async () => {
      for await (const change of watcher.watch("m/", { signal: controller.signal })) {
        seen.push(`${change.key}=${change.value}`);
        if (change.key === "m/first") opened();
        if (change.key === "m/after") controller.abort();
      }
    })();
    // The watch is in place on node 1 once it delivers a change made there.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await primary.store.propose({
      type: "put",
      key: "m/first",
      value: new TextEncoder().encode("1"),
    });
    await watching;
    // Node 1 is cut off: it knows no master, and the changes go on elsewhere.
    const status = primary.status.bind(primary);
    primary.status = (options) => ({ ...status(options), role: "backup", master: null });
    await backup.store.propose({
      type: "put",
      key: "m/after",
      value: new TextEncoder().encode("2"),
    });
    // Before, the stream stayed open on node 1 (its keep-alives kept it), which had nothing
    // more to send: the watch waited for as long as the cut lasted.
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error("the watch never left the cut-off node")), 5000),
    );
    await Promise.race([done, timeout]);
    expect(seen).toEqual(["m/first=1", "m/after=2"]);
  });

  it("watch: a compacted revision ends the watch with CompactedError", async () => {
    const { c } = await single({ watchHistoryCountMax: 1 });
    await c.put("a", "1");
    await c.put("b", "1");
    const watch = async () => {
      for await (const _ of c.watch("", { fromRevision: 1 })) break;
    };
    await expect(watch()).rejects.toThrow(CompactedError);
    await expect(watch()).rejects.toMatchObject({ code: "ERR_COMPACTED", startRevision: 2 });
  });
});

/** A transaction changing three watched keys at one revision, applied on both nodes. */
async function backupTxn(primary: LocalKvNode): Promise<void> {
  const result = await primary.store.propose({
    type: "txn",
    compare: [],
    success: [
      { type: "put", key: "w/3", value: new TextEncoder().encode("3") },
      { type: "put", key: "w/4", value: new TextEncoder().encode("4") },
      { type: "delete", key: "w/0" },
    ],
    failure: [],
  });
  expect(result).toMatchObject({ ok: true, succeeded: true });
}

describe("client: quota", () => {
  it("quota: a write past the store's quota throws QuotaExceededError at once, and a delete makes room", async () => {
    const node = new LocalKvNode(1);
    node.apply(encodeCommand({ type: "set_quota", keyCountMax: 1, bytesMax: 0 }));
    const { url } = await serve(node);
    const c = client([url]);
    await c.put("a", "1");
    const started = performance.now();
    const error = await c.put("b", "1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QuotaExceededError);
    expect(error).toMatchObject({ code: "ERR_QUOTA_EXCEEDED", quota: "keys", limit: 1, usage: 1 });
    // Not retried: only deleting keys or raising the quota makes room.
    expect(performance.now() - started).toBeLessThan(1000);
    await c.delete("a");
    await c.put("b", "1");
  });
});
