/**
 * Embedding Baton: a replicated counter. Three nodes run in this one process (each with
 * its own TCP port and data folder, just as they would on three machines); the program
 * increments the counter through the nodes in turn (a backup forwards to the master),
 * stops the master half-way, and keeps counting on the new master. No increment is lost
 * or applied twice. Each node also serves the load balancers' health checks from a plain
 * node:http server (`healthHandler`), and the program logs every role change.
 *
 *   npx tsx examples/replicated-counter.ts
 */

import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { type BatonNode, createNode, healthHandler, type StateMachine } from "../src/index.js";

/** The application's state machine: deterministic, and able to snapshot and restore. */
class Counter implements StateMachine<number> {
  value = 0;

  apply(command: Uint8Array): number {
    // A command is one byte: how much to add.
    this.value += command[0] ?? 0;
    return this.value;
  }

  async *snapshot(): AsyncIterable<Uint8Array> {
    yield new TextEncoder().encode(String(this.value));
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    let text = "";
    for await (const chunk of chunks) text += new TextDecoder().decode(chunk);
    this.value = Number(text);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A node:http server for the node's health checks (HAProxy would poll /health/master). */
async function serveHealth(node: BatonNode<number>): Promise<{ server: Server; url: string }> {
  const health = healthHandler(node);
  const server = createHttpServer((req, res) => {
    if (health(req, res)) return;
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The master among `nodes`, once they have elected one (waitForMaster, then its node). */
async function masterOf(nodes: BatonNode<number>[]): Promise<BatonNode<number>> {
  for (;;) {
    const id = await nodes[0]!.waitForMaster();
    const master = nodes.find((n) => n.id === id && n.role === "master");
    if (master !== undefined) return master;
    await new Promise((r) => setTimeout(r, 20)); // it stepped down since: ask again
  }
}

/** Runs the example; returns the final counter value on every surviving node. */
export async function runExample(
  increments = 20,
  log: (line: string) => void = console.log,
): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "baton-counter-"));
  const ports = await Promise.all([1, 2, 3].map(() => freePort()));
  const peers = ports.map((port, i) => ({ id: i + 1, address: `127.0.0.1:${port}` }));
  const counters = peers.map(() => new Counter());
  const logger = pino({ level: "warn" });
  const nodes = await Promise.all(
    peers.map((peer, i) =>
      createNode({
        id: peer.id,
        peers,
        dataDir: join(dir, `n${peer.id}`),
        stateMachine: counters[i]!,
        logger,
      }),
    ),
  );
  for (const node of nodes) {
    node.on("role", ({ role, term, masterId }) => {
      if (role === "master") log(`node ${node.id} became master in term ${term}`);
      else if (role === "backup" && masterId !== null) {
        log(`node ${node.id} is a backup of node ${masterId} in term ${term}`);
      }
    });
  }
  const health = await Promise.all(nodes.map((node) => serveHealth(node)));
  try {
    let alive = nodes;
    for (let i = 1; i <= increments; i++) {
      const master = await masterOf(alive);
      // Any node takes the increment: a backup forwards it to the master, and answers
      // with the value its own copy reached when it applied it.
      const via = alive[i % alive.length]!;
      const value = await via.propose(Uint8Array.of(1)); // a number: what Counter.apply returns
      const how = via === master ? "master" : `backup, forwarded to node ${master.id}`;
      log(`node ${via.id} (${how}) applied increment ${i}: counter = ${value}`);
      if (i === Math.floor(increments / 2)) {
        log(`stopping the master, node ${master.id}...`);
        await master.stop();
        alive = alive.filter((n) => n !== master);
      }
    }
    const master = await masterOf(alive);
    await master.readBarrier();
    const check = await fetch(`${health[nodes.indexOf(master)]!.url}/health/master`);
    log(`GET /health/master on node ${master.id}: ${check.status}`);
    // Let the backups apply the last increments too.
    await new Promise((r) => setTimeout(r, 200));
    const values = alive.map((n) => counters[nodes.indexOf(n)]!.value);
    log(`final counter on the surviving nodes: ${values.join(", ")}`);
    return values;
  } finally {
    for (const { server } of health) server.close();
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample();
}
