/**
 * A three-node Baton cluster for the benchmarks: real `baton start` processes from the
 * built CLI (`node dist/cli/main.js start`, or from the sources with tsx when asked), on
 * free loopback ports, each with its own data directory in a temporary folder (on disk,
 * fsync on: Baton has no switch to turn it off), default timeouts unless given.
 *
 * It must never leave a process or a directory behind: both are registered in
 * processes.ts, and stop() ends the nodes with SIGTERM (so `--cpu-prof` profiles are
 * written) before removing the data.
 */

import { chmodSync, chownSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  type BenchCluster,
  type BenchNode,
  fetchJson,
  type MasterView,
  nodeById,
} from "./bench-cluster.js";
import {
  freePorts,
  ManagedProcess,
  makeTempDir,
  REPO_ROOT,
  removeTempDir,
  waitFor,
} from "./processes.js";

export interface BatonClusterOptions {
  /** "dist": the built CLI (what `npm run bench` measures); "source": tsx, no build. */
  readonly from: "dist" | "source";
  /** Loopback hosts of nodes 1-3 (the same for all unless partitions need their own). */
  readonly hosts?: readonly [string, string, string];
  /**
   * Another build's CLI to run instead of dist/cli/main.js (from "dist" only), to compare
   * a change with the build before it under the same conditions.
   */
  readonly cli?: string;
  /** Node flags such as --cpu-prof for every node's process. */
  readonly nodeFlags?: readonly string[];
  /** More `baton start` flags, e.g. ["--election-ms", "150-300"]. */
  readonly extraArgs?: readonly string[];
  /**
   * The nodes to start at once (default all three); the others stay down, with an empty
   * data directory, until their `process.start()` (e.g. a backup that joins later).
   */
  readonly startIds?: readonly number[];
  /**
   * Numeric uids (and gids) for nodes 1-3 (root only): each node runs under its own, with
   * its data and temporary directories chowned to it, so that iptables can tell the
   * nodes' packets apart by owner (bench/partition.ts).
   */
  readonly uids?: readonly [number, number, number];
  /**
   * Run the nodes with mutual TLS between them and HTTPS, from a directory holding
   * `ca.crt` and `node<id>/node.crt`, `node<id>/node.key` (made by `baton certs`). The
   * benchmark's own clients must trust the CA: run it with NODE_EXTRA_CA_CERTS=<dir>/ca.crt.
   */
  readonly tlsDir?: string;
}

/** The `baton start` flags that give node `id` its certificates from `dir`. */
function tlsArgs(dir: string, id: number): string[] {
  const own = join(dir, `node${id}`);
  return [
    ...["--tls-ca", join(dir, "ca.crt"), "--tls-cert", join(own, "node.crt")],
    ...["--tls-key", join(own, "node.key"), "--http-tls-cert", join(own, "node.crt")],
    ...["--http-tls-key", join(own, "node.key")],
  ];
}

/** A node's `GET /v1/status` (the fields the benchmarks read). */
export interface BatonStatus {
  readonly id: number;
  readonly role: string;
  readonly term: number;
  readonly master: number | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
}

/** A Baton cluster, with what only Baton has: data directories and /v1/status. */
export interface BatonBenchCluster extends BenchCluster {
  /** The temporary folder with every node's data directory and log; stop() removes it. */
  readonly root: string;
  /** Node `id`'s data directory (kept across `process.stop()` and `process.start()`). */
  dataDir(id: number): string;
  /** Node `id`'s /v1/status, or null when it is down or does not answer within 500 ms. */
  status(id: number): Promise<BatonStatus | null>;
}

class BatonCluster implements BatonBenchCluster {
  readonly system = "baton" as const;

  constructor(
    readonly nodes: readonly BenchNode[],
    readonly description: string,
    readonly root: string,
  ) {}

  dataDir(id: number): string {
    return join(this.root, `n${nodeById(this, id).id}`);
  }

  async status(id: number): Promise<BatonStatus | null> {
    const node = nodeById(this, id);
    if (!node.process.running) return null;
    const answer = await fetchJson(`${node.url}/v1/status`, { timeoutMs: 500 }).catch(() => null);
    return answer?.status === 200 ? (answer.json as BatonStatus) : null;
  }

  async master(exclude: readonly number[] = [], minTerm = 0): Promise<MasterView | null> {
    const ids = this.nodes
      .filter((n) => n.process.running && !exclude.includes(n.id))
      .map((n) => n.id);
    const answers = await Promise.all(ids.map((id) => this.status(id)));
    const all = answers.filter((s): s is BatonStatus => s !== null);
    if (all.length !== answers.length) return null;
    const masters = all.filter((s) => s.role === "master");
    const master = masters[0];
    if (masters.length !== 1 || master === undefined || master.term < minTerm) return null;
    const agreed = all.every((s) => s.term === master.term && s.master === master.id);
    return agreed ? { id: master.id, term: master.term } : null;
  }

  async caughtUp(id: number): Promise<boolean> {
    const statuses = await Promise.all(this.nodes.map((n) => this.status(n.id)));
    const master = statuses.find((s) => s?.role === "master");
    const node = statuses.find((s) => s?.id === id);
    if (master === undefined || master === null || node === undefined || node === null) {
      return false;
    }
    return node.appliedIndex >= master.commitIndex;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.process.stop()));
    removeTempDir(this.root);
  }
}

/**
 * Starts three nodes (or `startIds`) and waits (up to 60 s) until the running ones agree on
 * a master.
 */
export async function startBatonCluster(options: BatonClusterOptions): Promise<BatonBenchCluster> {
  const hosts = options.hosts ?? ["127.0.0.1", "127.0.0.1", "127.0.0.1"];
  const ports = await freePorts(6);
  const root = makeTempDir("baton-bench-");
  // Other uids must be able to reach their own directories inside.
  if (options.uids !== undefined) chmodSync(root, 0o711);
  const peers = hosts.map((h, i) => `${i + 1}=${h}:${ports[2 * i]}`).join(",");
  const launcher =
    options.from === "dist"
      ? [options.cli ?? join(REPO_ROOT, "dist", "cli", "main.js")]
      : ["--import", "tsx", join(REPO_ROOT, "src", "cli", "main.ts")];
  const nodes: BenchNode[] = hosts.map((host, i) => {
    const id = i + 1;
    const dataDir = join(root, `n${id}`);
    mkdirSync(dataDir, { recursive: true });
    const uid = options.uids?.[i];
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
    if (uid !== undefined) {
      // tsx and node write caches under TMPDIR; keep them inside the cluster's folder.
      const tmp = join(root, `tmp${id}`);
      mkdirSync(tmp);
      for (const dir of [dataDir, tmp]) chownSync(dir, uid, uid);
      Object.assign(env, { TMPDIR: tmp, HOME: tmp });
    }
    const httpAddress = `${host}:${ports[2 * i + 1]}`;
    const args = [
      ...(options.nodeFlags ?? []),
      ...launcher,
      "start",
      ...["--id", String(id), "--listen", `${host}:${ports[2 * i]}`, "--http", httpAddress],
      ...["--peers", peers, "--data", dataDir, "--log-level", "info"],
      ...(options.tlsDir === undefined ? [] : tlsArgs(options.tlsDir, id)),
      ...(options.extraArgs ?? []),
    ];
    const proc = new ManagedProcess(
      `baton node ${id}`,
      process.execPath,
      args,
      join(root, `n${id}.log`),
      env,
      uid === undefined ? null : { uid, gid: uid },
    );
    const scheme = options.tlsDir === undefined ? "http" : "https";
    return { id, url: `${scheme}://${httpAddress}`, host, process: proc };
  });
  const extra =
    (options.extraArgs?.length ? ` ${options.extraArgs.join(" ")}` : "") +
    (options.tlsDir === undefined ? "" : ", mutual TLS between nodes and HTTPS") +
    (options.uids === undefined ? "" : ", each node under a uid of its own");
  const cluster = new BatonCluster(
    nodes,
    `Baton (${options.from === "dist" ? (options.cli ?? "dist/cli/main.js") : "tsx src/cli/main.ts"}), 3 nodes, data on disk with fsync, default timeouts${extra}`,
    root,
  );
  const startIds = options.startIds ?? nodes.map((n) => n.id);
  for (const n of nodes) if (startIds.includes(n.id)) n.process.start();
  await waitFor("a Baton master", () => cluster.master().then((m) => m ?? undefined), 60_000);
  return cluster;
}
