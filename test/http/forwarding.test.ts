import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import {
  createHttpServer,
  type HttpServer,
  type HttpServerOptions,
} from "../../src/http/server.js";

const servers: HttpServer[] = [];
const rawServers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  for (const server of rawServers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function startNode(id: number, options: Partial<HttpServerOptions> = {}) {
  const api = new FakeKvNodeApi(id);
  const logger = pino({ level: "silent" });
  const server = createHttpServer({ api, logger, ...options });
  servers.push(server);
  const { url } = await server.listen("127.0.0.1", 0);
  return { api, server, url };
}

/** A master on node 1 and a backup on node 2 that knows the master's URL. */
async function startPair(backupOptions: Partial<HttpServerOptions> = {}) {
  const master = await startNode(1);
  const backup = await startNode(2, backupOptions);
  backup.api.becomeBackup(1, master.url);
  return { master, backup };
}

/** A plain HTTP server that records requests and answers as `answer` says, or never. */
async function startRecorder(answer: "hang" | "reset" | { status: number; body: string }) {
  const seen: {
    method: string;
    url: string;
    headers: Record<string, unknown>;
    body: string;
    remote: string | undefined;
  }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      const remote = req.socket.remoteAddress;
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body,
        remote,
      });
      if (answer === "hang") return;
      if (answer === "reset") {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, { "content-type": "application/json" }).end(answer.body);
    });
  });
  rawServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return { seen, url: `http://127.0.0.1:${port}` };
}

describe("http forwarding", () => {
  it("forward: a forward to a master that stopped answering moves to the new master (idempotent writes and reads)", async () => {
    const lost = await startRecorder("hang");
    const next = await startNode(3);
    const backup = await startNode(2);
    backup.api.becomeBackup(1, lost.url);
    setTimeout(() => backup.api.becomeBackup(3, next.url), 100);
    const started = performance.now();
    const response = await request(`${backup.url}/v1/kv/color`, {
      method: "PUT",
      body: "green",
      headers: { "idempotency-key": "op-7" },
    });
    expect(response.statusCode).toBe(200);
    expect(await response.body.json()).toEqual({ revision: 1 });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(lost.seen).toHaveLength(1);
    expect(next.api.calls.map((c) => c.op)).toEqual(["put"]);
  });

  it("forward: a keyed write left at a replaced master is never answered 'not applied' (no new master appears)", async () => {
    const lost = await startRecorder("hang");
    const backup = await startNode(2, { masterWaitMs: 200 });
    backup.api.becomeBackup(1, lost.url);
    setTimeout(() => backup.api.becomeBackup(null, null), 100);
    const response = await request(`${backup.url}/v1/kv/color`, {
      method: "PUT",
      body: "blue",
      headers: { "idempotency-key": "op-9" },
    });
    // The write reached the old master, which may still apply it: ERR_NO_MASTER or
    // ERR_NOT_MASTER would tell the client it was not applied (found by the fault
    // campaign, seed 301).
    expect(response.statusCode).toBe(503);
    expect(((await response.body.json()) as { code: string }).code).toBe("ERR_INDETERMINATE");
    expect(lost.seen).toHaveLength(1);
  });

  it("forward: a refusal by the next master of a write left at a replaced one is relayed as indeterminate", async () => {
    const lost = await startRecorder("hang");
    const next = await startRecorder({
      status: 503,
      body: '{"error":"not the master","code":"ERR_NOT_MASTER","master":null}',
    });
    const backup = await startNode(2);
    backup.api.becomeBackup(1, lost.url);
    setTimeout(() => backup.api.becomeBackup(3, next.url), 100);
    const response = await request(`${backup.url}/v1/kv/color`, {
      method: "PUT",
      body: "blue",
      headers: { "idempotency-key": "op-10" },
    });
    expect(response.statusCode).toBe(503);
    expect(((await response.body.json()) as { code: string }).code).toBe("ERR_INDETERMINATE");
    expect([lost.seen.length, next.seen.length]).toEqual([1, 1]);
  });

  it("forward: a write without an idempotency key left at a replaced master is indeterminate", async () => {
    const lost = await startRecorder("hang");
    const backup = await startNode(2);
    backup.api.becomeBackup(1, lost.url);
    setTimeout(() => backup.api.becomeBackup(null, null), 100);
    const started = performance.now();
    const response = await request(`${backup.url}/v1/kv/color`, { method: "PUT", body: "red" });
    expect(response.statusCode).toBe(503);
    expect(((await response.body.json()) as { code: string }).code).toBe("ERR_INDETERMINATE");
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("forward: leaves from the node's own address, so partitions of its address cut it", async () => {
    const master = await startRecorder({ status: 200, body: '{"revision":1}' });
    const backup = await startNode(2, { forwardFrom: "127.0.0.2" });
    backup.api.becomeBackup(1, master.url);
    const response = await request(`${backup.url}/v1/kv/color`, { method: "PUT", body: "red" });
    expect(response.statusCode).toBe(200);
    await response.body.dump();
    expect(master.seen.map((s) => s.remote)).toEqual(["127.0.0.2"]);
  });

  it("forward: a backup forwards a PUT to the master and relays its answer and ETag", async () => {
    const { master, backup } = await startPair();
    const response = await request(`${backup.url}/v1/kv/color`, {
      method: "PUT",
      body: "blue",
      headers: { "if-match": '"0"', "idempotency-key": "op-1" },
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers.etag).toBe('"1"');
    expect(response.headers["content-type"]).toMatch(/^application\/json/);
    expect(await response.body.json()).toEqual({ revision: 1 });
    expect(master.api.calls).toEqual([
      {
        op: "put",
        key: "color",
        value: new Uint8Array(Buffer.from("blue")),
        options: { ifRevision: 0, idempotencyKey: "op-1" },
      },
    ]);
    expect(backup.api.calls.map((call) => call.op)).toEqual(["put"]);
  });

  it("forward: GET, DELETE and HEAD reach the master; the answers are relayed as is", async () => {
    const { master, backup } = await startPair();
    await master.api.put("a/b", Buffer.from([0xff, 0x01]), {});
    const raw = await request(`${backup.url}/v1/kv/a%2Fb`, {
      headers: { accept: "application/octet-stream" },
    });
    expect(raw.statusCode).toBe(200);
    expect(raw.headers.etag).toBe('"1"');
    expect(raw.headers["content-type"]).toBe("application/octet-stream");
    expect(Buffer.from(await raw.body.arrayBuffer())).toEqual(Buffer.from([0xff, 0x01]));
    const head = await request(`${backup.url}/v1/kv/a/b`, { method: "HEAD" });
    expect(head.statusCode).toBe(200);
    expect(head.headers.etag).toBe('"1"');
    expect(Number(head.headers["content-length"])).toBeGreaterThan(0);
    await head.body.dump();
    const stale = await request(`${backup.url}/v1/kv/a/b`, {
      method: "DELETE",
      headers: { "if-match": '"9"' },
    });
    expect(stale.statusCode).toBe(412);
    expect(await stale.body.json()).toMatchObject({
      code: "ERR_PRECONDITION_FAILED",
      currentRevision: 1,
    });
    const deleted = await request(`${backup.url}/v1/kv/a/b`, { method: "DELETE" });
    expect(await deleted.body.json()).toEqual({ revision: 2 });
    const missing = await request(`${backup.url}/v1/kv/a/b`);
    expect(missing.statusCode).toBe(404);
    expect(await missing.body.json()).toMatchObject({ code: "ERR_NOT_FOUND" });
  });

  it("forward: the forward carries X-Baton-Forwarded-By, the query and the request headers", async () => {
    const recorder = await startRecorder({ status: 201, body: '{"odd":true}' });
    const backup = await startNode(2);
    backup.api.becomeBackup(1, recorder.url);
    const response = await request(`${backup.url}/v1/kv/k?stale=false`, {
      method: "PUT",
      body: "v",
      headers: {
        "content-type": "text/plain",
        "if-none-match": "*",
        "idempotency-key": "id-9",
        cookie: "not-forwarded",
      },
    });
    expect(response.statusCode).toBe(201);
    expect(await response.body.json()).toEqual({ odd: true });
    expect(recorder.seen).toHaveLength(1);
    const [seen] = recorder.seen;
    expect(seen).toMatchObject({ method: "PUT", url: "/v1/kv/k?stale=false", body: "v" });
    expect(seen?.headers).toMatchObject({
      "x-baton-forwarded-by": "2",
      "content-type": "text/plain",
      "if-none-match": "*",
      "idempotency-key": "id-9",
    });
    expect(seen?.headers.cookie).toBeUndefined();
  });

  it("forward: a request already forwarded is not forwarded again (503 ERR_NO_MASTER)", async () => {
    const { master, backup } = await startPair();
    const response = await request(`${backup.url}/v1/kv/k`, {
      method: "PUT",
      body: "v",
      headers: { "x-baton-forwarded-by": "3" },
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    const body = (await response.body.json()) as { code: string; error: string };
    expect(body.code).toBe("ERR_NO_MASTER");
    expect(body.error).toMatch(/node 3 forwarded this request here/);
    expect(master.api.calls).toEqual([]);
  });

  it("forward: two backups that each name the other as master answer 503, not a loop", async () => {
    const first = await startNode(1);
    const second = await startNode(2);
    first.api.becomeBackup(2, second.url);
    second.api.becomeBackup(1, first.url);
    const response = await request(`${first.url}/v1/kv/k`);
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBeDefined();
    expect(await response.body.json()).toMatchObject({ code: "ERR_NO_MASTER" });
    expect(first.api.calls).toHaveLength(1);
    expect(second.api.calls).toHaveLength(1);
  });

  it("forward: an unreachable master gets 503 ERR_NO_MASTER with Retry-After", async () => {
    const gone = await startNode(1);
    const goneUrl = gone.url;
    await gone.server.close();
    const backup = await startNode(2);
    backup.api.becomeBackup(1, goneUrl);
    for (const method of ["GET", "PUT", "DELETE"] as const) {
      const response = await request(`${backup.url}/v1/kv/k`, {
        method,
        ...(method === "PUT" ? { body: "v" } : {}),
      });
      expect(response.statusCode).toBe(503);
      expect(Number(response.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      const body = (await response.body.json()) as { code: string; error: string };
      expect(body.code).toBe("ERR_NO_MASTER");
      expect(body.error).toContain(`the master at ${goneUrl} could not be reached`);
    }
  });

  it("forward: a write whose connection to the master breaks gets 503 ERR_INDETERMINATE", async () => {
    const recorder = await startRecorder("reset");
    const backup = await startNode(2);
    backup.api.becomeBackup(1, recorder.url);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    const body = (await response.body.json()) as { code: string; error: string };
    expect(body.code).toBe("ERR_INDETERMINATE");
    expect(body.error).toMatch(/failed during the write.*same Idempotency-Key/);
    const read = await request(`${backup.url}/v1/kv/k`);
    expect(read.statusCode).toBe(503);
    expect(await read.body.json()).toMatchObject({ code: "ERR_NO_MASTER" });
  });

  it("timing: forward to a master that does not answer in forwardTimeoutMs gets 503 ERR_TIMEOUT", async () => {
    const recorder = await startRecorder("hang");
    const backup = await startNode(2, { forwardTimeoutMs: 100 });
    backup.api.becomeBackup(1, recorder.url);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    const body = (await response.body.json()) as { code: string; error: string };
    expect(body.code).toBe("ERR_TIMEOUT");
    expect(body.error).toMatch(/did not answer the forwarded request within 100 ms/);
    expect(recorder.seen).toHaveLength(1);
  });

  it("timing: forward is cut short by what is left of the request deadline", async () => {
    const recorder = await startRecorder("hang");
    const backup = await startNode(2, { requestTimeoutMs: 150, forwardTimeoutMs: 60_000 });
    backup.api.becomeBackup(1, recorder.url);
    const started = performance.now();
    const response = await request(`${backup.url}/v1/kv/k`);
    expect(response.statusCode).toBe(503);
    expect(await response.body.json()).toMatchObject({ code: "ERR_TIMEOUT" });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("forward: a backup that knows no master answers 503 ERR_NOT_MASTER with Retry-After", async () => {
    const backup = await startNode(2);
    backup.api.becomeBackup(null, null);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "DELETE" });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    expect(await response.body.json()).toMatchObject({ code: "ERR_NOT_MASTER", master: null });
  });

  it("timing: during an election a backup holds a write, then forwards it to the new master", async () => {
    const master = await startNode(1);
    const backup = await startNode(2);
    backup.api.becomeBackup(null, null);
    const started = performance.now();
    setTimeout(() => backup.api.becomeBackup(1, master.url), 100);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" });
    expect(response.statusCode).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
    expect(master.api.calls.map((c) => c.op)).toEqual(["put"]);
  });

  it("timing: a backup whose master refuses connections forwards to the next master once known", async () => {
    const gone = await startNode(1);
    const goneUrl = gone.url;
    await gone.server.close();
    const next = await startNode(3);
    const backup = await startNode(2);
    backup.api.becomeBackup(1, goneUrl);
    setTimeout(() => backup.api.becomeBackup(3, next.url), 100);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" });
    expect(response.statusCode).toBe(200);
    expect(next.api.calls.map((c) => c.op)).toEqual(["put"]);
  });

  it("timing: a backup elected while it holds a request serves the request itself", async () => {
    const backup = await startNode(2);
    backup.api.becomeBackup(null, null);
    setTimeout(() => {
      backup.api.role = "master";
    }, 100);
    const response = await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" });
    expect(response.statusCode).toBe(200);
    expect(backup.api.calls.map((c) => c.op)).toEqual(["put", "put"]);
  });

  it("forward: status, health and stale reads are answered by the backup itself", async () => {
    const { master, backup } = await startPair();
    const status = await request(`${backup.url}/v1/status`);
    expect(await status.body.json()).toMatchObject({ id: 2, role: "backup", master: 1 });
    const health = await request(`${backup.url}/health/backup`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const stale = await request(`${backup.url}/v1/kv/k?stale=true`);
    expect(stale.statusCode).toBe(404);
    await stale.body.dump();
    expect(master.api.calls).toEqual([]);
  });

  it("forward: forwards are counted by outcome in the metrics", async () => {
    const { backup } = await startPair();
    await (await request(`${backup.url}/v1/kv/k`, { method: "PUT", body: "v" })).body.dump();
    const loop = { "x-baton-forwarded-by": "1" };
    await (await request(`${backup.url}/v1/kv/k`, { headers: loop })).body.dump();
    const metrics = await (await request(`${backup.url}/metrics`)).body.text();
    expect(metrics).toContain('baton_http_forwards_total{outcome="relayed"} 1');
    expect(metrics).toContain('baton_http_forwards_total{outcome="loop"} 1');
  });
});
