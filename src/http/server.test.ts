/**
 * Server-wide behaviour of the HTTP API: a request body is read the same whatever its
 * Content-Type says (a malformed one included), and the answers a dashboard on another
 * member's origin reads are readable across origins, refusals included.
 */

import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import type { KvNodeApi } from "./node-api.js";
import { createHttpServer, type HttpServer, watchesMaxUnder } from "./server.js";
import { hashToken, TokenStore } from "./tokens.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup<Api extends KvNodeApi>(api: Api) {
  const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
  servers.push(server);
  return { api, app: server.app, server };
}

/** Content-Type headers fastify would refuse before reading the body. */
const MALFORMED_CONTENT_TYPES = ["foo", "", "application/json, text/plain", "text/"];

describe("http server: request bodies", () => {
  it("bodies: a PUT stores its body as the value whatever its Content-Type, a malformed one included", async () => {
    const { app, api } = setup(new FakeKvNodeApi(1));
    for (const [i, contentType] of MALFORMED_CONTENT_TYPES.entries()) {
      const response = await app.inject({
        method: "PUT",
        url: `/v1/kv/k${i}`,
        payload: `value ${i}`,
        headers: { "content-type": contentType },
      });
      expect(response.statusCode, JSON.stringify(contentType)).toBe(200);
    }
    const empty = await app.inject({
      method: "PUT",
      url: "/v1/kv/empty",
      headers: { "content-type": "foo" },
    });
    expect(empty.statusCode).toBe(200);
    const values = api.calls.map((call) =>
      call.op === "put" ? Buffer.from(call.value).toString() : null,
    );
    expect(values).toEqual([...MALFORMED_CONTENT_TYPES.map((_, i) => `value ${i}`), ""]);
  });

  it("bodies: the JSON routes read their body whatever its Content-Type (txn, leases, switchover, members)", async () => {
    const { app } = setup(new LocalKvNode(1));
    const fake = setup(new FakeKvNodeApi(1)).app;
    for (const contentType of MALFORMED_CONTENT_TYPES) {
      const headers = { "content-type": contentType };
      const txn = await app.inject({
        method: "POST",
        url: "/v1/txn",
        payload: '{"success":[{"put":{"key":"t","value":"v"}}]}',
        headers,
      });
      expect(txn.statusCode, `txn ${contentType}`).toBe(200);
      expect(txn.json()).toMatchObject({ succeeded: true });
      const lease = await app.inject({
        method: "POST",
        url: "/v1/leases",
        payload: '{"ttlSeconds":10}',
        headers,
      });
      expect(lease.json(), `lease ${contentType}`).toMatchObject({ ttlSeconds: 10 });
      const switchover = await fake.inject({
        method: "POST",
        url: "/v1/switchover",
        payload: '{"to":2}',
        headers,
      });
      expect(switchover.json(), `switchover ${contentType}`).toEqual({ master: 2, term: 2 });
      // The body was read and found valid: the fake node, having no membership, says it
      // is not the master (a bad body would be 400).
      const add = await fake.inject({
        method: "POST",
        url: "/v1/members",
        payload: '{"id":4,"peerAddress":"127.0.0.1:7104","httpUrl":"http://127.0.0.1:8104"}',
        headers,
      });
      expect(add.json(), `members ${contentType}`).toMatchObject({ code: "ERR_NOT_MASTER" });
    }
  });

  it("bodies: a body with a malformed Content-Type sent to an unknown path is 404 ERR_NO_ROUTE", async () => {
    const { app } = setup(new FakeKvNodeApi(1));
    const response = await app.inject({
      method: "POST",
      url: "/v1/nothing",
      payload: "{}",
      headers: { "content-type": "foo" },
    });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ code: "ERR_NO_ROUTE" });
  });
});

describe("http server: cross-origin reads", () => {
  it("cors: a 503 ERR_BUSY from /v1/events (every stream taken) is readable by another member's dashboard", async () => {
    const { app, server } = setup(new FakeKvNodeApi(1));
    // One more request than the node keeps streams for: the one refused is the only answer
    // that ends by itself (injected requests are not served in the order they are made).
    const requests = Array.from({ length: 65 }, () => app.inject({ url: "/v1/events" }));
    const busy = await Promise.race(requests);
    expect(busy.statusCode).toBe(503);
    expect(busy.json()).toMatchObject({ code: "ERR_BUSY", retryAfterMs: 1000 });
    expect(busy.headers["retry-after"]).toBe("1");
    expect(busy.headers["access-control-allow-origin"]).toBe("*");
    // Streams never end by themselves; closing the server ends them.
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const statuses = (await Promise.all(requests)).map((answer) => answer.statusCode);
    expect(statuses.filter((status) => status === 200)).toHaveLength(64);
  });
});

describe("http server: pipelined requests", () => {
  /** Writes `count` copies of a GET of `path` on one connection in one write. */
  async function pipeline(url: string, path: string, count: number): Promise<Socket> {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    await once(socket, "connect");
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`.repeat(count));
    return socket;
  }

  async function gauge(url: string, name: string): Promise<number> {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return Number(line?.split(" ")[1]);
  }

  it("pipelining: watches queued behind one another on a closed connection all end", async () => {
    const { server } = setup(new LocalKvNode(1));
    const { url } = await server.listen("127.0.0.1", 0);
    const socket = await pipeline(url, "/v1/watch?prefix=quiet/", 500);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // One stream at a time: the others wait for their turn, which never comes.
    expect(await gauge(url, "baton_kv_watches")).toBe(1);
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Before, every queued watch stayed open for good (a thousand or so filled the cap).
    expect(await gauge(url, "baton_kv_watches")).toBe(0);
  });

  it("pipelining: a client that sends many reads and does not read the answers has them built one at a time", async () => {
    const node = new LocalKvNode(1);
    const { server } = setup(node);
    const { url } = await server.listen("127.0.0.1", 0);
    const big = "x".repeat(1024 * 1024);
    for (let i = 0; i < 8; i++) {
      expect((await fetch(`${url}/v1/kv/big${i}`, { method: "PUT", body: big })).status).toBe(200);
    }
    let listed = 0;
    const range = node.store.range.bind(node.store);
    node.store.range = (...args: Parameters<typeof range>) => {
      listed++;
      return range(...args);
    };
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    const socket = await pipeline(url, "/v1/kv?prefix=big&limit=100", 200);
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Each page is 8 MiB: only as many are built as the connection's buffers take before
    // the client must read. Before, all 200 were built at once (1.6 GB held).
    expect(listed).toBeGreaterThan(0);
    expect(listed).toBeLessThan(20);
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    process.off("warning", onWarning);
    // The waiting requests share one close listener on their connection: a listener each
    // set off Node.js's leak warning at the eleventh.
    expect(warnings).not.toContain("MaxListenersExceededWarning");
  });

  it("watch cap: watches leave the event streams and 128 connections to other requests (half of a small cap: 200 takes 100)", async () => {
    expect([4096, 400, 200, 2, 20_000].map(watchesMaxUnder)).toEqual([3904, 208, 100, 1, 10_000]);
    const server = createHttpServer({
      api: new LocalKvNode(1),
      logger: pino({ level: "silent" }),
      connections: { connectionsMax: 200 },
    });
    servers.push(server);
    const { url } = await server.listen("127.0.0.1", 0);
    const sockets = await Promise.all(
      Array.from({ length: 100 }, () => pipeline(url, "/v1/watch?prefix=a", 1)),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await gauge(url, "baton_kv_watches")).toBe(100);
    const refused = await fetch(`${url}/v1/watch?prefix=a`);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({
      code: "ERR_BUSY",
      error: expect.stringContaining("100 watches are open on this node, as many as it takes"),
      retryAfterMs: 1000,
    });
    expect((await fetch(`${url}/health`)).status).toBe(200);
    for (const socket of sockets) socket.destroy();
  });

  it("revocation: a reload that stops accepting a token ends the streams opened with it; other streams go on", async () => {
    const revoked = "baton_revoked-token";
    const kept = "baton_kept-token";
    const tokens = new TokenStore([
      { name: "revoked", role: "read", sha256: hashToken(revoked) },
      { name: "kept", role: "read", sha256: hashToken(kept) },
    ]);
    const server = createHttpServer({
      api: new LocalKvNode(1),
      logger: pino({ level: "silent" }),
      tokens,
    });
    servers.push(server);
    const { url } = await server.listen("127.0.0.1", 0);
    const open = async (path: string, token: string) => {
      const { hostname, port } = new URL(url);
      const socket = connect(Number(port), hostname);
      await once(socket, "connect");
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      );
      // The stream's response ends (its last chunk), whether or not the connection stays.
      let received = "";
      socket.on("data", (chunk: Buffer) => {
        received += chunk.toString("latin1");
      });
      return { socket, ended: () => received.includes("\r\n0\r\n\r\n") };
    };
    const watches = [
      await open("/v1/watch?prefix=a", revoked),
      await open("/v1/watch?prefix=a", kept),
    ];
    const events = await open("/v1/events", revoked);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([...watches, events].map((s) => s.ended())).toEqual([false, false, false]);
    // SIGHUP with the revoked token's line removed.
    tokens.replace([{ name: "kept", role: "read", sha256: hashToken(kept) }]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Before, a stream opened with a revoked token streamed every change for good.
    expect([...watches, events].map((s) => s.ended())).toEqual([true, false, true]);
    for (const s of [...watches, events]) s.socket.destroy();
  });
});

describe("http server: requests that are not well-formed HTTP/1.1", () => {
  /** Sends `text` on a new connection and resolves with all it receives until it closes. */
  async function exchange(url: string, text: string, then?: string): Promise<string> {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    await once(socket, "connect");
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
    });
    socket.write(text);
    if (then !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.write(then);
    }
    await Promise.race([once(socket, "close"), new Promise((r) => setTimeout(r, 2000))]);
    socket.destroy();
    return received;
  }

  it("an HTTP/1.1 request without Host is 400 in the API's JSON shape naming Host; HTTP/1.0 needs none", async () => {
    const { server } = setup(new LocalKvNode(1));
    const { url } = await server.listen("127.0.0.1", 0);
    const answer = await exchange(url, "GET /v1/kv/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
    expect(body).toMatchObject({ code: "ERR_INVALID_INPUT", field: "Host" });
    expect(body.error).toMatch(/^Host: an HTTP\/1\.1 request must name the host/);
    const old = await exchange(url, "GET /v1/kv/x HTTP/1.0\r\n\r\n");
    expect(old).toMatch(/^HTTP\/1\.1 404 /);
  });

  it("bytes that are not HTTP after a watch's stream began close the connection without writing an answer into the stream", async () => {
    const { server } = setup(new LocalKvNode(1));
    const { url } = await server.listen("127.0.0.1", 0);
    const { hostname } = new URL(url);
    const received = await exchange(
      url,
      `GET /v1/watch?prefix=a HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`,
      "NOT HTTP\r\n\r\n",
    );
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).toContain(": watching");
    expect(received).not.toMatch(/\r\nHTTP\/1\.1 400/);
  });
});
