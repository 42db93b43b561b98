/**
 * `npm run bench`: the throughput benchmark. It builds the CLI when dist/ is stale, starts
 * a three-node Baton cluster from it (and, with --compare etcd, a three-member etcd), and
 * for every case (mix × value size × clients, --runs times, the systems taking turns)
 * runs bench/load-generator.ts in a process of its own against each system's master (or,
 * with --via backup, a backup; with --via all, every node, the clients spread round-robin
 * as a plain load balancer or round-robin DNS would).
 * Progress goes to stderr; the table to stdout; results.json, results.md, SVG charts and
 * index.html to --out.
 *
 *   npm run bench -- --compare etcd --clients 1,4,16,64,256 --values 100,4096,65536 \
 *     --mix write,read,90/10 --duration 10s --runs 3
 *
 * It stops every process it started, on failure and on Ctrl-C too.
 */

import { mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import {
  cleanupSync,
  ensureBuilt,
  REPO_ROOT,
  resolveFrom,
  runScript,
} from "../harness/processes.js";
import {
  nodeFlagOption,
  nodeProcessFlags,
  profileOption,
  startBatonCluster,
} from "./baton-cluster.js";
import { type BenchCluster, clusterCpuMs, type SystemName } from "./bench-cluster.js";
import { describeMachine, runAsProgram } from "./entry.js";
import { ensureEtcd, startEtcdCluster } from "./etcd-cluster.js";
import type { Generator, LoadResult, LoadSpec, Mix } from "./load-generator.js";
import {
  type CaseRun,
  compare,
  cpuTable,
  formatBytes,
  markdownTable,
  type Report,
  writeReport,
} from "./report.js";

export interface BenchOptions {
  readonly compare: SystemName[];
  readonly clients: number[];
  readonly values: number[];
  readonly mix: Mix[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly runs: number;
  readonly out: string;
  readonly from: "dist" | "source";
  readonly profile: boolean;
  /** More Node.js or V8 flags for every Baton node's process (`--node-flag=--no-opt`). */
  readonly nodeFlags: string[];
  /** Another build's cli/main.js for the Baton nodes (A/B comparisons), or null. */
  readonly batonCli: string | null;
  /** Certificates for mutual TLS and HTTPS (see BatonClusterOptions.tlsDir), or null. */
  readonly tls: string | null;
  /**
   * Which node the load goes to: the master, or a backup (every request then crosses the
   * backup's forwarding: etcd's follower forwards to its leader, Baton's backup forwards
   * over the peer link and serves linearizable reads itself after a read index), or every
   * node, the clients spread round-robin (a third of them reach the master directly).
   */
  readonly via: Via;
  /** With `tls`, only the peer links' TLS or only the API's; null for both. */
  readonly tlsOnly: "peer" | "http" | null;
  /** Who sends the load: undici in a Node.js process, or wrk (a C load generator). */
  readonly generator: Generator;
  /** With wrk: report each case's answers per second (a cold start, a stall). */
  readonly perSecond: boolean;
}

export type Via = "master" | "backup" | "all";

const MIXES: readonly Mix[] = ["write", "read", "90/10"];

/** "10s", "500ms", "2m" or a number of seconds, in ms. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match === null) throw new InvalidArgumentError(`not a duration: ${text} (say 10s, 500ms)`);
  const n = Number(match[1]);
  const unit = match[2] ?? "s";
  return Math.round(n * (unit === "ms" ? 1 : unit === "s" ? 1000 : 60_000));
}

function parseList(text: string): number[] {
  const list = text.split(",").map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !(Number.isSafeInteger(n) && n > 0))) {
    throw new InvalidArgumentError(`expected positive integers separated by commas: ${text}`);
  }
  return list;
}

function parseMix(text: string): Mix[] {
  const list = text.split(",").map((s) => s.trim());
  for (const m of list) {
    if (!MIXES.includes(m as Mix)) {
      throw new InvalidArgumentError(`unknown mix ${m}: use write, read or 90/10`);
    }
  }
  return list as Mix[];
}

function parseCompare(text: string): SystemName[] {
  if (text !== "etcd") throw new InvalidArgumentError(`can only compare with etcd, not ${text}`);
  return ["etcd"];
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

export function parseBenchOptions(argv: readonly string[]): BenchOptions {
  const program = new Command("bench")
    .description("throughput and latency of a 3-node Baton cluster (and etcd, side by side)")
    .option("--compare <system>", "also run the same load against etcd", parseCompare, [])
    .option("--clients <list>", "concurrent clients", parseList, [1, 4, 16, 64, 256])
    .option("--values <list>", "value sizes in bytes", parseList, [100])
    .option("--mix <list>", "write, read (linearizable), 90/10 (reads/writes)", parseMix, ["write"])
    .option("--duration <time>", "measured time per case", parseDuration, 10_000)
    .option("--warmup <time>", "unmeasured time before each case", parseDuration, 2000)
    .option("--runs <n>", "repeat every case n times and report medians", (v) => parseList(v)[0], 1)
    .option("--out <dir>", "results folder (default results/bench/<date>)")
    .option("--from <where>", "dist (the built CLI, default), source (tsx, no build), auto", "dist")
    .addOption(profileOption())
    .addOption(nodeFlagOption("--no-opt"))
    .option("--baton-cli <file>", "run Baton nodes from another build's cli/main.js")
    .option(
      "--tls <dir>",
      "run Baton with peer mTLS and HTTPS from <dir> (ca.crt, node<id>/node.crt, node.key; with NODE_EXTRA_CA_CERTS=<dir>/ca.crt)",
    )
    .option(
      "--via <node>",
      "send the load to the master, to a backup, or to all nodes round-robin",
      parseVia,
      "master",
    )
    .option(
      "--tls-only <links>",
      "with --tls, only peer (mutual TLS between nodes, plain HTTP) or http (HTTPS, plain peer links)",
      parseTlsOnly,
    )
    .option(
      "--generator <name>",
      "undici (a Node.js process) or wrk (C; far less CPU per request, apt-get install wrk)",
      parseGenerator,
      "undici",
    )
    .option(
      "--per-second",
      "with --generator wrk: print the answers of every second of each case (try --warmup 0)",
    )
    .option("--smoke", "a tiny run that checks the benchmark works: 90/10 mix, 4 clients, 1 s")
    .exitOverride()
    .parse([...argv], { from: "user" });
  const o = program.opts<{
    compare: SystemName[];
    clients: number[];
    values: number[];
    mix: Mix[];
    duration: number;
    warmup: number;
    runs: number;
    out?: string;
    from: string;
    profile?: boolean;
    nodeFlag: string[];
    batonCli?: string;
    tls?: string;
    tlsOnly?: "peer" | "http";
    via: Via;
    generator: Generator;
    perSecond?: boolean;
    smoke?: boolean;
  }>();
  const smoke = o.smoke === true;
  if (o.tlsOnly !== undefined && o.tls === undefined) {
    program.error("error: --tls-only needs --tls <dir> (the certificates)");
  }
  if (o.perSecond === true && o.generator !== "wrk") {
    program.error("error: --per-second needs --generator wrk");
  }
  return {
    compare: o.compare,
    clients: smoke ? [4] : o.clients,
    values: smoke ? [100] : o.values,
    mix: smoke ? ["90/10"] : o.mix,
    durationMs: smoke ? 1000 : o.duration,
    warmupMs: smoke ? 300 : o.warmup,
    runs: smoke ? 1 : o.runs,
    out: resolve(o.out ?? join(REPO_ROOT, "results", "bench", stamp())),
    from: resolveFrom(o.from),
    profile: o.profile === true,
    nodeFlags: o.nodeFlag,
    batonCli: o.batonCli === undefined ? null : resolve(o.batonCli),
    tls: o.tls === undefined ? null : resolve(o.tls),
    via: o.via,
    tlsOnly: o.tlsOnly ?? null,
    generator: o.generator,
    perSecond: o.perSecond === true,
  };
}

const startedAt = performance.now();

/** A progress line on stderr, with the seconds since the benchmark started. */
function log(line: string): void {
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`${seconds}s ${line}\n`);
}

/** Runs one case in a load generator process; resolves with its result. */
async function runLoadGenerator(spec: LoadSpec): Promise<LoadResult> {
  const run = await runScript("bench/load-generator.ts", [JSON.stringify(spec)], {
    passStderr: true,
  });
  const last = run.stdout.trim().split("\n").pop() ?? "";
  if (run.code !== 0 || last === "") {
    throw new Error(`load generator for ${spec.label} exited ${run.code}`);
  }
  return JSON.parse(last) as LoadResult;
}

function keyCountFor(valueBytes: number): number {
  return Math.max(16, Math.min(1000, Math.floor((16 * 1024 * 1024) / valueBytes)));
}

function parseTlsOnly(value: string): "peer" | "http" {
  if (value === "peer" || value === "http") return value;
  throw new InvalidArgumentError("expected peer or http");
}

function parseGenerator(value: string): Generator {
  if (value === "undici" || value === "wrk") return value;
  throw new InvalidArgumentError("expected undici or wrk");
}

function parseVia(value: string): Via {
  if (value === "master" || value === "backup" || value === "all") return value;
  throw new InvalidArgumentError("expected master, backup or all");
}

/**
 * The URLs the load goes to, once a master is agreed: the master's, the lowest-numbered
 * backup's, or every node's (the master first).
 */
async function targetUrls(cluster: BenchCluster, via: Via): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const m = await cluster.master();
    if (m !== null && via === "all") {
      const master = cluster.nodes.filter((n) => n.id === m.id);
      return [...master, ...cluster.nodes.filter((n) => n.id !== m.id)].map((n) => n.url);
    }
    const node =
      m === null
        ? undefined
        : cluster.nodes.find((n) => (via === "master" ? n.id === m.id : n.id !== m.id));
    if (node !== undefined) return [node.url];
    await new Promise((done) => setTimeout(done, 50));
  }
  throw new Error(`${cluster.system}: no master`);
}

async function runCases(
  options: BenchOptions,
  clusters: readonly BenchCluster[],
  runs: CaseRun[],
): Promise<void> {
  const total = options.runs * options.values.length * options.mix.length * options.clients.length;
  let done = 0;
  for (let run = 1; run <= options.runs; run++) {
    // The systems take turns going first, so that neither always runs on a warmer machine.
    const order = run % 2 === 1 ? clusters : [...clusters].reverse();
    for (const valueBytes of options.values) {
      for (const mix of options.mix) {
        for (const clients of options.clients) {
          done++;
          for (const cluster of order) {
            const label = `[${done}/${total}] ${cluster.system} ${mix} ${formatBytes(valueBytes)} ×${clients}`;
            const spec: LoadSpec = {
              system: cluster.system,
              targets: await targetUrls(cluster, options.via),
              clients,
              valueBytes,
              mix,
              durationMs: options.durationMs,
              warmupMs: options.warmupMs,
              keyCount: keyCountFor(valueBytes),
              keyPrefix: `bench-${valueBytes}`,
              label,
              generator: options.generator,
              perSecond: options.perSecond,
            };
            const cpuBefore = clusterCpuMs(cluster);
            const result = await runLoadGenerator(spec);
            const cpuAfter = clusterCpuMs(cluster);
            const loadAverage = loadavg().map((l) => Number(l.toFixed(2)));
            runs.push({
              system: cluster.system,
              mix,
              valueBytes,
              clients,
              run,
              result,
              loadAverage,
              nodesCpuMs: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
            });
            const l = result.latencyMs;
            log(
              `${label}: ${Math.round(result.opsPerSecond)} ops/s, p50 ${l.p50?.toFixed(2)} ms, p99 ${l.p99?.toFixed(2)} ms${result.errors > 0 ? `, ${result.errors} errors: ${result.errorSamples[0]}` : ""}; load ${loadAverage[0]}`,
            );
            if (result.perSecond !== undefined) {
              log(`${label}: answers per second: ${result.perSecond.join(", ")}`);
            }
          }
        }
      }
    }
  }
}

async function startClusters(
  options: BenchOptions,
  systems: Record<string, string>,
  skipped: string[],
): Promise<BenchCluster[]> {
  const clusters: BenchCluster[] = [];
  if (options.from === "dist" && options.batonCli === null) ensureBuilt(log);
  const profileDir = join(options.out, "profiles");
  if (options.profile) mkdirSync(profileDir, { recursive: true });
  log("starting a 3-node Baton cluster");
  const baton = await startBatonCluster({
    from: options.from,
    ...(options.batonCli === null ? {} : { cli: options.batonCli }),
    ...(options.tls === null ? {} : { tlsDir: options.tls }),
    ...(options.tlsOnly === null ? {} : { tlsOnly: options.tlsOnly }),
    nodeFlags: nodeProcessFlags(options, profileDir),
  });
  clusters.push(baton);
  systems.baton = baton.description;
  if (options.compare.includes("etcd")) {
    const etcd = ensureEtcd(log);
    if (etcd.ok) {
      log("starting a 3-member etcd cluster");
      const cluster = await startEtcdCluster(etcd.version);
      clusters.push(cluster);
      systems.etcd = cluster.description;
    } else {
      log(`etcd skipped: ${etcd.reason}`);
      skipped.push(`etcd: ${etcd.reason}`);
    }
  }
  return clusters;
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseBenchOptions(argv);
  mkdirSync(options.out, { recursive: true });
  const systems: Record<string, string> = {};
  const skipped: string[] = [];
  const runs: CaseRun[] = [];
  const clusters: BenchCluster[] = [];
  const info = describeMachine();
  log(
    `bench: ${info.cpus} CPUs (${info.cpuModel}), Node ${info.node}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(
        " ",
      )}; load sent to ${options.via === "all" ? "every node" : `the ${options.via}`} by ${options.generator}; results in ${options.out}`,
  );
  try {
    clusters.push(...(await startClusters(options, systems, skipped)));
    await runCases(options, clusters, runs);
  } finally {
    log("stopping the clusters");
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    cleanupSync();
  }
  const comparisons = compare(runs);
  const report: Report = {
    date: new Date().toISOString(),
    command: `npm run bench -- ${argv.join(" ")}`.trim(),
    machine: { ...info, loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))) },
    systems,
    options: { ...options },
    runs,
    comparisons,
    skipped,
  };
  const files = writeReport(options.out, report);
  process.stdout.write(`\n${markdownTable(comparisons)}\n\n${cpuTable(comparisons)}\n\n`);
  log(`written: ${files.map((f) => join(options.out, f)).join(", ")}`);
  return 0;
}

runAsProgram("main.ts", "bench", main);
