/**
 * One fault campaign against real processes, start to finish: start the cluster, run the
 * clients and the faults side by side for the fault phase, heal everything, measure how
 * long until every node serves again, read the final state, compare the replicas, judge the
 * history and write the report. It owns the order of those steps and the cleanup: every
 * process, partition rule, relay and data directory it made is gone when it returns or
 * throws.
 */

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { Prng } from "../core/prng.js";
import { makeDirectory } from "../shared/make-directory.js";
import { CampaignBank } from "./bank.js";
import {
  checkExactlyOnce,
  checkHistory,
  checkNoCrashes,
  checkNoErrors,
  checkNoLostWrites,
  type Verdict,
  type Verdicts,
} from "./checks.js";
import { hostsNetwork, NetnsHosts } from "./hosts.js";
import { CampaignLeases } from "./leases.js";
import { CampaignMembers, checkMembership } from "./members.js";
import {
  checkFaults,
  type FaultSkip,
  type FaultWindow,
  HOST_NEMESES,
  type NemesisKind,
  type ProbeOutcome,
  runNemeses,
} from "./nemesis.js";
import {
  IptablesNetwork,
  iptablesUsable,
  type Network,
  nodeHost,
  type PartitionMethod,
  RelayNetwork,
} from "./network.js";
import { freePorts, makeTempDir, removeTempDir } from "./process-registry.js";
import {
  agreedMaster,
  ChaosNode,
  isUnaskedCandidacy,
  PACKAGE_ROOT,
  type RoleEvent,
  type StatusView,
  startSupportsJoin,
  type UnexpectedExit,
} from "./processes.js";
import { timelineHtml, timelineSvg, writeReport } from "./report.js";
import { sleep } from "./wait.js";
import { CampaignWatch, checkWatch, recordsTarget, type WatchRecords } from "./watch-check.js";
import { requestErrorCode, Workload } from "./workload.js";

export interface CampaignOptions {
  readonly seed: number;
  /** Length of the fault phase, in milliseconds. */
  readonly durationMs: number;
  readonly nodes: number;
  readonly nemeses: readonly NemesisKind[];
  readonly clients: number;
  /** Keys in use at a time. @default 4 */
  readonly keys?: number;
  readonly out: string;
  readonly staleReads: boolean;
  readonly method: PartitionMethod | "auto";
  /**
   * "netns": each node on a host of its own (a network namespace on a bridge; root), which
   * implies the netns partition method and allows the host-down fault. @default "loopback"
   */
  readonly hosts?: "loopback" | "netns";
  /** Longest a node may take to serve again after healing, in ms. @default 30000 */
  readonly recoveryMsMax?: number;
  /** Called with a progress line every few seconds. */
  readonly progress?: (line: string) => void;
}

export interface CampaignTotals {
  readonly operations: number;
  readonly ok: number;
  readonly failed: number;
  readonly indeterminate: number;
  /** Faults that ran, by kind (a window that did not finish is not counted here). */
  readonly faults: Partial<Record<NemesisKind, number>>;
  /** Faults started but not finished (a refused switchover, a kill that found no process). */
  readonly unfinishedFaults: Partial<Record<NemesisKind, number>>;
  /** Faults drawn but skipped (the cluster not healthy enough, say), by kind. */
  readonly skippedFaults: Partial<Record<NemesisKind, number>>;
  /** Times a node became master, after the first master of the run. */
  readonly failovers: number;
  readonly unexpectedExits: number;
  /** Snapshots restored from the master, over all nodes. */
  readonly stateTransfers: number;
  /** Per node, ms from healing until it answered a write. */
  readonly recoveryMs: Record<string, number | null>;
}

export interface CampaignResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly method: PartitionMethod;
  readonly joinFlag: boolean;
  readonly verdicts: Verdicts;
  readonly totals: CampaignTotals;
  readonly outDir: string;
  readonly reproduce: string;
  readonly summary: string;
}

const STATUS_POLL_MS = 200;
const PROGRESS_MS = 5000;
/** Longest wait for the first master after spawning the nodes, in ms. */
const STARTUP_MS_MAX = 120_000;
/**
 * Default bound on serving again after healing, in ms. It includes starting any node that
 * was down (loading the TypeScript sources takes seconds on a busy machine) and its
 * catching up; the summary reports the real figures, which are far lower.
 */
const RECOVERY_MS_MAX = 30_000;
/** Entries a node may be behind the master's commit index and still count as caught up. */
const HEALTHY_LAG_MAX = 200;
/** Tries at reading every node's copies while no node applies anything (compareCopies). */
const COPY_COMPARE_ATTEMPTS = 6;
/** Keys whose copies differ, named in the converged verdict (the rest are counted). */
const COPY_PROBLEMS_SHOWN = 20;

/** The exact command that replays `options`' fault schedule. */
export function reproduceCommand(options: CampaignOptions, method: PartitionMethod): string {
  const flags = [
    `--seed ${options.seed}`,
    `--duration ${Math.round(options.durationMs / 1000)}`,
    `--nodes ${options.nodes}`,
    `--clients ${options.clients}`,
    `--nemesis ${options.nemeses.join(",")}`,
    method === "netns" ? "--hosts netns" : `--method ${method}`,
  ];
  if (options.staleReads) flags.push("--stale-reads");
  // From the sources that is the checkout's npm script; compiled, the installed command.
  const command = import.meta.url.endsWith(".ts") ? "npm run chaos --" : "baton chaos";
  return `${command} ${flags.join(" ")}`;
}

/**
 * Chooses the partition method: iptables when usable (as root in a checkout, after the
 * repository's system set-up script had its chance to install it), else relay.
 */
export function resolveMethod(
  method: PartitionMethod | "auto",
  hosts: "loopback" | "netns" = "loopback",
): PartitionMethod {
  if (hosts === "netns") return "netns";
  if (method !== "auto") return method;
  const setup = join(PACKAGE_ROOT, "scripts", "ensure-system-deps.sh");
  if (process.getuid?.() === 0 && !iptablesUsable() && existsSync(setup)) {
    try {
      execFileSync("bash", [setup], { stdio: "ignore" });
    } catch {
      // The relay works without it.
    }
  }
  return iptablesUsable() ? "iptables" : "relay";
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const method = resolveMethod(options.method, options.hosts);
  const hostFaults = options.nemeses.filter((k) => HOST_NEMESES.includes(k));
  if (hostFaults.length > 0 && options.hosts !== "netns") {
    // Before anything starts: a campaign that could only fail at its first host fault.
    throw new Error(
      `${hostFaults.join(", ")} needs each node on a host of its own (--hosts netns)`,
    );
  }
  makeDirectory(options.out);
  const dataRoot = makeTempDir("baton-chaos-");
  const run = new CampaignRun(options, method, dataRoot);
  try {
    return await run.execute();
  } finally {
    await run.teardown();
    removeTempDir(dataRoot);
  }
}

class CampaignRun {
  /** Campaign time 0: when the cluster first agreed on a master (reset then). */
  private t0 = performance.now();
  /** `Date.now()` at campaign time 0, to place the nodes' log times on the same axis. */
  wallOrigin = Date.now();
  readonly now = (): number => performance.now() - this.t0;
  private readonly prng: Prng;
  private readonly agent: Agent;
  private nodes: ChaosNode[] = [];
  /** Hosts of their own (--hosts netns), closed once the nodes on them are gone. */
  private hosts: NetnsHosts | null = null;
  private network: Network | null = null;
  private workload: Workload | null = null;
  /** One watch of every key for the whole campaign (watch-check.ts). */
  private watch: CampaignWatch | null = null;
  /** The revision of the last acknowledged change, which the watch must reach. */
  private watchTarget = 0;
  /** Transfers between accounts and range reads of them (bank.ts). */
  private bank: CampaignBank | null = null;
  /** Leases granted and never kept alive (leases.ts). */
  private leases: CampaignLeases | null = null;
  /** The operator: replaces and switchovers through the client library (members.ts). */
  private members: CampaignMembers | null = null;
  /** Replaces or promotes that never finished (the membership verdict). */
  private readonly operatorProblems: string[] = [];
  private readonly roles: RoleEvent[] = [];
  private readonly exits: UnexpectedExit[] = [];
  private readonly windows: FaultWindow[] = [];
  private readonly skips: FaultSkip[] = [];
  private readonly statuses = new Map<number, StatusView>();
  private polling = false;
  private ending = false;
  private joinFlag = false;
  /** Probe writes sent so far (nemesis.ts holdProvingCut); each writes a key of its own. */
  private probes = 0;
  /** Nodes replaced with an empty directory: they start with `--join <url>` from then on. */
  private readonly wiped = new Set<number>();

  constructor(
    private readonly options: CampaignOptions,
    private readonly method: PartitionMethod,
    private readonly dataRoot: string,
  ) {
    this.prng = new Prng(options.seed);
    // From 127.0.0.1, which no partition rule names; hosts of their own are reached over
    // their bridge.
    this.agent = new Agent({
      ...(method === "netns" ? {} : { connect: { localAddress: "127.0.0.1" } }),
      connections: 4,
    });
  }

  async execute(): Promise<CampaignResult> {
    const { options } = this;
    this.joinFlag = startSupportsJoin();
    await this.startCluster();
    const say = options.progress ?? (() => {});
    say(
      `cluster of ${options.nodes} up (partitions: ${this.method}${this.joinFlag ? ", wiped nodes rejoin with --join" : ""}); master n${this.currentMaster()}`,
    );
    const poller = this.pollStatuses();
    const workload = new Workload({
      seed: options.seed,
      clients: options.clients,
      keys: options.keys ?? 4,
      keyEpochMs: 15_000,
      requestTimeoutMs: 1500,
      attemptsMax: 3,
      thinkMs: 5,
      staleReads: options.staleReads,
      urls: new Map(this.nodes.map((n) => [n.id, n.url])),
      now: this.now,
      ...(this.method === "netns" ? { localAddress: null } : {}),
    });
    this.workload = workload;
    workload.start();
    this.watch = new CampaignWatch(this.nodes.map((n) => n.url));
    this.watch.start();
    // A generator of its own, so that the fault schedule of a seed stays what it was.
    this.bank = new CampaignBank(
      this.nodes.map((n) => n.url),
      new Prng(options.seed ^ 0xba4c),
      { now: this.now },
    );
    this.bank.start();
    this.leases = new CampaignLeases(this.nodes.map((n) => n.url));
    this.leases.start();
    this.members = new CampaignMembers(this.nodes.map((n) => n.url));
    const ticker = setInterval(() => say(this.progressLine()), PROGRESS_MS);
    try {
      await runNemeses(
        {
          prng: this.prng,
          nodes: this.nodes,
          network: this.network!,
          now: this.now,
          currentMaster: () => this.currentMaster(),
          healthy: () => this.healthy(),
          restart: (id, wiped) => this.restart(id, wiped),
          probeWrite: (id, timeoutMs) => this.probeWrite(id, timeoutMs),
          members: this.members,
          unaskedCandidacies: (since) => this.unaskedCandidacies(since),
          stallsPastElection: (since) => this.stallsPastElection(since),
          operatorProblems: this.operatorProblems,
          windows: this.windows,
          skips: this.skips,
          faultMs: [1500, 5000],
          quietMs: [2000, 6000],
        },
        options.nemeses,
        options.durationMs,
      );
      const healedAt = await this.healAll();
      say(`fault phase over at ${(healedAt / 1000).toFixed(1)} s: everything healed`);
      const live = await this.measureLiveness(healedAt);
      await sleep(2000);
      await workload.stop();
      await Promise.all([this.bank.stop(), this.leases.stop()]);
      this.ending = true;
      await this.finalReads();
      // Every acknowledged change has a revision, the bank's and the leases' too; the watch
      // must reach the last of them.
      const revisions = workload.history.map((op) => op.revision ?? 0);
      this.watchTarget = Math.max(0, ...revisions, recordsTarget(this.watchRecords()));
      await this.watch.stop(this.watchTarget, 10_000);
      const converged = await this.checkConvergence();
      this.polling = false;
      await poller;
      clearInterval(ticker);
      return this.judge(healedAt, live, converged);
    } finally {
      clearInterval(ticker);
      this.polling = false;
      this.ending = true;
    }
  }

  async teardown(): Promise<void> {
    this.ending = true;
    this.polling = false;
    await this.workload?.stop().catch(() => {});
    await this.workload?.close();
    await this.watch?.stop(0, 0).catch(() => {});
    await this.bank?.stop().catch(() => {});
    await this.leases?.abandon().catch(() => {});
    await this.members?.close().catch(() => {});
    await Promise.all(this.nodes.map((n) => n.kill().catch(() => {})));
    await this.network?.close().catch(() => {});
    await this.hosts?.close().catch(() => {});
    await this.agent.close().catch(() => {});
  }

  private async startCluster(): Promise<void> {
    const { options, method } = this;
    const ids = Array.from({ length: options.nodes }, (_, i) => i + 1);
    const machines = method === "netns" ? await NetnsHosts.create({ count: ids.length }) : null;
    this.hosts = machines;
    const hosts = new Map(
      ids.map((id) => [
        id,
        machines !== null
          ? machines.address(id)
          : method === "iptables"
            ? nodeHost(id)
            : "127.0.0.1",
      ]),
    );
    const ports = new Map<number, { peer: number; http: number }>();
    for (const id of ids) {
      const host = hosts.get(id)!;
      // A host of its own has every port free.
      const [peer, http] = machines !== null ? [7100 + id, 8100 + id] : await freePorts(2, host);
      ports.set(id, { peer: peer!, http: http! });
    }
    let peersOf: (id: number) => string;
    if (machines !== null) {
      this.network = hostsNetwork(machines);
      const peers = ids.map((id) => `${id}=${hosts.get(id)}:${ports.get(id)!.peer}`).join(",");
      peersOf = () => peers;
    } else if (method === "iptables") {
      this.network = await IptablesNetwork.open();
      const peers = ids.map((id) => `${id}=${hosts.get(id)}:${ports.get(id)!.peer}`).join(",");
      peersOf = () => peers;
    } else {
      const targets = new Map(
        ids.map((id) => [id, { host: hosts.get(id)!, port: ports.get(id)!.peer }]),
      );
      const relay = await RelayNetwork.open(targets);
      this.network = relay;
      peersOf = (self) =>
        ids
          .map(
            (id) =>
              `${id}=${id === self ? `${hosts.get(id)}:${ports.get(id)!.peer}` : relay.addressFor(self, id)}`,
          )
          .join(",");
    }
    for (const id of ids) {
      const spec = {
        id,
        host: hosts.get(id)!,
        peerPort: ports.get(id)!.peer,
        httpPort: ports.get(id)!.http,
        dataDir: join(this.dataRoot, `n${id}`),
        peers: peersOf(id),
        ...(machines === null
          ? {}
          : {
              wrap: (command: string, args: readonly string[]) => machines.wrap(id, command, args),
            }),
      };
      this.nodes.push(
        new ChaosNode(
          spec,
          join(options.out, "logs"),
          this,
          (event) => this.roles.push(event),
          (exit) => this.onUnexpectedExit(exit),
        ),
      );
    }
    for (const node of this.nodes) node.spawn();
    // Generous: on a loaded machine, loading the TypeScript sources alone can take a while.
    if ((await this.waitForAgreement(STARTUP_MS_MAX)) === null) {
      throw new Error(
        `the cluster did not agree on a master within ${STARTUP_MS_MAX} ms of starting`,
      );
    }
    // Time 0 moves to now; role changes logged while starting move with it (below 0).
    const shiftMs = Date.now() - this.wallOrigin;
    this.t0 = performance.now();
    this.wallOrigin += shiftMs;
    for (const [i, role] of this.roles.entries())
      this.roles[i] = { ...role, at: role.at - shiftMs };
  }

  /** What the bank and the leases recorded, for the watch verdict. */
  private watchRecords(): WatchRecords {
    return {
      bank: this.bank!.records,
      leases: this.leases!.records,
      leasesEndedBy: this.leases!.endedBy,
    };
  }

  private onUnexpectedExit(exit: UnexpectedExit): void {
    this.exits.push(exit);
    // Carry on with the node back, so that one crash does not end the campaign. A node the
    // campaign was stopping is started again by whoever stopped it, perhaps wiped first
    // (replace): starting it here could race that and start it without --join.
    if (!this.ending && !exit.stopping) setTimeout(() => this.restart(exit.node, false), 500);
  }

  /**
   * PUTs `probe/<n>` through node `id` alone, as the workload's clients reach it: a key no
   * client, watch check, bank or lease reads, so that a probe that does commit (after the
   * heal) changes no verdict.
   */
  private async probeWrite(id: number, timeoutMs: number): Promise<ProbeOutcome> {
    const node = this.nodes.find((n) => n.id === id)!;
    const key = `probe/${++this.probes}`;
    try {
      const response = await request(`${node.url}/v1/kv/${key}`, {
        method: "PUT",
        body: "probe",
        headers: { "idempotency-key": `probe-${this.options.seed}-${this.probes}` },
        dispatcher: this.agent,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await response.body.text();
      const code = /"code":"([A-Z_]+)"/.exec(text)?.[1];
      const answer = `${response.statusCode}${code === undefined ? "" : ` ${code}`}`;
      return { acknowledged: response.statusCode === 200, answer };
    } catch (error) {
      return { acknowledged: false, answer: `no answer (${requestErrorCode(error)})` };
    }
  }

  private restart(id: number, wiped: boolean): void {
    const node = this.node(id);
    if (node.state !== "stopped") return;
    if (wiped) this.wiped.add(id);
    // Once replaced, a node keeps --join <url> on every restart: killed again before it
    // wrote its identity, its directory may still be empty, and the node does not ask the
    // URL once its directory holds state. The URL is a running member's, so that it answers.
    if (!this.wiped.has(id)) return node.spawn([]);
    const others = this.nodes.filter((n) => n.id !== id && n.state === "running");
    const master = this.currentMaster();
    const via = others.find((n) => n.id === master) ?? others[0] ?? this.node(id === 1 ? 2 : 1);
    node.spawn(["--join", via.url]);
  }

  /** Event-loop stalls past the election timeout that any node logged since campaign ms `since`. */
  private stallsPastElection(since: number): number {
    const wallSince = this.wallOrigin + since;
    return this.nodes.reduce(
      (n, node) => n + node.stallsPastElection.filter((s) => s.wallAt >= wallSince).length,
      0,
    );
  }

  /** Candidacies logged since campaign ms `since` that no master asked for. */
  private unaskedCandidacies(since: number): number {
    return this.roles.filter((r) => r.at >= since && isUnaskedCandidacy(r.role, r.reason)).length;
  }

  private node(id: number): ChaosNode {
    const node = this.nodes.find((n) => n.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  private async pollStatuses(): Promise<void> {
    this.polling = true;
    while (this.polling) {
      const answers = await this.askAll(300);
      for (const [i, status] of answers.entries()) {
        const id = this.nodes[i]!.id;
        if (status === null) this.statuses.delete(id);
        else this.statuses.set(id, status);
      }
      await sleep(STATUS_POLL_MS);
    }
  }

  /** Every node's status with its state digest, null where a node does not answer. */
  private askAll(timeoutMs: number): Promise<(StatusView | null)[]> {
    const options = { agent: this.agent, digest: true };
    return Promise.all(this.nodes.map((n) => n.status(timeoutMs, options)));
  }

  /** The node that says it is master in the highest term, among the last answers. */
  private currentMaster(): number | null {
    let best: StatusView | null = null;
    for (const s of this.statuses.values()) {
      if (s.role === "master" && (best === null || s.term > best.term)) best = s;
    }
    return best?.id ?? null;
  }

  /** Every node answered the last poll, in one term under one master, and is caught up. */
  private healthy(): boolean {
    const master = this.currentMaster();
    if (master === null || this.statuses.size !== this.nodes.length) return false;
    const m = this.statuses.get(master)!;
    for (const s of this.statuses.values()) {
      if (s.term !== m.term || s.master !== master) return false;
      if (s.appliedIndex === 0 || s.appliedIndex < m.commitIndex - HEALTHY_LAG_MAX) return false;
    }
    return true;
  }

  /** Waits until every running node names the same master in the same term. */
  private async waitForAgreement(timeoutMs: number): Promise<StatusView | null> {
    const deadline = this.now() + timeoutMs;
    while (this.now() < deadline) {
      const answers = await this.askAll(500);
      for (const [i, status] of answers.entries()) {
        if (status !== null) this.statuses.set(this.nodes[i]!.id, status);
      }
      const master = agreedMaster(answers);
      if (master !== null) return master;
      await sleep(100);
    }
    return null;
  }

  private async healAll(): Promise<number> {
    await this.network!.healAll();
    for (const node of this.nodes) {
      if (node.state === "paused") node.signal("SIGCONT");
      if (node.state === "stopped") this.restart(node.id, false);
    }
    return this.now();
  }

  /** (e): per node, ms from healing until it acknowledged a write again. */
  private async measureLiveness(healedAt: number): Promise<Record<string, number | null>> {
    const bound = this.options.recoveryMsMax ?? RECOVERY_MS_MAX;
    const workload = this.workload!;
    const out: Record<string, number | null> = {};
    await Promise.all(
      this.nodes.map(async (node) => {
        out[`n${node.id}`] = null;
        let n = 0;
        while (this.now() - healedAt < bound) {
          if (await workload.probe(node.id, "liveness", `n${node.id}-${++n}`)) {
            out[`n${node.id}`] = Math.round(this.now() - healedAt);
            return;
          }
          await sleep(50);
        }
      }),
    );
    return out;
  }

  /** Reads every key once more, linearizably, after healing; retries until each answers. */
  private async finalReads(): Promise<void> {
    const workload = this.workload!;
    await this.waitForAgreement(20_000);
    for (const key of [...workload.keysUsed].sort()) {
      for (let attempt = 0; attempt < 6; attempt++) {
        const via = this.currentMaster() ?? this.nodes[0]!.id;
        const read = await workload.finalRead(key, via);
        if (read.outcome === "ok") break;
        await sleep(500);
      }
    }
  }

  /** (d): waits until every node has applied the same index, then compares digests. */
  private async checkConvergence(): Promise<Verdict> {
    const deadline = this.now() + 30_000;
    let last: (StatusView | null)[] = [];
    while (this.now() < deadline) {
      last = await this.askAll(2000);
      const applied = new Set(last.map((s) => s?.appliedIndex ?? -1));
      if (last.every((s) => s !== null && s.stateDigest !== undefined) && applied.size === 1) {
        const digests = new Set(last.map((s) => s!.stateDigest));
        const index = last[0]!.appliedIndex;
        const list = last.map((s) => `n${s!.id}=${s!.stateDigest}`).join(" ");
        if (digests.size !== 1) {
          return {
            ok: false,
            detail: `digests differ at applied index ${index}: ${list}`,
            problems: [list],
          };
        }
        const copies = await this.compareCopies();
        const detail = `all ${last.length} nodes at applied index ${index} with digest ${last[0]!.stateDigest}; ${copies.detail}`;
        return copies.problems.length === 0
          ? { ok: true, detail }
          : { ok: false, detail, problems: copies.problems };
      }
      await sleep(200);
    }
    const seen = last.map(
      (s, i) => `n${this.nodes[i]!.id}=${s === null ? "no answer" : `applied ${s.appliedIndex}`}`,
    );
    return {
      ok: false,
      detail: `nodes did not reach the same applied index within 30 s: ${seen.join(" ")}`,
    };
  }

  /**
   * The digests are what each node says of its own state; this reads it instead: every key
   * the clients used, from every node's own copy, between two status polls that find all
   * nodes at one applied index (so nothing was applied meanwhile). Copies that differ are
   * problems; an index that keeps moving (leases still expiring) leaves them uncompared.
   */
  private async compareCopies(): Promise<{ detail: string; problems: string[] }> {
    const workload = this.workload!;
    const keys = [...workload.keysUsed].sort();
    const sameIndex = (answers: (StatusView | null)[]): number | null => {
      const applied = new Set(answers.map((s) => s?.appliedIndex ?? -1));
      return applied.size === 1 && !applied.has(-1) ? answers[0]!.appliedIndex : null;
    };
    for (let attempt = 0; attempt < COPY_COMPARE_ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(500);
      const before = sameIndex(await this.askAll(2000));
      if (before === null) continue;
      const copies = await Promise.all(
        this.nodes.map((n) => Promise.all(keys.map((key) => workload.localCopy(n.id, key)))),
      );
      if (sameIndex(await this.askAll(2000)) !== before) continue;
      if (copies.some((perKey) => perKey.includes(null))) continue;
      const problems: string[] = [];
      for (const [k, key] of keys.entries()) {
        const seen = copies.map((perKey) => perKey[k]!);
        if (new Set(seen).size === 1) continue;
        const shown = seen.map((copy, i) => `n${this.nodes[i]!.id}=${copy}`).join(" ");
        problems.push(`${key}: the nodes' own copies differ under one digest: ${shown}`);
      }
      return {
        detail: `${keys.length} keys read from each node's own copy: ${problems.length === 0 ? "the same everywhere" : `${problems.length} differ`}`,
        problems: problems.slice(0, COPY_PROBLEMS_SHOWN),
      };
    }
    return {
      detail: `the nodes' own copies were not compared: no ${COPY_COMPARE_ATTEMPTS} tries found them all at one applied index while reading`,
      problems: [],
    };
  }

  private judge(
    healedAt: number,
    recoveryMs: Record<string, number | null>,
    converged: Verdict,
  ): CampaignResult {
    const { options } = this;
    const history = this.workload!.history;
    const bound = options.recoveryMsMax ?? RECOVERY_MS_MAX;
    const slow = Object.entries(recoveryMs).filter(([, ms]) => ms === null);
    const live: Verdict =
      slow.length === 0
        ? {
            ok: true,
            detail: `every node served a write within ${Math.max(...Object.values(recoveryMs).map((v) => v ?? 0))} ms of healing (bound ${bound} ms)`,
          }
        : {
            ok: false,
            detail: `${slow.map(([n]) => n).join(", ")} served no write within ${bound} ms of healing`,
          };
    const verdicts: Verdicts = {
      linearizable: checkHistory(history),
      noLostWrites: checkNoLostWrites(history),
      exactlyOnce: checkExactlyOnce(history),
      converged,
      live,
      noCrashes: checkNoCrashes(this.exits),
      watched: checkWatch(
        history,
        this.watch!.changes,
        this.watch!.endedBy,
        this.watchTarget,
        this.watch!.gaps,
        this.watchRecords(),
      ),
      atomic: this.bank!.verdict(),
      leases: this.leases!.verdict(),
      membership: this.membershipVerdict(),
      faults: checkFaults(options.nemeses, this.windows, this.skips),
      noErrors: checkNoErrors(
        this.workload!.internalErrors,
        this.nodes.map((n) => ({ node: n.id, count: n.errorLineCount, lines: n.errorLines })),
        this.workload!.errors.wrongProblems(),
      ),
    };
    const ok = Object.values(verdicts).every((v) => v.ok);
    const counts = this.workload!.counts();
    const faults: Partial<Record<NemesisKind, number>> = {};
    const unfinishedFaults: Partial<Record<NemesisKind, number>> = {};
    for (const w of this.windows) {
      const tally = w.unfinished === undefined ? faults : unfinishedFaults;
      tally[w.kind] = (tally[w.kind] ?? 0) + 1;
    }
    const skippedFaults: Partial<Record<NemesisKind, number>> = {};
    for (const s of this.skips) skippedFaults[s.kind] = (skippedFaults[s.kind] ?? 0) + 1;
    const masters = this.roles.filter((r) => r.role === "master");
    const totals: CampaignTotals = {
      operations: history.length,
      ...counts,
      faults,
      unfinishedFaults,
      skippedFaults,
      failovers: Math.max(0, masters.length - 1),
      unexpectedExits: this.exits.length,
      stateTransfers: this.nodes.reduce((sum, n) => sum + n.stateTransfers, 0),
      recoveryMs,
    };
    const reproduce = reproduceCommand(options, this.method);
    const summary = summarize(options, this.method, this.joinFlag, ok, verdicts, totals, reproduce);
    const svg = timelineSvg({
      title: `Baton fault campaign, seed ${options.seed}: ${ok ? "no violation" : "VIOLATION"}`,
      subtitle: `${options.nodes} nodes, ${options.clients} clients, partitions by ${this.method}; ${totals.operations} operations, ${this.windows.length} faults, ${totals.failovers} new masters`,
      durationMs: this.now(),
      history,
      windows: this.windows,
      roles: this.roles,
      healedAt,
    });
    const verdict = {
      ok,
      seed: options.seed,
      method: this.method,
      joinFlag: this.joinFlag,
      options: { ...options, progress: undefined },
      verdicts,
      totals,
      windows: this.windows,
      skippedFaults: this.skips,
      roles: this.roles,
      unexpectedExits: this.exits,
      reproduce,
    };
    writeReport({
      dir: options.out,
      history,
      verdict,
      svg,
      html: timelineHtml(svg, `Baton fault campaign, seed ${options.seed}`, summary),
    });
    return {
      ok,
      seed: options.seed,
      method: this.method,
      joinFlag: this.joinFlag,
      verdicts,
      totals,
      outDir: options.out,
      reproduce,
      summary,
    };
  }

  /** Every replace finished and every replaced node was promoted in time. */
  private membershipVerdict(): Verdict {
    return checkMembership(this.windows, this.operatorProblems, this.members!.errors);
  }

  private progressLine(): string {
    const elapsed = this.now() / 1000;
    const total = this.options.durationMs / 1000;
    const c = this.workload?.counts() ?? { ok: 0, failed: 0, indeterminate: 0 };
    const open = this.windows.at(-1);
    const fault =
      open !== undefined && Number.isNaN(open.end) ? `, now: ${open.kind} (${open.detail})` : "";
    const master = this.currentMaster();
    const term = master === null ? "" : ` term ${this.statuses.get(master)?.term}`;
    return (
      `[${elapsed.toFixed(0).padStart(4)} s / ${total.toFixed(0)} s] ops ${c.ok + c.failed + c.indeterminate} ` +
      `(ok ${c.ok}, failed ${c.failed}, indeterminate ${c.indeterminate}), faults ${this.windows.length}${fault}; ` +
      `master ${master === null ? "none" : `n${master}${term}`}`
    );
  }
}

/** The summary's line of the faults that ran, and of those that did not finish. */
export function faultsLine(totals: Pick<CampaignTotals, "faults" | "unfinishedFaults">): string {
  const list = (counts: Partial<Record<NemesisKind, number>>) =>
    Object.entries(counts)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(", ");
  const unfinished = list(totals.unfinishedFaults);
  return `  faults: ${list(totals.faults) || "none"}${unfinished === "" ? "" : `; not finished: ${unfinished}`}`;
}

function summarize(
  options: CampaignOptions,
  method: PartitionMethod,
  joinFlag: boolean,
  ok: boolean,
  verdicts: Verdicts,
  totals: CampaignTotals,
  reproduce: string,
): string {
  const lines = [
    `seed ${options.seed}: ${ok ? "PASS: no violation" : "FAIL: violation found"}`,
    `  cluster: ${options.nodes} nodes, partitions by ${method}${joinFlag ? ", wiped nodes rejoin with --join" : ""}`,
    `  operations: ${totals.operations} (ok ${totals.ok}, failed ${totals.failed}, indeterminate ${totals.indeterminate})`,
    faultsLine(totals),
    `  new masters after the first: ${totals.failovers}; state transfers: ${totals.stateTransfers}; unexpected exits: ${totals.unexpectedExits}`,
    `  recovery after healing (ms): ${Object.entries(totals.recoveryMs)
      .map(([n, ms]) => `${n} ${ms ?? "never"}`)
      .join(", ")}`,
  ];
  for (const [name, v] of Object.entries(verdicts) as [string, Verdict][]) {
    lines.push(`  ${v.ok ? "ok  " : "FAIL"} ${name}: ${v.detail}`);
    for (const p of v.problems ?? []) lines.push(`         ${p.replace(/\n/g, "\n         ")}`);
  }
  lines.push(`  report: ${options.out}`);
  lines.push(`  reproduce: ${reproduce}`);
  return lines.join("\n");
}
