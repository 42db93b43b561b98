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
 * Prints one JSON document. It signals only the processes it started, by PID, and removes
 * their data at the end.
 */

import { Cluster, clientFor } from "../harness/cluster.js";
import { cleanupSync } from "../harness/processes.js";
import type { BatonClient } from "../src/client/index.js";
import { describeMachine } from "./entry.js";

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!);
}
const KEYS = Number(args.get("keys") ?? 100_000);
const TTL_SECONDS = Number(args.get("ttl") ?? 2);

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
  if (killMaster) {
    const master = await cluster.waitForMaster();
    await cluster.kill(master.id);
    await cluster.waitForMaster({ exclude: [master.id], minTerm: master.term + 1 });
    takeOverMs = performance.now() - granted;
  }
  for await (const change of client.watch(key, { fromRevision: revision + 1 })) {
    if (change.key === key && change.type === "delete") break;
  }
  const seenMs = performance.now() - granted;
  return {
    lateMs: Math.round(seenMs - TTL_SECONDS * 1000),
    takeOverMs: takeOverMs === null ? null : Math.round(takeOverMs),
    // After a take-over the lease lives one full TTL from the new master's first entry.
    lateAfterTakeOverMs:
      takeOverMs === null ? null : Math.round(seenMs - takeOverMs - TTL_SECONDS * 1000),
  };
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
    const report = {
      machine: describeMachine(),
      keys: KEYS,
      writesPerSecond,
      listing: { pageSize: 1000, runs: listings, bestKeysPerSecond: best, target: 50_000 },
      leaseTtlSeconds: TTL_SECONDS,
      leaseExpiry: { quiet, afterMasterKill: failover, targetLateMs: 1000 },
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    await client.close();
    await cluster.destroy();
    cleanupSync();
  }
}

await main();
