/**
 * The store routes (ranges, prefix deletes, transactions, leases, watches) over the real
 * state machine on a one-node stand-in (harness/doubles/local-kv-node.ts): the contract of
 * docs/api.md, and the 4xx answer, naming the field, for each kind of bad input.
 */

import { get as httpGet, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand, type KvLimits } from "../../src/kv/index.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup(limits: Partial<KvLimits> = {}) {
  const api = new LocalKvNode(1, limits);
  let clock = 0;
  api.now = () => clock;
  const logger = pino({ level: "silent" });
  const server = createHttpServer({ api, logger, limits: api.stateMachine.limits });
  servers.push(server);
  const advance = (ms: number): void => {
    // Log time moves at most a second per command, so long waits take several ticks.
    for (let left = ms; left > 0; left -= 1000) {
      clock += Math.min(left, 1000);
      api.apply(encodeCommand({ type: "tick" }));
    }
  };
  return { api, app: server.app, server, advance };
}

function body(response: LightMyRequestResponse): Record<string, unknown> {
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  return response.json();
}

async function put(app: HttpServer["app"], key: string, value: string, query = "") {
  const response = await app.inject({
    method: "PUT",
    url: `/v1/kv/${key}${query}`,
    payload: value,
  });
  return response;
}

describe("http store: ranges", () => {
  it("range: lists keys in order under a prefix, in pages joined by next", async () => {
    const { app } = setup();
    for (const key of ["b/2", "a", "b/1", "b/3", "c"]) await put(app, key, `v-${key}`);
    const first = await app.inject({ url: "/v1/kv?prefix=b%2F&limit=2" });
    expect(first.statusCode).toBe(200);
    const page = body(first);
    expect(page).toMatchObject({
      revision: 5,
      items: [
        { key: "b/1", value: "v-b/1", revision: 3 },
        { key: "b/2", value: "v-b/2", revision: 1 },
      ],
    });
    expect(typeof page.next).toBe("string");
    const second = body(
      await app.inject({ url: `/v1/kv?prefix=b%2F&limit=2&after=${page.next as string}` }),
    );
    expect(second).toEqual({
      revision: 5,
      items: [{ key: "b/3", value: "v-b/3", revision: 4 }],
      next: null,
    });
    const keys = body(await app.inject({ url: "/v1/kv?keysOnly=true" }));
    expect(keys.items).toEqual([
      { key: "a", revision: 2 },
      { key: "b/1", revision: 3 },
      { key: "b/2", revision: 1 },
      { key: "b/3", revision: 4 },
      { key: "c", revision: 5 },
    ]);
  });

  it("range: a limit out of range or a bad token is 400 naming the field and the limit", async () => {
    const { app } = setup();
    for (const url of ["/v1/kv?limit=0", "/v1/kv?limit=10001", "/v1/kv?limit=ten"]) {
      const response = await app.inject({ url });
      expect(response.statusCode).toBe(400);
      expect(body(response)).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field: "limit",
        limit: 10_000,
      });
    }
    const token = await app.inject({ url: "/v1/kv?after=%25%25" });
    expect(token.statusCode).toBe(400);
    expect(body(token)).toMatchObject({ field: "after" });
    const twice = await app.inject({ url: "/v1/kv?prefix=a&prefix=b" });
    expect(body(twice)).toMatchObject({ field: "prefix" });
  });

  it("range: paging goes on past a key that holds U+FFFD; a token that is not UTF-8 is refused", async () => {
    const { app } = setup();
    for (const key of ["a%EF%BF%BD", "b"]) await put(app, key, "v");
    const first = body(await app.inject({ url: "/v1/kv?limit=1" }));
    expect(first.items).toEqual([{ key: "a\ufffd", value: "v", revision: 1 }]);
    const second = await app.inject({ url: `/v1/kv?limit=1&after=${first.next as string}` });
    expect(second.statusCode).toBe(200);
    expect(body(second)).toMatchObject({ items: [{ key: "b" }], next: null });
    const forged = Buffer.from([0x61, 0xff]).toString("base64url");
    const refused = await app.inject({ url: `/v1/kv?after=${forged}` });
    expect(refused.statusCode).toBe(400);
    expect(body(refused)).toMatchObject({ field: "after" });
  });

  it("delete range: deletes every key under the prefix at one revision, exactly once", async () => {
    const { app } = setup();
    for (const key of ["s/1", "s/2", "t"]) await put(app, key, "v");
    const request = {
      method: "DELETE" as const,
      url: "/v1/kv?prefix=s%2F",
      headers: { "idempotency-key": "del-1" },
    };
    const response = await app.inject(request);
    expect(body(response)).toEqual({ revision: 4, deleted: 2 });
    await put(app, "s/3", "v");
    // The retry is answered from the first result and deletes nothing new.
    expect(body(await app.inject(request))).toEqual({ revision: 4, deleted: 2 });
    expect(body(await app.inject({ url: "/v1/kv?keysOnly=true" })).items).toEqual([
      { key: "s/3", revision: 5 },
      { key: "t", revision: 3 },
    ]);
    const conditional = await app.inject({
      method: "DELETE",
      url: "/v1/kv?prefix=t",
      headers: { "if-match": '"3"' },
    });
    expect(conditional.statusCode).toBe(400);
    expect(body(conditional)).toMatchObject({ field: "If-Match" });
    const missing = await app.inject({ method: "DELETE", url: "/v1/kv" });
    expect(missing.statusCode).toBe(400);
    expect(body(missing)).toMatchObject({ field: "prefix" });
  });
});

describe("http store: values as text", () => {
  it("range and watch: a value's leading byte-order mark is kept, as GET /v1/kv/{key} keeps it", async () => {
    const { app, server } = setup();
    const bom = Buffer.from([0xef, 0xbb, 0xbf, 0x61]);
    await app.inject({ method: "PUT", url: "/v1/kv/bom", payload: bom });
    const single = await app.inject({
      url: "/v1/kv/bom",
      headers: { accept: "application/json" },
    });
    expect(single.json()).toMatchObject({ value: "\ufeffa" });
    const range = await app.inject({ url: "/v1/kv?prefix=bom" });
    expect(body(range)).toMatchObject({ items: [{ key: "bom", value: "\ufeffa" }] });
    const { url } = await server.listen("127.0.0.1", 0);
    const events = await readEvents(`${url}/v1/watch?prefix=bom&fromRevision=1`, 1);
    expect(events).toEqual([{ type: "put", key: "bom", value: "\ufeffa", revision: 1 }]);
  });
});

describe("http store: oversized input", () => {
  it("an id longer than a path parameter may be is 400 naming id; an oversized JSON body names body", async () => {
    const { app } = setup();
    for (const url of [`/v1/leases/${"9".repeat(120)}`, `/v1/members/${"1".repeat(120)}`]) {
      const answer = await app.inject({ url });
      expect(answer.statusCode, url).toBe(400);
      expect(body(answer), url).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field: "id",
        limit: 100,
      });
    }
    const big = JSON.stringify({ compare: [], success: [], failure: [], pad: "x".repeat(2 << 20) });
    const txn = await app.inject({ method: "POST", url: "/v1/txn", payload: big });
    expect(txn.statusCode).toBe(413);
    expect(body(txn)).toMatchObject({ code: "ERR_TOO_LARGE", field: "body" });
  });
});

describe("http store: transactions", () => {
  it("txn: applies success when every comparison holds, failure otherwise", async () => {
    const { app } = setup();
    await put(app, "a", "1");
    const txn = (compare: unknown[]) =>
      app.inject({
        method: "POST",
        url: "/v1/txn",
        payload: JSON.stringify({
          compare,
          success: [{ put: { key: "a", value: "2" } }, { put: { key: "b", value: "x" } }],
          failure: [{ delete: { key: "a" } }],
        }),
      });
    const ok = await txn([
      { key: "a", revision: 1 },
      { key: "a", value: "1" },
      { key: "b", exists: false },
    ]);
    expect(body(ok)).toEqual({ succeeded: true, revision: 2 });
    const failed = await txn([{ key: "a", revision: 1 }]);
    expect(body(failed)).toEqual({ succeeded: false, revision: 3 });
    const a = await app.inject({ url: "/v1/kv/a" });
    expect(a.statusCode).toBe(404);
  });

  it("txn: a body that is not UTF-8 is 400 naming body, not stored with U+FFFD in its place", async () => {
    const { app } = setup();
    const json = Buffer.from('{"compare":[],"success":[{"put":{"key":"a","value":"X"}}]}');
    const bad = Buffer.from(json);
    bad[bad.indexOf("X".charCodeAt(0))] = 0xff;
    const answer = await app.inject({
      method: "POST",
      url: "/v1/txn",
      headers: { "content-type": "application/json" },
      payload: bad,
    });
    expect(answer.statusCode).toBe(400);
    expect(body(answer)).toMatchObject({ code: "ERR_INVALID_INPUT", field: "body" });
    expect((await app.inject({ url: "/v1/kv/a" })).statusCode).toBe(404);
  });

  it("txn: a key over the length limit is 400 naming the field and the limit, as in a URL", async () => {
    const { app } = setup();
    const long = "k".repeat(1025);
    const answer = await app.inject({
      method: "POST",
      url: "/v1/txn",
      payload: JSON.stringify({ compare: [], success: [{ put: { key: long, value: "v" } }] }),
    });
    expect(answer.statusCode).toBe(400);
    expect(body(answer)).toMatchObject({ code: "ERR_INVALID_INPUT", limit: 1024 });
    const url = await app.inject({ method: "PUT", url: `/v1/kv/${long}`, payload: "v" });
    expect(body(url)).toMatchObject({ code: "ERR_INVALID_INPUT", limit: 1024 });
  });

  it("txn: a malformed transaction is 400 naming the field; nothing is applied", async () => {
    const { app, api } = setup({ txnOpCountMax: 2 });
    const cases: [unknown, string][] = [
      ["not json", "body"],
      [{ compare: {} }, "compare"],
      [{ compare: [{ key: "a" }] }, "compare[0]"],
      [{ compare: [{ key: "a", revision: -1 }] }, "compare[0].revision"],
      [{ compare: [{ key: "a", exists: true, value: "x" }] }, "compare[0]"],
      [{ success: [{ put: { key: "a" } }] }, "success[0].put.value"],
      [{ success: [{ put: { key: "", value: "" } }] }, "success[0].put.key"],
      [{ success: [{ get: { key: "a" } }] }, "success[0].get"],
      [{ failure: [{ delete: { key: "a" } }, {}, {}] }, "failure"],
      [{ success: [{ put: { key: "a", value: "v", lease: 0 } }] }, "success[0].put.lease"],
      [{ success: [{ put: { key: "k".repeat(1025), value: "v" } }] }, "success[0].put.key"],
      // A key that /v1/kv/{key} could not name: no control characters, as there.
      [{ success: [{ put: { key: "a\u0000b", value: "v" } }] }, "success[0].put.key"],
      [{ failure: [{ delete: { key: "a\u0085" } }] }, "failure[0].delete.key"],
      [{ compare: [{ key: "\u007f", exists: true }] }, "compare[0].key"],
      [{ compares: [] }, "compares"],
    ];
    for (const [payload, field] of cases) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/txn",
        payload: typeof payload === "string" ? payload : JSON.stringify(payload),
      });
      expect(response.statusCode, JSON.stringify(payload)).toBe(400);
      expect(body(response), JSON.stringify(payload)).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field,
      });
    }
    expect(api.stateMachine.revision).toBe(0);
  });
});

describe("http store: leases", () => {
  it("lease: grant, attach keys, keep alive, and the keys go when it expires", async () => {
    const { app, advance } = setup();
    const granted = await app.inject({
      method: "POST",
      url: "/v1/leases",
      payload: JSON.stringify({ ttlSeconds: 3 }),
    });
    expect(granted.statusCode).toBe(200);
    const lease = body(granted) as { id: number; ttlSeconds: number };
    expect(lease.ttlSeconds).toBe(3);
    expect((await put(app, "session/1", "alice", `?lease=${lease.id}`)).statusCode).toBe(200);
    advance(2000);
    const kept = await app.inject({ method: "POST", url: `/v1/leases/${lease.id}/keepalive` });
    expect(body(kept)).toEqual({ id: lease.id, ttlSeconds: 3 });
    advance(2000);
    expect((await app.inject({ url: "/v1/kv/session/1" })).statusCode).toBe(200);
    const info = body(await app.inject({ url: `/v1/leases/${lease.id}` }));
    expect(info).toEqual({ id: lease.id, ttlSeconds: 3, remainingSeconds: 1 });
    advance(1000);
    expect((await app.inject({ url: "/v1/kv/session/1" })).statusCode).toBe(404);
    const gone = await app.inject({ method: "POST", url: `/v1/leases/${lease.id}/keepalive` });
    expect(gone.statusCode).toBe(404);
    expect(body(gone)).toMatchObject({ code: "ERR_LEASE_NOT_FOUND", field: "lease" });
  });

  it("lease: revoke deletes the keys; unknown leases and bad ttls are 4xx naming the field", async () => {
    const { app } = setup();
    const lease = body(
      await app.inject({ method: "POST", url: "/v1/leases", payload: '{"ttlSeconds":60}' }),
    ) as { id: number };
    await put(app, "lock", "me", `?lease=${lease.id}`);
    const revoked = await app.inject({ method: "DELETE", url: `/v1/leases/${lease.id}` });
    expect(body(revoked)).toEqual({ revision: 3 });
    expect((await app.inject({ url: "/v1/kv/lock" })).statusCode).toBe(404);
    const unknown = await put(app, "k", "v", "?lease=999");
    expect(unknown.statusCode).toBe(404);
    expect(body(unknown)).toMatchObject({ code: "ERR_LEASE_NOT_FOUND", field: "lease" });
    const badId = await put(app, "k", "v", "?lease=abc");
    expect(badId.statusCode).toBe(400);
    expect(body(badId)).toMatchObject({ field: "lease" });
    for (const payload of ['{"ttlSeconds":0}', '{"ttlSeconds":1.5}', '{"ttl":5}', "[]"]) {
      const response = await app.inject({ method: "POST", url: "/v1/leases", payload });
      expect(response.statusCode, payload).toBe(400);
    }
    const tooLong = await app.inject({
      method: "POST",
      url: "/v1/leases",
      payload: '{"ttlSeconds":99999999}',
    });
    expect(body(tooLong)).toMatchObject({ field: "ttlSeconds", limit: 604_800 });
  });
});

/** Reads server-sent events from a watch until `count` data events arrived. */
async function readEvents(url: string, count: number): Promise<Record<string, unknown>[]> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const events: Record<string, unknown>[] = [];
  while (events.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    let end = text.indexOf("\n\n");
    while (end >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      const data = block.split("\n").find((line) => line.startsWith("data: "));
      if (data !== undefined) events.push(JSON.parse(data.slice(6)));
      end = text.indexOf("\n\n");
    }
  }
  controller.abort();
  return events;
}

describe("http store: watch", () => {
  it("watch: streams past and live changes under a prefix, one event per change", async () => {
    const { app, server, api } = setup();
    await put(app, "w/a", "1");
    await put(app, "x", "1");
    const { url } = await server.listen("127.0.0.1", 0);
    const events = readEvents(`${url}/v1/watch?prefix=w%2F&fromRevision=1`, 4);
    // Changes made before the watch is in place would come from the history anyway; waiting
    // makes them arrive live, the path under test.
    while (api.stateMachine.watchCount === 0) await new Promise((r) => setTimeout(r, 5));
    await put(app, "w/b", "2");
    await app.inject({ method: "DELETE", url: "/v1/kv?prefix=w%2F" });
    expect(await events).toEqual([
      { type: "put", key: "w/a", value: "1", revision: 1 },
      { type: "put", key: "w/b", value: "2", revision: 3 },
      { type: "delete", key: "w/a", value: null, revision: 4 },
      { type: "delete", key: "w/b", value: null, revision: 4 },
    ]);
  });

  it("watch: the commands applied in one turn reach a watch in order, and a restore ends it after them", async () => {
    const { server, api } = setup();
    const { url } = await server.listen("127.0.0.1", 0);
    const response = await fetch(`${url}/v1/watch?prefix=b%2F`);
    const reader = response.body!.getReader();
    while (api.stateMachine.watchCount === 0) await new Promise((r) => setTimeout(r, 5));
    const value = new TextEncoder().encode("v");
    // As the runtime applies the entries of one Ready: several commands in one turn, then
    // a restore (a state transfer) in the same turn.
    for (const key of ["b/1", "a", "b/2", "b/3"]) {
      api.apply(encodeCommand({ type: "put", key, value }));
    }
    api.stateMachine.restoreChunks(api.stateMachine.snapshotChunks());
    let text = "";
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(chunk);
    }
    const ids = [...text.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]);
    expect(ids).toEqual(["1.1", "3.1", "4.1"]);
    expect(text).toContain('"key":"b/3"');
  });

  it("watch: a backlog goes out as the reader takes it (one piece held for a reader that does not read, not the history), and live changes follow it in order", async () => {
    const { app, server, api } = setup();
    const megabyte = 1024 * 1024;
    const count = 24;
    for (let i = 0; i < count; i++) {
      expect((await put(app, `w/${i}`, String(i % 10).repeat(megabyte))).statusCode).toBe(200);
    }
    const sockets: Socket[] = [];
    server.app.server.on("connection", (socket: Socket) => sockets.push(socket));
    const { url } = await server.listen("127.0.0.1", 0);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      httpGet(`${url}/v1/watch?prefix=w%2F&fromRevision=1`, { agent: false }, resolve).on(
        "error",
        reject,
      );
    });
    expect(response.statusCode).toBe(200);
    // The reader stops reading: what the node holds for it stays in its socket's buffer.
    response.pause();
    while (api.stateMachine.watchCount === 0) await new Promise((r) => setTimeout(r, 5));
    let held = 0;
    for (let i = 0; i < 30; i++) {
      held = Math.max(held, ...sockets.map((socket) => socket.writableLength));
      await new Promise((r) => setTimeout(r, 10));
    }
    // One piece (about one 1 MiB event), not the 24 MiB backlog less what the kernel took.
    expect(held).toBeLessThan(2 * megabyte);
    expect(held).toBeGreaterThan(0);
    // A change made while the backlog waits goes out after it.
    await put(app, "w/live", "now");
    const ids: string[] = [];
    let text = "";
    response.setEncoding("utf8");
    await new Promise<void>((resolve) => {
      response.on("data", (chunk: string) => {
        text += chunk;
        for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
          const id = /^id: (\S+)$/m.exec(text.slice(0, end))?.[1];
          if (id !== undefined) ids.push(id);
          text = text.slice(end + 2);
        }
        if (ids.length === count + 1) resolve();
      });
      response.resume();
    });
    response.destroy();
    expect(ids).toEqual(Array.from({ length: count + 1 }, (_, i) => `${i + 1}.1`));
  });

  it("watch: baton_kv_watches counts the watch streams open on the node", async () => {
    const { app, server } = setup();
    const { url } = await server.listen("127.0.0.1", 0);
    const gauge = async () => {
      const text = (await app.inject({ url: "/metrics" })).body;
      return Number(/^baton_kv_watches (\d+)$/m.exec(text)?.[1]);
    };
    expect(await gauge()).toBe(0);
    const controllers = ["a/", "a/", "b/"].map((prefix) => {
      const controller = new AbortController();
      void fetch(`${url}/v1/watch?prefix=${prefix}`, { signal: controller.signal }).catch(() => {});
      return controller;
    });
    while ((await gauge()) < 3) await new Promise((r) => setTimeout(r, 10));
    expect(await gauge()).toBe(3);
    controllers[0]!.abort();
    while ((await gauge()) > 2) await new Promise((r) => setTimeout(r, 10));
    expect(await gauge()).toBe(2);
    for (const controller of controllers) controller.abort();
  });

  it("watch: a HEAD answers from the history's bounds and reads no backlog", async () => {
    const { api, app } = setup();
    for (let i = 0; i < 5; i++) await put(app, `a${i}`, "1");
    const watch = vi.spyOn(api.store, "watch");
    const head = await app.inject({ method: "HEAD", url: "/v1/watch?fromRevision=1" });
    expect(head.statusCode).toBe(200);
    expect(head.headers["content-type"]).toMatch(/^text\/event-stream/);
    expect(head.body).toBe("");
    // Before, a HEAD opened the watch (its backlog: the whole history here) to cancel it.
    expect(watch).not.toHaveBeenCalled();
    expect(api.stateMachine.watchCount).toBe(0);
  });

  it("watch: a revision older than the history is 410 ERR_COMPACTED naming fromRevision", async () => {
    const { app } = setup({ watchHistoryCountMax: 1 });
    await put(app, "a", "1");
    await put(app, "b", "1");
    const response = await app.inject({ url: "/v1/watch?fromRevision=1" });
    expect(response.statusCode).toBe(410);
    expect(body(response)).toMatchObject({
      code: "ERR_COMPACTED",
      field: "fromRevision",
      startRevision: 2,
    });
    const resumed = await app.inject({
      url: "/v1/watch",
      headers: { "last-event-id": "1.1" },
    });
    expect(resumed.statusCode).toBe(410);
    expect(body(resumed)).toMatchObject({ code: "ERR_COMPACTED", field: "Last-Event-ID" });
    const head = await app.inject({ method: "HEAD", url: "/v1/watch?prefix=a" });
    expect(head.statusCode).toBe(200);
    expect(head.headers["content-type"]).toMatch(/^text\/event-stream/);
    // A HEAD answers what the GET would: 410 for a compacted revision, not a stream's 200.
    const headCompacted = await app.inject({ method: "HEAD", url: "/v1/watch?fromRevision=1" });
    expect(headCompacted.statusCode).toBe(410);
    const headResumed = await app.inject({
      method: "HEAD",
      url: "/v1/watch",
      headers: { "last-event-id": "1.1" },
    });
    expect(headResumed.statusCode).toBe(410);
    const bad = await app.inject({ url: "/v1/watch?fromRevision=0" });
    expect(bad.statusCode).toBe(400);
    expect(body(bad)).toMatchObject({ field: "fromRevision" });
    // Only the number's own bound: no limit to name.
    expect(body(bad)).not.toHaveProperty("limit");
  });
});
