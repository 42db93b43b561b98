/**
 * `npm run bench:failover`: how long a client cannot write when the master dies (SIGKILL),
 * hangs (SIGSTOP) or is cut off from the other nodes (partition), for Baton and, with
 * --compare etcd, for etcd, the same writer and the same faults for both. Each system gets
 * a three-node cluster of its own (Baton from the built CLI), one steady-rate writer that
 * starts a create-only write of a new key every 5 ms (harness/steady-writer.ts; neutral by
 * default, through Baton's client library with --writer client: bench/failover-writer.ts),
 * and --kills rounds per fault:
 *
 *   find the master → signal it (or cut it off) → wait for the others to agree on a new
 *   master → window = signal → first acknowledgement of a write issued after the signal →
 *   bring the node back (restart after 200 ms, SIGCONT after --pause-ms, or heal the
 *   partition after --partition-ms) → wait until it has caught up.
 *
 * A partition (root only; bench/partition.ts) drops every packet between the master's
 * process and the other nodes' processes, both ways, and nothing else: the writer (this
 * process) still reaches every node's client port, the isolated one included, for both
 * systems. Each node runs under a numeric uid of its own for that, since etcd's peer
 * connections cannot be told apart by address. Per partition it also records when the
 * isolated master stopped calling itself master (check-quorum: Baton's /v1/status role,
 * etcd's status leader), whether that came before another node called itself master, the
 * writes it acknowledged while cut off (issued after the cut: must be 0), and whether the
 * heal cost another election. The window starts once the cut is in force (iptables-restore
 * returned), like the others at the signal.
 *
 * With --hosts netns each node (and each etcd member) runs on a host of its own: a network
 * namespace with its own address on a bridge (src/chaos/hosts.ts), reached by the writer
 * as a client on the same LAN; partitions then cut the links between hosts, and the
 * `silent` fault takes the master's whole host off the network (its link goes down: no
 * reset, no close, no answer), which is what a machine that dies or hangs looks like from
 * the others.
 *
 * At the end every key is read back linearizably from the master: acknowledged writes
 * missing or changed are lost; a create refused because the key existed is a write
 * applied twice (for etcd, unless it is the retry of an unanswered attempt that found its
 * own value). Prints a table and writes results.json and results.md to --out.
 *
 *   npm run bench:failover -- --kills 20 --faults kill,stop --compare etcd
 *   npm run bench:failover -- --kills 10 --faults stop --writer client
 *   npm run bench:failover -- --hosts netns --kills 20 --faults silent --compare etcd
 *
 * It signals only the processes it started, by PID, and removes their data at the end.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import {
  cleanupSync,
  ensureBuilt,
  REPO_ROOT,
  resolveFrom,
  sleep,
  waitFor,
} from "../harness/processes.js";
import { summarize } from "../harness/stats.js";
import { SteadyRateWriter, type Verification, verifyWrites } from "../harness/steady-writer.js";
import { NetnsHosts, netnsUnsupported } from "../src/chaos/hosts.js";
import { isUnaskedCandidacy } from "../src/chaos/processes.js";
import { startBatonCluster } from "./baton-cluster.js";
import {
  type BenchCluster,
  fetchJson,
  type MasterView,
  nodeById,
  type SystemName,
} from "./bench-cluster.js";
import { NodeLog } from "./capacity-measure.js";
import { runAsProgram } from "./entry.js";
import { ensureEtcd, startEtcdCluster } from "./etcd-cluster.js";
import { openWritePath, type WriterKind } from "./failover-writer.js";
import { nodeUids, OwnerPartition, partitionUnsupported } from "./partition.js";

type Fault = "kill" | "stop" | "partition" | "switchover" | "rolling" | "silent";

const FAULTS: readonly Fault[] = ["kill", "stop", "partition", "switchover", "rolling", "silent"];

/** Where the nodes run: all on loopback, or each on a host of its own (netns). */
type HostsMode = "loopback" | "netns";

/** Cuts a master off from the other nodes, and heals: by process owner, or between hosts. */
interface Isolation {
  isolate(id: number): Promise<void>;
  heal(): Promise<void>;
}

/** Isolation between hosts of their own: every link from and to the master cut. */
function hostIsolation(hosts: NetnsHosts): Isolation {
  return {
    async isolate(id) {
      for (let other = 1; other <= hosts.count; other++) {
        if (other === id) continue;
        await hosts.cut(id, other);
        await hosts.cut(other, id);
      }
    },
    heal: () => hosts.healAll(),
  };
}

interface FailoverOptions {
  readonly compare: SystemName[];
  readonly kills: number;
  readonly faults: Fault[];
  readonly intervalMs: number;
  readonly attemptTimeoutMs: number;
  readonly pauseMs: number;
  readonly partitionMs: number;
  readonly out: string;
  readonly from: "dist" | "source";
  readonly etcdHeartbeatMs: number | null;
  readonly etcdElectionMs: number | null;
  readonly etcdPreVote: boolean | null;
  /** Baton's --election-ms (e.g. "150-300"), or null for its default. */
  readonly batonElectionMs: string | null;
  /** Bring the signalled node back and wait until it caught up (off in --smoke). */
  readonly rejoin: boolean;
  /** How the writes travel: the neutral writer, or Baton's client library. */
  readonly writer: WriterKind;
  readonly hosts: HostsMode;
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
  /** Baton only: the new master's own figure, last word from the old one to taking over. */
  readonly failoverMsLogged: number | null;
  /** Signal to the old node having caught up again, ms. */
  readonly rejoinedMs: number;
  readonly loadAverage1m: number;
  /** Partition rounds only. */
  readonly partition?: PartitionFigures;
  /** Rolling-restart rounds only. */
  readonly rolling?: RollingFigures;
}

interface RollingFigures {
  /** The order of the SIGTERMs: the backups, then the master. */
  readonly order: readonly number[];
  /** The term grew by this much more than the one hand-over: elections by timeout. */
  readonly extraTerms: number;
  /**
   * Baton only: candidacies its nodes logged during the round that no master asked for
   * (elections after a timeout or a lost connection); null for etcd, which logs at warn.
   */
  readonly unaskedCandidacies: number | null;
}

interface PartitionFigures {
  /** How long iptables-restore took to put the cut in place; the window starts after it. */
  readonly cutApplyMs: number;
  /**
   * Cut to the isolated master no longer calling itself master (its status polled every
   * 20 ms through its client port), ms; null when it still did at the heal.
   */
  readonly stoppedServingMs: number | null;
  /**
   * Cut to another node first calling itself master (polled alongside, every 20 ms), ms:
   * the election, before the third node has heard of it ("new master agreed" waits for
   * that too); null if never seen.
   */
  readonly electedMs: number | null;
  /**
   * Whether the isolated master stopped calling itself master before another node started
   * to (check-quorum ahead of the election): "before" or "after" when the 20 ms polls tell
   * them apart, "same poll" when one poll of all three saw both.
   */
  readonly stoppedBeforeNewMaster: "before" | "same poll" | "after" | "never";
  /** Writes issued after the cut that the isolated node acknowledged before the heal. */
  readonly isolatedAcks: number;
  /** Cut to heal, ms. */
  readonly healedAfterMs: number;
  /** Heal to the old master having caught up, ms (null without rejoin). */
  readonly caughtUpAfterHealMs: number | null;
  /** The term all three agreed on once the old master caught up (null without rejoin). */
  readonly termAfterHeal: number | null;
  /** The heal cost another election: termAfterHeal above the new master's term. */
  readonly healElection: boolean | null;
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
    if (!FAULTS.includes(f as Fault)) throw new InvalidArgumentError(`unknown fault ${f}`);
  }
  return list as Fault[];
}

function parseWriter(text: string): WriterKind {
  if (text !== "neutral" && text !== "client") throw new InvalidArgumentError("neutral or client");
  return text;
}

function parseOptions(argv: readonly string[]): FailoverOptions {
  const command = new Command("bench:failover")
    .option("--compare <system>", "also measure etcd", (v) => {
      if (v !== "etcd") throw new InvalidArgumentError("only etcd");
      return ["etcd"] as SystemName[];
    })
    .option("--kills <n>", "rounds per fault", parsePositive, 20)
    .option(
      "--faults <list>",
      "kill (SIGKILL), stop (SIGSTOP, then SIGCONT), partition (cut the master off from the other nodes; root), switchover (a planned hand-over to the next node), rolling (SIGTERM and restart every node in turn, the master last), silent (the master's host drops off the network: no reset, no close; --hosts netns)",
      parseFaults,
      ["kill"],
    )
    .option("--interval-ms <ms>", "a new write every this many ms", parsePositive, 5)
    .option("--attempt-timeout-ms <ms>", "the writer's wait per attempt", parsePositive, 1000)
    .option("--pause-ms <ms>", "how long a stopped master stays stopped", parsePositive, 2000)
    .option("--partition-ms <ms>", "how long a cut-off master stays cut off", parsePositive, 2000)
    .option("--etcd-heartbeat-ms <ms>", "etcd --heartbeat-interval (default etcd's)", parsePositive)
    .option("--etcd-election-ms <ms>", "etcd --election-timeout (default etcd's)", parsePositive)
    .option("--etcd-pre-vote", "etcd --pre-vote=true (off by default in etcd 3.4)")
    .option("--baton-election-ms <range>", "Baton --election-ms, e.g. 150-300 (default Baton's)")
    .option("--out <dir>", "results folder (default results/failover/<date>)")
    .option("--from <where>", "dist (the built CLI, default), source (tsx, no build), auto", "dist")
    .option(
      "--writer <how>",
      "neutral (the same writer for Baton and etcd) or client (Baton's client library; no partition)",
      parseWriter,
      "neutral",
    )
    .option(
      "--hosts <mode>",
      "loopback (every node on this machine's loopback) or netns (each node on a host of its own: a network namespace on a bridge; root)",
      (v) => {
        if (v !== "loopback" && v !== "netns") throw new InvalidArgumentError("loopback or netns");
        return v;
      },
      "loopback",
    )
    .option("--smoke", "a tiny run: 1 round of each fault asked for, no rejoin")
    .exitOverride()
    .parse([...argv], { from: "user" });
  const o = command.opts<{
    compare?: SystemName[];
    kills: number;
    faults: Fault[];
    intervalMs: number;
    attemptTimeoutMs: number;
    pauseMs: number;
    partitionMs: number;
    etcdHeartbeatMs?: number;
    etcdElectionMs?: number;
    etcdPreVote?: boolean;
    batonElectionMs?: string;
    out?: string;
    from: string;
    writer: WriterKind;
    hosts: HostsMode;
    smoke?: boolean;
  }>();
  if (o.faults.includes("silent") && o.hosts !== "netns") {
    command.error(
      "error: --faults silent needs --hosts netns (a host of its own whose link can go down; on loopback a dead peer's connections reset at once)",
      { exitCode: 2 },
    );
  }
  if (o.writer === "client" && (o.compare !== undefined || o.faults.includes("partition"))) {
    command.error(
      "error: --writer client measures Baton alone (etcd has no such client) and no partition (the client does not say which node answered)",
      { exitCode: 2 },
    );
  }
  const smoke = o.smoke === true;
  const date = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return {
    compare: o.compare ?? [],
    kills: smoke ? 1 : o.kills,
    faults: o.faults,
    intervalMs: o.intervalMs,
    attemptTimeoutMs: smoke ? 300 : o.attemptTimeoutMs,
    pauseMs: smoke ? 800 : o.pauseMs,
    partitionMs: smoke ? 800 : o.partitionMs,
    out: resolve(o.out ?? join(REPO_ROOT, "results", "failover", date)),
    from: resolveFrom(o.from),
    etcdHeartbeatMs: o.etcdHeartbeatMs ?? null,
    etcdElectionMs: o.etcdElectionMs ?? null,
    etcdPreVote: o.etcdPreVote === true ? true : null,
    batonElectionMs: o.batonElectionMs ?? null,
    rejoin: !smoke,
    writer: o.writer,
    hosts: o.hosts,
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
  writer: SteadyRateWriter,
  options: FailoverOptions,
  fault: Fault,
  n: number,
  network: Isolation | null,
  hosts: NetnsHosts | null,
): Promise<Round> {
  const master = await waitFor(
    "a master",
    async () => (await cluster.master()) ?? undefined,
    30_000,
  );
  if (fault === "partition") {
    if (network === null) throw new Error("a partition round without a partition");
    return partitionRound(cluster, writer, options, n, network, master);
  }
  if (fault === "switchover") {
    // A planned hand-over to the next node: the window is the pause a client sees.
    const to = cluster.nodes.map((n) => n.id).find((id) => id > master.id) ?? cluster.nodes[0]!.id;
    // The master refuses a target that has not answered it lately (409): a node just
    // started, or one stalled on a loaded machine. Wait until it has caught up, then ask
    // again while it is refused for that reason, so the window measured is the hand-over's.
    await waitFor(
      "the switchover target to catch up",
      async () => ((await cluster.caughtUp(to)) ? true : undefined),
      30_000,
      50,
    );
    const askedAt = await askSwitchover(cluster, master.id, to);
    const { next, masterAgreedMs, windowMs } = await failedOver(cluster, writer, master, askedAt);
    return roundResult(cluster, fault, n, master, next, windowMs, masterAgreedMs, 0);
  }
  if (fault === "rolling") return rollingRound(cluster, writer, n, master);
  if (fault === "silent") {
    if (hosts === null) throw new Error("a silent-host round without hosts of their own");
    return silentRound(cluster, writer, options, n, hosts, master);
  }
  const node = nodeById(cluster, master.id).process;
  const signalledAt = performance.now();
  if (fault === "kill") await node.kill();
  else node.signal("SIGSTOP");
  const { next, masterAgreedMs, windowMs } = await failedOver(cluster, writer, master, signalledAt);
  if (!options.rejoin) {
    // The smoke run ends here: two nodes still make a majority for the final check.
    if (fault === "stop") node.signal("SIGCONT");
    return roundResult(cluster, fault, n, master, next, windowMs, masterAgreedMs, 0);
  }
  if (fault === "kill") {
    await sleep(200);
    node.start();
  } else {
    await sleep(Math.max(0, options.pauseMs - (performance.now() - signalledAt)));
    node.signal("SIGCONT");
  }
  await oldMasterCaughtUp(cluster, master.id);
  const rejoinedMs = performance.now() - signalledAt;
  return roundResult(cluster, fault, n, master, next, windowMs, masterAgreedMs, rejoinedMs);
}

/**
 * The master's host drops off the network (the bridge's end of its cable goes down: its
 * process runs on, nothing reaches it and nothing it sends arrives) → the others agree on a
 * new master and a write issued after the cut is acknowledged → plugged back in after
 * --partition-ms → it catches up.
 */
async function silentRound(
  cluster: BenchCluster,
  writer: SteadyRateWriter,
  options: FailoverOptions,
  n: number,
  hosts: NetnsHosts,
  master: MasterView,
): Promise<Round> {
  await hosts.down(master.id);
  const downAt = performance.now();
  try {
    const { next, masterAgreedMs, windowMs } = await failedOver(cluster, writer, master, downAt);
    if (!options.rejoin) {
      return roundResult(cluster, "silent", n, master, next, windowMs, masterAgreedMs, 0);
    }
    await sleep(Math.max(0, options.partitionMs - (performance.now() - downAt)));
    await hosts.up(master.id);
    await oldMasterCaughtUp(cluster, master.id);
    const rejoinedMs = performance.now() - downAt;
    return roundResult(cluster, "silent", n, master, next, windowMs, masterAgreedMs, rejoinedMs);
  } finally {
    // Never leave a host unplugged for the next round or the final check.
    if (hosts.isDown(master.id)) await hosts.up(master.id);
  }
}

/**
 * A rolling restart as an operator makes it: each backup, then the master, gets SIGTERM,
 * is started again with the same command line 200 ms after it exited, and has caught up
 * before the next one goes. The master's SIGTERM makes it hand its role over first (both
 * Baton and etcd do). The window is from the master's SIGTERM to the first acknowledgement
 * of a write issued after it; elections by timeout show as terms beyond the one hand-over
 * (and, for Baton, as candidacies in its nodes' logs that no master asked for).
 */
async function rollingRound(
  cluster: BenchCluster,
  writer: SteadyRateWriter,
  n: number,
  master: MasterView,
): Promise<Round> {
  const startedAt = performance.now();
  const startedWall = Date.now();
  const order = [...cluster.nodes.map((x) => x.id).filter((id) => id !== master.id), master.id];
  let window: { next: MasterView; masterAgreedMs: number; windowMs: number } | null = null;
  for (const id of order) {
    const node = nodeById(cluster, id).process;
    const signalledAt = performance.now();
    await node.stop();
    if (id === master.id) window = await failedOver(cluster, writer, master, signalledAt);
    await sleep(200);
    node.start();
    await oldMasterCaughtUp(cluster, id);
  }
  const { next, masterAgreedMs, windowMs } = window!;
  const settled = await waitFor(
    "a master after the rolling restart",
    async () => (await cluster.master()) ?? undefined,
    30_000,
  );
  const rejoinedMs = performance.now() - startedAt;
  return {
    ...roundResult(cluster, "rolling", n, master, next, windowMs, masterAgreedMs, rejoinedMs),
    rolling: {
      order,
      extraTerms: settled.term - master.term - 1,
      unaskedCandidacies: unaskedCandidacies(cluster, startedWall),
    },
  };
}

/** Baton: candidacies logged since `sinceWall` (Date.now()) that no master asked for. */
function unaskedCandidacies(cluster: BenchCluster, sinceWall: number): number | null {
  if (cluster.system !== "baton") return null;
  let count = 0;
  for (const node of cluster.nodes) {
    const file = node.process.logFile;
    if (file === null) return null;
    count += new NodeLog(file, 0)
      .refresh()
      .filter(
        (l) => l.time >= sinceWall && l.event === "role" && isUnaskedCandidacy(l.role, l.reason),
      ).length;
  }
  return count;
}

/**
 * Asks `from` to hand the master role to `to`, again every 100 ms for up to 10 s while the
 * master answers that `to` has not answered it lately; returns when it was accepted
 * (performance.now()).
 */
async function askSwitchover(cluster: BenchCluster, from: number, to: number): Promise<number> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const askedAt = performance.now();
    try {
      await cluster.switchover(from, to);
      return askedAt;
    } catch (error) {
      const refusedAsSilent = String(error).includes("has not answered the master lately");
      if (!refusedAsSilent || performance.now() > deadline) throw error;
      log(`switchover ${from} → ${to} refused: node ${to} has not answered lately; asking again`);
      await sleep(100);
    }
  }
}

/** Waits (up to 60 s) until node `id`, the old master, has caught up with the new one. */
async function oldMasterCaughtUp(cluster: BenchCluster, id: number): Promise<void> {
  await waitFor(
    "the old master to catch up",
    async () => ((await cluster.caughtUp(id)) ? true : undefined),
    60_000,
    50,
  );
}

/**
 * Waits, after a fault at `at` (performance.now()), for the others to agree on a master
 * newer than `master`, and for the first write issued after `at` to be acknowledged.
 */
async function failedOver(
  cluster: BenchCluster,
  writer: SteadyRateWriter,
  master: MasterView,
  at: number,
): Promise<{ next: MasterView; masterAgreedMs: number; windowMs: number }> {
  const next = await waitFor(
    "a new master",
    async () => (await cluster.master([master.id], master.term + 1)) ?? undefined,
    30_000,
  );
  const masterAgreedMs = performance.now() - at;
  const first = await writer.waitForAckIssuedAfter(at, 30_000);
  return { next, masterAgreedMs, windowMs: (first.endedAt ?? performance.now()) - at };
}

/** What every round records, whatever the fault. */
function roundResult(
  cluster: BenchCluster,
  fault: Fault,
  n: number,
  master: MasterView,
  next: MasterView,
  windowMs: number,
  masterAgreedMs: number,
  rejoinedMs: number,
): Round {
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
    failoverMsLogged: loggedFailoverMs(cluster, next),
    rejoinedMs,
    loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
  };
}

/** What the new master `next` logged as its take-over time (Baton's role event), if any. */
function loggedFailoverMs(cluster: BenchCluster, next: MasterView): number | null {
  const file = nodeById(cluster, next.id).process.logFile;
  if (cluster.system !== "baton" || file === null) return null;
  const took = new NodeLog(file, 0).find(
    (l) => l.event === "role" && l.role === "master" && l.term === next.term,
  );
  return typeof took?.failoverMs === "number" ? took.failoverMs : null;
}

/**
 * Whether node `id` calls itself master now, asked through its client port (Baton:
 * /v1/status role; etcd: the status's leader is its own member id); null without an answer
 * within 500 ms.
 */
async function claimsMastership(cluster: BenchCluster, id: number): Promise<boolean | null> {
  const url = nodeById(cluster, id).url;
  try {
    if (cluster.system === "baton") {
      const a = await fetchJson(`${url}/v1/status`, { timeoutMs: 500 });
      return a.status === 200 ? (a.json as { role?: string }).role === "master" : null;
    }
    const a = await fetchJson(`${url}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      timeoutMs: 500,
    });
    if (a.status !== 200) return null;
    const status = a.json as { leader?: string; header?: { member_id?: string } };
    return status.leader !== undefined && status.leader === status.header?.member_id;
  } catch {
    return null;
  }
}

/**
 * One partition of the master: cut it off → wait for the others to agree on a new master
 * and for the first write issued after the cut to be acknowledged, watching meanwhile for
 * the isolated master to step down → heal after --partition-ms → wait until it caught up.
 */
async function partitionRound(
  cluster: BenchCluster,
  writer: SteadyRateWriter,
  options: FailoverOptions,
  n: number,
  network: Isolation,
  master: { readonly id: number; readonly term: number },
): Promise<Round> {
  const cutStartedAt = performance.now();
  await network.isolate(master.id);
  const cutAt = performance.now();
  // Poll every node's own view: when the isolated master stops calling itself master, and
  // when another node starts to.
  let watching = true;
  let stoppedServingMs: number | null = null;
  let electedMs: number | null = null;
  let stoppedPoll = 0;
  let electedPoll = 0;
  const watcher = (async (): Promise<void> => {
    for (let poll = 1; watching && (stoppedServingMs === null || electedMs === null); poll++) {
      await Promise.all(
        cluster.nodes.map(async (node) => {
          const claims = await claimsMastership(cluster, node.id);
          const at = performance.now() - cutAt;
          if (node.id === master.id) {
            if (claims === false && stoppedServingMs === null) {
              stoppedServingMs = at;
              stoppedPoll = poll;
            }
          } else if (claims === true && electedMs === null) {
            electedMs = at;
            electedPoll = poll;
          }
        }),
      );
      await sleep(20);
    }
  })();
  let healedAt = 0;
  try {
    const { next, masterAgreedMs, windowMs } = await failedOver(cluster, writer, master, cutAt);
    // Heal after --partition-ms, or once the old master stepped down if that came later
    // (up to 30 s: check-quorum should take one election timeout).
    await sleep(Math.max(0, options.partitionMs - (performance.now() - cutAt)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher,
      new Promise((done) => {
        timer = setTimeout(done, 30_000);
      }),
    ]);
    clearTimeout(timer);
    watching = false;
    await watcher;
    healedAt = performance.now();
    await network.heal();
    const isolatedAcks = writer.acknowledgedBy(master.id, cutAt, healedAt);
    let termAfterHeal: number | null = null;
    let caughtUpAfterHealMs: number | null = null;
    if (options.rejoin) {
      await oldMasterCaughtUp(cluster, master.id);
      caughtUpAfterHealMs = performance.now() - healedAt;
      const after = await waitFor(
        "a master after the heal",
        async () => (await cluster.master()) ?? undefined,
        30_000,
      );
      termAfterHeal = after.term;
    }
    const rejoinedMs = options.rejoin ? performance.now() - cutAt : 0;
    return {
      ...roundResult(cluster, "partition", n, master, next, windowMs, masterAgreedMs, rejoinedMs),
      partition: {
        cutApplyMs: cutAt - cutStartedAt,
        stoppedServingMs,
        electedMs,
        stoppedBeforeNewMaster:
          stoppedServingMs === null
            ? "never"
            : electedMs === null || stoppedPoll < electedPoll
              ? "before"
              : stoppedPoll === electedPoll
                ? "same poll"
                : "after",
        isolatedAcks,
        healedAfterMs: healedAt - cutAt,
        caughtUpAfterHealMs,
        termAfterHeal,
        healElection: termAfterHeal === null ? null : termAfterHeal > next.term,
      },
    };
  } finally {
    watching = false;
    // Whatever happened, never leave the master cut off for the next round.
    if (healedAt === 0) await network.heal();
  }
}

async function measure(
  cluster: BenchCluster,
  options: FailoverOptions,
  network: Isolation | null,
  hosts: NetnsHosts | null,
): Promise<SystemResult> {
  const path = openWritePath(options.writer, cluster, {
    attemptTimeoutMs: options.attemptTimeoutMs,
    deadlineMs: 30_000,
  });
  const writer = new SteadyRateWriter(path.write, {
    intervalMs: options.intervalMs,
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
        const r = await round(cluster, writer, options, fault, n, network, hosts);
        rounds.push(r);
        const p = r.partition;
        const extra =
          p === undefined
            ? ""
            : `, old master stopped calling itself master ${p.stoppedServingMs === null ? "never" : `${p.stoppedServingMs.toFixed(0)} ms`}, new one elected ${p.electedMs?.toFixed(0) ?? "-"} ms, ${p.isolatedAcks} acks from it while cut off, term after heal ${p.termAfterHeal ?? "-"}`;
        log(
          `  ${cluster.system} ${fault} #${n}: master ${r.oldMaster}@${r.oldTerm} → ${r.newMaster}@${r.newTerm}, window ${r.windowMs.toFixed(0)} ms, new master agreed ${r.masterAgreedMs.toFixed(0)} ms${extra}, caught up ${(r.rejoinedMs / 1000).toFixed(1)} s; load ${r.loadAverage1m}`,
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
    const reader = path.reader(nodeById(cluster, master.id).url);
    const verification = await verifyWrites(writer.records, reader.read, {
      // etcd has no idempotency key: a retry may find its own unanswered first attempt.
      retriesMayFindOwn: cluster.system === "etcd",
    }).finally(() => reader.close());
    return {
      system: cluster.system,
      description:
        options.writer === "client"
          ? `${cluster.description}; writes through Baton's client library`
          : cluster.description,
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
    await writer.stop();
    await path.close();
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
      const signal = {
        kill: "SIGKILL",
        stop: "SIGSTOP",
        partition: "partition",
        switchover: "switchover",
        rolling: "rolling restart",
        silent: "host silent",
      }[fault];
      rows.push(
        `| ${r.system} | ${signal} | ${w.count} | ${f(w.median)} | ${f(w.p90)} | ${f(w.max)} | ${f(a.median)} | ${r.writes.acknowledged} of ${r.writes.issued} | ${r.writes.lost.length} | ${r.writes.duplicated.length} | ${load?.toFixed(1) ?? "-"} |`,
      );
    }
  }
  return rows.join("\n");
}

/** The rolling-restart rounds' own figures: elections by timeout, the restart's length. */
function rollingTable(results: readonly SystemResult[]): string | null {
  const rows = [
    "| system | rolling restarts | master's SIGTERM to a write acknowledged, median ms | max ms | terms beyond one hand-over each | candidacies no master asked for | three nodes restarted and caught up, median s | writes failed |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  let any = false;
  for (const r of results) {
    const mine = r.rounds.filter((x) => x.rolling !== undefined);
    if (mine.length === 0) continue;
    any = true;
    const w = summarize(mine.map((x) => x.windowMs));
    const extra = mine.reduce((sum, x) => sum + x.rolling!.extraTerms, 0);
    const asked = mine.map((x) => x.rolling!.unaskedCandidacies);
    const unasked = asked.includes(null)
      ? "-"
      : String(asked.reduce((sum, x) => (sum ?? 0) + (x ?? 0), 0));
    const restart = summarize(mine.map((x) => x.rejoinedMs / 1000)).median;
    rows.push(
      `| ${r.system} | ${mine.length} | ${w.median?.toFixed(0) ?? "-"} | ${w.max?.toFixed(0) ?? "-"} | ${extra} | ${unasked} | ${restart?.toFixed(1) ?? "-"} | ${r.writes.error} |`,
    );
  }
  return any ? rows.join("\n") : null;
}

/** The partition rounds' own figures: check-quorum, acknowledgements while cut off, heal. */
function partitionTable(results: readonly SystemResult[]): string | null {
  const rows = [
    "| system | partitions | old master stopped calling itself master, median ms | max ms | another node called itself master, median ms | old one stopped first | writes it acknowledged while cut off | heal cost an election | caught up after the heal, median ms | cut applied in, median ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const f = (v: number | null): string => (v === null ? "-" : v.toFixed(0));
  let any = false;
  for (const r of results) {
    const mine = r.rounds.flatMap((x) => (x.partition === undefined ? [] : [x.partition]));
    if (mine.length === 0) continue;
    any = true;
    const stopped = mine.flatMap((p) => (p.stoppedServingMs === null ? [] : [p.stoppedServingMs]));
    const s = summarize(stopped);
    const never = mine.length - stopped.length;
    const elected = summarize(mine.flatMap((p) => (p.electedMs === null ? [] : [p.electedMs])));
    const before = mine.filter((p) => p.stoppedBeforeNewMaster === "before").length;
    const ties = mine.filter((p) => p.stoppedBeforeNewMaster === "same poll").length;
    const acks = mine.reduce((sum, p) => sum + p.isolatedAcks, 0);
    const known = mine.filter((p) => p.healElection !== null);
    const healElections = known.filter((p) => p.healElection === true).length;
    const apply = summarize(mine.map((p) => p.cutApplyMs)).median;
    const caughtUp = summarize(
      mine.flatMap((p) => (p.caughtUpAfterHealMs === null ? [] : [p.caughtUpAfterHealMs])),
    ).median;
    rows.push(
      `| ${r.system} | ${mine.length} | ${f(s.median)}${never > 0 ? ` (${never} never)` : ""} | ${f(s.max)} | ${f(elected.median)} | ${before} of ${mine.length}${ties > 0 ? ` (${ties} same poll)` : ""} | ${acks} | ${known.length === 0 ? "-" : `${healElections} of ${known.length}`} | ${f(caughtUp)} | ${f(apply)} |`,
    );
  }
  return any ? rows.join("\n") : null;
}

async function runSystem(
  system: SystemName,
  options: FailoverOptions,
  skipped: string[],
): Promise<SystemResult | null> {
  let etcdVersion = "";
  if (system === "baton") {
    if (options.from === "dist") ensureBuilt(log);
  } else {
    const etcd = ensureEtcd(log);
    if (!etcd.ok) {
      log(`etcd skipped: ${etcd.reason}`);
      skipped.push(`etcd: ${etcd.reason}`);
      return null;
    }
    etcdVersion = etcd.version;
  }
  // Hosts of their own: a network namespace per node; partitions cut links between them.
  // On loopback, partitions put every node under a uid of its own, tagged by iptables
  // from before the nodes open their first connection (bench/partition.ts).
  let hosts: NetnsHosts | null = null;
  let owners: OwnerPartition | null = null;
  let network: Isolation | null = null;
  let uids: [number, number, number] | undefined;
  if (options.hosts === "netns") {
    hosts = await NetnsHosts.create({ count: 3 });
    log(`hosts: ${hosts.describe()}`);
    network = hostIsolation(hosts);
  } else if (options.faults.includes("partition")) {
    uids = nodeUids(3, system === "baton" ? 0 : 1) as [number, number, number];
    owners = await OwnerPartition.open(new Map(uids.map((uid, i) => [i + 1, uid])));
    network = owners;
  }
  let cluster: BenchCluster | null = null;
  try {
    if (system === "baton") {
      log("starting a 3-node Baton cluster");
      cluster = await startBatonCluster({
        from: options.from,
        ...(uids === undefined ? {} : { uids }),
        ...(hosts === null ? {} : { netns: hosts }),
        ...(options.batonElectionMs === null
          ? {}
          : { extraArgs: ["--election-ms", options.batonElectionMs] }),
      });
    } else {
      log("starting a 3-member etcd cluster");
      cluster = await startEtcdCluster(etcdVersion, {
        ...(options.etcdHeartbeatMs === null ? {} : { heartbeatMs: options.etcdHeartbeatMs }),
        ...(options.etcdElectionMs === null ? {} : { electionMs: options.etcdElectionMs }),
        ...(options.etcdPreVote === null ? {} : { preVote: options.etcdPreVote }),
        ...(uids === undefined ? {} : { uids }),
        ...(hosts === null ? {} : { netns: hosts }),
      });
    }
    return await measure(cluster, options, network, hosts);
  } finally {
    await cluster?.stop().catch(() => {});
    owners?.close();
    await hosts?.close();
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let options = parseOptions(argv);
  const skipped: string[] = [];
  const unsupported =
    options.hosts === "netns"
      ? netnsUnsupported()
      : options.faults.includes("partition")
        ? partitionUnsupported()
        : null;
  if (unsupported !== null && options.hosts === "netns") {
    process.stderr.write(`bench:failover: --hosts netns: ${unsupported}\n`);
    return 2;
  }
  if (unsupported !== null) {
    log(`partition skipped: ${unsupported}`);
    skipped.push(`partition: ${unsupported}`);
    options = { ...options, faults: options.faults.filter((f) => f !== "partition") };
  }
  mkdirSync(options.out, { recursive: true });
  const machine = {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    node: process.version,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
  log(
    `bench:failover: ${options.kills} round(s) of ${options.faults.join(", ") || "no fault"}, a write every ${options.intervalMs} ms; ${machine.cpus} CPUs, load ${machine.loadAverageAtStart.join(" ")}`,
  );
  const results: SystemResult[] = [];
  try {
    // Nothing to measure when the only fault asked for was skipped.
    const systems = options.faults.length === 0 ? [] : ["baton", ...options.compare];
    for (const system of systems as SystemName[]) {
      const result = await runSystem(system, options, skipped);
      if (result !== null) results.push(result);
    }
  } finally {
    cleanupSync();
  }
  const partitions = partitionTable(results);
  const rolling = rollingTable(results);
  const text =
    table(results, options.faults) +
    (partitions === null ? "" : `\n\n${partitions}`) +
    (rolling === null ? "" : `\n\n${rolling}`);
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

runAsProgram("failover.ts", "bench:failover", main);
