/**
 * Embedding Baton: a replicated counter. Three nodes run in this one process (each with
 * its own TCP port and data folder, just as they would on three machines); the program
 * increments the counter on whichever node is master, stops the master half-way, and
 * keeps counting on the new master. No increment is lost or applied twice.
 *
 *   npx tsx examples/replicated-counter.ts
 */

import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { type BatonNode, createNode, type StateMachine } from "../src/index.js";

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

async function waitForMaster(nodes: BatonNode[]): Promise<BatonNode> {
  for (;;) {
    const master = nodes.find((n) => n.role === "master");
    if (master !== undefined) return master;
    await new Promise((r) => setTimeout(r, 20));
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
  try {
    let alive = nodes;
    for (let i = 1; i <= increments; i++) {
      const master = await waitForMaster(alive);
      const value = (await master.propose(Uint8Array.of(1))) as number;
      log(`node ${master.id} (master) applied increment ${i}: counter = ${value}`);
      if (i === Math.floor(increments / 2)) {
        log(`stopping the master, node ${master.id}...`);
        await master.stop();
        alive = alive.filter((n) => n !== master);
      }
    }
    const master = await waitForMaster(alive);
    await master.readBarrier();
    // Let the backups apply the last increments too.
    await new Promise((r) => setTimeout(r, 200));
    const values = alive.map((n) => counters[nodes.indexOf(n)]!.value);
    log(`final counter on the surviving nodes: ${values.join(", ")}`);
    return values;
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample();
}
