/**
 * `npm run bench:steady`: how many elections a healthy cluster holds under steady load
 * with no faults at all. The expected answer is zero: a master that is alive and
 * reachable must never be deposed, whether by a backup whose timer fired while the
 * machine was busy, or by the connection-loss shortcut that lets backups replace a dead
 * master at once. It starts three nodes, drives writes and linearizable reads at them for
 * the whole duration, samples every node's status each second (role, term, master), and
 * at the end reads each node's election counters from /metrics.
 *
 *   npm run bench:steady -- --duration 10m [--clients 16] [--value-bytes 100] [--from dist|source]
 *
 * Each second it also reads every node's baton_event_loop_delay_max_seconds (the longest
 * tick delay since the previous scrape) and reports the largest it saw, per node: the
 * figure to hold against the shortest election timeout.
 *
 * Exits 1 when any election or change of master happened after the first master was
 * agreed, and prints when and where.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { ensureBuilt, REPO_ROOT } from "../harness/processes.js";
import { startBatonCluster } from "./baton-cluster.js";
import { type BenchCluster, counterTotal, gauge } from "./bench-cluster.js";
import { runAsProgram } from "./entry.js";
import { runLoad } from "./load-generator.js";
import { parseDuration } from "./main.js";

interface SteadyOptions {
  readonly durationMs: number;
  readonly clients: number;
  readonly valueBytes: number;
  readonly from: "dist" | "source";
  /** Baton's --election-ms for every node, or null for its default. */
  readonly electionMs: string | null;
  readonly out: string;
}

interface Sample {
  readonly atMs: number;
  readonly views: readonly {
    id: number;
    role: string;
    term: number;
    master: number | null;
    /** Longest event-loop delay since the previous sample, ms (null: not read). */
    loopDelayMaxMs: number | null;
  }[];
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function parseOptions(argv: readonly string[]): SteadyOptions {
  const program = new Command("bench:steady")
    .description("count elections in a healthy three-node cluster under steady load (expect 0)")
    .option("--duration <time>", "how long to run the load, e.g. 90s or 10m", "10m")
    .option("--clients <n>", "concurrent clients (writes and reads)", positiveInt, 16)
    .option("--value-bytes <n>", "size of each written value", positiveInt, 100)
    .addOption(
      new Option("--from <where>", "dist (the built CLI) or source (tsx)")
        .choices(["dist", "source"])
        .default("dist"),
    )
    .option("--baton-election-ms <range>", "Baton --election-ms, e.g. 150-300 (default Baton's)")
    .option("--out <dir>", "results folder (default results/steady/<date>)")
    .exitOverride();
  program.parse([...argv], { from: "user" });
  const o = program.opts<{
    duration: string;
    clients: number;
    valueBytes: number;
    from: "dist" | "source";
    batonElectionMs?: string;
    out?: string;
  }>();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return {
    durationMs: parseDuration(o.duration),
    clients: o.clients,
    valueBytes: o.valueBytes,
    from: o.from,
    electionMs: o.batonElectionMs ?? null,
    out: o.out ?? join(REPO_ROOT, "results", "steady", stamp),
  };
}

async function sample(cluster: BenchCluster, startedAt: number): Promise<Sample> {
  const views = await Promise.all(
    cluster.nodes.map(async (node) => {
      try {
        const response = await fetch(`${node.url}/v1/status`, {
          signal: AbortSignal.timeout(2000),
        });
        const s = (await response.json()) as { role: string; term: number; master: number | null };
        const loopDelayMaxMs = await gauge(node.url, "baton_event_loop_delay_max_seconds");
        return {
          id: node.id,
          role: s.role,
          term: s.term,
          master: s.master,
          loopDelayMaxMs: loopDelayMaxMs === null ? null : Math.round(loopDelayMaxMs * 1000),
        };
      } catch {
        return { id: node.id, role: "unreachable", term: -1, master: null, loopDelayMaxMs: null };
      }
    }),
  );
  return { atMs: Math.round(performance.now() - startedAt), views };
}

/** One gauge from a node's /metrics, or null when it is missing. */
/** Per node, the longest event-loop delay any sample saw, ms. */
function loopDelayMax(samples: readonly Sample[]): Record<number, number> {
  const max: Record<number, number> = {};
  for (const s of samples) {
    for (const v of s.views) {
      if (v.loopDelayMaxMs !== null) max[v.id] = Math.max(max[v.id] ?? 0, v.loopDelayMaxMs);
    }
  }
  return max;
}

/** Sums a counter over every node's /metrics. */
export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  if (options.from === "dist") ensureBuilt(log);
  log(
    `bench:steady: ${options.durationMs / 1000} s of load, ${options.clients} clients, values of ${options.valueBytes} bytes, no faults`,
  );
  const cluster = await startBatonCluster({
    from: options.from,
    ...(options.electionMs === null ? {} : { extraArgs: ["--election-ms", options.electionMs] }),
  });
  const samples: Sample[] = [];
  try {
    const first = await cluster.master();
    if (first === null) throw new Error("the cluster did not agree on a master");
    const master = cluster.nodes.find((n) => n.id === first.id)!;
    const electionsBefore = await counterTotal(cluster.nodes, "baton_elections_started_total");
    const startedAt = performance.now();
    const sampler = setInterval(() => {
      void sample(cluster, startedAt).then((s) => samples.push(s));
    }, 1000);
    const half = Math.max(1, Math.floor(options.clients / 2));
    const loads = await Promise.all([
      runLoad({
        system: "baton",
        targets: [master.url],
        clients: half,
        valueBytes: options.valueBytes,
        mix: "write",
        durationMs: options.durationMs,
        warmupMs: 0,
        keyCount: 1000,
        keyPrefix: "steady-w",
        label: "writes",
      }),
      runLoad({
        system: "baton",
        targets: [master.url],
        clients: Math.max(1, options.clients - half),
        valueBytes: options.valueBytes,
        mix: "read",
        durationMs: options.durationMs,
        warmupMs: 0,
        keyCount: 1000,
        keyPrefix: "steady-r",
        label: "reads",
      }),
    ]);
    clearInterval(sampler);
    const last = await sample(cluster, startedAt);
    samples.push(last);
    const electionsAfter = await counterTotal(cluster.nodes, "baton_elections_started_total");
    const elections = electionsAfter - electionsBefore;
    const changes = samples.filter((s) =>
      s.views.some(
        (v) => v.role !== "unreachable" && (v.term !== first.term || v.master !== first.id),
      ),
    );
    const ops = loads.reduce((sum, l) => sum + l.ops, 0);
    const errors = loads.reduce((sum, l) => sum + l.errors, 0);
    const summary = {
      date: new Date().toISOString(),
      durationS: options.durationMs / 1000,
      clients: options.clients,
      valueBytes: options.valueBytes,
      ops,
      errors,
      writesPerSecond: Math.round(loads[0]!.opsPerSecond),
      readsPerSecond: Math.round(loads[1]!.opsPerSecond),
      master: first,
      electionsStarted: elections,
      samplesWithAnotherTermOrMaster: changes.length,
      firstChange: changes[0] ?? null,
      loopDelayMaxMs: loopDelayMax(samples),
      loadAverage: loadavg(),
    };
    mkdirSync(options.out, { recursive: true });
    writeFileSync(
      join(options.out, "steady.json"),
      `${JSON.stringify({ summary, samples }, null, 2)}\n`,
    );
    console.log(
      `${summary.durationS} s, ${ops} operations (${errors} errors), ${summary.writesPerSecond} writes/s and ${summary.readsPerSecond} reads/s; ` +
        `elections started: ${elections}; master ${first.id} in term ${first.term} ${changes.length === 0 ? "throughout" : `changed (first at ${changes[0]!.atMs} ms)`}; ` +
        `longest event-loop delay per node (ms): ${JSON.stringify(summary.loopDelayMaxMs)}; load ${summary.loadAverage.map((l) => l.toFixed(1)).join(" ")}`,
    );
    console.log(`written: ${join(options.out, "steady.json")}`);
    return elections === 0 && changes.length === 0 ? 0 : 1;
  } finally {
    await cluster.stop();
  }
}

runAsProgram("steady.ts", "bench:steady", main);
