/**
 * `npx tsx bench/watch-fanout.ts [--watchers 1000] [--rounds 200] [--batch 8]`: how long a
 * change takes to reach every one of many watches of one prefix, on one node's HTTP API.
 *
 * One process: the real HTTP server over the real state machine and `KvStore` (the
 * one-node stand-in of harness/doubles/local-kv-node.ts, no log or disk), and `--watchers`
 * raw TCP connections each holding `GET /v1/watch?prefix=w/`. Each round applies `--batch`
 * puts in one turn of the event loop, as the runtime applies the entries of one Ready, then
 * waits until every watch has every change. Delivery latency is from the moment a put is
 * applied to the moment a watch's socket received its event; the apply time is how long
 * the applies (and what runs inside them) held the event loop. The watches share the
 * process and its CPU with the server, so the figures compare code, not machines.
 *
 * Prints one JSON document.
 */

import { connect, type Socket } from "node:net";
import { pino } from "pino";
import { LocalKvNode } from "../harness/doubles/local-kv-node.js";
import { LatencyRecorder } from "../harness/stats.js";
import { createHttpServer } from "../src/http/server.js";
import { encodeCommand } from "../src/kv/index.js";

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!);
}
const WATCHERS = Number(args.get("watchers") ?? 1000);
const ROUNDS = Number(args.get("rounds") ?? 200);
const BATCH = Number(args.get("batch") ?? 8);

const api = new LocalKvNode(1);
const server = createHttpServer({
  api,
  logger: pino({ level: "silent" }),
  // Watches may take all but 192 connections (the event streams and 128 for requests).
  connections: { connectionsMax: WATCHERS + 256 },
});
const { port } = await server.listen("127.0.0.1", 0);

/** Apply time (performance.now()) of each revision. */
const appliedAt = new Map<number, number>();
const delivery = new LatencyRecorder();
const applyHold = new LatencyRecorder();
let delivered = 0;
const sockets: Socket[] = [];

function openWatch(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    sockets.push(socket);
    let ready = false;
    socket.setEncoding("utf8");
    socket.on("error", reject);
    socket.on("data", (text: string) => {
      const now = performance.now();
      if (!ready && text.includes(": watching")) {
        ready = true;
        resolve();
      }
      for (const match of text.matchAll(/"revision":(\d+)/g)) {
        delivery.record(now - appliedAt.get(Number(match[1]))!);
        delivered++;
      }
    });
    socket.write(`GET /v1/watch?prefix=w%2F HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  });
}

for (let opened = 0; opened < WATCHERS; opened += 100) {
  await Promise.all(Array.from({ length: Math.min(100, WATCHERS - opened) }, openWatch));
}

const value = new TextEncoder().encode("v".repeat(100));
for (let round = 0; round < ROUNDS; round++) {
  const expected = delivered + WATCHERS * BATCH;
  const started = performance.now();
  for (let i = 0; i < BATCH; i++) {
    const revision = round * BATCH + i + 1;
    appliedAt.set(revision, performance.now());
    api.apply(encodeCommand({ type: "put", key: `w/${revision % 64}`, value }));
  }
  applyHold.record(performance.now() - started);
  const deadline = performance.now() + 10_000;
  while (delivered < expected && performance.now() < deadline) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const summary = {
  watchers: WATCHERS,
  rounds: ROUNDS,
  batch: BATCH,
  delivered,
  expected: WATCHERS * BATCH * ROUNDS,
  deliveryMs: delivery.summary(),
  applyHoldMs: applyHold.summary(),
};
console.log(JSON.stringify(summary, null, 2));
for (const socket of sockets) socket.destroy();
await server.close();
