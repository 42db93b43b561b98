/**
 * Benchmark of fail-over as a client sees it: a three-node cluster of real `baton start`
 * processes on 127.0.0.1 with the default timeouts (heartbeat 50 ms, election 300-600
 * ms), one writer that starts a write through the client library every 5 ms (a unique key
 * each, only if absent), and the master killed with SIGKILL (or hung with SIGSTOP, with
 * --pause) again and again. The killed node is restarted each time (a hung one continued)
 * and the next round waits until it has caught up.
 *
 * Per fault it records the unavailability window: from the signal to the first
 * acknowledgement of a write issued after it (so the resolution is the write interval).
 * At the end it reads every key back linearizably and counts acknowledged writes lost and
 * writes applied twice (a 412 on a unique key). It prints a table and median/p90/max and
 * writes everything as JSON to results/failover-<date>.json.
 *
 *   npx tsx scripts/bench-failover.ts [--kills 20] [--pause] [--interval-ms 5]
 *     [--pause-ms 2000] [--attempt-timeout-ms 1000] [--out <file>]
 *
 * It signals only the processes it started, by PID, and removes its data at the end.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { createClient } from "../src/client/index.js";
import { Cluster, cleanupAll, REPO_ROOT, sleep } from "../test/integration/cluster.js";
import { OpenLoopWriter, summarize, verifyWrites } from "../test/integration/writer.js";

interface Options {
  readonly kills: number;
  readonly pause: boolean;
  readonly intervalMs: number;
  readonly pauseMs: number;
  readonly attemptTimeoutMs: number;
  readonly out: string | null;
}

interface Round {
  readonly round: number;
  readonly oldMaster: number;
  readonly oldTerm: number;
  readonly newMaster: number;
  readonly newTerm: number;
  /** Signal to the first acknowledgement of a write issued after it, ms. */
  readonly windowMs: number;
  /** Signal to the survivors agreeing on a new master (polled every 25 ms), ms. */
  readonly masterAgreedMs: number;
  /** The new master's own figure: last message from the old master to taking over, ms. */
  readonly failoverMsLogged: number | null;
  /** Signal to the old node having caught up again (restarted or continued), ms. */
  readonly rejoinedMs: number;
  /** --pause only: the continued old master never caught up and was restarted. */
  readonly hung: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const options: Options = {
    kills: Number(value("--kills") ?? 20),
    pause: argv.includes("--pause"),
    intervalMs: Number(value("--interval-ms") ?? 5),
    pauseMs: Number(value("--pause-ms") ?? 2000),
    attemptTimeoutMs: Number(value("--attempt-timeout-ms") ?? 1000),
    out: value("--out") ?? null,
  };
  for (const [name, v] of Object.entries(options)) {
    if (typeof v === "number" && !(Number.isFinite(v) && v > 0)) {
      throw new Error(`--${name}: expected a positive number`);
    }
  }
  return options;
}

/** One fault: signal the master, measure, bring the node back, wait until it caught up. */
async function round(
  cluster: Cluster,
  writer: OpenLoopWriter,
  options: Options,
  n: number,
): Promise<Round> {
  const master = await cluster.waitForMaster({ timeoutMs: 20_000 });
  const signalledAt = performance.now();
  if (options.pause) cluster.pause(master.id);
  else await cluster.kill(master.id);
  const next = await cluster.waitForMaster({
    exclude: [master.id],
    minTerm: master.term + 1,
    timeoutMs: 20_000,
  });
  const masterAgreedMs = performance.now() - signalledAt;
  const first = await writer.waitForAckIssuedAfter(signalledAt, 30_000);
  const windowMs = first.endedAt! - signalledAt;
  const took = cluster
    .node(next.id)
    .events("role", signalledAt)
    .find((e) => e.role === "master" && e.term === next.term);
  const failoverMsLogged = typeof took?.failoverMs === "number" ? took.failoverMs : null;
  let hung = false;
  if (options.pause) {
    await sleep(Math.max(0, options.pauseMs - (performance.now() - signalledAt)));
    cluster.resume(master.id);
    try {
      await cluster.waitCaughtUp(master.id, 15_000);
    } catch {
      // An old master that never catches up after SIGCONT has hung (see
      // test/scenarios/master-step-down.test.ts, fixed in 263ff90): note it, restart it.
      hung = true;
      await cluster.restart(master.id);
    }
  } else {
    await sleep(200);
    await cluster.restart(master.id);
  }
  await cluster.waitCaughtUp(master.id, 60_000);
  const rejoinedMs = performance.now() - signalledAt;
  return {
    round: n,
    oldMaster: master.id,
    oldTerm: master.term,
    newMaster: next.id,
    newTerm: next.term,
    windowMs,
    masterAgreedMs,
    failoverMsLogged,
    rejoinedMs,
    hung,
  };
}

function printRow(r: Round): void {
  const cells = [
    String(r.round).padStart(5),
    `${r.oldMaster}@${r.oldTerm}`.padStart(8),
    `${r.newMaster}@${r.newTerm}`.padStart(8),
    r.windowMs.toFixed(0).padStart(10),
    r.masterAgreedMs.toFixed(0).padStart(13),
    (r.failoverMsLogged === null ? "-" : String(r.failoverMsLogged)).padStart(12),
    (r.rejoinedMs / 1000).toFixed(1).padStart(11),
    r.hung ? "  old master hung after SIGCONT; restarted" : "",
  ];
  console.log(cells.join("  "));
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const fault = options.pause ? "SIGSTOP" : "SIGKILL";
  const machine = {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverageAtStart: loadavg(),
  };
  console.log(
    `fail-over benchmark: ${options.kills} x ${fault} of the master, a write every ${options.intervalMs} ms; ${machine.cpus} CPUs, Node ${machine.node}, load ${machine.loadAverageAtStart.map((l) => l.toFixed(1)).join(" ")}`,
  );
  const cluster = await Cluster.start({}, 60_000);
  const client = createClient({
    endpoints: cluster.endpoints(),
    deadlineMs: 30_000,
    attemptTimeoutMs: options.attemptTimeoutMs,
  });
  const writer = new OpenLoopWriter(client, {
    intervalMs: options.intervalMs,
    keyPrefix: `bench-${Date.now()}`,
    inflightMax: 2000,
  });
  const rounds: Round[] = [];
  try {
    writer.start();
    await writer.waitForAckIssuedAfter(performance.now(), 20_000);
    console.log("round  old m@t   new m@t   window ms  new master ms  logged ms  rejoined s");
    for (let n = 1; n <= options.kills; n++) {
      await sleep(500);
      const r = await round(cluster, writer, options, n);
      rounds.push(r);
      printRow(r);
    }
    await sleep(500);
    await writer.stop();
    await cluster.waitForMaster({ timeoutMs: 20_000 });
    const verification = await verifyWrites(client, writer.records);
    const counts = writer.counts();
    const windows = summarize(rounds.map((r) => r.windowMs));
    const agreed = summarize(rounds.map((r) => r.masterAgreedMs));
    const fmt = (v: number | null): string => (v === null ? "-" : v.toFixed(0));
    console.log(
      `\nunavailability window (${fault} -> first acknowledged write issued after it), ms: median ${fmt(windows.median)}, p90 ${fmt(windows.p90)}, max ${fmt(windows.max)} over ${windows.count}`,
    );
    console.log(
      `new master agreed by the survivors, ms: median ${fmt(agreed.median)}, p90 ${fmt(agreed.p90)}, max ${fmt(agreed.max)}`,
    );
    console.log(
      `${rounds.filter((r) => r.hung).length} of ${rounds.length} old masters hung after the fault and were restarted\n` +
        `writes: ${writer.records.length} issued, ${counts.ok} acknowledged, ${counts.error} errors (${verification.uncertainApplied} of them applied), ${writer.skipped} skipped; lost ${verification.lost.length}, applied twice ${verification.duplicated.length}`,
    );
    const report = {
      date: new Date().toISOString(),
      command: `npx tsx scripts/bench-failover.ts ${process.argv.slice(2).join(" ")}`.trim(),
      fault,
      options,
      machine: { ...machine, loadAverageAtEnd: loadavg() },
      client: { deadlineMs: 30_000, attemptTimeoutMs: options.attemptTimeoutMs },
      rounds,
      windowMs: windows,
      masterAgreedMs: agreed,
      hungOldMasters: rounds.filter((r) => r.hung).length,
      writes: {
        issued: writer.records.length,
        ...counts,
        skipped: writer.skipped,
        uncertainApplied: verification.uncertainApplied,
        lost: verification.lost,
        duplicated: verification.duplicated,
        errors: writer.records
          .filter((r) => r.outcome?.kind === "error")
          .slice(0, 20)
          .map((r) => ({ key: r.key, outcome: r.outcome })),
      },
    };
    const out =
      options.out ??
      join(
        REPO_ROOT,
        "results",
        `failover-${report.date.replace(/[:.]/g, "-")}${options.pause ? "-pause" : ""}.json`,
      );
    mkdirSync(join(out, ".."), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`written to ${out}`);
    return verification.lost.length === 0 && verification.duplicated.length === 0 ? 0 : 1;
  } catch (error) {
    console.error(`bench-failover: ${(error as Error).stack ?? String(error)}`);
    console.error(cluster.logTails(30));
    return 1;
  } finally {
    await writer.stop().catch(() => {});
    await client.close();
    await cleanupAll();
  }
}

process.on("SIGINT", () => {
  void cleanupAll().then(() => process.exit(130));
});
process.exitCode = await main();
