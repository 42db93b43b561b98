/**
 * `npm run bench:failover`: how long a client cannot write when the master dies (SIGKILL)
 * or hangs (SIGSTOP), for Baton and, with --compare etcd, for etcd, the same writer and
 * the same faults for both. Each system gets a three-node cluster of its own (Baton from
 * the built CLI), one writer that starts a create-only write of a new key every 5 ms
 * (bench/failover-writer.ts), and --kills rounds per fault:
 *
 *   find the master → signal it → wait for the others to agree on a new master →
 *   window = signal → first acknowledgement of a write issued after the signal →
 *   bring the node back (restart after 200 ms, or SIGCONT after --pause-ms) →
 *   wait until it has caught up.
 *
 * At the end every key is read back linearizably from the master: acknowledged writes
 * missing or changed are lost; a create refused because the key existed is a write
 * applied twice (for etcd, unless it is the retry of an unanswered attempt that found its
 * own value). Prints a table and writes results.json and results.md to --out.
 *
 *   npm run bench:failover -- --kills 20 --faults kill,stop --compare etcd
 *
 * It signals only the processes it started, by PID, and removes their data at the end.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { startBatonCluster } from "./baton-cluster.js";
import { type BenchCluster, nodeById, type SystemName } from "./bench-cluster.js";
import { ensureEtcd, startEtcdCluster } from "./etcd-cluster.js";
import { FailoverWriter, type Verification } from "./failover-writer.js";
import { cleanupSync, ensureBuilt, REPO_ROOT, resolveFrom, sleep, waitFor } from "./processes.js";
import { summarize } from "./stats.js";

type Fault = "kill" | "stop";

interface FailoverOptions {
  readonly compare: SystemName[];
  readonly kills: number;
  readonly faults: Fault[];
  readonly intervalMs: number;
  readonly attemptTimeoutMs: number;
  readonly pauseMs: number;
  readonly out: string;
  readonly from: "dist" | "source";
  readonly etcdHeartbeatMs: number | null;
  readonly etcdElectionMs: number | null;
  /** Bring the signalled node back and wait until it caught up (off in --smoke). */
  readonly rejoin: boolean;
}

interface Round {
  readonly system: SystemName;
  readonly fault: Fault;
  readonly round: number;
  readonly oldMaster: number;
  readonly oldTerm: number;
  readonly newMaster: number;
  readonly newTerm: number;
  /** Signal to the first acknowledgement of a write issued after it, ms. */
  readonly windowMs: number;
  /** Signal to the others agreeing on a new master (polled every 20 ms), ms. */
  readonly masterAgreedMs: number;
  /** Signal to the old node having caught up again, ms. */
  readonly rejoinedMs: number;
  readonly loadAverage1m: number;
}

interface SystemResult {
  readonly system: SystemName;
  readonly description: string;
  readonly rounds: readonly Round[];
  readonly writes: {
    readonly issued: number;
    readonly ok: number;
    readonly existed: number;
    readonly error: number;
    readonly skipped: number;
    /** The first writes the writer gave up on, with the last answer or error. */
    readonly errorSamples: readonly unknown[];
  } & Verification;
}

function parsePositive(text: string): number {
  const n = Number(text);
  if (!(Number.isFinite(n) && n > 0)) throw new InvalidArgumentError(`not a positive number`);
  return n;
}

function parseFaults(text: string): Fault[] {
  const list = text.split(",").map((s) => s.trim());
  for (const f of list) {
    if (f !== "kill" && f !== "stop") throw new InvalidArgumentError(`unknown fault ${f}`);
  }
  return list as Fault[];
}

function parseOptions(argv: readonly string[]): FailoverOptions {
  const o = new Command("bench:failover")
    .option("--compare <system>", "also measure etcd", (v) => {
      if (v !== "etcd") throw new InvalidArgumentError("only etcd");
      return ["etcd"] as SystemName[];
    })
    .option("--kills <n>", "rounds per fault", parsePositive, 20)
    .option("--faults <list>", "kill (SIGKILL), stop (SIGSTOP, then SIGCONT)", parseFaults, [
      "kill",
    ])
    .option("--interval-ms <ms>", "a new write every this many ms", parsePositive, 5)
    .option("--attempt-timeout-ms <ms>", "the writer's wait per attempt", parsePositive, 1000)
    .option("--pause-ms <ms>", "how long a stopped master stays stopped", parsePositive, 2000)
    .option("--etcd-heartbeat-ms <ms>", "etcd --heartbeat-interval (default etcd's)", parsePositive)
    .option("--etcd-election-ms <ms>", "etcd --election-timeout (default etcd's)", parsePositive)
    .option("--out <dir>", "results folder (default results/failover/<date>)")
    .option("--from <where>", "dist (the built CLI, default), source (tsx, no build), auto", "dist")
    .option("--smoke", "a tiny run: 1 round of each fault asked for, no rejoin")
    .exitOverride()
    .parse([...argv], { from: "user" })
    .opts<{
      compare?: SystemName[];
      kills: number;
      faults: Fault[];
      intervalMs: number;
      attemptTimeoutMs: number;
      pauseMs: number;
      etcdHeartbeatMs?: number;
      etcdElectionMs?: number;
      out?: string;
      from: string;
      smoke?: boolean;
    }>();
  const smoke = o.smoke === true;
  const date = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return {
    compare: o.compare ?? [],
    kills: smoke ? 1 : o.kills,
    faults: o.faults,
    intervalMs: o.intervalMs,
    attemptTimeoutMs: smoke ? 300 : o.attemptTimeoutMs,
    pauseMs: smoke ? 800 : o.pauseMs,
    out: resolve(o.out ?? join(REPO_ROOT, "results", "failover", date)),
    from: resolveFrom(o.from),
    etcdHeartbeatMs: o.etcdHeartbeatMs ?? null,
    etcdElectionMs: o.etcdElectionMs ?? null,
    rejoin: !smoke,
  };
}

const startedAt = performance.now();

/** A progress line on stderr, with the seconds since the benchmark started. */
function log(line: string): void {
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`${seconds}s ${line}\n`);
}

async function round(
  cluster: BenchCluster,
  writer: FailoverWriter,
  options: FailoverOptions,
  fault: Fault,
  n: number,
): Promise<Round> {
  const master = await waitFor(
    "a master",
    async () => (await cluster.master()) ?? undefined,
    30_000,
  );
  const node = nodeById(cluster, master.id).process;
  const signalledAt = performance.now();
  if (fault === "kill") await node.kill();
  else node.signal("SIGSTOP");
  const next = await waitFor(
    "a new master",
    async () => (await cluster.master([master.id], master.term + 1)) ?? undefined,
    30_000,
  );
  const masterAgreedMs = performance.now() - signalledAt;
  const first = await writer.waitForAckIssuedAfter(signalledAt, 30_000);
  const windowMs = (first.endedAt ?? performance.now()) - signalledAt;
  if (!options.rejoin) {
    // The smoke run ends here: two nodes still make a majority for the final check.
    if (fault === "stop") node.signal("SIGCONT");
    return {
      system: cluster.system,
      fault,
      round: n,
      oldMaster: master.id,
      oldTerm: master.term,
      newMaster: next.id,
      newTerm: next.term,
      windowMs,
      masterAgreedMs,
      rejoinedMs: 0,
      loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
    };
  }
  if (fault === "kill") {
    await sleep(200);
    node.start();
  } else {
    await sleep(Math.max(0, options.pauseMs - (performance.now() - signalledAt)));
    node.signal("SIGCONT");
  }
  await waitFor(
    "the old master to catch up",
    async () => ((await cluster.caughtUp(master.id)) ? true : undefined),
    60_000,
    50,
  );
  return {
    system: cluster.system,
    fault,
    round: n,
    oldMaster: master.id,
    oldTerm: master.term,
    newMaster: next.id,
    newTerm: next.term,
    windowMs,
    masterAgreedMs,
    rejoinedMs: performance.now() - signalledAt,
    loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
  };
}

async function measure(cluster: BenchCluster, options: FailoverOptions): Promise<SystemResult> {
  const writer = new FailoverWriter(cluster, {
    intervalMs: options.intervalMs,
    attemptTimeoutMs: options.attemptTimeoutMs,
    deadlineMs: 30_000,
    keyPrefix: `failover-${Date.now()}`,
    inflightMax: 2000,
  });
  const rounds: Round[] = [];
  try {
    writer.start();
    await writer.waitForAckIssuedAfter(performance.now(), 20_000);
    for (const fault of options.faults) {
      for (let n = 1; n <= options.kills; n++) {
        await sleep(500);
        const r = await round(cluster, writer, options, fault, n);
        rounds.push(r);
        log(
          `  ${cluster.system} ${fault} #${n}: master ${r.oldMaster}@${r.oldTerm} → ${r.newMaster}@${r.newTerm}, window ${r.windowMs.toFixed(0)} ms, new master agreed ${r.masterAgreedMs.toFixed(0)} ms, caught up ${(r.rejoinedMs / 1000).toFixed(1)} s; load ${r.loadAverage1m}`,
        );
      }
    }
    await sleep(300);
    await writer.stop();
    const master = await waitFor(
      "a master",
      async () => (await cluster.master()) ?? undefined,
      30_000,
    );
    const verification = await writer.verify(nodeById(cluster, master.id).url);
    return {
      system: cluster.system,
      description: cluster.description,
      rounds,
      writes: {
        issued: writer.records.length,
        ...writer.counts(),
        skipped: writer.skipped,
        ...verification,
        errorSamples: writer.records
          .filter((r) => r.outcome?.kind === "error")
          .slice(0, 20)
          .map((r) => ({ key: r.key, startedAt: r.startedAt, outcome: r.outcome })),
      },
    };
  } finally {
    await writer.close();
  }
}

function table(results: readonly SystemResult[], faults: readonly Fault[]): string {
  const rows = [
    "| system | fault | rounds | window median ms | p90 ms | max ms | new master agreed, median ms | writes acknowledged | lost | applied twice | load avg |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const f = (v: number | null): string => (v === null ? "-" : v.toFixed(0));
  for (const r of results) {
    for (const fault of faults) {
      const mine = r.rounds.filter((x) => x.fault === fault);
      const w = summarize(mine.map((x) => x.windowMs));
      const a = summarize(mine.map((x) => x.masterAgreedMs));
      const load = summarize(mine.map((x) => x.loadAverage1m)).median;
      const signal = fault === "kill" ? "SIGKILL" : "SIGSTOP";
      rows.push(
        `| ${r.system} | ${signal} | ${w.count} | ${f(w.median)} | ${f(w.p90)} | ${f(w.max)} | ${f(a.median)} | ${r.writes.acknowledged} of ${r.writes.issued} | ${r.writes.lost.length} | ${r.writes.duplicated.length} | ${load?.toFixed(1) ?? "-"} |`,
      );
    }
  }
  return rows.join("\n");
}

async function runSystem(
  system: SystemName,
  options: FailoverOptions,
  skipped: string[],
): Promise<SystemResult | null> {
  let cluster: BenchCluster;
  if (system === "baton") {
    if (options.from === "dist") ensureBuilt(log);
    log("starting a 3-node Baton cluster");
    cluster = await startBatonCluster({ from: options.from });
  } else {
    const etcd = ensureEtcd(log);
    if (!etcd.ok) {
      log(`etcd skipped: ${etcd.reason}`);
      skipped.push(`etcd: ${etcd.reason}`);
      return null;
    }
    log("starting a 3-member etcd cluster");
    cluster = await startEtcdCluster(etcd.version, {
      ...(options.etcdHeartbeatMs === null ? {} : { heartbeatMs: options.etcdHeartbeatMs }),
      ...(options.etcdElectionMs === null ? {} : { electionMs: options.etcdElectionMs }),
    });
  }
  try {
    return await measure(cluster, options);
  } finally {
    await cluster.stop().catch(() => {});
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  mkdirSync(options.out, { recursive: true });
  const machine = {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    node: process.version,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
  log(
    `bench:failover: ${options.kills} round(s) of ${options.faults.join(", ")}, a write every ${options.intervalMs} ms; ${machine.cpus} CPUs, load ${machine.loadAverageAtStart.join(" ")}`,
  );
  const results: SystemResult[] = [];
  const skipped: string[] = [];
  try {
    for (const system of ["baton", ...options.compare] as SystemName[]) {
      const result = await runSystem(system, options, skipped);
      if (result !== null) results.push(result);
    }
  } finally {
    cleanupSync();
  }
  const text = table(results, options.faults);
  const report = {
    date: new Date().toISOString(),
    command: `npm run bench:failover -- ${argv.join(" ")}`.trim(),
    machine: { ...machine, loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))) },
    options,
    skipped,
    systems: results.map((r) => ({
      system: r.system,
      description: r.description,
      windowMs: Object.fromEntries(
        options.faults.map((f) => [
          f,
          summarize(r.rounds.filter((x) => x.fault === f).map((x) => x.windowMs)),
        ]),
      ),
      writes: r.writes,
      rounds: r.rounds,
    })),
  };
  writeFileSync(join(options.out, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
  const systems = results.map((r) => `- ${r.system}: ${r.description}`).join("\n");
  writeFileSync(
    join(options.out, "results.md"),
    `# Fail-over benchmark, ${report.date}\n\nCommand: \`${report.command}\`\n\n${systems}\n\n${text}\n`,
  );
  process.stdout.write(`\n${text}\n\n`);
  log(`written: ${join(options.out, "results.json")}, ${join(options.out, "results.md")}`);
  const bad = results.some((r) => r.writes.lost.length > 0 || r.writes.duplicated.length > 0);
  return bad ? 1 : 0;
}

const isMain = process.argv[1]?.endsWith("failover.ts") === true;
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const e = error as { code?: string; stack?: string };
      if (e.code?.startsWith("commander.") === true) {
        process.exitCode = e.code === "commander.helpDisplayed" ? 0 : 2;
        return;
      }
      process.stderr.write(`bench:failover: ${e.stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
