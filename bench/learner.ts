/**
 * `npm run bench:learner`: how long it takes to add a member to a cluster that holds a lot
 * of state, the way an operator adds one. A three-node cluster (real `baton start`
 * processes, data on disk with fsync) is filled through HTTP with --mb values of
 * --value-kib each (1 GiB of 1 MiB values by default), a snapshot every --snapshot-entries
 * entries compacting the log behind it down to --snapshot-keep-entries (so that the new
 * member needs a state transfer, as on a long-lived cluster); then, timed from the
 * operator's first command:
 *
 *   POST /v1/members (add node 4 as a learner, through the client library)
 *   → baton start --id 4 … --data <empty dir> --join <node 1's URL>
 *   → POST /v1/members/4/promote, repeated every 200 ms while the master answers 409
 *     (not caught up) → promoted.
 *
 * It reports the time to each step, node 4's state transfer (bytes, ms) as node 4 logs it,
 * when node 4 had applied the master's commit index, and the peak resident memory of
 * every node (VmHWM). Writes results.json to --out and prints a table.
 *
 *   nice npm run bench:learner -- --mb 1024
 *   npm run bench:learner -- --smoke
 *
 * It signals only the processes it started, by PID, and removes their data at the end.
 */

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { Cluster, clientFor, httpRequest } from "../harness/cluster.js";
import {
  batonCommand,
  cleanupSync,
  ensureBuilt,
  REPO_ROOT,
  resolveFrom,
  sleep,
} from "../harness/processes.js";
import { CampaignMembers } from "../src/chaos/members.js";
import { describeMachine, runAsProgram } from "./entry.js";

interface LearnerOptions {
  readonly mb: number;
  readonly valueKiB: number;
  readonly concurrency: number;
  readonly snapshotEntries: number;
  readonly snapshotKeepEntries: number;
  readonly from: "dist" | "source";
  /**
   * Add the learner only once the master's newest snapshot holds the whole state (true),
   * or at once after the last write (false: snapshots of the filled state may still be
   * being written, and the learner may need more than one state transfer).
   */
  readonly settle: boolean;
  readonly out: string;
}

export interface LearnerResult {
  readonly machine: Record<string, unknown>;
  readonly options: LearnerOptions;
  readonly commit: string;
  readonly fill: { readonly values: number; readonly bytes: number; readonly ms: number };
  /** Master's commit index when node 4 was added. */
  readonly commitIndexAtAdd: number;
  /** From the first membership request: the learner committed, promoted, caught up. */
  readonly addedMs: number;
  readonly promotedMs: number | null;
  readonly promoteAttempts: number;
  readonly caughtUpMs: number | null;
  /** From the last write to adding the learner (waiting for the snapshot with --settle), ms. */
  readonly settledMs: number;
  /** Node 4's state transfers as it logged them, in order (empty: it replayed the log). */
  readonly stateTransfers: readonly {
    readonly index: number;
    readonly bytes: number;
    readonly ms: number;
  }[];
  /** The master's snapshots during the run: index and ms it took to write, as logged. */
  readonly masterSnapshots: readonly { readonly index: number; readonly ms: number }[];
  /** Peak resident memory per node (VmHWM), in MiB, read before the nodes stop. */
  readonly peakRssMiB: Record<string, number | null>;
  readonly loadAverageAtEnd: number[];
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("a positive integer");
  return n;
}

function parse(argv: readonly string[]): LearnerOptions {
  const command = new Command("bench:learner")
    .description("time to add a learner to a cluster holding --mb of state, and promote it")
    .option("--mb <n>", "state to fill the cluster with, in MiB", positive, 1024)
    .option("--value-kib <n>", "size of each value, in KiB", positive, 1024)
    .option("--concurrency <n>", "writes in flight while filling", positive, 4)
    .option("--snapshot-entries <n>", "the nodes' --snapshot-entries", positive, 256)
    .option(
      "--snapshot-keep-entries <n>",
      "the nodes' --snapshot-keep-entries (few: the learner needs a state transfer)",
      positive,
      64,
    )
    .option("--from <where>", "dist, source or auto", "auto")
    .option(
      "--no-settle",
      "add the learner right after the last write, not once the master's newest snapshot holds it all",
    )
    .option("--out <dir>", "results folder (default results/learner/<time>)")
    .option("--smoke", "2 MiB of 64 KiB values: a check that it runs, not a figure")
    .exitOverride();
  command.parse([...argv], { from: "user" });
  const o = command.opts<{
    mb: number;
    valueKib: number;
    concurrency: number;
    snapshotEntries: number;
    snapshotKeepEntries: number;
    from: string;
    settle: boolean;
    out?: string;
    smoke?: boolean;
  }>();
  const smoke = o.smoke === true;
  const date = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return {
    mb: smoke ? 2 : o.mb,
    valueKiB: smoke ? 64 : o.valueKib,
    concurrency: o.concurrency,
    snapshotEntries: smoke ? 8 : o.snapshotEntries,
    snapshotKeepEntries: smoke ? 4 : o.snapshotKeepEntries,
    from: resolveFrom(o.from),
    settle: o.settle,
    out: resolve(o.out ?? join(REPO_ROOT, "results", "learner", date)),
  };
}

/** Puts `count` values of `valueBytes` through `url`, `concurrency` at a time. */
async function fill(url: string, count: number, valueBytes: number, concurrency: number) {
  const value = new Uint8Array(valueBytes).fill(0x61);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        const answer = await httpRequest(`${url}/v1/kv/fill-${i}`, {
          method: "PUT",
          body: value,
          timeoutMs: 30_000,
        }).catch((error: Error) => ({ status: 0, body: Buffer.from(error.message) }));
        if (answer.status === 200) break;
        if (attempt >= 5) {
          throw new Error(
            `PUT fill-${i}: ${answer.status} ${answer.body.toString().slice(0, 200)}`,
          );
        }
        await sleep(500);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function peakRssMiB(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb === undefined ? null : Math.round(Number(kb) / 1024);
  } catch {
    return null;
  }
}

/** The JSON lines of `event` in a node's log file. */
function logEvents(logFile: string, event: string): Record<string, unknown>[] {
  const found: Record<string, unknown>[] = [];
  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    if (!line.includes(`"event":"${event}"`)) continue;
    try {
      found.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut short by a stop: not one of ours.
    }
  }
  return found;
}

/** Completed state transfers (the "state transfer complete" lines carry bytes and ms). */
function stateTransfersOf(logFile: string): { index: number; bytes: number; ms: number }[] {
  return logEvents(logFile, "state_transfer").flatMap((e) =>
    typeof e.bytes === "number" && typeof e.ms === "number" && typeof e.index === "number"
      ? [{ index: e.index, bytes: e.bytes, ms: e.ms }]
      : [],
  );
}

function snapshotsOf(logFile: string): { index: number; ms: number }[] {
  return logEvents(logFile, "snapshot").flatMap((e) =>
    typeof e.index === "number" && typeof e.ms === "number" ? [{ index: e.index, ms: e.ms }] : [],
  );
}

function gitCommit(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    }).trim();
  } catch {
    return "unknown";
  }
}

export async function main(argv: string[]): Promise<number> {
  const options = parse(argv);
  const log = (line: string): void => console.log(`[bench:learner] ${line}`);
  if (options.from === "dist") ensureBuilt(log);
  mkdirSync(options.out, { recursive: true });
  const machine = describeMachine();
  const cluster = await Cluster.start(
    {
      size: 4,
      bootstrapSize: 3,
      startIds: [1, 2, 3],
      launcher: batonCommand(options.from),
      log: "files",
      rootPrefix: "baton-bench-learner-",
      snapshotEntries: options.snapshotEntries,
      extraArgs: ["--snapshot-keep-entries", String(options.snapshotKeepEntries)],
    },
    60_000,
  );
  const client = clientFor(cluster);
  // The campaign's operator: promote repeated while the master answers 409 (not caught up).
  const operator = new CampaignMembers(cluster.endpoints());
  try {
    const master = await cluster.waitForMaster();
    const values = Math.ceil((options.mb * 1024) / options.valueKiB);
    log(`filling through node ${master.id}: ${values} values of ${options.valueKiB} KiB`);
    const fillStarted = performance.now();
    await fill(cluster.node(master.id).url, values, options.valueKiB * 1024, options.concurrency);
    const fillMs = Math.round(performance.now() - fillStarted);
    log(`filled in ${fillMs} ms (${((options.mb / fillMs) * 1000).toFixed(1)} MiB/s)`);
    const filledAt = performance.now();
    let before = await cluster.waitForMaster();
    if (options.settle) {
      // As on a long-lived cluster: the newest snapshot holds the whole state when node 4
      // arrives (writing a snapshot of 1 GiB takes a minute or more on a busy machine).
      // A node snapshots once it has applied --snapshot-entries entries past its last one,
      // so the last snapshot of the fill is the first one within that many of the end.
      const newest = before.commitIndex - options.snapshotEntries + 1;
      const masterLog = join(cluster.root, `n${before.id}.log`);
      log(`waiting for node ${before.id}'s snapshot at ${newest} or later`);
      while (!snapshotsOf(masterLog).some((x) => x.index >= newest)) await sleep(500);
      before = await cluster.waitForMaster();
    }
    const settledMs = Math.round(performance.now() - filledAt);

    const node4 = cluster.node(4);
    const started = performance.now();
    await client.addMember({ id: 4, peerAddress: node4.peerAddress, httpUrl: node4.url });
    const addedMs = Math.round(performance.now() - started);
    cluster.startNode(4);
    let caughtUpMs: number | null = null;
    const watching = (async () => {
      while (caughtUpMs === null && performance.now() - started < 600_000) {
        if ((await cluster.caughtUp(4).catch(() => null)) !== null) {
          caughtUpMs = Math.round(performance.now() - started);
        } else await sleep(100);
      }
    })();
    const promoted = await operator.promoteWhenCaughtUp(4, 600_000);
    const promotedMs = promoted.ok ? Math.round(performance.now() - started) : null;
    await watching;
    const peak: Record<string, number | null> = {};
    for (const node of cluster.nodes) peak[`n${node.id}`] = peakRssMiB(node.pid);
    const result: LearnerResult = {
      machine,
      options,
      commit: gitCommit(),
      fill: { values, bytes: values * options.valueKiB * 1024, ms: fillMs },
      commitIndexAtAdd: before.commitIndex,
      addedMs,
      promotedMs,
      promoteAttempts: promoted.attempts,
      caughtUpMs,
      settledMs,
      stateTransfers: stateTransfersOf(join(cluster.root, "n4.log")),
      masterSnapshots: snapshotsOf(join(cluster.root, `n${before.id}.log`)),
      peakRssMiB: peak,
      loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))),
    };
    writeFileSync(join(options.out, "results.json"), `${JSON.stringify(result, null, 2)}\n`);
    const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
    const transfers = result.stateTransfers.map(
      (t) =>
        `snapshot ${t.index}: ${mib(t.bytes)} MiB in ${t.ms} ms (${(Number(mib(t.bytes)) / (t.ms / 1000)).toFixed(1)} MiB/s)`,
    );
    console.log(
      [
        `state: ${values} values of ${options.valueKiB} KiB (${options.mb} MiB), commit index ${before.commitIndex}`,
        `added ${settledMs} ms after the last write${options.settle ? " (once the master's newest snapshot held it all)" : ""}`,
        `master's snapshots (index: ms to write): ${result.masterSnapshots.map((x) => `${x.index}: ${x.ms}`).join(", ")}`,
        `learner added (committed): ${addedMs} ms`,
        `state transfers to node 4: ${transfers.length === 0 ? "none (caught up from the log)" : transfers.join("; ")}`,
        `caught up with the master's commit index: ${caughtUpMs ?? "never"} ms after the add`,
        `promoted: ${promotedMs ?? "never"} ms after the add (${promoted.attempts} promote requests)`,
        `peak RSS MiB: ${Object.entries(peak)
          .map(([n, v]) => `${n} ${v ?? "?"}`)
          .join(", ")}`,
        `load average at end: ${result.loadAverageAtEnd.join(" ")}`,
        `results: ${options.out}`,
      ].join("\n"),
    );
    return promoted.ok ? 0 : 1;
  } finally {
    await client.close();
    await operator.close();
    await cluster.destroy(10_000);
    cleanupSync();
  }
}

runAsProgram("learner.ts", "bench:learner", main);
