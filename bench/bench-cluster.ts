/**
 * What a benchmark needs from a three-node cluster, whichever system it runs: the nodes'
 * client URLs, which node is master in which term, whether a node has caught up, and the
 * faults (kill, pause, resume, restart). baton-cluster.ts and etcd-cluster.ts implement
 * it, so that the load generator and the fail-over benchmark drive both the same way.
 */

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "undici";
import type { ManagedProcess } from "../harness/processes.js";

export type SystemName = "baton" | "etcd";

export interface BenchNode {
  /** 1, 2 or 3. */
  readonly id: number;
  /** The client API's base URL, e.g. http://127.0.0.1:8101. */
  readonly url: string;
  /** The loopback host the node listens on (its own 127.0.0.x when partitions are wanted). */
  readonly host: string;
  readonly process: ManagedProcess;
}

export interface MasterView {
  readonly id: number;
  readonly term: number;
}

export interface BenchCluster {
  readonly system: SystemName;
  readonly nodes: readonly BenchNode[];
  /** A line that says what runs: version, timeouts, fsync. */
  readonly description: string;
  /**
   * The node that the running nodes (minus `exclude`) agree is master, in a term of at
   * least `minTerm`; null while they do not agree.
   */
  master(exclude?: readonly number[], minTerm?: number): Promise<MasterView | null>;
  /** True when node `id` has applied everything the master has committed. */
  caughtUp(id: number): Promise<boolean>;
  /**
   * Asks master `from` to hand its role to node `to` (Baton: POST /v1/switchover; etcd:
   * its move-leader, /v3/maintenance/transfer-leadership); resolves when it answered.
   */
  switchover(from: number, to: number): Promise<void>;
  /** Stops every node (SIGTERM, so profiles are written) and removes the data. */
  stop(): Promise<void>;
}

/** GET or POST with a short timeout; resolves with the status and parsed JSON (or null). */
export async function fetchJson(
  url: string,
  options: { method?: "GET" | "POST"; body?: string; timeoutMs?: number } = {},
): Promise<{ status: number; json: unknown }> {
  const response = await request(url, {
    method: options.method ?? "GET",
    headers: options.body === undefined ? {} : { "content-type": "application/json" },
    ...(options.body === undefined ? {} : { body: options.body }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 1000),
  });
  const text = await response.body.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: response.statusCode, json };
}

export function nodeById(cluster: BenchCluster, id: number): BenchNode {
  const node = cluster.nodes.find((n) => n.id === id);
  if (node === undefined) throw new Error(`no node ${id}`);
  return node;
}

let clockTicksPerSecond: number | null = null;

/**
 * The CPU time (user + system) process `pid` (or this one, "self") has used so far, or with
 * "children" its waited-for children have, in milliseconds, from
 * /proc/<pid>/stat; null when it cannot be read (not Linux, or the process is gone).
 */
export function processCpuMs(
  pid: number | "self" | null | undefined,
  whose: "own" | "children" = "own",
): number | null {
  if (pid === null || pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime (fields 14, 15), or the waited-for children's cutime and cstime (16, 17)
    const at = whose === "own" ? 11 : 13;
    const ticks = Number(fields[at]) + Number(fields[at + 1]);
    clockTicksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
    return Number.isFinite(ticks) ? (ticks * 1000) / clockTicksPerSecond : null;
  } catch {
    return null;
  }
}

/** The CPU time all of `cluster`'s running nodes have used so far, in milliseconds. */
export function clusterCpuMs(cluster: BenchCluster): number | null {
  let total = 0;
  for (const node of cluster.nodes) {
    const ms = processCpuMs(node.process.pid);
    if (ms === null) return null;
    total += ms;
  }
  return total;
}

/**
 * A Prometheus counter of Baton's /metrics summed over `nodes` (e.g.
 * `baton_elections_started_total`); throws when a node does not answer.
 */
export async function counterTotal(
  nodes: readonly { readonly url: string }[],
  name: string,
): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const response = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    total += line === undefined ? 0 : Number(line.split(" ").at(-1));
  }
  return total;
}

/** A gauge of Baton's /metrics on one node (unlabelled), or null when it has none. */
export async function gauge(url: string, name: string): Promise<number | null> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await response.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.split(" ").at(-1));
}
