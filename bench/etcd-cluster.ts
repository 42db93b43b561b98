/**
 * A three-member etcd cluster for side-by-side figures: Debian's `etcd-server` package
 * (installed with apt-get when missing and we are root; otherwise the caller is told why
 * and skips etcd), each member its own process on free loopback ports with its own data
 * directory in a temporary folder. etcd fsyncs its WAL by default, and nothing here turns
 * that off (no --unsafe-no-fsync). Timeouts are etcd's defaults (heartbeat 100 ms,
 * election 1000 ms) unless given.
 *
 * The one change from a bare `etcd`: revision auto-compaction and an 8 GiB quota, so that
 * a benchmark that rewrites large values does not fill etcd's 2 GiB default quota with
 * old revisions (a production etcd runs with compaction too). Processes and directories
 * are registered in the harness's one registry and never left behind.
 */

import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  freePorts,
  ManagedProcess,
  makeTempDir,
  removeTempDir,
  waitFor,
} from "../harness/processes.js";
import type { NetnsHosts } from "../src/chaos/hosts.js";
import {
  type BenchCluster,
  type BenchNode,
  fetchJson,
  type MasterView,
  nodeById,
} from "./bench-cluster.js";

export interface EtcdClusterOptions {
  /** Loopback hosts of members 1-3. */
  readonly hosts?: readonly [string, string, string];
  /** --heartbeat-interval in ms. @default etcd's own, 100 */
  readonly heartbeatMs?: number;
  /** --election-timeout in ms. @default etcd's own, 1000 */
  readonly electionMs?: number;
  /** --pre-vote (off by default in etcd 3.4, on in 3.5). @default etcd's own */
  readonly preVote?: boolean;
  /**
   * Numeric uids (and gids) for members 1-3 (root only): each member runs under its own,
   * with its data directory chowned to it, so that iptables can tell the members' packets
   * apart by owner (bench/partition.ts); etcd dials its peers from 127.0.0.1 whatever it
   * listens on, so addresses cannot.
   */
  readonly uids?: readonly [number, number, number];
  /**
   * Members 1-3 on hosts of their own: member i in network namespace i, at its address,
   * with ports 2380 (peer) and 2379 (client). `hosts` and `uids` are then ignored.
   */
  readonly netns?: NetnsHosts;
}

interface EtcdStatus {
  readonly header?: { readonly member_id?: string; readonly raft_term?: string };
  readonly leader?: string;
  readonly raftIndex?: string;
  readonly raftTerm?: string;
  readonly raftAppliedIndex?: string;
  readonly version?: string;
}

/**
 * The etcd binary's version, installing the package first when it is missing. Returns
 * `{ ok: false, reason }` when etcd cannot be had, so that the caller can skip it.
 */
export function ensureEtcd(
  log: (line: string) => void,
): { ok: true; version: string } | { ok: false; reason: string } {
  const probe = (): string | null => {
    const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
    if (r.status !== 0) return null;
    return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
  };
  const version = probe();
  if (version !== null) return { ok: true, version };
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: "etcd is not installed; run: sudo apt-get install etcd-server" };
  }
  log("etcd is not installed: apt-get install -y etcd-server");
  const install = spawnSync("apt-get", ["install", "-y", "etcd-server"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  if (install.status !== 0) {
    return { ok: false, reason: `apt-get install etcd-server failed (exit ${install.status})` };
  }
  const installed = probe();
  return installed === null
    ? { ok: false, reason: "etcd-server was installed but `etcd --version` fails" }
    : { ok: true, version: installed };
}

class EtcdCluster implements BenchCluster {
  readonly system = "etcd" as const;

  constructor(
    readonly nodes: readonly BenchNode[],
    readonly description: string,
    private readonly root: string,
  ) {}

  async status(id: number): Promise<EtcdStatus | null> {
    const node = nodeById(this, id);
    if (!node.process.running) return null;
    const answer = await fetchJson(`${node.url}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      timeoutMs: 500,
    }).catch(() => null);
    return answer?.status === 200 ? (answer.json as EtcdStatus) : null;
  }

  async master(exclude: readonly number[] = [], minTerm = 0): Promise<MasterView | null> {
    const running = this.nodes.filter((n) => n.process.running && !exclude.includes(n.id));
    const all = await Promise.all(running.map((n) => this.status(n.id)));
    if (all.some((s) => s === null || s.leader === undefined || s.leader === "0")) return null;
    const leader = all[0]?.leader;
    if (!all.every((s) => s?.leader === leader)) return null;
    const at = all.findIndex((s) => s?.header?.member_id === leader);
    const term = Number(all[at]?.raftTerm ?? 0);
    const node = running[at];
    if (at < 0 || node === undefined || term < minTerm) return null;
    return { id: node.id, term };
  }

  async caughtUp(id: number): Promise<boolean> {
    const m = await this.master([], 0);
    if (m === null) return false;
    const [master, node] = await Promise.all([this.status(m.id), this.status(id)]);
    if (master === null || node === null) return false;
    return Number(node.raftAppliedIndex ?? 0) >= Number(master.raftIndex ?? 0);
  }

  async switchover(from: number, to: number): Promise<void> {
    const target = (await this.status(to))?.header?.member_id;
    if (target === undefined) throw new Error(`etcd member ${to} did not give its id`);
    const answer = await fetchJson(
      `${nodeById(this, from).url}/v3/maintenance/transfer-leadership`,
      {
        method: "POST",
        body: JSON.stringify({ targetID: target }),
        timeoutMs: 5000,
      },
    );
    if (answer.status !== 200) {
      throw new Error(
        `move-leader ${from} → ${to}: HTTP ${answer.status} ${JSON.stringify(answer.json)}`,
      );
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.process.stop()));
    removeTempDir(this.root);
  }
}

/** Starts three members and waits (up to 60 s) until they agree on a leader. */
export async function startEtcdCluster(
  version: string,
  options: EtcdClusterOptions = {},
): Promise<BenchCluster> {
  const netns = options.netns;
  const hosts =
    netns === undefined
      ? (options.hosts ?? ["127.0.0.1", "127.0.0.1", "127.0.0.1"])
      : [1, 2, 3].map((id) => netns.address(id));
  // A host of its own has every port free: etcd's own 2380 and 2379 on each.
  const ports = netns === undefined ? await freePorts(6) : [2380, 2379, 2380, 2379, 2380, 2379];
  const root = makeTempDir("etcd-bench-");
  // Other uids must be able to reach their own directories inside.
  if (options.uids !== undefined) chmodSync(root, 0o711);
  const peerUrl = (i: number): string => `http://${hosts[i]}:${ports[2 * i]}`;
  const initialCluster = hosts.map((_, i) => `e${i + 1}=${peerUrl(i)}`).join(",");
  const timeouts: string[] = [];
  if (options.heartbeatMs !== undefined) {
    timeouts.push("--heartbeat-interval", String(options.heartbeatMs));
  }
  if (options.electionMs !== undefined) {
    timeouts.push("--election-timeout", String(options.electionMs));
  }
  if (options.preVote !== undefined) timeouts.push(`--pre-vote=${options.preVote}`);
  const nodes: BenchNode[] = hosts.map((host, i) => {
    const id = i + 1;
    const dataDir = join(root, `e${id}`);
    mkdirSync(dataDir, { recursive: true });
    const uid = netns === undefined ? options.uids?.[i] : undefined;
    if (uid !== undefined) {
      // etcd wants its data directory to be its own, mode 0700.
      chownSync(dataDir, uid, uid);
      chmodSync(dataDir, 0o700);
    }
    const clientUrl = `http://${host}:${ports[2 * i + 1]}`;
    const args = [
      ...["--name", `e${id}`, "--data-dir", dataDir],
      ...["--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl],
      ...["--listen-peer-urls", peerUrl(i), "--initial-advertise-peer-urls", peerUrl(i)],
      ...["--initial-cluster", initialCluster, "--initial-cluster-state", "new"],
      ...["--initial-cluster-token", `bench-${ports[0]}`],
      ...["--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000"],
      ...["--quota-backend-bytes", String(8 * 1024 ** 3)],
      ...["--logger", "zap", "--log-level", "warn"],
      ...timeouts,
    ];
    const [command, argv] = netns === undefined ? ["etcd", args] : netns.wrap(id, "etcd", args);
    const proc = new ManagedProcess(`etcd member ${id}`, command, argv, {
      logFile: join(root, `e${id}.log`),
      env: uid === undefined ? process.env : { ...process.env, HOME: dataDir },
      runAs: uid === undefined ? null : { uid, gid: uid },
    });
    return { id, url: clientUrl, host, process: proc };
  });
  const tuned = options.heartbeatMs !== undefined || options.electionMs !== undefined;
  const timing =
    (tuned
      ? `heartbeat ${options.heartbeatMs ?? 100} ms, election ${options.electionMs ?? 1000} ms`
      : "default timeouts (heartbeat 100 ms, election 1000 ms)") +
    (options.preVote === undefined ? "" : `, pre-vote ${options.preVote ? "on" : "off"}`) +
    (options.uids === undefined || netns !== undefined
      ? ""
      : ", each member under a uid of its own") +
    (netns === undefined ? "" : `, each on a host of its own: ${netns.describe()}`);
  const cluster = new EtcdCluster(
    nodes,
    `etcd ${version}, 3 members, WAL fsync on (default), ${timing}, v3 JSON gateway`,
    root,
  );
  for (const n of nodes) n.process.start();
  await waitFor("an etcd leader", () => cluster.master().then((m) => m ?? undefined), 60_000);
  return cluster;
}
