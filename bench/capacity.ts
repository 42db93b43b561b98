/**
 * `npm run bench:capacity`: capacity beyond throughput and fail-over, on real `baton
 * start` processes (the built CLI), four phases, each with a cluster of its own:
 *
 * 1. memory: a three-node cluster with default settings takes --keys keys (16-byte keys,
 *    --value-bytes values, many concurrent HTTP writers); at each of --log-sizes below
 *    --keys and at --keys the RSS (/proc/<pid>/status) and V8 heap (/metrics) of every
 *    node are sampled, and bytes per key worked out against the same node at 0 keys.
 *    At the end a backup is restarted (SIGTERM, then SIGKILL): recovery from the newest
 *    snapshot (every 10,000 entries by default) plus the log after it.
 * 2. restart: a cluster that never snapshots (--snapshot-entries 1000000000), so that the
 *    log holds every write; at each of --log-sizes a backup is stopped (SIGTERM, then
 *    SIGKILL) and started again on the same data directory, timed from spawn to its first
 *    log line, to its log read (`start`), to HTTP listening (`serving`) and to having
 *    applied up to the master's commit index.
 * 3. history: a cluster with the default snapshots writes --log-sizes entries over only
 *    --history-keys keys; at each size a backup is restarted both ways: what a restart
 *    costs when snapshots bound the log (the state and the entries since the last one).
 * 4. transfer: for each of --transfer-mb, nodes 1 and 2 take that many 1 MiB values and
 *    compact their log behind one snapshot; the disk's own rate is measured with a file of
 *    the snapshot's size (fsync at the end) in the same folder; then node 3 starts empty
 *    and catches up by state transfer, timed from its own log lines.
 *
 * Progress goes to stderr; the tables to stdout; results.json, results.md, SVG charts and
 * index.html to --out. It stops every process it started (by PID) and removes every data
 * directory, on failure and on Ctrl-C too.
 *
 *   npm run bench:capacity -- --keys 1M --log-sizes 10k,100k,1M --transfer-mb 100,1000
 */

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, statfsSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import {
  batonCommand,
  cleanupSync,
  ensureBuilt,
  REPO_ROOT,
  resolveFrom,
  type StatusView,
  sleep,
  waitFor,
} from "../harness/processes.js";
import { median } from "../harness/stats.js";
import {
  type BatonBenchCluster,
  nodeFlagOption,
  nodeProcessFlags,
  profileOption,
  startBatonCluster,
} from "./baton-cluster.js";
import { type BenchNode, counterTotal, gauge } from "./bench-cluster.js";
import {
  dirBytes,
  diskWriteRate,
  KeyWriter,
  keyName,
  largestFileBytes,
  makeValue,
  NodeLog,
  type NodeLogLine,
  sampleMemory,
  statusOf,
  type WriteResult,
} from "./capacity-measure.js";
import {
  type CapacityReport,
  type MemoryRow,
  markdownTables,
  type RestartRow,
  type SnapshotConfig,
  type TransferRow,
  type WriteRow,
  writeCapacityReport,
} from "./capacity-report.js";
import { describeMachine, runAsProgram } from "./entry.js";

type Phase = "memory" | "restart" | "history" | "transfer";
const PHASES: readonly Phase[] = ["memory", "restart", "history", "transfer"];

export interface CapacityOptions {
  readonly keys: number;
  readonly valueBytes: number;
  readonly logSizes: number[];
  readonly transferMb: number[];
  readonly clients: number;
  readonly phases: Phase[];
  readonly out: string;
  readonly from: "dist" | "source";
  /** Another build's cli/main.js for the nodes, or null. */
  readonly batonCli: string | null;
  /** Pause between the last write and a memory sample, so the nodes settle, ms. */
  readonly settleMs: number;
  /** Restart a backup at the end of the memory phase too (not in --smoke, to keep it short). */
  readonly restartAfterMemory: boolean;
  /** Runs of `baton start --help` to time the CLI's boot. */
  readonly cliBootRuns: number;
  /** The keys the history phase writes its log over, again and again. */
  readonly historyKeys: number;
  /** `baton start --election-ms` for every node, or null for Baton's default. */
  readonly electionMs: string | null;
  /** Run every node with `node --cpu-prof`, profiles in <out>/profiles. */
  readonly profile: boolean;
  /** More Node.js or V8 flags for every Baton node's process (`--node-flag=--trace-gc`). */
  readonly nodeFlags: readonly string[];
}

/** Far more entries and bytes than any run writes: the "no snapshots" cluster never takes one. */
const NO_SNAPSHOT_ENTRIES = 1_000_000_000;
const NO_SNAPSHOT_BYTES = 1024 ** 4;
/** Values of the state-transfer phase. */
const TRANSFER_VALUE_BYTES = 1024 * 1024;
/** 1 MiB values in flight at once in the state-transfer phase (as the integration test). */
const TRANSFER_WRITERS = 4;
/** Generous bounds: a run on a loaded machine is slow, never stuck for this long. */
const CATCH_UP_TIMEOUT_MS = 15 * 60_000;
const TRANSFER_TIMEOUT_MS = 15 * 60_000;

/** "10k", "1M", "1_000_000", "250000": a positive integer. */
export function parseCount(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM])?$/.exec(text.trim().replaceAll("_", ""));
  const unit = match?.[2]?.toLowerCase();
  const n =
    match === null ? Number.NaN : Number(match[1]) * (unit === "k" ? 1e3 : unit === "m" ? 1e6 : 1);
  if (!(Number.isSafeInteger(n) && n > 0)) {
    throw new InvalidArgumentError(`expected a positive integer such as 20000, 20k or 1M: ${text}`);
  }
  return n;
}

function parseCountList(text: string): number[] {
  const list = text.split(",").map(parseCount);
  return [...new Set(list)].sort((a, b) => a - b);
}

function parsePhases(text: string): Phase[] {
  const list = text.split(",").map((s) => s.trim());
  for (const p of list) {
    if (!PHASES.includes(p as Phase)) {
      throw new InvalidArgumentError(`unknown phase ${p}: use ${PHASES.join(", ")}`);
    }
  }
  return PHASES.filter((p) => list.includes(p));
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

export function parseCapacityOptions(argv: readonly string[]): CapacityOptions {
  const program = new Command("bench:capacity")
    .description(
      "memory per node with many keys, restart time against log size, and state transfer against the disk's write rate, on a 3-node Baton cluster",
    )
    .option("--keys <n>", "keys written for the memory figures (10k, 1M, ...)", parseCount, 1e6)
    .option(
      "--value-bytes <n>",
      "size of each value in the memory and restart phases",
      parseCount,
      100,
    )
    .option(
      "--log-sizes <list>",
      "log entries at which a backup is restarted (no snapshots); memory is also sampled at those below --keys",
      parseCountList,
      [10_000, 100_000, 1_000_000],
    )
    .option(
      "--transfer-mb <list>",
      "megabytes of state (1 MiB values) sent to an empty node",
      parseCountList,
      [100, 1000],
    )
    .option(
      "--history-keys <n>",
      "keys the history phase rewrites to reach each of --log-sizes (default snapshots)",
      parseCount,
      10_000,
    )
    .option("--clients <n>", "concurrent HTTP writers (one connection each)", parseCount, 128)
    .option(
      "--phases <list>",
      "which phases to run: memory, restart, history, transfer",
      parsePhases,
      [...PHASES],
    )
    .option("--out <dir>", "results folder (default results/capacity/<date>)")
    .option("--from <where>", "dist (the built CLI, default), source (tsx, no build), auto", "dist")
    .option(
      "--baton-cli <file>",
      "run Baton nodes from another build's cli/main.js (implies --from dist, builds nothing)",
    )
    .option(
      "--baton-election-ms <range>",
      "every node's --election-ms, e.g. 150-300 (default Baton's); the transfer phase counts the elections it saw",
    )
    .addOption(profileOption())
    .addOption(nodeFlagOption("--trace-gc"))
    .option(
      "--smoke",
      "a tiny run that checks the benchmark works: 1,500 keys, log size 1,000, 2 MB transfer, no restart after the memory phase",
    )
    .addHelpText(
      "after",
      `
The full run (the defaults; about 15 to 25 minutes on an idle 2-core machine; needs about
8 GB free in ${tmpdir()}, where the data directories go, and 8 GB of memory: with 1 GB of
state each node holds the values and, until the snapshot, the log entries):
  npm run bench:capacity -- --keys 1M --log-sizes 10k,100k,1M --transfer-mb 100,1000
One phase at a time: --phases memory, --phases restart, --phases transfer.

Restart times from source (--from source) include tsx compiling the node at each spawn.`,
    )
    .exitOverride()
    .parse([...argv], { from: "user" });
  const o = program.opts<{
    keys: number;
    valueBytes: number;
    logSizes: number[];
    transferMb: number[];
    historyKeys: number;
    clients: number;
    phases: Phase[];
    out?: string;
    from: string;
    batonCli?: string;
    batonElectionMs?: string;
    profile?: boolean;
    nodeFlag: string[];
    smoke?: boolean;
  }>();
  const smoke = o.smoke === true;
  return {
    keys: smoke ? 1500 : o.keys,
    valueBytes: o.valueBytes,
    logSizes: smoke ? [1000] : o.logSizes,
    transferMb: smoke ? [2] : o.transferMb,
    clients: smoke ? 16 : o.clients,
    phases: o.phases,
    out: resolve(o.out ?? join(REPO_ROOT, "results", "capacity", stamp())),
    from: o.batonCli === undefined ? resolveFrom(o.from) : "dist",
    batonCli: o.batonCli === undefined ? null : resolve(o.batonCli),
    settleMs: smoke ? 200 : 2000,
    restartAfterMemory: !smoke,
    electionMs: o.batonElectionMs ?? null,
    profile: o.profile === true,
    nodeFlags: o.nodeFlag,
    cliBootRuns: smoke ? 1 : 3,
    historyKeys: smoke ? 100 : o.historyKeys,
  };
}

const startedAt = performance.now();

/** A progress line on stderr, with the seconds since the benchmark started. */
function log(line: string): void {
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`${seconds}s ${line}\n`);
}

function load1m(): number {
  return Number((loadavg()[0] ?? 0).toFixed(2));
}

/** Throws when the folder of the data directories has less than `bytes` free. */
function ensureFreeDisk(bytes: number, what: string): void {
  const dir = tmpdir();
  const fs = statfsSync(dir);
  const free = fs.bavail * fs.bsize;
  if (free < bytes) {
    throw new Error(
      `${what} needs about ${(bytes / 1e9).toFixed(1)} GB free in ${dir}, which has ${(free / 1e9).toFixed(1)} GB; free some space or choose smaller sizes`,
    );
  }
}

// ---------------------------------------------------------------- cluster helpers

/** The log file of a node of a cluster started with log files (every Baton bench cluster). */
function logFileOf(node: BenchNode): string {
  const file = node.process.logFile;
  if (file === null) throw new Error(`node ${node.id} has no log file`);
  return file;
}

interface MasterInfo {
  readonly node: BenchNode;
  readonly status: StatusView;
}

async function findMaster(cluster: BatonBenchCluster): Promise<MasterInfo> {
  return waitFor(
    "the running nodes to agree on a master",
    async () => {
      const view = await cluster.master();
      if (view === null) return undefined;
      const status = await cluster.status(view.id);
      if (status === null || status.role !== "master") return undefined;
      const node = cluster.nodes.find((n) => n.id === view.id);
      return node === undefined ? undefined : { node, status };
    },
    60_000,
    50,
  );
}

/** Waits until every running node has applied what the master has committed. */
async function waitAllCaughtUp(cluster: BatonBenchCluster): Promise<StatusView> {
  return waitFor(
    "every running node to apply up to the master's commit index",
    async () => {
      const master = await findMaster(cluster);
      const running = cluster.nodes.filter((n) => n.process.running);
      const statuses = await Promise.all(running.map((n) => statusOf(n.url, 5000)));
      const all = statuses as StatusView[];
      return all.every((s) => s.appliedIndex >= master.status.commitIndex)
        ? master.status
        : undefined;
    },
    CATCH_UP_TIMEOUT_MS,
    100,
  );
}

function describeMaster(m: MasterInfo): string {
  return `node ${m.node.id} in term ${m.status.term}`;
}

async function startCluster(
  options: CapacityOptions,
  systems: Record<string, string>,
  name: string,
  extraArgs: readonly string[],
  startIds?: readonly number[],
): Promise<BatonBenchCluster> {
  const cluster = await startBatonCluster({
    from: options.from,
    ...(options.batonCli === null ? {} : { cli: options.batonCli }),
    extraArgs: [
      ...extraArgs,
      // No quota: the default's 256 MiB and 1M keys are what this benchmark goes past.
      ...["--quota-keys", "0", "--quota-bytes", "0"],
      ...(options.electionMs === null ? [] : ["--election-ms", options.electionMs]),
    ],
    ...(startIds === undefined ? {} : { startIds }),
    nodeFlags: nodeProcessFlags(options, join(options.out, "profiles", name)),
  });
  systems[name] = cluster.description;
  return cluster;
}

function progress(phase: string): (p: { written: number; total: number; seconds: number }) => void {
  return (p) =>
    log(
      `${phase}: ${p.written.toLocaleString("en-US")}/${p.total.toLocaleString("en-US")} keys, ${Math.round(p.written / Math.max(p.seconds, 0.001)).toLocaleString("en-US")} keys/s`,
    );
}

// ---------------------------------------------------------------- memory samples

interface Baselines {
  readonly rss: Map<number, number>;
  readonly heap: Map<number, number | null>;
}

async function sampleAll(
  cluster: BatonBenchCluster,
  config: SnapshotConfig,
  keys: number,
  baselines: Baselines,
  restarted: ReadonlySet<number>,
): Promise<MemoryRow[]> {
  const master = await findMaster(cluster);
  const rows: MemoryRow[] = [];
  for (const node of cluster.nodes) {
    const pid = node.process.pid;
    if (pid === null || !node.process.running) continue;
    const sample = await sampleMemory(node.id, pid, node.url);
    if (keys === 0) {
      baselines.rss.set(node.id, sample.rssBytes);
      baselines.heap.set(node.id, sample.heapUsedBytes);
    }
    const rss0 = baselines.rss.get(node.id);
    const heap0 = baselines.heap.get(node.id) ?? null;
    const dataDir = cluster.dataDir(node.id);
    rows.push({
      config,
      keys,
      logEntries: master.status.lastIndex,
      role: node.id === master.node.id ? "master" : "backup",
      restarted: restarted.has(node.id),
      sample,
      rssBytesPerKey: keys === 0 || rss0 === undefined ? null : (sample.rssBytes - rss0) / keys,
      heapBytesPerKey:
        keys === 0 || heap0 === null || sample.heapUsedBytes === null
          ? null
          : (sample.heapUsedBytes - heap0) / keys,
      walBytes: dirBytes(join(dataDir, "wal")),
      snapshotBytes: dirBytes(join(dataDir, "snapshots")),
    });
  }
  const m = rows.find((r) => r.role === "master");
  if (m !== undefined) {
    log(
      `  ${config}, ${keys.toLocaleString("en-US")} keys: ${rows
        .map(
          (r) =>
            `node ${r.sample.node} (${r.role}) RSS ${(r.sample.rssBytes / 2 ** 20).toFixed(0)} MiB, heap ${r.sample.heapUsedBytes === null ? "?" : (r.sample.heapUsedBytes / 2 ** 20).toFixed(0)} MiB`,
        )
        .join(
          "; ",
        )}${m.rssBytesPerKey === null ? "" : `; master ${Math.round(m.rssBytesPerKey)} B/key RSS`}`,
    );
  }
  return rows;
}

// ---------------------------------------------------------------- restarts

/**
 * Stops a backup with `signal` and starts it again on the same data directory, timing its
 * recovery from its own log lines and its /v1/status.
 */
async function measureRestart(
  cluster: BatonBenchCluster,
  config: SnapshotConfig,
  signal: "SIGTERM" | "SIGKILL",
  keys: number,
  restarted: Set<number>,
): Promise<RestartRow> {
  const master = await findMaster(cluster);
  const node = cluster.nodes.find((n) => n.id !== master.node.id && n.process.running);
  if (node === undefined) throw new Error("no running backup to restart");
  const before = await statusOf(node.url, 5000).then((s) => s as StatusView);
  const targetIndex = master.status.commitIndex;
  const dataDir = cluster.dataDir(node.id);
  const walBytes = dirBytes(join(dataDir, "wal"));
  const snapshotBytes = dirBytes(join(dataDir, "snapshots"));

  const stopAt = performance.now();
  if (signal === "SIGTERM") await node.process.stop(60_000);
  else await node.process.kill();
  const stopMs = signal === "SIGTERM" ? performance.now() - stopAt : null;

  const nodeLog = new NodeLog(logFileOf(node));
  const spawnAt = Date.now();
  node.process.start();
  restarted.add(node.id);
  const caughtUpAt = await waitFor(
    `node ${node.id} to apply up to index ${targetIndex} after a restart`,
    async () => {
      const status = (await statusOf(node.url, 2000)) as StatusView;
      return status.appliedIndex >= targetIndex ? Date.now() : undefined;
    },
    CATCH_UP_TIMEOUT_MS,
    10,
  );
  const since = (line: NodeLogLine | undefined): number | null =>
    line === undefined ? null : line.time - spawnAt;
  const recovery = nodeLog.find(
    (l) => l.event === "recovery" && typeof l.snapshotIndex === "number",
    spawnAt,
  );
  const snapshotIndex = (recovery?.snapshotIndex as number | undefined) ?? 0;
  const after = await findMaster(cluster);
  const row: RestartRow = {
    config,
    signal,
    node: node.id,
    keys,
    logEntries: before.lastIndex,
    snapshotIndex,
    entriesAfterSnapshot: targetIndex - snapshotIndex,
    walBytes,
    snapshotBytes,
    stopMs,
    firstLogLineMs: since(nodeLog.find(() => true, spawnAt)),
    storageRecoveredMs: since(nodeLog.find((l) => l.event === "start", spawnAt)),
    listeningMs: since(nodeLog.find((l) => l.event === "serving", spawnAt)),
    caughtUpMs: caughtUpAt - spawnAt,
    targetIndex,
    masterBefore: describeMaster(master),
    masterAfter: describeMaster(after),
    loadAverage1m: load1m(),
  };
  const s = (ms: number | null): string => (ms === null ? "?" : (ms / 1000).toFixed(2));
  log(
    `  ${config}, ${signal} node ${node.id} with ${row.logEntries.toLocaleString("en-US")} log entries (snapshot ${snapshotIndex}): ${stopMs === null ? "" : `stopped in ${s(stopMs)} s; `}from spawn: first log line ${s(row.firstLogLineMs)} s, log read ${s(row.storageRecoveredMs)} s, listening ${s(row.listeningMs)} s, caught up ${s(row.caughtUpMs)} s`,
  );
  if (row.masterBefore !== row.masterAfter) {
    log(
      `  warning: the master changed during the restart: ${row.masterBefore} → ${row.masterAfter}`,
    );
  }
  return row;
}

// ---------------------------------------------------------------- phases

interface Results {
  readonly memory: MemoryRow[];
  readonly restarts: RestartRow[];
  readonly transfers: TransferRow[];
  readonly writes: WriteRow[];
  readonly systems: Record<string, string>;
  readonly notes: string[];
}

/** Key-value bytes on disk per entry, roughly (frame, command encoding): for free-space checks. */
function entryBytes(options: CapacityOptions): number {
  return options.valueBytes + 16 + 100;
}

async function writeKeys(
  writer: KeyWriter,
  phase: string,
  from: number,
  to: number,
  value: Buffer,
  results: Results,
  keySpace?: number,
): Promise<WriteResult> {
  const result = await writer.writeRange(from, to, value, progress(phase), 5000, keySpace);
  results.writes.push({ phase, result });
  log(
    `${phase}: wrote ${result.keys.toLocaleString("en-US")} keys in ${result.seconds.toFixed(1)} s (${Math.round(result.keysPerSecond).toLocaleString("en-US")} keys/s${result.retries > 0 ? `, ${result.retries} retried` : ""})`,
  );
  return result;
}

/** What the memory and restart phases start with: a writer to the master, fresh baselines. */
async function phaseStart(cluster: BatonBenchCluster, options: CapacityOptions) {
  return {
    writer: new KeyWriter((await findMaster(cluster)).node.url, options.clients),
    value: makeValue(options.valueBytes),
    baselines: { rss: new Map(), heap: new Map() } as Baselines,
    restarted: new Set<number>(),
  };
}

async function memoryPhase(options: CapacityOptions, results: Results): Promise<void> {
  const config: SnapshotConfig = "default snapshots";
  ensureFreeDisk(options.keys * entryBytes(options) * 3 * 2, "the memory phase");
  log(
    `memory: starting a 3-node cluster (${config}) for ${options.keys.toLocaleString("en-US")} keys`,
  );
  const cluster = await startCluster(options, results.systems, "memory", []);
  const { writer, value, baselines, restarted } = await phaseStart(cluster, options);
  try {
    await sleep(options.settleMs);
    results.memory.push(...(await sampleAll(cluster, config, 0, baselines, restarted)));
    const checkpoints = [
      ...new Set([...options.logSizes.filter((n) => n < options.keys), options.keys]),
    ];
    let written = 0;
    for (const checkpoint of checkpoints) {
      await writeKeys(writer, "memory", written + 1, checkpoint, value, results);
      written = checkpoint;
      await waitAllCaughtUp(cluster);
      await sleep(options.settleMs);
      results.memory.push(...(await sampleAll(cluster, config, written, baselines, restarted)));
    }
    if (options.restartAfterMemory) {
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        results.restarts.push(await measureRestart(cluster, config, signal, written, restarted));
      }
      await sleep(options.settleMs);
      results.memory.push(...(await sampleAll(cluster, config, written, baselines, restarted)));
    }
  } finally {
    await writer.close();
    log("memory: stopping the cluster");
    await cluster.stop();
  }
}

/**
 * A long history over few keys, as most stores see: the default snapshots keep the log
 * short, so a restart costs the state (--history-keys keys) and the entries after the last
 * snapshot, not the history. At each of --log-sizes a backup is restarted both ways.
 */
async function historyPhase(options: CapacityOptions, results: Results): Promise<void> {
  const config: SnapshotConfig = "default snapshots";
  log(`history: starting a 3-node cluster (${config}), ${options.historyKeys} keys rewritten`);
  const cluster = await startCluster(options, results.systems, "history", []);
  const { writer, value, restarted } = await phaseStart(cluster, options);
  try {
    let written = 0;
    for (const size of options.logSizes) {
      const lastIndex = (await findMaster(cluster)).status.lastIndex;
      if (size > lastIndex) {
        const [from, to] = [written + 1, written + size - lastIndex];
        await writeKeys(writer, "history", from, to, value, results, options.historyKeys);
        written = to;
      }
      await waitAllCaughtUp(cluster);
      await sleep(options.settleMs);
      const keys = Math.min(written, options.historyKeys);
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        results.restarts.push(await measureRestart(cluster, config, signal, keys, restarted));
      }
    }
  } finally {
    await writer.close();
    log("history: stopping the cluster");
    await cluster.stop();
  }
}

async function restartPhase(options: CapacityOptions, results: Results): Promise<void> {
  const config: SnapshotConfig = "no snapshots";
  const largest = options.logSizes[options.logSizes.length - 1] ?? 0;
  ensureFreeDisk(largest * entryBytes(options) * 3 * 2, "the restart phase");
  log(
    `restart: starting a 3-node cluster (${config}: --snapshot-entries ${NO_SNAPSHOT_ENTRIES} --snapshot-bytes ${NO_SNAPSHOT_BYTES})`,
  );
  // Both triggers off: the bytes one alone (64 MiB by default) snapshots a long log too.
  const cluster = await startCluster(options, results.systems, "restart", [
    ...["--snapshot-entries", String(NO_SNAPSHOT_ENTRIES)],
    ...["--snapshot-bytes", String(NO_SNAPSHOT_BYTES)],
  ]);
  const { writer, value, baselines, restarted } = await phaseStart(cluster, options);
  try {
    await sleep(options.settleMs);
    results.memory.push(...(await sampleAll(cluster, config, 0, baselines, restarted)));
    let written = 0;
    for (const size of options.logSizes) {
      const lastIndex = (await findMaster(cluster)).status.lastIndex;
      if (size > lastIndex) {
        await writeKeys(writer, "restart", written + 1, written + size - lastIndex, value, results);
        written += size - lastIndex;
      }
      await waitAllCaughtUp(cluster);
      await sleep(options.settleMs);
      results.memory.push(...(await sampleAll(cluster, config, written, baselines, restarted)));
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        results.restarts.push(await measureRestart(cluster, config, signal, written, restarted));
      }
    }
  } finally {
    await writer.close();
    log("restart: stopping the cluster");
    await cluster.stop();
  }
}

async function transferOne(
  options: CapacityOptions,
  results: Results,
  stateMb: number,
): Promise<TransferRow> {
  ensureFreeDisk(stateMb * TRANSFER_VALUE_BYTES * 7, `the ${stateMb} MB state transfer`);
  // One snapshot, taken once every large value is in, and a log compacted right up to it
  // (keep 0): node 3 can only catch up by state transfer.
  const snapshotEntries = stateMb + 16;
  log(
    `transfer ${stateMb} MB: starting nodes 1 and 2 (snapshot every ${snapshotEntries} entries, none kept behind it)`,
  );
  const cluster = await startCluster(
    options,
    results.systems,
    "transfer",
    ["--snapshot-entries", String(snapshotEntries), "--snapshot-keep-entries", "0"],
    [1, 2],
  );
  const master = await findMaster(cluster);
  const writer = new KeyWriter(master.node.url, TRANSFER_WRITERS);
  const ELECTIONS = "baton_elections_started_total";
  const running = cluster.nodes.filter((n) => n.id !== 3);
  let sampler: NodeJS.Timeout | undefined;
  try {
    // Elections from here on: the large writes, the snapshot, the transfer and the catch-up.
    const electionsBefore = await counterTotal(running, ELECTIONS);
    const phaseStartedAt = Date.now();
    // The longest event-loop delay of each node in each stage, read every half second: what
    // to hold against the shortest election timeout when a stage holds an election.
    let stage = "writing";
    const loopDelays = new Map<string, number>();
    sampler = setInterval(() => {
      const now = stage;
      for (const n of cluster.nodes) {
        void gauge(n.url, "baton_event_loop_delay_max_seconds")
          .then((seconds) => {
            if (seconds === null) return;
            const key = `${now}: node ${n.id}`;
            loopDelays.set(key, Math.max(loopDelays.get(key) ?? 0, Math.round(seconds * 1000)));
          })
          .catch(() => undefined);
      }
    }, 500);
    const started = performance.now();
    let next = 0;
    let lastBig = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < stateMb; i = next++) {
        const { revision } = await writer.put(
          `big-${keyName(i + 1)}`,
          randomBytes(TRANSFER_VALUE_BYTES),
        );
        lastBig = Math.max(lastBig, revision);
      }
    };
    await Promise.all(Array.from({ length: TRANSFER_WRITERS }, worker));
    const writeSeconds = (performance.now() - started) / 1000;
    const writeMbPerSecond = (stateMb * TRANSFER_VALUE_BYTES) / 1e6 / writeSeconds;
    log(
      `transfer ${stateMb} MB: written in ${writeSeconds.toFixed(1)} s (${writeMbPerSecond.toFixed(1)} MB/s through HTTP and replication)`,
    );

    stage = "snapshot";
    // Small writes until a snapshot is due, then wait for it: the master's first snapshot
    // after the large values holds all of them (writing on while a large snapshot is being
    // saved would only bring the next one closer).
    const masterLog = new NodeLog(logFileOf(master.node), 0);
    const snapshots = (): number[] =>
      masterLog
        .refresh()
        .filter((l) => l.event === "snapshot" && typeof l.index === "number")
        .map((l) => l.index as number);
    const tailValue = makeValue(options.valueBytes);
    const deadline = performance.now() + TRANSFER_TIMEOUT_MS;
    let revision = lastBig;
    for (let i = 1; !snapshots().some((index) => index >= lastBig); ) {
      if (performance.now() > deadline) {
        throw new Error(
          `transfer ${stateMb} MB: node ${master.node.id} logged no snapshot covering index ${lastBig} within ${TRANSFER_TIMEOUT_MS / 60_000} minutes (snapshots: ${snapshots().join(", ") || "none"})`,
        );
      }
      if (revision < Math.max(0, ...snapshots()) + snapshotEntries) {
        revision = (await writer.put(`tail-${keyName(i++)}`, tailValue)).revision;
      } else {
        await sleep(100);
      }
    }
    const snapshotIndex = snapshots().find((index) => index >= lastBig)!;
    await waitAllCaughtUp(cluster);
    const snapshotBytes = largestFileBytes(join(cluster.dataDir(master.node.id), "snapshots"));
    log(
      `transfer ${stateMb} MB: snapshot at index ${snapshotIndex} (${(snapshotBytes / 1e6).toFixed(1)} MB on disk); measuring the disk's own write rate with a file of that size`,
    );
    const disk = await diskWriteRate(cluster.root, snapshotBytes);
    log(
      `transfer ${stateMb} MB: disk ${disk.mbPerSecond.toFixed(1)} MB/s (${(disk.bytes / 1e6).toFixed(1)} MB written in ${disk.seconds.toFixed(2)} s, of which the fsync ${disk.fsyncSeconds.toFixed(2)} s)`,
    );

    const node3 = cluster.nodes.find((n) => n.id === 3)!;
    const node3Log = new NodeLog(logFileOf(node3), 0);
    const target = (await findMaster(cluster)).status.commitIndex;
    log(`transfer ${stateMb} MB: starting node 3 with an empty data directory`);
    stage = "transfer";
    const spawnAt = Date.now();
    node3.process.start();
    const adopted = await node3Log.waitFor(
      "node 3's completed state transfer",
      (l) =>
        l.event === "state_transfer" && typeof l.ms === "number" && typeof l.bytes === "number",
      TRANSFER_TIMEOUT_MS,
      spawnAt,
    );
    const caughtUpAt = await waitFor(
      `node 3 to apply up to index ${target}`,
      async () => {
        const s = (await statusOf(node3.url, 2000)) as StatusView;
        return s.appliedIndex >= target ? Date.now() : undefined;
      },
      CATCH_UP_TIMEOUT_MS,
      20,
    );
    // One "receiving snapshot" line per transfer session: more than one means a transfer
    // started over (a new master, a stall), and only the last one's stream was adopted.
    const sessions = node3Log
      .refresh()
      .filter(
        (l) =>
          l.event === "state_transfer" &&
          typeof l.totalBytes === "number" &&
          l.time <= adopted.time,
      );
    const receiving = sessions.at(-1);
    if (receiving === undefined) throw new Error("node 3's log has no 'receiving snapshot' line");
    if (sessions.length > 1) {
      log(
        `transfer ${stateMb} MB: node 3 started receiving ${sessions.length} times (${sessions.map((l) => `from node ${String(l.from)} at ${((l.time - spawnAt) / 1000).toFixed(2)} s`).join(", ")}); the figures are the last one's`,
      );
    }
    const sent = masterLog.find(
      (l) => l.event === "state_transfer" && l.peer === 3 && typeof l.seconds === "number",
      spawnAt,
    );
    const listening = node3Log.find((l) => l.event === "serving", spawnAt);
    const elections = (await counterTotal(cluster.nodes, ELECTIONS)) - electionsBefore;
    const masterAfter = await findMaster(cluster);
    // When and why any node stood for election, from the nodes' own logs, in the stages of
    // the phase: so that an election says whether the writes, the snapshot or the transfer
    // cost it.
    const stages = [
      { at: phaseStartedAt, name: "writing" },
      { at: phaseStartedAt + writeSeconds * 1000, name: "snapshot" },
      { at: spawnAt, name: "transfer" },
    ];
    const candidacies = cluster.nodes
      .flatMap((n) =>
        new NodeLog(logFileOf(n), 0)
          .refresh()
          .filter((l) => l.event === "role" && l.role === "candidate" && l.time >= phaseStartedAt)
          .map((l) => ({ time: l.time, node: n.id, msg: String(l.msg ?? "") })),
      )
      .sort((a, b) => a.time - b.time)
      .map(({ time, node, msg }) => {
        const stage = stages.filter((st) => st.at <= time).pop()!.name;
        return `${((time - phaseStartedAt) / 1000).toFixed(1)} s (${stage}): node ${node} ${msg}`;
      });
    for (const line of candidacies) log(`transfer ${stateMb} MB: candidacy at ${line}`);
    clearInterval(sampler);
    log(
      `transfer ${stateMb} MB: longest event-loop delay (ms) ${JSON.stringify(Object.fromEntries(loopDelays))}`,
    );
    const bytes = adopted.bytes as number;
    const restoreMs = adopted.ms as number;
    const adoptedMs = adopted.time - receiving.time;
    const streamMs = Math.max(1, adoptedMs - restoreMs);
    const adoptedMbPerSecond = bytes / 1e6 / (adoptedMs / 1000);
    const row: TransferRow = {
      stateMb,
      writeMbPerSecond,
      snapshotBytes: bytes,
      disk,
      streamMs,
      adoptedMs,
      restoreMs,
      durableMs: typeof adopted.durableMs === "number" ? adopted.durableMs : null,
      readAsReceived: typeof adopted.readAsReceived === "boolean" ? adopted.readAsReceived : null,
      senderMs: sent === undefined ? null : (sent.seconds as number) * 1000,
      listeningMs: listening === undefined ? null : listening.time - spawnAt,
      firstChunkMs: sessions[0]!.time - spawnAt,
      transferSessions: sessions.length,
      caughtUpMs: caughtUpAt - spawnAt,
      streamMbPerSecond: bytes / 1e6 / (streamMs / 1000),
      adoptedMbPerSecond,
      adoptedToDiskRatio: adoptedMbPerSecond / disk.mbPerSecond,
      elections,
      candidacies,
      loopDelayMaxMs: Object.fromEntries(loopDelays),
      masterChanged:
        masterAfter.node.id !== master.node.id || masterAfter.status.term !== master.status.term,
      loadAverage1m: load1m(),
    };
    log(
      `transfer ${stateMb} MB: ${(bytes / 1e6).toFixed(1)} MB streamed in ${(streamMs / 1000).toFixed(2)} s (${row.streamMbPerSecond.toFixed(1)} MB/s), adopted after ${(adoptedMs / 1000).toFixed(2)} s (${adoptedMbPerSecond.toFixed(1)} MB/s, ${row.adoptedToDiskRatio.toFixed(2)}× the disk's rate); node 3 listened ${row.listeningMs === null ? "?" : (row.listeningMs / 1000).toFixed(2)} s, received its first chunk ${(row.firstChunkMs / 1000).toFixed(2)} s and caught up ${(row.caughtUpMs / 1000).toFixed(2)} s after its spawn; elections started ${elections}, master ${row.masterChanged ? "changed" : `${master.node.id} in term ${master.status.term} throughout`}`,
    );
    return row;
  } finally {
    clearInterval(sampler);
    await writer.close();
    log(`transfer ${stateMb} MB: stopping the cluster`);
    await cluster.stop();
  }
}

/**
 * `baton start --help` from spawn to exit, median of the runs, ms: what a restart costs
 * before the node reads any of its data.
 */
function measureCliBoot(options: CapacityOptions): number | null {
  const baton = batonCommand(options.from, options.batonCli ?? undefined);
  const runs: number[] = [];
  for (let i = 0; i < options.cliBootRuns; i++) {
    const started = performance.now();
    const result = spawnSync(baton.command, [...baton.args, "start", "--help"], {
      cwd: REPO_ROOT,
      stdio: "ignore",
    });
    if (result.status !== 0) return null;
    runs.push(performance.now() - started);
  }
  return median(runs);
}

// ---------------------------------------------------------------- main

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseCapacityOptions(argv);
  mkdirSync(options.out, { recursive: true });
  const info = describeMachine();
  log(
    `bench:capacity: ${info.cpus} CPUs (${info.cpuModel}), Node ${info.node}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}; phases ${options.phases.join(", ")}; results in ${options.out}`,
  );
  const results: Results = {
    memory: [],
    restarts: [],
    transfers: [],
    writes: [],
    systems: {},
    notes: [
      `memory phase: ${options.keys.toLocaleString("en-US")} keys of 16 bytes with ${options.valueBytes}-byte values, default snapshots (every 10,000 entries, 5,000 kept behind); B/key is (figure - the same node's figure at 0 keys) / keys; heap from /metrics, RSS from /proc/<pid>/status`,
      `restart phase: --snapshot-entries ${NO_SNAPSHOT_ENTRIES}, so the log holds every write and recovery replays all of it; the "default snapshots" restart rows recover from the newest snapshot plus the log after it`,
      "restart times are from spawn; caught up = the restarted backup's /v1/status appliedIndex reaches the master's commitIndex (the cluster takes no writes meanwhile)",
      "state transfer: stream = the empty node's first chunk received → every byte received; to adopted = first chunk → snapshot fdatasynced and the state restored from it; disk = a file of the snapshot's size written in 1 MiB blocks and fsynced once, in the folder of the data directories",
    ],
  };
  let failure: unknown = null;
  let cliBootMs: number | null = null;
  try {
    if (options.from === "dist" && options.batonCli === null) ensureBuilt(log);
    if (["memory", "restart", "history"].some((p) => options.phases.includes(p as Phase))) {
      cliBootMs = measureCliBoot(options);
      log(
        `baton start --help: ${cliBootMs === null ? "failed" : `${(cliBootMs / 1000).toFixed(2)} s`} from spawn to exit (Node.js and module loading, the floor of a restart)`,
      );
    }
    if (options.phases.includes("memory")) await memoryPhase(options, results);
    if (options.phases.includes("restart")) await restartPhase(options, results);
    if (options.phases.includes("history")) await historyPhase(options, results);
    if (options.phases.includes("transfer")) {
      for (const mb of options.transferMb)
        results.transfers.push(await transferOne(options, results, mb));
    }
  } catch (error) {
    // What was measured before the failure is still written, marked as incomplete.
    failure = error;
    results.notes.push(`INCOMPLETE: the run failed: ${(error as Error).message ?? String(error)}`);
  } finally {
    cleanupSync();
  }
  const report: CapacityReport = {
    date: new Date().toISOString(),
    command: `npm run bench:capacity -- ${argv.join(" ")}`.trim(),
    machine: { ...info, loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))) },
    systems: results.systems,
    options: { ...options },
    memory: results.memory,
    restarts: results.restarts,
    transfers: results.transfers,
    writes: results.writes,
    cliBootMs,
    notes: results.notes,
  };
  const files = writeCapacityReport(options.out, report);
  process.stdout.write(`\n${markdownTables(report)}\n`);
  log(`written: ${files.map((f) => join(options.out, f)).join(", ")}`);
  if (failure !== null) throw failure;
  return 0;
}

runAsProgram("capacity.ts", "bench:capacity", main);
