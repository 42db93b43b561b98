/**
 * Reading membership and switchover requests: an `httpUrl` goes into the replicated
 * configuration and every member parses it, so only a node's base URL is taken; a body
 * over its route's limit is 413 ERR_TOO_LARGE with the limit, as docs/api.md says of every
 * JSON body.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../../harness/doubles/fake-node-api.js";
import { createHttpServer, type HttpServer } from "../server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup() {
  const server = createHttpServer({ api: new FakeKvNodeApi(1), logger: pino({ level: "silent" }) });
  servers.push(server);
  return server.app;
}

function addBody(httpUrl: string): string {
  return JSON.stringify({ id: 4, peerAddress: "127.0.0.1:7104", httpUrl });
}

describe("http member routes: input", () => {
  it("members: an httpUrl that is not a node's base URL is 400 naming httpUrl (bad port, escape, host, user, path, a host with policy syntax)", async () => {
    const app = setup();
    for (const httpUrl of [
      "http://a:99999",
      "http://a:0",
      "http://%",
      "http://[",
      "http://[::1",
      "http://user:secret@a:8104",
      "http://a:8104/api",
      "http://a:8104\\api",
      "http://a:8104?x=1",
      "http://a:8104#top",
      "ftp://a:8104",
      // Hosts a WHATWG URL takes that would add directives to the dashboard's policy.
      "http://x;frame-ancestors",
      "http://x;form-action:8104",
      "http://a'b:8104",
      "http://a*b:8104",
      "http://%41:1",
    ]) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/members",
        payload: addBody(httpUrl),
      });
      expect(response.statusCode, httpUrl).toBe(400);
      expect(response.json(), httpUrl).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field: "httpUrl",
      });
    }
  });

  it("members: a peerAddress that cannot be dialled is 400 naming peerAddress (port 0, no port, a bad host)", async () => {
    const app = setup();
    for (const peerAddress of ["127.0.0.1:0", "[::1]:0", "127.0.0.1", "a b:7104", "[::1:7104"]) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/members",
        payload: JSON.stringify({ id: 4, peerAddress, httpUrl: "http://127.0.0.1:8104" }),
      });
      expect(response.statusCode, peerAddress).toBe(400);
      expect(response.json(), peerAddress).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field: "peerAddress",
      });
    }
  });

  it("members: a node's base URL is taken (http or https, a name or an address, a port or none)", async () => {
    const app = setup();
    for (const httpUrl of [
      "http://127.0.0.1:8104",
      "https://node-4.example:8443",
      "https://[::1]:8104/",
      "http://node-4",
    ]) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/members",
        payload: addBody(httpUrl),
      });
      // Read and found valid: the fake node, with no membership of its own, is not the master.
      expect(response.json(), httpUrl).toMatchObject({ code: "ERR_NOT_MASTER" });
    }
  });

  it("limits: a body over its route's limit is 413 ERR_TOO_LARGE naming body and the limit", async () => {
    const app = setup();
    const add = await app.inject({
      method: "POST",
      url: "/v1/members",
      payload: addBody(`http://${"a".repeat(2048)}:8104`),
    });
    expect(add.statusCode).toBe(413);
    expect(add.json()).toMatchObject({ code: "ERR_TOO_LARGE", field: "body", limit: 1024 });
    const switchover = await app.inject({
      method: "POST",
      url: "/v1/switchover",
      payload: `{"to":${"1".repeat(300)}}`,
    });
    expect(switchover.statusCode).toBe(413);
    expect(switchover.json()).toMatchObject({ code: "ERR_TOO_LARGE", field: "body", limit: 256 });
  });

  it("members: a change not committed within the request's deadline is 503 ERR_NO_MASTER (read the members), not ERR_TIMEOUT", async () => {
    const api = Object.assign(new FakeKvNodeApi(1), {
      // Proposed, never committed: no majority answers.
      changeMembers: () => new Promise<never>(() => {}),
    });
    const server = createHttpServer({
      api,
      logger: pino({ level: "silent" }),
      requestTimeoutMs: 50,
    });
    servers.push(server);
    for (const [method, url, payload] of [
      ["POST", "/v1/members", addBody("http://127.0.0.1:8104")],
      ["DELETE", "/v1/members/3", undefined],
      ["POST", "/v1/members/3/promote", undefined],
    ] as const) {
      const response = await server.app.inject({
        method,
        url,
        ...(payload === undefined ? {} : { payload }),
      });
      expect(response.statusCode, url).toBe(503);
      expect(response.json(), url).toMatchObject({ code: "ERR_NO_MASTER" });
      expect(response.json().error, url).toMatch(/read GET \/v1\/members/);
      expect(response.headers["retry-after"], url).toBe("1");
    }
  });
});
