/**
 * Network partitions for the fail-over benchmark, made the same way for Baton and etcd.
 *
 * Per-address rules (src/chaos/network.ts) cannot isolate an etcd member: etcd dials its
 * peers from 127.0.0.1 whatever address it listens on, so its packets do not say which
 * member sent them. What does say it is the process: each node of a cluster runs under a
 * numeric uid of its own (no user is created; its data directory is chowned to it), and
 * every loopback packet passes the OUTPUT hook with its socket, where `-m owner` reads the
 * uid. A TCP connection is tagged in conntrack with two node ids:
 *
 * - the node that opened it, from the owner of its first packet (the SYN);
 * - the node that accepted it, from the owner of its first answer (the SYN-ACK belongs to
 *   the listening socket).
 *
 * Cutting node A off node B then drops every packet, both ways, of the connections A
 * opened to B and B opened to A: peer links, and any other connection between the two
 * processes (a Baton backup forwarding a client request to the master over HTTP included).
 * Nothing else is touched: connections from the benchmark itself (root, untagged) to any
 * node's client port go through, so the writer can still reach the isolated node and the
 * benchmark can watch it step down; a node's connections to itself (etcd's JSON gateway
 * dials its own gRPC port) too. No port, address or protocol of either system is named.
 *
 * The tags live in the conntrack mark: bits 16-31 a tag of this partition (so that runs
 * side by side never match each other's connections), bits 8-15 the acceptor's id, bits
 * 0-7 the opener's. The rules are in two chains of this run, BATON-PART-<pid> (jumped to
 * from OUTPUT: the tagging) and BATON-PART-<pid>-CUT (the drops); a cut is one atomic
 * iptables-restore (the rules commit at the end of the call, a few ms before it returns),
 * a heal one flush. The chains are removed on close, at process exit (which SIGINT and
 * SIGTERM lead to) and, when a run died without it, by the next run.
 *
 * The tagging must be in place before the nodes open their connections: conntrack picks
 * up a connection it did not see open from the middle, without a reliable owner. Open the
 * partition first, then start the cluster.
 */

import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

const CHAIN_PREFIX = "BATON-PART-";

/** Why partitions cannot be made here, or null when they can. */
export function partitionUnsupported(): string | null {
  if (process.getuid?.() !== 0) return "partitions need root (iptables rules)";
  // A throwaway chain with one rule of each kind, to learn whether the kernel and the
  // iptables binary support owner, conntrack and connmark matches.
  const chain = `${CHAIN_PREFIX}${process.pid}-T`;
  const quiet = { stdio: "ignore" } as const;
  try {
    execFileSync("iptables", ["-w", "-N", chain], quiet);
  } catch {
    return "iptables is missing or unusable";
  }
  try {
    const tag = 0x7fff_0000;
    execFileSync("iptables", ["-w", "-A", chain, ...tagOpenerRule(1, 1_000_000_001, tag)], quiet);
    execFileSync("iptables", ["-w", "-A", chain, ...tagAcceptorRule(1, 1_000_000_001, tag)], quiet);
    execFileSync("iptables", ["-w", "-A", chain, ...dropRule(tag | 0x0201, "ORIGINAL")], quiet);
    return null;
  } catch {
    return "iptables lacks the owner, conntrack or connmark match";
  } finally {
    removeChainsSync(chain);
  }
}

/**
 * Numeric uids for `count` nodes, unused by anyone else in practice (from 1.9 billion up,
 * spread by this process's pid), distinct for each `set` of one run.
 */
export function nodeUids(count: number, set: number): number[] {
  const base = 1_900_000_000 + (process.pid % 100_000) * 100 + set * 10;
  return Array.from({ length: count }, (_, i) => base + i + 1);
}

function tagOpenerRule(id: number, uid: number, tag: number): string[] {
  return [
    ...["-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "--ctdir", "ORIGINAL"],
    ...["-m", "owner", "--uid-owner", String(uid)],
    ...["-j", "CONNMARK", "--set-xmark", `${hex(tag | id)}/0xffff00ff`],
  ];
}

function tagAcceptorRule(id: number, uid: number, tag: number): string[] {
  return [
    ...["-p", "tcp", "-m", "conntrack", "--ctdir", "REPLY"],
    // Only our run's connections whose acceptor is not known yet.
    ...["-m", "connmark", "--mark", `${hex(tag)}/0xffffff00`],
    ...["-m", "owner", "--uid-owner", String(uid)],
    ...["-j", "CONNMARK", "--set-xmark", `${hex(id << 8)}/0x0000ff00`],
  ];
}

function dropRule(mark: number, direction: "ORIGINAL" | "REPLY"): string[] {
  return [
    ...["-m", "connmark", "--mark", hex(mark)],
    ...["-m", "conntrack", "--ctdir", direction],
    ...["-j", "DROP"],
  ];
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Unhooks `main` from OUTPUT, then flushes and deletes `main` and `others`; quiet. */
function removeChainsSync(main: string, ...others: string[]): void {
  const quiet = { stdio: "ignore" } as const;
  for (;;) {
    try {
      execFileSync("iptables", ["-w", "-D", "OUTPUT", "-j", main], quiet);
    } catch {
      break;
    }
  }
  for (const step of ["-F", "-X"]) {
    for (const chain of [main, ...others]) {
      try {
        execFileSync("iptables", ["-w", step, chain], quiet);
      } catch {
        // Gone already, or never made.
      }
    }
  }
}

/** Removes the chains of runs whose process is no longer running; returns their names. */
export function removeStalePartitionChains(): string[] {
  let listing = "";
  try {
    listing = execFileSync("iptables", ["-w", "-S"], { encoding: "utf8" });
  } catch {
    return [];
  }
  const removed = new Set<string>();
  for (const line of listing.split("\n")) {
    const match = /^-N (BATON-PART-(\d+))(?:-CUT|-T)?$/.exec(line.trim());
    if (match === null || removed.has(match[1]!) || pidAlive(Number(match[2]))) continue;
    removeChainsSync(match[1]!, `${match[1]}-CUT`, `${match[1]}-T`);
    removed.add(match[1]!);
  }
  return [...removed];
}

/** How many partitions this process opened: each gets marks of its own. */
let opened = 0;

export class OwnerPartition {
  readonly chain = `${CHAIN_PREFIX}${process.pid}`;
  readonly cutChain = `${CHAIN_PREFIX}${process.pid}-CUT`;
  /** Bits 16-31 of every mark of this partition (this pid, this instance); never 0. */
  private readonly tag = (((process.pid * 16 + opened++) % 0xfffe) + 1) << 16;
  private readonly cuts = new Set<string>();
  private closed = false;
  private readonly onExit = (): void => this.closeSync();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.closeSync();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };

  /** `uids`: node id (1-255) to the uid its process runs under. */
  private constructor(readonly uids: ReadonlyMap<number, number>) {}

  /** Makes the chains and the tagging rules; call before the nodes start. */
  static async open(uids: ReadonlyMap<number, number>): Promise<OwnerPartition> {
    for (const id of uids.keys()) {
      if (!(Number.isInteger(id) && id >= 1 && id <= 255)) throw new Error(`node id ${id}`);
    }
    removeStalePartitionChains();
    const p = new OwnerPartition(uids);
    removeChainsSync(p.chain, p.cutChain);
    process.once("exit", p.onExit);
    process.once("SIGINT", p.onSignal);
    process.once("SIGTERM", p.onSignal);
    const lines = [
      "*filter",
      `:${p.chain} - [0:0]`,
      `:${p.cutChain} - [0:0]`,
      ...[...uids].flatMap(([id, uid]) => [
        `-A ${p.chain} ${tagOpenerRule(id, uid, p.tag).join(" ")}`,
        `-A ${p.chain} ${tagAcceptorRule(id, uid, p.tag).join(" ")}`,
      ]),
      `-A ${p.chain} -j ${p.cutChain}`,
      `-I OUTPUT 1 -j ${p.chain}`,
      "COMMIT",
    ];
    try {
      await restore(lines);
    } catch (error) {
      p.closeSync();
      throw error;
    }
    return p;
  }

  /**
   * Cuts node `id` off every other node, both ways, in one atomic step: when this
   * resolves, no packet between them passes.
   */
  async isolate(id: number): Promise<void> {
    const links: [number, number][] = [];
    for (const other of this.uids.keys()) {
      if (other !== id) links.push([id, other], [other, id]);
    }
    await this.cutLinks(links);
  }

  /** Cuts the packets `from` sends `to` (one direction), on every connection between them. */
  async cut(from: number, to: number): Promise<void> {
    await this.cutLinks([[from, to]]);
  }

  /** Heals every cut in one step. */
  async heal(): Promise<void> {
    if (this.closed) return;
    this.cuts.clear();
    await run("iptables", ["-w", "-F", this.cutChain]);
  }

  /** Heals everything and removes both chains. */
  close(): void {
    this.closeSync();
  }

  private async cutLinks(links: readonly (readonly [number, number])[]): Promise<void> {
    if (this.closed) throw new Error("the partition is closed");
    const rules: string[] = [];
    for (const [from, to] of links) {
      if (!(this.uids.has(from) && this.uids.has(to))) throw new Error(`no node ${from}/${to}`);
      const key = `${from}>${to}`;
      if (this.cuts.has(key)) continue;
      this.cuts.add(key);
      // Connections `from` opened to `to`: their original direction; those `to` opened
      // to `from`: their reply direction.
      rules.push(
        `-A ${this.cutChain} ${dropRule(this.tag | (to << 8) | from, "ORIGINAL").join(" ")}`,
      );
      rules.push(`-A ${this.cutChain} ${dropRule(this.tag | (from << 8) | to, "REPLY").join(" ")}`);
    }
    if (rules.length > 0) await restore(["*filter", ...rules, "COMMIT"]);
  }

  private closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    this.cuts.clear();
    removeChainsSync(this.chain, this.cutChain);
    process.off("exit", this.onExit);
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
  }
}

/** Applies `lines` with iptables-restore --noflush: all of them or none, at once. */
function restore(lines: readonly string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = execFile("iptables-restore", ["--noflush"], (error, _stdout, stderr) => {
      if (error === null) done();
      else fail(new Error(`iptables-restore: ${stderr.trim() || error.message}`));
    });
    child.stdin?.end(`${lines.join("\n")}\n`);
  });
}
