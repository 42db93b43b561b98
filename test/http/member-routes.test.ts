import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { ConflictError, SwitchoverFailedError } from "../../src/shared/errors.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup() {
  const api = new FakeKvNodeApi(1);
  api.members = [1, 2, 3].map((id) => ({
    id,
    address: `127.0.0.1:${7100 + id}`,
    httpUrl: `http://127.0.0.1:${8100 + id}`,
    role: id === 1 ? ("master" as const) : ("backup" as const),
    connected: true,
    matchIndex: 0,
    lag: 0,
    lastContactMs: 1,
  }));
  const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
  servers.push(server);
  return { api, app: server.app };
}

describe("http member routes", () => {
  it("members: GET /v1/members lists id, voter, peer address and HTTP URL", async () => {
    const { app } = setup();
    const response = await app.inject({ method: "GET", url: "/v1/members" });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      members: [1, 2, 3].map((id) => ({
        id,
        voter: true,
        peerAddress: `127.0.0.1:${7100 + id}`,
        httpUrl: `http://127.0.0.1:${8100 + id}`,
      })),
    });
  });

  it("switchover: POST {} or {to} answers the new master and term", async () => {
    const { app } = setup();
    for (const [payload, master] of [
      ["", 1],
      ["{}", 1],
      ['{"to":2}', 2],
      ['{"to":null}', 1],
    ] as const) {
      const response = await app.inject({ method: "POST", url: "/v1/switchover", payload });
      expect(response.statusCode, payload).toBe(200);
      expect(response.json()).toEqual({ master, term: 2 });
    }
  });

  it("switchover: a bad body is 400 naming the field, and nothing is asked of the node", async () => {
    const { app } = setup();
    for (const [payload, field] of [
      ["not json", "body"],
      ["[2]", "body"],
      ['{"to":"2"}', "to"],
      ['{"to":0}', "to"],
      ['{"to":1.5}', "to"],
      ['{"target":2}', "target"],
    ] as const) {
      const response = await app.inject({ method: "POST", url: "/v1/switchover", payload });
      expect(response.statusCode, payload).toBe(400);
      expect(response.json(), payload).toMatchObject({ code: "ERR_INVALID_INPUT", field });
    }
    // Over the route's own limit: 413, as docs/api.md says of every JSON body.
    const long = `{"to":${"1".repeat(300)}}`;
    const response = await app.inject({ method: "POST", url: "/v1/switchover", payload: long });
    expect(response.statusCode).toBe(413);
    expect(response.json()).toMatchObject({ code: "ERR_TOO_LARGE", field: "body", limit: 256 });
  });

  it("switchover: the node's refusals map to 409 and 503 with the API's error shape", async () => {
    const { app, api } = setup();
    api.failure = new ConflictError("node 3 has not answered the master lately");
    const conflict = await app.inject({ method: "POST", url: "/v1/switchover", payload: "{}" });
    expect(conflict.statusCode).toBe(409);
    expect(conflict.json()).toMatchObject({ code: "ERR_CONFLICT" });
    api.failure = new SwitchoverFailedError("no new master took over in time");
    const failed = await app.inject({ method: "POST", url: "/v1/switchover", payload: "{}" });
    expect(failed.statusCode).toBe(503);
    expect(failed.json()).toMatchObject({ code: "ERR_SWITCHOVER_FAILED" });
    expect(failed.headers["retry-after"]).toBeDefined();
  });
  it("members: a bad add body or member id is 400 naming the field, and nothing is asked of the node", async () => {
    const { app } = setup();
    for (const [payload, field] of [
      ["", "body"],
      ["[1]", "body"],
      ['{"id":4}', "peerAddress"],
      ['{"id":0,"peerAddress":"h:1","httpUrl":"http://h:2"}', "id"],
      ['{"id":4,"peerAddress":"h","httpUrl":"http://h:2"}', "peerAddress"],
      // What a node's transport could not dial (it stopped every node that tried).
      ['{"id":4,"peerAddress":"node_2:7101","httpUrl":"http://h:2"}', "peerAddress"],
      ['{"id":4,"peerAddress":"h:99999","httpUrl":"http://h:2"}', "peerAddress"],
      ['{"id":4,"peerAddress":"h:1","httpUrl":"ftp://h"}', "httpUrl"],
      ['{"id":4,"peerAddress":"h:1","httpUrl":"http://h:2","voter":true}', "voter"],
    ] as const) {
      const response = await app.inject({ method: "POST", url: "/v1/members", payload });
      expect(response.statusCode, payload).toBe(400);
      expect(response.json(), payload).toMatchObject({ code: "ERR_INVALID_INPUT", field });
    }
    for (const url of ["/v1/members/x/promote", "/v1/members/0", "/v1/members/01/join"]) {
      const method = url.endsWith("promote") ? "POST" : url.endsWith("join") ? "GET" : "DELETE";
      const response = await app.inject({ method, url });
      expect(response.statusCode, url).toBe(400);
      expect(response.json(), url).toMatchObject({ code: "ERR_INVALID_INPUT", field: "id" });
    }
  });

  it("members: GET /v1/members shows a learner with voter false", async () => {
    const { api, app } = setup();
    api.members = api.members.map((m) => (m.id === 3 ? { ...m, voter: false } : m));
    const response = await app.inject({ method: "GET", url: "/v1/members" });
    expect(response.json().members.map((m: { voter: boolean }) => m.voter)).toEqual([
      true,
      true,
      false,
    ]);
  });
});
