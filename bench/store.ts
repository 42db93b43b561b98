/**
 * `npx tsx bench/store.ts`: the store's targets from docs/benchmarks.md on a real
 * three-node cluster (the sources' `baton start`, through the client library):
 *
 * - listing: write `--keys` keys (100 bytes each), then list them all in pages of 1000
 *   (linearizable `GET /v1/kv?prefix=`), keys per second, best of 3;
 * - lease expiry: grant a lease of `--ttl` seconds with one key, and time from the grant
 *   until a watch sees the key's delete; then the same with the master killed (SIGKILL)
 *   right after the grant, where the new master gives the lease its full TTL again, so the
 *   key should go about one TTL after the take-over (`lateAfterTakeOverMs`).
 *
 * - watchers (`--watchers N`, 0 to skip): the write p99 of 64 clients writing for
 *   `--seconds` seconds, without watchers and then with N watches of every key open, spread
 *   over the nodes (a node serves watches from its own copy, and takes 1024 connections).
 *
 * Prints one JSON document. It signals only the processes it started, by PID, and removes
 * their data at the end.
 */

import { Cluster, clientFor } from "../harness/cluster.js";
import { cleanupSync } from "../harness/processes.js";
import { LatencyRecorder, type LatencySummary } from "../harness/stats.js";
import { type BatonClient, createClient } from "../src/client/index.js";
import { describeMachine } from "./entry.js";

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!);
}
const KEYS = Number(args.get("keys") ?? 100_000);
const TTL_SECONDS = Number(args.get("ttl") ?? 2);
const WATCHERS = Number(args.get("watchers") ?? 1000);
const SECONDS = Number(args.get("seconds") ?? 5);

async function writeKeys(client: BatonClient, count: number): Promise<number> {
  const value = "v".repeat(100);
  let next = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      await client.put(`bench/${String(i).padStart(7, "0")}`, value);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return count / ((performance.now() - started) / 1000);
}

async function listAll(client: BatonClient): Promise<{ keys: number; keysPerSecond: number }> {
  const started = performance.now();
  let keys = 0;
  for await (const _ of client.rangeAll("bench/", { limit: 1000 })) keys++;
  return { keys, keysPerSecond: Math.round(keys / ((performance.now() - started) / 1000)) };
}

/** Milliseconds from the grant until the key's delete was seen, minus the TTL. */
async function leaseLateness(
  cluster: Cluster,
  client: BatonClient,
  key: string,
  killMaster: boolean,
): Promise<{ lateMs: number; takeOverMs: number | null; lateAfterTakeOverMs: number | null }> {
  const granted = performance.now();
  const lease = await client.grantLease(TTL_SECONDS);
  const { revision } = await client.put(key, "x", { lease: lease.id });
  let takeOverMs: number | null = null;
  let killed: number | null = null;
  if (killMaster) {
    const master = await cluster.waitForMaster();
    await cluster.kill(master.id);
    killed = master.id;
    await cluster.waitForMaster({ exclude: [master.id], minTerm: master.term + 1 });
    takeOverMs = performance.now() - granted;
  }
  for await (const change of client.watch(key, { fromRevision: revision + 1 })) {
    if (change.key === key && change.type === "delete") break;
  }
  const seenMs = performance.now() - granted;
  if (killed !== null) {
    // Back with its data, so that the next measurement has every node.
    await cluster.restart(killed);
    await cluster.waitCaughtUp(killed);
  }
  return {
    lateMs: Math.round(seenMs - TTL_SECONDS * 1000),
    takeOverMs: takeOverMs === null ? null : Math.round(takeOverMs),
    // After a take-over the lease lives one full TTL from the new master's first entry.
    lateAfterTakeOverMs:
      takeOverMs === null ? null : Math.round(seenMs - takeOverMs - TTL_SECONDS * 1000),
  };
}

/** The latencies of 64 clients writing as fast as they can for SECONDS. */
async function writeLoad(client: BatonClient, tag: string): Promise<LatencySummary> {
  const latencies = new LatencyRecorder();
  const until = performance.now() + SECONDS * 1000;
  let n = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      const started = performance.now();
      await client.put(`load/${tag}/${n++ % 1000}`, "v".repeat(100));
      latencies.record(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return latencies.summary();
}

/** Write p99 without watchers, then with WATCHERS watches of every key spread over the nodes. */
async function watcherCost(cluster: Cluster, client: BatonClient) {
  const without = await writeLoad(client, "a");
  const controller = new AbortController();
  const endpoints = cluster.endpoints();
  const watchers = endpoints.map((endpoint) => createClient({ endpoints: [endpoint] }));
  let delivered = 0;
  const streams = Array.from({ length: WATCHERS }, async (_, i) => {
    const watcher = watchers[i % watchers.length]!;
    for await (const _change of watcher.watch("", { signal: controller.signal })) delivered++;
  });
  // Give the streams a moment to open before the load starts.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const withWatchers = await writeLoad(client, "b");
  controller.abort();
  await Promise.allSettled(streams);
  await Promise.all(watchers.map((w) => w.close()));
  const ratio =
    without.p99 === null || withWatchers.p99 === null ? null : withWatchers.p99 / without.p99;
  return { watchers: WATCHERS, without, with: withWatchers, p99Ratio: ratio, delivered };
}

async function main(): Promise<void> {
  const cluster = await Cluster.start({ electionMs: "300-600", heartbeatMs: 50, log: "files" });
  const client = clientFor(cluster);
  try {
    const writesPerSecond = Math.round(await writeKeys(client, KEYS));
    const listings = [];
    for (let run = 0; run < 3; run++) listings.push(await listAll(client));
    const best = Math.max(...listings.map((l) => l.keysPerSecond));
    const quiet = await leaseLateness(cluster, client, "bench-lease/quiet", false);
    const failover = await leaseLateness(cluster, client, "bench-lease/failover", true);
    await cluster.waitForMaster();
    const watches = WATCHERS > 0 ? await watcherCost(cluster, client) : null;
    const report = {
      machine: describeMachine(),
      keys: KEYS,
      writesPerSecond,
      listing: { pageSize: 1000, runs: listings, bestKeysPerSecond: best, target: 50_000 },
      leaseTtlSeconds: TTL_SECONDS,
      leaseExpiry: { quiet, afterMasterKill: failover, targetLateMs: 1000 },
      watches: watches === null ? null : { ...watches, targetP99Ratio: 1.2 },
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    await client.close();
    await cluster.destroy();
    cleanupSync();
  }
}

await main();
