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
 * a heal one flush. The chains themselves are src/chaos/network.ts's IptablesChains, the
 * campaign's: removed on close, at exit, SIGINT or SIGTERM, and, when a run died without
 * it, by the next run.
 *
 * The tagging must be in place before the nodes open their connections: conntrack picks
 * up a connection it did not see open from the middle, without a reliable owner. Open the
 * partition first, then start the cluster.
 */

import { chainName, IptablesChains, iptablesUnsupported } from "../src/chaos/network.js";

const CHAIN_PREFIX = "BATON-PART-";

/** Why partitions cannot be made here, or null when they can. */
export function partitionUnsupported(): string | null {
  // One rule of each kind, to learn whether the kernel and the iptables binary support
  // owner, conntrack and connmark matches.
  const tag = 0x7fff_0000;
  return iptablesUnsupported([
    tagOpenerRule(1, 1_000_000_001, tag),
    tagAcceptorRule(1, 1_000_000_001, tag),
    dropRule(tag | 0x0201, "ORIGINAL"),
  ]);
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

/** How many partitions this process opened: each gets marks of its own. */
let opened = 0;

export class OwnerPartition {
  /** Bits 16-31 of every mark of this partition (this pid, this instance); never 0. */
  private readonly tag = (((process.pid * 16 + opened++) % 0xfffe) + 1) << 16;
  private readonly cuts = new Set<string>();
  private chains: IptablesChains | null = null;

  /** `uids`: node id (1-255) to the uid its process runs under. */
  private constructor(readonly uids: ReadonlyMap<number, number>) {}

  /** Makes the chains and the tagging rules; call before the nodes start. */
  static async open(uids: ReadonlyMap<number, number>): Promise<OwnerPartition> {
    for (const id of uids.keys()) {
      if (!(Number.isInteger(id) && id >= 1 && id <= 255)) throw new Error(`node id ${id}`);
    }
    const p = new OwnerPartition(uids);
    const chain = chainName(CHAIN_PREFIX);
    p.chains = await IptablesChains.open({
      prefix: CHAIN_PREFIX,
      hook: "OUTPUT",
      subChains: ["-CUT"],
      rules: [
        ...[...uids].flatMap(([id, uid]) => [
          `-A ${chain} ${tagOpenerRule(id, uid, p.tag).join(" ")}`,
          `-A ${chain} ${tagAcceptorRule(id, uid, p.tag).join(" ")}`,
        ]),
        `-A ${chain} -j ${chainName(CHAIN_PREFIX, "-CUT")}`,
      ],
    });
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
    this.cuts.clear();
    await this.chains?.iptables(["-F", this.cutChain]);
  }

  /** Heals everything and removes both chains. */
  close(): void {
    this.cuts.clear();
    this.chains?.close();
  }

  private get cutChain(): string {
    return chainName(CHAIN_PREFIX, "-CUT");
  }

  private async cutLinks(links: readonly (readonly [number, number])[]): Promise<void> {
    if (this.chains === null) throw new Error("the partition is not open");
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
    if (rules.length > 0) await this.chains.restore(rules);
  }
}
