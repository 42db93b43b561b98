/**
 * Server-wide behaviour of the HTTP API: a request body is read the same whatever its
 * Content-Type says (a malformed one included), and the answers a dashboard on another
 * member's origin reads are readable across origins, refusals included.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import type { KvNodeApi } from "./node-api.js";
import { createHttpServer, type HttpServer } from "./server.js";

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
    expect(busy.json()).toMatchObject({ code: "ERR_BUSY" });
    expect(busy.headers["retry-after"]).toBe("1");
    expect(busy.headers["access-control-allow-origin"]).toBe("*");
    // Streams never end by themselves; closing the server ends them.
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const statuses = (await Promise.all(requests)).map((answer) => answer.statusCode);
    expect(statuses.filter((status) => status === 200)).toHaveLength(64);
  });
});
