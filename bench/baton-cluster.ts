/**
 * A three-node Baton cluster for the benchmarks: real `baton start` processes from the
 * built CLI (`node dist/cli/main.js start`, or from the sources with tsx when asked), on
 * free loopback ports, each with its own data directory in a temporary folder (on disk,
 * fsync on: Baton has no switch to turn it off), default timeouts unless given.
 *
 * The cluster is the harness's (harness/cluster.ts), whose processes and directories are
 * in the one registry; stop() ends the nodes with SIGTERM (so `--cpu-prof` profiles are
 * written) before removing the data.
 */

import { Option } from "commander";
import { Cluster } from "../harness/cluster.js";
import { batonCommand, type StatusView } from "../harness/processes.js";
import type { NetnsHosts } from "../src/chaos/hosts.js";
import {
  type BenchCluster,
  type BenchNode,
  fetchJson,
  type MasterView,
  nodeById,
} from "./bench-cluster.js";

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
  /** Peer mTLS and HTTPS from this directory (see the harness's ClusterOptions.tlsDir). */
  readonly tlsDir?: string;
  /** Only the peer links' TLS, or only the API's (the harness's ClusterOptions.tlsOnly). */
  readonly tlsOnly?: "peer" | "http";
  /** Nodes 1-3 on hosts of their own (see the harness's ClusterOptions.netns). */
  readonly netns?: NetnsHosts;
}

/** A Baton cluster, with what only Baton has: data directories and /v1/status. */
export interface BatonBenchCluster extends BenchCluster {
  /** The temporary folder with every node's data directory and log; stop() removes it. */
  readonly root: string;
  /** Node `id`'s data directory (kept across `process.stop()` and `process.start()`). */
  dataDir(id: number): string;
  /** Node `id`'s /v1/status, or null when it is down or does not answer within 500 ms. */
  status(id: number): Promise<StatusView | null>;
}

/** The harness's cluster, seen through the interface every benchmark drives. */
class BatonCluster implements BatonBenchCluster {
  readonly system = "baton" as const;
  readonly nodes: readonly BenchNode[];

  constructor(
    private readonly cluster: Cluster,
    readonly description: string,
  ) {
    this.nodes = cluster.nodes.map((n) => ({
      id: n.id,
      url: n.url,
      host: n.host,
      process: n.process,
    }));
  }

  get root(): string {
    return this.cluster.root;
  }

  dataDir(id: number): string {
    return this.cluster.node(id).dataDir;
  }

  status(id: number): Promise<StatusView | null> {
    return this.cluster.node(id).status(500);
  }

  async master(exclude: readonly number[] = [], minTerm = 0): Promise<MasterView | null> {
    const master = await this.cluster.agreedMaster({ exclude, minTerm });
    return master === null ? null : { id: master.id, term: master.term };
  }

  async caughtUp(id: number): Promise<boolean> {
    return (await this.cluster.caughtUp(id)) !== null;
  }

  async switchover(from: number, to: number): Promise<void> {
    const answer = await fetchJson(`${nodeById(this, from).url}/v1/switchover`, {
      method: "POST",
      body: JSON.stringify({ to }),
      timeoutMs: 5000,
    });
    if (answer.status !== 200) {
      throw new Error(
        `switchover ${from} → ${to}: HTTP ${answer.status} ${JSON.stringify(answer.json)}`,
      );
    }
  }

  stop(): Promise<void> {
    return this.cluster.destroy(10_000);
  }
}

/**
 * Starts three nodes (or `startIds`) and waits (up to 60 s) until the running ones agree on
 * a master.
 */
export async function startBatonCluster(options: BatonClusterOptions): Promise<BatonBenchCluster> {
  const cluster = await Cluster.start(
    {
      launcher: batonCommand(options.from, options.cli),
      log: "files",
      rootPrefix: "baton-bench-",
      ...(options.hosts === undefined ? {} : { hosts: options.hosts }),
      ...(options.tlsDir === undefined ? {} : { tlsDir: options.tlsDir }),
      ...(options.tlsOnly === undefined ? {} : { tlsOnly: options.tlsOnly }),
      ...(options.nodeFlags === undefined ? {} : { nodeFlags: options.nodeFlags }),
      ...(options.extraArgs === undefined ? {} : { extraArgs: options.extraArgs }),
      ...(options.startIds === undefined ? {} : { startIds: options.startIds }),
      ...(options.uids === undefined ? {} : { uids: options.uids }),
      ...(options.netns === undefined ? {} : { netns: options.netns }),
    },
    60_000,
  );
  const built =
    options.from === "dist" ? (options.cli ?? "dist/cli/main.js") : "tsx src/cli/main.ts";
  const extra =
    (options.extraArgs?.length ? ` ${options.extraArgs.join(" ")}` : "") +
    (options.tlsDir === undefined
      ? ""
      : options.tlsOnly === "peer"
        ? ", mutual TLS between nodes (plain HTTP)"
        : options.tlsOnly === "http"
          ? ", HTTPS (plain peer links)"
          : ", mutual TLS between nodes and HTTPS") +
    (options.uids === undefined ? "" : ", each node under a uid of its own") +
    (options.netns === undefined ? "" : `, each on a host of its own: ${options.netns.describe()}`);
  return new BatonCluster(
    cluster,
    `Baton (${built}), 3 nodes, data on disk with fsync, default timeouts${extra}`,
  );
}

/** `--profile`, for a benchmark that starts Baton nodes: their CPU profiles. */
export function profileOption(): Option {
  return new Option(
    "--profile",
    "run Baton nodes with node --cpu-prof (profiles in <out>/profiles)",
  );
}

/** `--node-flag`, repeatable: a Node.js or V8 flag for every Baton node's process. */
export function nodeFlagOption(example: string): Option {
  return new Option(
    "--node-flag <flag>",
    `a Node.js or V8 flag for every Baton node's process, e.g. --node-flag=${example} (repeatable; the output goes to each node's log)`,
  )
    .argParser((flag: string, flags: string[]) => [...flags, flag])
    .default([] as string[], "none");
}

/** Every node's process flags: the `--node-flag`s, then `--cpu-prof` into `profileDir` with `--profile`. */
export function nodeProcessFlags(
  options: { readonly nodeFlags: readonly string[]; readonly profile: boolean },
  profileDir: string,
): string[] {
  return [
    ...options.nodeFlags,
    ...(options.profile ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : []),
  ];
}
