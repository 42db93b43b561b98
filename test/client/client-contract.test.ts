/**
 * The client against the real HTTP layer (src/http/server.ts) over in-memory nodes
 * (harness/doubles/fake-node-api.ts), so that a change on either side of the contract breaks
 * a test here: following a backup's master hint, raw-byte values, compare-and-set, the
 * error shapes of
 * 400, 404 and 412, the status document, and following a new master.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { type BatonClient, createClient } from "../../src/client/index.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { defaultKvLimits } from "../../src/kv/index.js";
import { NotMasterError, TableFullError } from "../../src/shared/errors.js";

const servers: HttpServer[] = [];
const clients: BatonClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

interface Node {
  readonly api: FakeKvNodeApi;
  readonly server: HttpServer;
  readonly url: string;
}

/** Three nodes: 1 is master, 2 and 3 are backups that name it as the master. */
async function startCluster(): Promise<Node[]> {
  const limits = { ...defaultKvLimits(), valueBytesMax: 64 };
  const nodes: Node[] = [];
  for (const id of [1, 2, 3]) {
    const api = new FakeKvNodeApi(id);
    const server = createHttpServer({
      api,
      logger: pino({ level: "silent" }),
      limits,
    });
    servers.push(server);
    const { url } = await server.listen("127.0.0.1", 0);
    nodes.push({ api, server, url });
  }
  const members = nodes.map((n, i) => ({
    id: i + 1,
    address: `127.0.0.1:${7101 + i}`,
    httpUrl: n.url,
    role: i === 0 ? ("master" as const) : ("backup" as const),
    connected: true,
    matchIndex: 0,
    lag: 0,
    lastContactMs: 1,
  }));
  for (const node of nodes) node.api.members = members;
  nodes[1]?.api.becomeBackup(1, nodes[0]!.url);
  nodes[2]?.api.becomeBackup(1, nodes[0]!.url);
  return nodes;
}

function client(nodes: readonly Node[], order = [1, 2, 3]): BatonClient {
  const endpoints = order.map((id) => nodes[id - 1]!.url);
  const c = createClient({
    endpoints,
    retryDelayMsMin: 1,
    retryDelayMsMax: 10,
    retryAfterMsMax: 20,
  });
  clients.push(c);
  return c;
}

describe("client contract: HTTP layer", () => {
  it("timing: an attempt at a hung master is abandoned once the others name a newer master", async () => {
    const nodes = await startCluster();
    const c = createClient({ endpoints: nodes.map((n) => n.url), attemptTimeoutMs: 5000 });
    clients.push(c);
    await c.put("k", "v");
    // Node 1 hangs (like a SIGSTOPped process: connections open, no answers); 200 ms
    // later node 2 is elected in term 2.
    nodes[0]!.api.hang = true;
    setTimeout(() => {
      nodes[1]!.api.role = "master";
      nodes[1]!.api.term = 2;
      nodes[2]!.api.becomeBackup(2, nodes[1]!.url);
      nodes[2]!.api.term = 2;
    }, 200);
    const started = performance.now();
    await c.put("k", "w");
    const elapsedMs = performance.now() - started;
    // Long before the 5 s attempt timeout: the next look-up after the election finds it
    // (about 300 ms on an idle machine; the bound leaves room for a loaded one).
    expect(elapsedMs).toBeLessThan(2500);
    expect(nodes[1]!.api.calls.filter((call) => call.op === "put")).toHaveLength(1);
  });

  it("client contract: writes through a backup reach the master, then go to it directly", async () => {
    const nodes = await startCluster();
    const c = client(nodes, [2, 3, 1]);
    const { revision } = await c.put("k", "v");
    expect(revision).toBe(1);
    await c.put("k", "w");
    expect(nodes[0]?.api.calls.filter((call) => call.op === "put")).toHaveLength(2);
    // Node 2 was asked for its status only; the writes went to the master it named.
    expect(nodes[1]?.api.calls).toEqual([]);
    const ifKeys = nodes[0]?.api.calls.map((call) =>
      call.op === "put" ? call.options.idempotencyKey : null,
    );
    expect(new Set(ifKeys).size).toBe(2);
  });

  it("client contract: binary values, odd keys, cas, delete and 404 (ETag and currentRevision)", async () => {
    const nodes = await startCluster();
    const c = client(nodes);
    const key = "dir/sub key?%é";
    const bytes = Uint8Array.from([0, 0xff, 0xc3, 0x28, 10]);
    expect(await c.cas(key, 0, bytes)).toEqual({ ok: true, revision: 1 });
    const got = await c.get(key);
    expect([...(got?.value ?? [])]).toEqual([...bytes]);
    expect(got?.revision).toBe(1);
    expect(await c.cas(key, 0, "x")).toEqual({ ok: false, currentRevision: 1 });
    await expect(c.put(key, "x", { ifRevision: 5 })).rejects.toMatchObject({
      code: "ERR_PRECONDITION_FAILED",
      currentRevision: 1,
    });
    expect(await c.delete(key)).toEqual({ revision: 2 });
    expect(await c.get(key)).toBeNull();
    expect(await c.delete(key)).toBeNull();
    for (const dots of [".", ".."]) {
      await c.put(dots, dots);
      expect((await c.get(dots))?.text()).toBe(dots);
    }
  });

  it("client contract: 400 and 413 are thrown at once with the node's field", async () => {
    const nodes = await startCluster();
    const c = client(nodes);
    await expect(c.put("x".repeat(2000), "v")).rejects.toMatchObject({
      code: "ERR_INVALID_INPUT",
      field: "key",
    });
    await expect(c.put("big", "v".repeat(65))).rejects.toMatchObject({ code: "ERR_TOO_LARGE" });
    expect(nodes[0]?.api.calls).toEqual([]);
  });

  it("client contract: status parses the node's document, and the client learns the master from it", async () => {
    const nodes = await startCluster();
    const c = client(nodes, [3, 1, 2]);
    const status = await c.status(nodes[2]!.url);
    expect(status).toMatchObject({ id: 3, role: "backup", master: 1 });
    expect(status.members.map((m) => m.httpUrl)).toEqual(nodes.map((n) => n.url));
    await c.put("k", "v");
    expect((await c.get("k", { stale: true }))?.text()).toBe("v");
    expect(nodes[0]?.api.calls.map((call) => call.op)).toEqual(["put", "get"]);
    expect(nodes[2]?.api.calls).toEqual([]);
  });

  it("client contract: follows a new master after the old one stops (no master for a while)", async () => {
    const nodes = await startCluster();
    const c = client(nodes);
    await c.put("k", "1");
    await nodes[0]?.server.close();
    // An election: both backups know no master and answer 503 until node 2 wins.
    nodes[1]?.api.becomeBackup(null, null);
    nodes[2]?.api.becomeBackup(null, null);
    setTimeout(() => {
      nodes[1]!.api.role = "master";
      nodes[1]!.api.term = 2;
      nodes[2]?.api.becomeBackup(2, nodes[1]!.url);
      nodes[2]!.api.term = 2;
    }, 100);
    const { revision } = await c.put("k", "2");
    expect(revision).toBe(1); // node 2's own counter: the fake does not replicate
    expect((await c.get("k"))?.text()).toBe("2");
    const refusedPuts = nodes[1]?.api.calls.filter((call) => call.op === "put") ?? [];
    const keys = refusedPuts.map((call) => (call.op === "put" ? call.options.idempotencyKey : ""));
    expect(new Set(keys).size).toBe(1); // every attempt carried the same key
  });

  it("client contract: a node that keeps refusing (NotMasterError, no master) ends in ERR_NO_MASTER", async () => {
    const nodes = await startCluster();
    for (const node of nodes) node.api.failure = new NotMasterError(null);
    const c = createClient({
      endpoints: nodes.map((n) => n.url),
      deadlineMs: 300,
      retryAfterMsMax: 20,
    });
    clients.push(c);
    const error = await c.put("k", "v").catch((e: unknown) => e as Error);
    expect(error).toMatchObject({ code: "ERR_NO_MASTER" });
    // Within the deadline, or just before it when the next attempt would not fit.
    expect((error as Error).message).toMatch(
      /no master available (within 300 ms|in \d+ ms, giving up before the 300 ms deadline)/,
    );
  });

  it("client contract: a master that keeps answering ERR_TABLE_FULL ends in ERR_TABLE_FULL, naming the table", async () => {
    const nodes = await startCluster();
    for (const node of nodes) node.api.failure = new TableFullError("idempotency", 10);
    const c = createClient({
      endpoints: nodes.map((n) => n.url),
      deadlineMs: 300,
      retryAfterMsMax: 20,
    });
    clients.push(c);
    const error = await c.put("k", "v").catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(TableFullError);
    expect(error).toMatchObject({ code: "ERR_TABLE_FULL", table: "idempotency" });
    expect(error).toMatchObject({ details: { anyNodeAnswered: true, mayHaveApplied: false } });
  });
});
