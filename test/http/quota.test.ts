/**
 * The store's quota over HTTP on a one-node stand-in running the real state machine and
 * `KvStore`: a write past the quota is answered 507 ERR_QUOTA_EXCEEDED naming the quota,
 * its limit and what to do; a request larger than the whole bytes quota is 413; deletes
 * always work at the quota; and a transaction refused by the state machine answers alike.
 */

import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { registerStoreMetrics } from "../../src/app/store-metrics.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup(keyCountMax: number, bytesMax: number) {
  const api = new LocalKvNode(1);
  api.apply(encodeCommand({ type: "set_quota", keyCountMax, bytesMax }));
  const server = createHttpServer({
    api,
    logger: pino({ level: "silent" }),
    limits: api.stateMachine.limits,
  });
  servers.push(server);
  const put = (key: string, value: string) =>
    server.app.inject({ method: "PUT", url: `/v1/kv/${key}`, payload: value });
  return { api, app: server.app, put };
}

describe("http quota", () => {
  it("quota: a new key past the keys quota is 507 naming the quota; a delete makes room", async () => {
    const { app, put } = setup(2, 0);
    expect((await put("a", "1")).statusCode).toBe(200);
    expect((await put("b", "1")).statusCode).toBe(200);
    const refused = await put("c", "1");
    expect(refused.statusCode).toBe(507);
    expect(refused.headers["retry-after"]).toBeUndefined();
    const body = refused.json();
    expect(body).toMatchObject({ code: "ERR_QUOTA_EXCEEDED", quota: "keys", limit: 2, usage: 2 });
    expect(body.error).toMatch(/quota of 2 keys/);
    expect(body.error).toMatch(/delete keys/);
    expect(body.error).toMatch(/--quota-keys/);
    expect((await put("a", "replaced, not a new key")).statusCode).toBe(200);
    expect((await app.inject({ method: "DELETE", url: "/v1/kv/b" })).statusCode).toBe(200);
    expect((await put("c", "1")).statusCode).toBe(200);
  });

  it("quota: a retried write whose first attempt was applied is answered from the first result, though the store is full now", async () => {
    const { app } = setup(1, 0);
    const put = (key: string, idempotencyKey?: string) =>
      app.inject({
        method: "PUT",
        url: `/v1/kv/${key}`,
        payload: "v",
        headers: idempotencyKey === undefined ? {} : { "idempotency-key": idempotencyKey },
      });
    const first = await put("x", "order-1");
    expect(first.statusCode).toBe(200);
    // Its answer was lost; meanwhile x went (a lease ended, say) and y took the only place.
    expect((await app.inject({ method: "DELETE", url: "/v1/kv/x" })).statusCode).toBe(200);
    expect((await put("y")).statusCode).toBe(200);
    const retried = await put("x", "order-1");
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toEqual(first.json());
    // A new write is still refused, by the edge or by the state machine.
    expect((await put("z", "order-2")).statusCode).toBe(507);
    expect((await put("z")).statusCode).toBe(507);
  });

  it("quota: the bytes quota counts keys and values; too large for any store is 413", async () => {
    const { app, put } = setup(0, 20);
    expect((await put("k1", "12345678")).statusCode).toBe(200); // 10 bytes
    const refused = await put("k2", "123456789"); // 11 more
    expect(refused.statusCode).toBe(507);
    expect(refused.json()).toMatchObject({ quota: "bytes", limit: 20, usage: 10 });
    expect(refused.json().error).toMatch(/--quota-bytes/);
    const huge = await put("k3", "x".repeat(30));
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ code: "ERR_TOO_LARGE", field: "value", limit: 18 });
    expect(huge.json().error).toMatch(/--quota-bytes/);
    const prefix = await app.inject({ method: "DELETE", url: "/v1/kv?prefix=k" });
    expect(prefix.statusCode).toBe(200);
    expect((await put("k2", "123456789")).statusCode).toBe(200);
  });

  it("quota: a transaction that grows the store past the quota is 507 from the state machine", async () => {
    const { app, put } = setup(1, 0);
    expect((await put("a", "1")).statusCode).toBe(200);
    const txn = await app.inject({
      method: "POST",
      url: "/v1/txn",
      payload: { compare: [], success: [{ put: { key: "b", value: "1" } }], failure: [] },
    });
    expect(txn.statusCode).toBe(507);
    expect(txn.json()).toMatchObject({ code: "ERR_QUOTA_EXCEEDED", quota: "keys", limit: 1 });
  });

  it("quota: the metrics show usage against the quota", async () => {
    const api = new LocalKvNode(1);
    api.apply(encodeCommand({ type: "set_quota", keyCountMax: 5, bytesMax: 100 }));
    await api.put("ab", new TextEncoder().encode("xyz"), {});
    const registry = new Registry();
    registerStoreMetrics(registry, api.stateMachine);
    const text = await registry.metrics();
    expect(text).toMatch(/^baton_kv_keys 1$/m);
    expect(text).toMatch(/^baton_kv_bytes 5$/m);
    expect(text).toMatch(/^baton_kv_quota_keys 5$/m);
    expect(text).toMatch(/^baton_kv_quota_bytes 100$/m);
  });
});
