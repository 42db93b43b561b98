/**
 * Reading a prefix from a query and values from a transaction body: what cannot name a
 * key, or cannot be stored as sent, is refused with 400 naming the field rather than
 * changed into something else (bad percent-encoding kept as literal text, a lone surrogate
 * stored as U+FFFD). `+` in a query is a space, as forms and URLSearchParams send it.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { createHttpServer, type HttpServer } from "./server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup() {
  const api = new LocalKvNode(1);
  const server = createHttpServer({
    api,
    logger: pino({ level: "silent" }),
    limits: api.stateMachine.limits,
  });
  servers.push(server);
  return { api, app: server.app };
}

describe("http store input: prefixes", () => {
  it("prefix: bad percent-encoding is 400 naming prefix on ranges, prefix deletes and watches", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/%25C3", payload: "literal" });
    for (const prefix of ["%C3", "%ZZ", "a%", "%E2%82"]) {
      for (const [method, path] of [
        ["GET", "/v1/kv"],
        ["DELETE", "/v1/kv"],
        ["GET", "/v1/watch"],
      ] as const) {
        const response = await app.inject({ method, url: `${path}?prefix=${prefix}` });
        const what = `${method} ${path}?prefix=${prefix}`;
        expect(response.statusCode, what).toBe(400);
        expect(response.json(), what).toMatchObject({ code: "ERR_INVALID_INPUT", field: "prefix" });
      }
    }
    // The literal text, sent encoded, names the key that holds it.
    const listed = await app.inject({ url: "/v1/kv?prefix=%25C3&keysOnly=true" });
    expect(listed.json().items).toEqual([{ key: "%C3", revision: 1 }]);
  });

  it("prefix: a control character is 400 naming prefix, as no key holds one", async () => {
    const { app } = setup();
    for (const prefix of ["%00", "a%0A", "%7F", "%C2%85"]) {
      const response = await app.inject({ url: `/v1/kv?prefix=${prefix}` });
      expect(response.statusCode, prefix).toBe(400);
      expect(response.json(), prefix).toMatchObject({ field: "prefix" });
    }
  });

  it("prefix: + is a space in a query and %2B a plus, as URLSearchParams sends them", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/a+b", payload: "plus" });
    await app.inject({ method: "PUT", url: "/v1/kv/a%20b", payload: "space" });
    const keys = async (query: string) =>
      (await app.inject({ url: `/v1/kv?${query}&keysOnly=true` }))
        .json()
        .items.map((item: { key: string }) => item.key);
    expect(await keys("prefix=a+")).toEqual(["a b"]);
    expect(await keys("prefix=a%2B")).toEqual(["a+b"]);
    expect(await keys(String(new URLSearchParams({ prefix: "a+" })))).toEqual(["a+b"]);
  });
});

describe("http store input: transaction values", () => {
  it("txn: a value with a lone surrogate is 400 naming the field, and nothing is applied", async () => {
    const { app, api } = setup();
    for (const [body, field] of [
      ['{"success":[{"put":{"key":"k","value":"\\ud800"}}]}', "success[0].put.value"],
      ['{"failure":[{"put":{"key":"k","value":"a\\udc00b"}}]}', "failure[0].put.value"],
      ['{"compare":[{"key":"k","value":"\\udbff"}]}', "compare[0].value"],
    ] as const) {
      const response = await app.inject({ method: "POST", url: "/v1/txn", payload: body });
      expect(response.statusCode, body).toBe(400);
      expect(response.json(), body).toMatchObject({ code: "ERR_INVALID_INPUT", field });
    }
    expect(api.stateMachine.revision).toBe(0);
    // A surrogate pair is a character like any other.
    const pair = await app.inject({
      method: "POST",
      url: "/v1/txn",
      payload: '{"success":[{"put":{"key":"k","value":"\\ud83d\\ude00"}}]}',
    });
    expect(pair.statusCode).toBe(200);
    expect((await app.inject({ url: "/v1/kv/k" })).json().value).toBe("😀");
  });
});
