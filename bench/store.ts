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
 *   With `--watch-client raw` (the default) the watchers are bench/watch-load.ts, a
 *   process of its own that only counts the events (it stands for watchers on other
 *   machines); with `--watch-client library` they are the client library's
 *   `client.watch()` in this process, which decodes and parses every event on the same
 *   cores as the nodes.
 *
 *   `--watch-keys own` gives watcher i the key `load/b/<i>.` alone (each write then goes to
 *   one watcher, as when every user of a web application watches its own session) where
 *   the default (`every`) has every watcher watch every key the writers write.
 *
 * `--baton-cli <file>` runs the nodes from a build's cli/main.js instead of the sources
 * (an A/B of two builds, or the built CLI's own speed).
 *
 * Prints one JSON document. It signals only the processes it started, by PID, and removes
 * their data at the end.
 */

import { fork } from "node:child_process";
import { join, resolve } from "node:path";
import { Cluster, clientFor } from "../harness/cluster.js";
import { batonCommand, cleanupSync, REPO_ROOT } from "../harness/processes.js";
import { LatencyRecorder, type LatencySummary } from "../harness/stats.js";
import { type BatonClient, createClient } from "../src/client/index.js";
import { describeMachine } from "./entry.js";
import type { WatchLoadResult, WatchLoadSpec } from "./watch-load.js";

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!);
}
const KEYS = Number(args.get("keys") ?? 100_000);
const TTL_SECONDS = Number(args.get("ttl") ?? 2);
const WATCHERS = Number(args.get("watchers") ?? 1000);
const SECONDS = Number(args.get("seconds") ?? 5);
const WATCH_CLIENT = args.get("watch-client") ?? "raw";
if (WATCH_CLIENT !== "raw" && WATCH_CLIENT !== "library") {
  throw new Error(`--watch-client is raw or library, not ${WATCH_CLIENT}`);
}
const WATCH_KEYS = args.get("watch-keys") ?? "every";
if (WATCH_KEYS !== "every" && WATCH_KEYS !== "own") {
  throw new Error(`--watch-keys is every or own, not ${WATCH_KEYS}`);
}
const BATON_CLI = args.get("baton-cli");

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

/** The latencies of 64 clients writing as fast as they can for SECONDS, and their count. */
async function writeLoad(
  client: BatonClient,
  tag: string,
): Promise<{ latency: LatencySummary; writes: number }> {
  const latencies = new LatencyRecorder();
  const until = performance.now() + SECONDS * 1000;
  let n = 0;
  let writes = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      const started = performance.now();
      // Key i ends with a dot, so that the prefix `load/b/1.` is that key alone.
      await client.put(`load/${tag}/${n++ % 1000}.`, "v".repeat(100));
      latencies.record(performance.now() - started);
      writes++;
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return { latency: latencies.summary(), writes };
}

/** WATCHERS watches of `prefix` in this process, through the client library. */
async function libraryWatchers(cluster: Cluster, prefix: string) {
  const controller = new AbortController();
  const watchers = cluster.endpoints().map((endpoint) => createClient({ endpoints: [endpoint] }));
  const counts = new Array<number>(WATCHERS).fill(0);
  const streams = Array.from({ length: WATCHERS }, async (_, i) => {
    const watcher = watchers[i % watchers.length]!;
    for await (const _change of watcher.watch(prefix, { signal: controller.signal })) {
      counts[i]!++;
    }
  });
  // Give the streams a moment to open before the load starts.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const cpuAtStart = process.cpuUsage();
  return {
    async stop(): Promise<WatchLoadResult> {
      const cpu = process.cpuUsage(cpuAtStart);
      controller.abort();
      await Promise.allSettled(streams);
      await Promise.all(watchers.map((w) => w.close()));
      return {
        delivered: counts.reduce((a, b) => a + b, 0),
        perWatcherMin: Math.min(...counts),
        perWatcherMax: Math.max(...counts),
        closedEarly: 0,
        // This process's CPU: the watchers' and the 64 writers' together.
        cpuMs: (cpu.user + cpu.system) / 1000,
      };
    },
  };
}

/** WATCHERS watches of `prefix` in a process of their own that only counts events. */
async function rawWatchers(cluster: Cluster, prefix: string) {
  const spec: WatchLoadSpec = {
    urls: cluster.endpoints(),
    watchers: WATCHERS,
    prefix,
    ownKey: WATCH_KEYS === "own",
  };
  const child = fork(join(REPO_ROOT, "bench", "watch-load.ts"), [JSON.stringify(spec)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const next = (type: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const onMessage = (message: Record<string, unknown>): void => {
        if (message.type !== type) return;
        child.off("message", onMessage);
        resolve(message);
      };
      child.on("message", onMessage);
      child.once("exit", (code) => reject(new Error(`the watch load exited ${code}`)));
    });
  try {
    await next("ready");
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    async stop(): Promise<WatchLoadResult> {
      const done = next("done");
      child.send({ type: "stop" });
      const result = (await done) as unknown as WatchLoadResult;
      await exited;
      return result;
    },
  };
}

/** Write p99 without watchers, then with WATCHERS watches of every key spread over the nodes. */
async function watcherCost(cluster: Cluster, client: BatonClient) {
  // A first run, not measured: the nodes' first seconds of a load are slower (JIT, heap growth).
  await writeLoad(client, "w");
  const without = await writeLoad(client, "a");
  const prefix = "load/b/";
  if (WATCH_KEYS === "own" && WATCH_CLIENT !== "raw") {
    throw new Error("--watch-keys own needs --watch-client raw");
  }
  const watchers =
    WATCH_CLIENT === "raw"
      ? await rawWatchers(cluster, prefix)
      : await libraryWatchers(cluster, prefix);
  const withWatchers = await writeLoad(client, "b");
  // Let the last events arrive.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const delivery = await watchers.stop();
  const ratio =
    without.latency.p99 === null || withWatchers.latency.p99 === null
      ? null
      : withWatchers.latency.p99 / without.latency.p99;
  return {
    watchers: WATCHERS,
    watchClient: WATCH_CLIENT,
    watchKeys: WATCH_KEYS,
    without: without.latency,
    with: withWatchers.latency,
    p99Ratio: ratio,
    writesWithout: without.writes,
    writesWith: withWatchers.writes,
    delivery,
    // Every watcher got every change of what it watched: with `own`, write n went to key
    // n % 1000 and so to watcher n % 1000, when there is one.
    everyChangeDelivered:
      WATCH_KEYS === "own"
        ? delivery.delivered ===
          Math.floor(withWatchers.writes / 1000) * Math.min(WATCHERS, 1000) +
            Math.min(withWatchers.writes % 1000, WATCHERS)
        : delivery.perWatcherMin === withWatchers.writes &&
          delivery.perWatcherMax === withWatchers.writes,
  };
}

async function main(): Promise<void> {
  const cluster = await Cluster.start({
    electionMs: "300-600",
    heartbeatMs: 50,
    log: "files",
    ...(BATON_CLI === undefined ? {} : { launcher: batonCommand("dist", resolve(BATON_CLI)) }),
  });
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
      nodes: BATON_CLI ?? "sources (tsx)",
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    await client.close();
    await cluster.destroy();
    cleanupSync();
  }
}

await main();
