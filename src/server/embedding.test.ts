/**
 * The embedding API as a program that brings its own state machine sees it: one error
 * path (promises that reject, never a synchronous throw), role events, the health checks
 * without Baton's HTTP server, and a proposal made on a backup applied exactly once.
 * In-process, with the in-memory transport and storage and short real timers.
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { fastNodeConfig } from "../../harness/memory-node.js";
import { makeTempDir, removeTempDirs } from "../../test/storage/helpers.js";
import type { NodeId } from "../protocol/messages.js";
import { InvalidInputError, ShuttingDownError, TooLargeError } from "../shared/errors.js";
import type { StateMachine } from "../shared/state-machine.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { MemoryStorage, MemoryVolume } from "../storage/memory-storage.js";
import { MemoryNetwork } from "../transport/memory-transport.js";
import { healthHandler } from "./health-handler.js";
import { BatonNode, COMMAND_BYTES_MAX, type RoleEvent } from "./node.js";

const logger = pino({ level: "silent" });
const ids: NodeId[] = [1, 2, 3];
let running: BatonNode[] = [];
let servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await Promise.all(running.map((n) => n.stop()));
  running = [];
  servers = [];
  await removeTempDirs();
});

/** An application's own state machine: a counter that also counts its applies. */
class Counter implements StateMachine<number> {
  value = 0;
  applies = 0;
  apply(command: Uint8Array): number {
    // A program's bug: a command its apply cannot handle.
    if (command[0] === 255) throw new SyntaxError("the counter cannot add 255");
    this.applies++;
    this.value += command[0] ?? 0;
    return this.value;
  }
  async *snapshot(): AsyncIterable<Uint8Array> {
    yield new TextEncoder().encode(`${this.value},${this.applies}`);
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    let text = "";
    for await (const chunk of chunks) text += new TextDecoder().decode(chunk);
    const [value, applies] = text.split(",").map(Number);
    this.value = value ?? 0;
    this.applies = applies ?? 0;
  }
}

interface Embedded {
  readonly node: BatonNode;
  readonly counter: Counter;
  readonly roles: RoleEvent[];
}

/** Node `id` of the members `members` on `network`, with the test timing, in memory. */
async function startMember(
  network: MemoryNetwork,
  id: NodeId,
  members: readonly NodeId[],
): Promise<Embedded> {
  const config = fastNodeConfig(id, members);
  const counter = new Counter();
  const node = await BatonNode.start({
    config,
    opened: await MemoryStorage.open(new MemoryVolume()),
    transport: network.createTransport(id, members),
    stateMachine: counter,
    logger,
  });
  const roles: RoleEvent[] = [];
  node.on("role", (event) => roles.push(event));
  running.push(node);
  return { node, counter, roles };
}

async function startCluster(network = new MemoryNetwork()): Promise<Embedded[]> {
  return Promise.all(ids.map((id) => startMember(network, id, ids)));
}

async function until<T>(what: string, probe: () => T | null | undefined | false): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The master once every node agrees on it. */
async function agreedMaster(nodes: readonly Embedded[]): Promise<Embedded> {
  return until("an agreed master", () => {
    const master = nodes.find((n) => n.node.role === "master");
    if (master === undefined) return null;
    const agreed = nodes.every((n) => n.node.masterId === master.node.id);
    return agreed ? master : null;
  });
}

/** A counter whose snapshot takes `ms` (a large state written a chunk at a time). */
class SlowSnapshotCounter extends Counter {
  constructor(private readonly ms: number) {
    super();
  }
  override async *snapshot(): AsyncIterable<Uint8Array> {
    await new Promise((resolve) => setTimeout(resolve, this.ms));
    yield* super.snapshot();
  }
}

/** One node of its own on a data directory (a cluster of one elects itself). */
async function startOnDisk(dir: string, stateMachine: Counter): Promise<BatonNode> {
  const config = fastNodeConfig(1, [1]);
  const node = await BatonNode.start({
    config,
    opened: await DiskStorage.open(dir),
    transport: new MemoryNetwork().createTransport(1, [1]),
    stateMachine,
    logger,
  });
  running.push(node);
  return node;
}

describe("embedding", () => {
  it("timing: embedding: stop() waits for a snapshot being written, and every concurrent stop() for the whole stop", async () => {
    const dir = await makeTempDir("baton-embed-stop-");
    const node = await startOnDisk(dir, new SlowSnapshotCounter(300));
    await until("master", () => node.role === "master");
    await node.propose(Uint8Array.of(1));
    const fatal: Error[] = [];
    node.on("fatal", (error) => fatal.push(error));
    // A backup of the store starts a snapshot, which takes 300 ms to write.
    const backup = node.backupSnapshot().then(
      () => "written",
      (error: Error) => error.message,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const first = node.stop();
    await node.stop();
    // The second stop resolved only once the directory was released: it opens again.
    const reopened = await DiskStorage.open(dir);
    await reopened.storage.close();
    await first;
    // The snapshot was finished and stored; its reader is refused, the node having stopped.
    expect(await backup).toBe("the node is shutting down");
    expect(reopened.snapshot.index).toBeGreaterThan(0);
    expect(fatal).toEqual([]);
  });

  it("timing: embedding: propose, readBarrier, switchover and changeMembers on a stopped node reject, never throw", async () => {
    const nodes = await startCluster();
    const stopped = nodes[0]!.node;
    await stopped.stop();
    const calls = [
      () => stopped.propose(Uint8Array.of(1)),
      () => stopped.readBarrier(),
      () => stopped.switchover(null),
      () => stopped.changeMembers({ type: "remove", id: 2 }),
    ];
    for (const call of calls) {
      let promise: Promise<unknown> | null = null;
      expect(() => {
        promise = call();
      }).not.toThrow();
      await expect(promise).rejects.toBeInstanceOf(ShuttingDownError);
    }
  });

  it("timing: embedding: writes pending on a master that stops are in doubt (ERR_INDETERMINATE), never 'shutting down', and the new master applies them once", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const backup = nodes.find((n) => n !== master)!;
    const outcomes = Array.from({ length: 50 }, () =>
      master.node.propose(Uint8Array.of(1)).then(
        () => "ok",
        (error: { code?: string }) => error.code,
      ),
    );
    // And forwarded ones, in flight through a backup to the master.
    const forwarded = Array.from({ length: 20 }, () =>
      backup.node.propose(Uint8Array.of(1)).then(
        () => "ok",
        (error: { code?: string }) => error.code,
      ),
    );
    await new Promise((resolve) => setImmediate(resolve));
    await master.node.stop();
    const ended = await Promise.all(outcomes);
    expect(ended.filter((code) => code !== "ok" && code !== "ERR_INDETERMINATE")).toEqual([]);
    const others = nodes.filter((n) => n !== master);
    await agreedMaster(others);
    const settled = await Promise.all(forwarded);
    // Told definitely not applied: no master reached in time, or refused before sending.
    const definite = settled.filter((code) => code !== "ok" && code !== "ERR_INDETERMINATE");
    expect(definite.every((code) => code === "ERR_NO_MASTER")).toBe(true);
    // Every write is applied once at most, and every one answered ok is applied: the
    // survivors agree on a value between the ok count and the count not refused.
    const ok = [...ended, ...settled].filter((code) => code === "ok").length;
    const barrier = others[0]!;
    await barrier.node.readBarrier();
    await until("the survivors to agree", () =>
      others.every((n) => n.counter.value === barrier.counter.value) ? true : null,
    );
    expect(barrier.counter.value).toBeGreaterThanOrEqual(ok);
    expect(barrier.counter.value).toBeLessThanOrEqual(70 - definite.length);
  });

  it("timing: embedding: waitForMaster resolves on every node with the master elected, times out without one, and rejects once stopped", async () => {
    const nodes = await startCluster();
    const masters = await Promise.all(nodes.map((n) => n.node.waitForMaster()));
    expect(new Set(masters).size).toBe(1);
    expect(nodes.find((n) => n.node.id === masters[0])!.node.role).toBe("master");
    // A member alone, its peers never started: no master, so the wait ends in a timeout.
    const { node: alone } = await startMember(new MemoryNetwork(), 1, ids);
    await expect(alone.waitForMaster({ timeoutMs: 300 })).rejects.toMatchObject({
      code: "ERR_TIMEOUT",
      message: "no master was known within 300 ms",
    });
    const waiting = alone.waitForMaster({ timeoutMs: 5000 });
    await alone.stop();
    await expect(waiting).rejects.toBeInstanceOf(ShuttingDownError);
    await expect(alone.waitForMaster()).rejects.toBeInstanceOf(ShuttingDownError);
  });

  it("timing: embedding: a one-member cluster takes a write proposed before its first election, with no spurious ERR_INDETERMINATE", async () => {
    for (let round = 0; round < 5; round++) {
      const { node, counter } = await startMember(new MemoryNetwork(), 1, [1]);
      // The write waits for the election (a forward held for the first master): this node.
      await expect(node.propose(Uint8Array.of(3))).resolves.toBe(3);
      expect(counter.value).toBe(3);
      await node.stop();
    }
  });

  it("timing: embedding: a command over COMMAND_BYTES_MAX is refused on master and backup, and writes go on", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const backup = nodes.find((n) => n !== master)!;
    const huge = new Uint8Array(COMMAND_BYTES_MAX + 1);
    for (const via of [master, backup]) {
      const refused = via.node.propose(huge);
      await expect(refused).rejects.toBeInstanceOf(TooLargeError);
      await expect(refused).rejects.toMatchObject({
        code: "ERR_TOO_LARGE",
        message: `command exceeds the limit of ${COMMAND_BYTES_MAX} bytes (got ${COMMAND_BYTES_MAX + 1})`,
      });
    }
    expect(await master.node.propose(Uint8Array.of(1))).toBe(1);
    expect(master.counter.applies).toBe(1);
  });

  it("timing: embedding: a command that is not a Uint8Array (from JavaScript) is refused naming it, on master and backup, and the links stay up", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const backup = nodes.find((n) => n !== master)!;
    for (const via of [master, backup]) {
      const propose = via.node.propose as (command: unknown) => Promise<unknown>;
      for (const bad of ["text", null, undefined, new ArrayBuffer(4), [1, 2]]) {
        const refused = propose.call(via.node, bad);
        await expect(refused).rejects.toBeInstanceOf(InvalidInputError);
        await expect(refused).rejects.toMatchObject({ field: "command" });
      }
    }
    // Before, a string forwarded by the backup broke its link to the master.
    expect(await backup.node.propose(Uint8Array.of(1))).toBe(1);
    expect(backup.node.status().members.every((m) => m.connected)).toBe(true);
  });

  it("timing: embedding: an apply that throws stops every node with a message that says so, and its proposal fails at once", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const fatal = nodes.map(
      (n) => new Promise<Error>((resolve) => n.node.once("fatal", (error) => resolve(error))),
    );
    const started = performance.now();
    const proposal = master.node.propose(Uint8Array.of(255));
    await expect(proposal).rejects.toMatchObject({
      code: "ERR_STORAGE_FAILED",
      message: expect.stringMatching(
        /^the node stopped: the state machine's apply threw at log index \d+ \(the counter cannot add 255\); apply must never throw/,
      ),
    });
    // At once, not at the request timeout (5 s).
    expect(performance.now() - started).toBeLessThan(2000);
    for (const error of await Promise.all(fatal)) {
      expect(error.message).toMatch(/apply threw at log index \d+ \(the counter cannot add 255\)/);
    }
    await expect(master.node.propose(Uint8Array.of(1))).rejects.toMatchObject({
      message: expect.stringMatching(/^the node stopped: the state machine's apply threw/),
    });
  });

  it("timing: embedding: a restarted backup numbers its forwarded reads afresh, never as the process before it", async () => {
    const network = new MemoryNetwork();
    const nodes = await startCluster(network);
    const master = await agreedMaster(nodes);
    const backup = nodes.find((n) => n !== master)!;
    const firstIds = async (node: BatonNode): Promise<number> => {
      type Sent = { readonly type: string; readonly requestId?: number };
      const transport = (node as unknown as { transport: { send(m: Sent): unknown } }).transport;
      const send = transport.send.bind(transport);
      const ids: number[] = [];
      transport.send = (m: Sent) => {
        if (m.type === "forward_read" && m.requestId !== undefined) ids.push(m.requestId);
        return send(m);
      };
      await node.readBarrier();
      return ids[0]!;
    };
    const before = await firstIds(backup.node);
    // The backup's process restarts (empty memory storage: a new process all the same).
    await backup.node.stop();
    const again = await BatonNode.start({
      config: fastNodeConfig(backup.node.id, ids),
      opened: await MemoryStorage.open(new MemoryVolume()),
      transport: network.createTransport(backup.node.id, ids),
      stateMachine: new Counter(),
      logger,
    });
    running.push(again);
    await until("the restarted backup follows the master", () => again.masterId === master.node.id);
    const after = await firstIds(again);
    // An answer the master still owes the old process must not match a request of this one.
    expect(after).not.toBe(before);
    expect(Math.abs(after - before)).toBeGreaterThan(1000);
  });

  it("timing: embedding: role events name the role, term and master on every node, across a fail-over", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const term = master.node.status().term;
    // Events before `on` was called (while the node started) are not replayed: the getters
    // say where each node stands, and every change after is an event.
    await master.node.stop();
    const rest = nodes.filter((n) => n !== master);
    const next = await agreedMaster(rest);
    const last = next.roles.at(-1)!;
    expect(last).toMatchObject({ role: "master", masterId: next.node.id });
    expect(last.term).toBeGreaterThan(term);
    expect(last.term).toBe(next.node.status().term);
    const other = rest.find((n) => n !== next)!;
    await until("the other backup's event", () => other.roles.at(-1)?.masterId === next.node.id);
    expect(other.roles.at(-1)).toMatchObject({ role: "backup", term: last.term });
    for (const n of rest) {
      const terms = n.roles.map((e) => e.term);
      expect(terms).toEqual([...terms].sort((a, b) => a - b));
    }
  });

  it("timing: embedding: a proposal made on a backup is forwarded and applied exactly once on every node", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const backups = nodes.filter((n) => n !== master);
    const results: number[] = [];
    for (let i = 0; i < 10; i++) {
      const via = backups[i % 2]!;
      results.push((await via.node.propose(Uint8Array.of(1))) as number);
    }
    // Each caller got the value its own increment produced, in order, none twice.
    expect(results).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const n of nodes) {
      await until(`node ${n.node.id} applies all`, () => n.counter.value === 10);
      expect(n.counter.applies).toBe(10);
    }
  });

  it("timing: embedding: node.health() and healthHandler answer as the HTTP API's /health routes", async () => {
    const nodes = await startCluster();
    const master = await agreedMaster(nodes);
    const backup = nodes.find((n) => n !== master)!;
    expect(master.node.health("master")).toEqual({
      status: 200,
      body: { status: "ok", id: master.node.id, role: "master" },
    });
    expect(master.node.health()).toMatchObject({ status: 200, body: { role: "master" } });
    expect(backup.node.health("master")).toEqual({
      status: 503,
      body: {
        error:
          "this node is backup, not master; this check passes only on a node in the named role",
        code: "ERR_WRONG_ROLE",
        id: backup.node.id,
        role: "backup",
      },
    });
    expect(backup.node.health("backup").status).toBe(200);

    // A plain node:http server with the application's own route next to the checks.
    const health = healthHandler(backup.node);
    const server = createServer((req, res) => {
      if (health(req, res)) return;
      res.statusCode = 200;
      res.end("the application's own page");
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const asMaster = await fetch(`${base}/health/master`);
    expect(asMaster.status).toBe(503);
    expect(asMaster.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await asMaster.json()).toMatchObject({ code: "ERR_WRONG_ROLE", role: "backup" });
    const asBackup = await fetch(`${base}/health/backup?verbose=1`);
    expect(asBackup.status).toBe(200);
    expect(await asBackup.json()).toEqual({ status: "ok", id: backup.node.id, role: "backup" });
    const head = await fetch(`${base}/health`, { method: "HEAD" });
    expect(head.status).toBe(200);
    const own = await fetch(`${base}/health/other`);
    expect(await own.text()).toBe("the application's own page");

    // A stopped master passes no check: a load balancer must not keep sending to it.
    await master.node.stop();
    for (const check of ["live", "master", "backup"] as const) {
      expect(master.node.health(check)).toEqual({
        status: 503,
        body: {
          error: `node ${master.node.id} has stopped: it is shutting down`,
          code: "ERR_SHUTTING_DOWN",
          id: master.node.id,
          role: "unknown",
        },
      });
    }
  });
});
