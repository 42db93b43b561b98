import { Agent, get as httpGet } from "node:http";
import type { LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import {
  createHttpServer,
  type HttpServer,
  type HttpServerOptions,
} from "../../src/http/server.js";
import { defaultKvLimits } from "../../src/kv/index.js";
import {
  BusyError,
  IndeterminateError,
  InvalidInputError,
  NoMasterError,
  NotMasterError,
  ShuttingDownError,
  StorageFailedError,
  TimeoutError,
  TooLargeError,
} from "../../src/shared/errors.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup(options: Partial<HttpServerOptions> = {}) {
  const api = new FakeKvNodeApi(1);
  const logged: Record<string, unknown>[] = [];
  const logger = pino(
    { level: "error" },
    { write: (line: string) => logged.push(JSON.parse(line)) },
  );
  const server = createHttpServer({ api, logger, ...options });
  servers.push(server);
  return { api, app: server.app, server, logged };
}

/** Waits, without a timer, until the fake node has received `count` calls. */
async function untilCalls(api: FakeKvNodeApi, count: number): Promise<void> {
  while (api.calls.length < count) await new Promise((resolve) => setImmediate(resolve));
}

function json(response: LightMyRequestResponse): Record<string, unknown> {
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  return response.json();
}

describe("http kv routes", () => {
  it("kv: PUT stores the body bytes and answers the revision with an ETag", async () => {
    const { app, api } = setup();
    const response = await app.inject({ method: "PUT", url: "/v1/kv/color", payload: "blue" });
    expect(response.statusCode).toBe(200);
    expect(json(response)).toEqual({ revision: 1 });
    expect(response.headers.etag).toBe('"1"');
    expect(api.calls).toEqual([
      { op: "put", key: "color", value: new Uint8Array(Buffer.from("blue")), options: {} },
    ]);
  });

  it("kv: PUT stores a body as raw bytes whatever its content type (JSON, none, empty)", async () => {
    const { app, api } = setup();
    const payload = '{"a": 1}';
    const headers = { "content-type": "application/json" };
    expect(
      (await app.inject({ method: "PUT", url: "/v1/kv/j", payload, headers })).statusCode,
    ).toBe(200);
    await app.inject({ method: "PUT", url: "/v1/kv/e" });
    const bytes = Buffer.from([0, 255, 1]);
    const binary = { "content-type": "image/png" };
    await app.inject({ method: "PUT", url: "/v1/kv/b", payload: bytes, headers: binary });
    const values = api.calls.map((call) => (call.op === "put" ? Buffer.from(call.value) : null));
    expect(values).toEqual([Buffer.from(payload), Buffer.alloc(0), bytes]);
  });

  it("kv: GET answers key, value as UTF-8 text and revision, with an ETag", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/greeting", payload: "grüß dich" });
    const response = await app.inject({ method: "GET", url: "/v1/kv/greeting" });
    expect(response.statusCode).toBe(200);
    expect(json(response)).toEqual({ key: "greeting", value: "grüß dich", revision: 1 });
    expect(response.headers.etag).toBe('"1"');
  });

  it("kv: GET answers the raw bytes (Accept: application/octet-stream)", async () => {
    const { app } = setup();
    const bytes = Buffer.from([0xff, 0x00, 0xc3, 0x28]);
    await app.inject({ method: "PUT", url: "/v1/kv/blob", payload: bytes });
    const accept = { accept: "application/octet-stream" };
    const response = await app.inject({ method: "GET", url: "/v1/kv/blob", headers: accept });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toBe("application/octet-stream");
    expect(response.headers.etag).toBe('"1"');
    expect(response.rawPayload).toEqual(bytes);
    const both = { accept: "application/json, application/octet-stream" };
    const preferJson = await app.inject({ method: "GET", url: "/v1/kv/blob", headers: both });
    expect(preferJson.headers["content-type"]).toMatch(/^application\/json/);
  });

  it("kv: GET answers 404 JSON for a key that has no value (both Accept kinds)", async () => {
    const { app } = setup();
    for (const accept of ["application/json", "application/octet-stream"]) {
      const response = await app.inject({ method: "GET", url: "/v1/kv/nope", headers: { accept } });
      expect(response.statusCode).toBe(404);
      expect(json(response)).toMatchObject({ code: "ERR_NOT_FOUND", key: "nope" });
      expect(response.json().error).toMatch(/key not found/);
    }
  });

  it("kv: GET is linearizable by default and stale=true reads the local copy (on a backup)", async () => {
    const { app, api } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    api.becomeBackup(2, null);
    const stale = await app.inject({ method: "GET", url: "/v1/kv/k?stale=true" });
    expect(stale.statusCode).toBe(200);
    expect(stale.json()).toEqual({ key: "k", value: "v", revision: 1 });
    await app.inject({ method: "GET", url: "/v1/kv/k?stale" });
    await app.inject({ method: "GET", url: "/v1/kv/k?stale=false" });
    const gets = api.calls.filter((call) => call.op === "get");
    expect(gets.map((call) => call.op === "get" && call.stale)).toEqual([true, true, false]);
  });

  it("kv: GET refuses a stale flag that is not a boolean (400 naming stale)", async () => {
    const { app } = setup();
    const response = await app.inject({ method: "GET", url: "/v1/kv/k?stale=maybe" });
    expect(response.statusCode).toBe(400);
    expect(json(response)).toMatchObject({ code: "ERR_INVALID_INPUT", field: "stale" });
    expect(response.json().error).toMatch(/true or false/);
  });

  it("kv: HEAD answers the GET headers without a body", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "value" });
    const response = await app.inject({ method: "HEAD", url: "/v1/kv/k" });
    expect(response.statusCode).toBe(200);
    expect(response.headers.etag).toBe('"1"');
    expect(response.body).toBe("");
  });

  it("kv: DELETE answers the revision, then 404 for the key that is gone", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    const deleted = await app.inject({ method: "DELETE", url: "/v1/kv/k" });
    expect(deleted.statusCode).toBe(200);
    expect(json(deleted)).toEqual({ revision: 2 });
    const again = await app.inject({ method: "DELETE", url: "/v1/kv/k" });
    expect(again.statusCode).toBe(404);
    expect(json(again)).toMatchObject({ code: "ERR_NOT_FOUND", key: "k" });
    expect((await app.inject({ method: "GET", url: "/v1/kv/k" })).statusCode).toBe(404);
  });
});

describe("http compare-and-set and idempotency", () => {
  it("cas: PUT with a matching If-Match succeeds, a stale one gets 412 with currentRevision", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "a" });
    const matching = { "if-match": '"1"' };
    const ok = await app.inject({
      method: "PUT",
      url: "/v1/kv/k",
      payload: "b",
      headers: matching,
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ revision: 2 });
    const stale = await app.inject({
      method: "PUT",
      url: "/v1/kv/k",
      payload: "c",
      headers: matching,
    });
    expect(stale.statusCode).toBe(412);
    expect(json(stale)).toMatchObject({ code: "ERR_PRECONDITION_FAILED", currentRevision: 2 });
    expect(stale.json().error).toMatch(/If-Match/);
    const bare = { "if-match": "2" };
    const unquoted = await app.inject({
      method: "PUT",
      url: "/v1/kv/k",
      payload: "d",
      headers: bare,
    });
    expect(unquoted.statusCode).toBe(200);
  });

  it('cas: If-Match "0" and If-None-Match * create only when the key does not exist', async () => {
    const { app, api } = setup();
    for (const headers of [{ "if-match": '"0"' }, { "if-none-match": "*" }]) {
      const url = `/v1/kv/${Object.keys(headers)[0]}`;
      const created = await app.inject({ method: "PUT", url, payload: "a", headers });
      expect(created.statusCode).toBe(200);
      const exists = await app.inject({ method: "PUT", url, payload: "b", headers });
      expect(exists.statusCode).toBe(412);
      expect(exists.json()).toMatchObject({ code: "ERR_PRECONDITION_FAILED" });
    }
    const options = api.calls.map((call) => (call.op === "put" ? call.options : null));
    expect(options).toEqual([
      { ifRevision: 0 },
      { ifRevision: 0 },
      { ifRevision: 0 },
      { ifRevision: 0 },
    ]);
  });

  it("cas: DELETE with a stale If-Match gets 412 and keeps the key", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "a" });
    const headers = { "if-match": '"7"' };
    const response = await app.inject({ method: "DELETE", url: "/v1/kv/k", headers });
    expect(response.statusCode).toBe(412);
    expect(response.json()).toMatchObject({ currentRevision: 1 });
    expect((await app.inject({ method: "GET", url: "/v1/kv/k" })).statusCode).toBe(200);
  });

  it("cas: a malformed If-Match is refused with 400 naming the header (weak, list, *, text)", async () => {
    const { app, api } = setup();
    const bad = ['W/"1"', '"1", "2"', "*", "abc", '"-1"', '"1.5"', "99999999999999999"];
    for (const value of bad) {
      for (const method of ["PUT", "DELETE"] as const) {
        const headers = { "if-match": value };
        const response = await app.inject({ method, url: "/v1/kv/k", payload: "x", headers });
        expect(response.statusCode, `${method} If-Match: ${value}`).toBe(400);
        expect(json(response)).toMatchObject({ code: "ERR_INVALID_INPUT", field: "If-Match" });
        expect(response.json().error).toMatch(/quoted decimal/);
      }
    }
    expect(api.calls).toEqual([]);
  });

  it("cas: If-None-Match other than *, or with If-Match, is refused with 400", async () => {
    const { app } = setup();
    const cases = [{ "if-none-match": '"3"' }, { "if-none-match": "*", "if-match": '"1"' }];
    for (const headers of cases) {
      for (const method of ["PUT", "DELETE"] as const) {
        const response = await app.inject({ method, url: "/v1/kv/k", payload: "x", headers });
        expect(response.statusCode, `${method} ${JSON.stringify(headers)}`).toBe(400);
        expect(response.json()).toMatchObject({ field: "If-None-Match" });
      }
    }
  });

  it("idempotency: Idempotency-Key is passed through and a retry gets the first answer", async () => {
    const { app, api } = setup();
    const headers = { "idempotency-key": "order-42" };
    const first = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "a", headers });
    const retry = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "a", headers });
    expect(first.json()).toEqual({ revision: 1 });
    expect(retry.json()).toEqual({ revision: 1 });
    const del = { "idempotency-key": "del-1" };
    await app.inject({ method: "DELETE", url: "/v1/kv/k", headers: del });
    const options = api.calls.map((call) => (call.op === "get" ? null : call.options));
    expect(options).toEqual([
      { idempotencyKey: "order-42" },
      { idempotencyKey: "order-42" },
      { idempotencyKey: "del-1" },
    ]);
  });

  it("idempotency: a bad Idempotency-Key is refused with 400 (space, too long, non-ASCII)", async () => {
    const { app, api } = setup();
    for (const value of ["has space", "x".repeat(256), "clé", "tab\there"]) {
      const headers = { "idempotency-key": value };
      const response = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x", headers });
      expect(response.statusCode, value).toBe(400);
      expect(json(response)).toMatchObject({ field: "Idempotency-Key", limit: 255 });
      expect(response.json().error).toMatch(/1 to 255 visible ASCII/);
    }
    const longest = { "idempotency-key": "x".repeat(255) };
    const ok = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x", headers: longest });
    expect(ok.statusCode).toBe(200);
    expect(api.calls).toHaveLength(1);
  });
});

describe("http keys and limits", () => {
  it("keys: a key is 1 to 1024 bytes of UTF-8; longer gets 400 naming key and limit", async () => {
    const { app, api } = setup();
    const longest = "é".repeat(512);
    const ok = await app.inject({
      method: "PUT",
      url: `/v1/kv/${encodeURIComponent(longest)}`,
      payload: "x",
    });
    expect(ok.statusCode).toBe(200);
    for (const method of ["GET", "PUT", "DELETE"] as const) {
      const url = `/v1/kv/${encodeURIComponent(`${longest}x`)}`;
      const response = await app.inject({ method, url, payload: "x" });
      expect(response.statusCode).toBe(400);
      expect(json(response)).toMatchObject({
        code: "ERR_INVALID_INPUT",
        field: "key",
        limit: 1024,
      });
      expect(response.json().error).toMatch(/1025 bytes of UTF-8; the limit is 1024 bytes/);
    }
    expect(api.calls).toHaveLength(1);
  });

  it("keys: empty keys, control characters and bad percent-encoding get 400", async () => {
    const { app, api } = setup();
    const cases = [
      "/v1/kv/",
      "/v1/kv/a%00b",
      "/v1/kv/a%7Fb",
      "/v1/kv/a%C2%85b",
      "/v1/kv/%FF",
      "/v1/kv/%zz",
    ];
    for (const url of cases) {
      const response = await app.inject({ method: "PUT", url, payload: "x" });
      expect(response.statusCode, url).toBe(400);
      expect(json(response)).toMatchObject({ code: "ERR_INVALID_INPUT" });
      expect(["key", "path"]).toContain(response.json().field);
    }
    expect(api.calls).toEqual([]);
  });

  it("keys: a slash sent as is or as %2F names the same key", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/users/7/name", payload: "Ada" });
    const encoded = await app.inject({ method: "GET", url: "/v1/kv/users%2F7%2Fname" });
    expect(encoded.json()).toEqual({ key: "users/7/name", value: "Ada", revision: 1 });
    const spaced = await app.inject({ method: "PUT", url: "/v1/kv/a%20b%3Fc%23d", payload: "x" });
    expect(spaced.statusCode).toBe(200);
    const read = await app.inject({ method: "GET", url: "/v1/kv/a%20b%3Fc%23d" });
    expect(read.json().key).toBe("a b?c#d");
  });

  it("limits: a body over valueBytesMax gets 413 naming the value and the limit", async () => {
    const limits = { ...defaultKvLimits(), valueBytesMax: 16 };
    const { app, api } = setup({ limits });
    const fits = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x".repeat(16) });
    expect(fits.statusCode).toBe(200);
    const response = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x".repeat(17) });
    expect(response.statusCode).toBe(413);
    expect(json(response)).toMatchObject({ code: "ERR_TOO_LARGE", field: "value", limit: 16 });
    expect(response.json().error).toMatch(/value exceeds the limit of 16 bytes/);
    expect(api.calls).toHaveLength(1);
  });

  it("limits: the default body limit is 1 MiB (413 above it)", async () => {
    const { app } = setup();
    const mib = Buffer.alloc(1_048_576, 1);
    expect((await app.inject({ method: "PUT", url: "/v1/kv/k", payload: mib })).statusCode).toBe(
      200,
    );
    const over = Buffer.alloc(1_048_577, 1);
    const response = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: over });
    expect(response.statusCode).toBe(413);
    expect(response.json()).toMatchObject({ limit: 1_048_576 });
  });
});

describe("http errors", () => {
  const cases: [string, Error, number, string, number | null][] = [
    ["no master", new NoMasterError(2500), 503, "ERR_NO_MASTER", 3],
    ["busy", new BusyError(100), 503, "ERR_BUSY", 1],
    ["shutting down", new ShuttingDownError(), 503, "ERR_SHUTTING_DOWN", 1],
    ["indeterminate", new IndeterminateError("lost"), 503, "ERR_INDETERMINATE", 1],
    ["timeout", new TimeoutError("slow"), 503, "ERR_TIMEOUT", 1],
    ["storage failed", new StorageFailedError("disk"), 503, "ERR_STORAGE_FAILED", 1],
    ["not master, unknown URL", new NotMasterError(3), 503, "ERR_NOT_MASTER", 1],
    ["invalid input", new InvalidInputError("key", "bad"), 400, "ERR_INVALID_INPUT", null],
    ["too large", new TooLargeError("value", 10, 11), 413, "ERR_TOO_LARGE", null],
  ];
  for (const [name, error, status, code, retryAfter] of cases) {
    it(`errors: the node's ${name} error is answered ${status} ${code}`, async () => {
      const { app, api } = setup();
      api.failure = error;
      for (const method of ["GET", "PUT", "DELETE"] as const) {
        const response = await app.inject({ method, url: "/v1/kv/k", payload: "x" });
        expect(response.statusCode).toBe(status);
        expect(json(response)).toMatchObject({ code });
        expect(response.json().error).toContain(error.message);
        const header = response.headers["retry-after"];
        expect(header === undefined ? null : Number(header)).toBe(retryAfter);
      }
    });
  }

  it("errors: details of catalogued errors are in the body (field, limit, master)", async () => {
    const { app, api } = setup();
    api.failure = new TooLargeError("value", 10, 11);
    const tooLarge = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x" });
    expect(tooLarge.json()).toMatchObject({ field: "value", limit: 10 });
    api.failure = new NotMasterError(3);
    const notMaster = await app.inject({ method: "GET", url: "/v1/kv/k" });
    expect(notMaster.json()).toMatchObject({ code: "ERR_NOT_MASTER", master: 3 });
  });

  it("errors: an unexpected error is answered 500 JSON, logged, and the server keeps serving", async () => {
    const { app, api, logged } = setup();
    api.failure = new Error("secret internals");
    const response = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x" });
    expect(response.statusCode).toBe(500);
    expect(json(response)).toMatchObject({ code: "ERR_INTERNAL" });
    expect(response.body).not.toContain("secret internals");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ err: { message: "secret internals" }, method: "PUT" });
    api.failure = null;
    expect((await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "x" })).statusCode).toBe(
      200,
    );
  });

  it("errors: a status that throws is answered 500 JSON", async () => {
    const { app, api } = setup();
    api.status = () => {
      throw new Error("boom");
    };
    const response = await app.inject({ method: "GET", url: "/v1/status" });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toMatchObject({ code: "ERR_INTERNAL" });
  });

  it("deadline: a node that never answers gets 503 ERR_TIMEOUT with Retry-After (default 5 s)", async () => {
    const { app, api } = setup();
    await app.ready();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    api.hang = true;
    for (const method of ["GET", "PUT", "DELETE"] as const) {
      const pending = app.inject({ method, url: "/v1/kv/k", payload: "x" });
      await untilCalls(api, api.calls.length + 1);
      let settled = false;
      void pending.then(() => {
        settled = true;
      });
      await vi.advanceTimersByTimeAsync(4999);
      expect(settled).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      const response = await pending;
      expect(response.statusCode).toBe(503);
      expect(json(response)).toMatchObject({ code: "ERR_TIMEOUT" });
      expect(response.json().error).toMatch(/within 5000 ms.*may or may not have taken effect/);
      expect(response.headers["retry-after"]).toBe("1");
    }
  });

  it("deadline: requestTimeoutMs sets the deadline", async () => {
    const { app, api } = setup({ requestTimeoutMs: 250 });
    await app.ready();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    api.hang = true;
    const pending = app.inject({ method: "GET", url: "/v1/kv/k" });
    await untilCalls(api, 1);
    await vi.advanceTimersByTimeAsync(249);
    await vi.advanceTimersByTimeAsync(1);
    expect((await pending).statusCode).toBe(503);
  });
});

describe("http routing", () => {
  it("routes: an unknown route gets 404 JSON ERR_NO_ROUTE listing the API", async () => {
    const { app } = setup();
    // "/" is the dashboard.
    for (const url of ["/index.html", "/v2/kv/k", "/v1/kv", "/v1/statuses", "/health/leader"]) {
      const response = await app.inject({ method: "GET", url });
      expect(response.statusCode, url).toBe(404);
      expect(json(response)).toMatchObject({ code: "ERR_NO_ROUTE" });
      expect(response.json().error).toMatch(/\/v1\/kv\/\{key\}/);
    }
    // A method fastify does not route is no route on any path (as docs/api.md says).
    const trace = await app.inject({ method: "TRACE", url: "/v1/kv/k" });
    expect(trace.statusCode).toBe(404);
    expect(json(trace)).toMatchObject({ code: "ERR_NO_ROUTE" });
  });

  it("routes: a wrong method gets 405 with Allow, before the body is read", async () => {
    const { app, api } = setup();
    const cases: [string, "POST" | "PATCH" | "PUT" | "DELETE" | "OPTIONS", string][] = [
      ["/v1/kv/k", "POST", "GET, HEAD, PUT, DELETE"],
      ["/v1/kv/k", "PATCH", "GET, HEAD, PUT, DELETE"],
      ["/v1/status", "DELETE", "GET, HEAD, OPTIONS"],
      ["/health/master", "PUT", "GET, HEAD"],
      ["/metrics", "POST", "GET, HEAD"],
      ["/health", "OPTIONS", "GET, HEAD"],
    ];
    for (const [url, method, allow] of cases) {
      const payload = Buffer.alloc(2_000_000);
      const response = await app.inject({ method, url, payload });
      expect(response.statusCode, `${method} ${url}`).toBe(405);
      expect(response.headers.allow).toBe(allow);
      expect(json(response)).toMatchObject({ code: "ERR_METHOD_NOT_ALLOWED" });
    }
    expect(api.calls).toEqual([]);
  });
});

describe("http status and health", () => {
  it("status: GET /v1/status answers the contract's fields and the node's extras", async () => {
    const { app, api } = setup();
    api.members = [
      {
        id: 1,
        address: "127.0.0.1:7101",
        httpUrl: "http://127.0.0.1:8101",
        role: "master",
        connected: true,
        matchIndex: 0,
        lag: 0,
        lastContactMs: 0,
      },
    ];
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    const response = await app.inject({ method: "GET", url: "/v1/status" });
    expect(response.statusCode).toBe(200);
    expect(json(response)).toEqual({
      id: 1,
      role: "master",
      term: 1,
      master: 1,
      commitIndex: 1,
      appliedIndex: 1,
      lastIndex: 1,
      members: api.members,
    });
  });

  it("health: /health answers 200 in every role", async () => {
    const { app, api } = setup();
    for (const role of ["master", "backup", "candidate"] as const) {
      api.role = role;
      const response = await app.inject({ method: "GET", url: "/health" });
      expect(response.statusCode).toBe(200);
      expect(json(response)).toEqual({ status: "ok", id: 1, role });
    }
  });

  it("health: /health/master and /health/backup answer 200 only in that role, else 503", async () => {
    const { app, api } = setup();
    for (const role of ["master", "backup", "candidate"] as const) {
      api.role = role;
      for (const check of ["master", "backup"] as const) {
        const response = await app.inject({ method: "GET", url: `/health/${check}` });
        const body = json(response);
        if (role === check) {
          expect(response.statusCode).toBe(200);
          expect(body).toEqual({ status: "ok", id: 1, role });
        } else {
          expect(response.statusCode, `${check} check on a ${role}`).toBe(503);
          expect(body).toMatchObject({ code: "ERR_WRONG_ROLE", role });
          expect(body.error).toContain(`this node is ${role}, not ${check}`);
        }
      }
    }
  });

  it("health: a HEAD check answers like GET (HAProxy may use HEAD)", async () => {
    const { app, api } = setup();
    api.role = "backup";
    expect((await app.inject({ method: "HEAD", url: "/health/backup" })).statusCode).toBe(200);
    expect((await app.inject({ method: "HEAD", url: "/health/master" })).statusCode).toBe(503);
  });

  it("health: a node that has stopped (a fatal error) fails every check, liveness included", async () => {
    const { app, api } = setup();
    api.stopped = "the write-ahead log could not be synced";
    for (const url of ["/health", "/health/master", "/health/backup"]) {
      const response = await app.inject({ method: "GET", url });
      expect(response.statusCode, url).toBe(503);
      expect(json(response)).toEqual({
        error: "node 1 has stopped: the write-ahead log could not be synced",
        code: "ERR_SHUTTING_DOWN",
        id: 1,
        role: "unknown",
      });
    }
  });
});

describe("http metrics", () => {
  it("metrics: GET /metrics answers the Prometheus text format with process metrics", async () => {
    const { app } = setup();
    await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    await app.inject({ method: "GET", url: "/v1/kv/missing" });
    await app.inject({ method: "HEAD", url: "/v1/kv/k" });
    const response = await app.inject({ method: "GET", url: "/metrics" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(response.body).toMatch(/^# HELP process_cpu_user_seconds_total/m);
    expect(response.body).toContain(
      'baton_http_responses_total{method="PUT",route="/v1/kv/*",status="200"} 1',
    );
    expect(response.body).toContain(
      'baton_http_responses_total{method="GET",route="/v1/kv/*",status="404"} 1',
    );
    // A HEAD goes through the GET route, and is counted as what it is.
    expect(response.body).toContain(
      'baton_http_responses_total{method="HEAD",route="/v1/kv/*",status="200"} 1',
    );
    expect(response.body).not.toContain(
      'baton_http_responses_total{method="GET",route="/v1/kv/*",status="200"}',
    );
  });

  it("metrics: GET /metrics serves the registry given in the options", async () => {
    const registry = new Registry();
    registry.registerMetric(
      new (await import("prom-client")).Gauge({ name: "baton_term", help: "term", registers: [] }),
    );
    const { app, server } = setup({ metrics: registry });
    expect(server.registry).toBe(registry);
    const response = await app.inject({ method: "GET", url: "/metrics" });
    expect(response.body).toMatch(/^# TYPE baton_term gauge/m);
    expect(response.body).not.toContain("process_cpu_user_seconds_total");
  });
});

describe("http server", () => {
  it("server: listen answers over real TCP and close releases the port", async () => {
    const { server } = setup();
    const address = await server.listen("127.0.0.1", 0);
    expect(address.url).toBe(`http://127.0.0.1:${address.port}`);
    expect(server.address()).toEqual(address);
    const response = await fetch(`${address.url}/health`);
    expect(response.status).toBe(200);
    await server.close();
    expect(server.address()).toBeNull();
  });

  it("server: close ends a kept-alive connection as soon as its request is answered", async () => {
    const { api, server } = setup({ requestTimeoutMs: 200 });
    const address = await server.listen("127.0.0.1", 0);
    const agent = new Agent({ keepAlive: true });
    try {
      api.hang = true;
      const answered = new Promise<number>((resolve, reject) => {
        httpGet(`${address.url}/v1/kv/k`, { agent }, (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode ?? 0));
        }).on("error", reject);
      });
      await untilCalls(api, 1);
      // The request is in flight when the server starts closing; its answer (503 at the
      // deadline) leaves the connection idle and kept alive by the client, which must not
      // hold the close until the keep-alive timeout (10 s).
      const startedAt = performance.now();
      await server.close();
      const closeMs = performance.now() - startedAt;
      expect(await answered).toBe(503);
      expect(closeMs).toBeLessThan(2000);
    } finally {
      agent.destroy();
    }
  });

  it("server: the dashboard hook can add its routes", async () => {
    const { app } = setup({
      dashboard: (fastify) => {
        fastify.get("/dashboard", (_request, reply) => reply.type("text/html").send("<html>"));
      },
    });
    const response = await app.inject({ method: "GET", url: "/dashboard" });
    expect(response.body).toBe("<html>");
  });
});
