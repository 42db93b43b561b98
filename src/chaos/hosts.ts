/**
 * Separate hosts on one machine: each node gets a network namespace of its own, with one
 * interface (`eth0`) and one address on a bridge that this process makes in the root
 * namespace, so that the nodes talk over a real (virtual) Ethernet segment instead of
 * loopback. `tc netem` on both ends of every host's cable adds a LAN's delay, jitter and
 * loss, where the kernel has netem (sch_netem); where it has not, loss comes from an
 * iptables rule in each host and delay cannot be added (`conditionsApplied` says which).
 * The root namespace holds the bridge's own address, so this process (the clients, the
 * campaign, the benchmark) reaches every host as a machine on the same LAN would.
 *
 * Faults, each silent as on a real network (no reset, no close, no ICMP):
 * - `cut(a, b)`: host a's packets to host b are dropped as they leave a (an iptables rule
 *   in a's own namespace, which dies with it); `heal(a, b)` removes it.
 * - `down(a)`: the whole host drops off the network: the bridge's end of its cable goes
 *   down, so nothing reaches it and nothing leaves it; `up(a)` plugs it back in. Its
 *   processes keep running and keep their connections, as when a switch port or a NIC
 *   dies.
 *
 * Namespaces, cables and the bridge are named after this process's pid; they are removed on
 * close, at exit, SIGINT or SIGTERM (through the process registry), and by the next user
 * when the process that made them died without. Needs root, iproute2 (`ip`, `tc`) and
 * iptables.
 */

import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import type { Link, Network } from "./network.js";
import { onCleanup, pidAlive } from "./process-registry.js";

const run = promisify(execFile);

/** What a LAN adds, per direction between two hosts. */
export interface LanConditions {
  /** One-way delay, ms. @default 0.2 */
  readonly delayMs?: number;
  /** Jitter around that delay, ms (normal distribution). @default 0.05 */
  readonly jitterMs?: number;
  /** Packets lost, per cent. @default 0 */
  readonly lossPercent?: number;
}

export interface NetnsHostsOptions extends LanConditions {
  /** Number of hosts. */
  readonly count: number;
}

const NAMESPACE_PATTERN = /^baton-(\d+)-h(\d+)$/;
const LINK_PATTERN = /^b[bv](\d+)(h\d+)?$/;

/** Why this process cannot make hosts (not root, no iproute2), or null when it can. */
export function netnsUnsupported(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const [tool, flag, pkg] of [
    ["ip", "-V", "iproute2"],
    ["tc", "-V", "iproute2"],
    ["iptables", "-V", "iptables"],
  ] as const) {
    try {
      execFileSync(tool, [flag], { stdio: "ignore" });
    } catch {
      return `\`${tool}\` is missing: apt-get install ${pkg}`;
    }
  }
  return null;
}

/** Whether the kernel has the netem queueing discipline (some VM kernels lack it). */
export function netemAvailable(): boolean {
  const probe = `bn${process.pid}`;
  try {
    execFileSync("ip", ["link", "add", probe, "type", "veth", "peer", "name", `${probe}p`], {
      stdio: "ignore",
    });
    execFileSync("tc", ["qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"], {
      stdio: "ignore",
    });
    return true;
  } catch {
    return false;
  } finally {
    quiet("ip", ["link", "delete", probe]);
  }
}

function quiet(command: string, args: readonly string[]): void {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Gone already, or never made.
  }
}

/** Removes the namespaces and bridges of processes that are no longer running. */
export function removeStaleHosts(): string[] {
  const removed: string[] = [];
  let namespaces = "";
  let links = "";
  try {
    namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
  } catch {
    return removed;
  }
  for (const line of namespaces.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const match = NAMESPACE_PATTERN.exec(name);
    if (match === null || pidAlive(Number(match[1]))) continue;
    quiet("ip", ["netns", "delete", name]);
    removed.push(name);
  }
  for (const line of links.split("\n")) {
    const name = (line.split(":")[1] ?? "").trim().split("@")[0] ?? "";
    const match = LINK_PATTERN.exec(name);
    if (match === null || pidAlive(Number(match[1]))) continue;
    quiet("ip", ["link", "delete", name]);
    removed.push(name);
  }
  return removed;
}

/** A /24 that no route of this machine uses, derived from the pid so that runs differ. */
function freeSubnet(pid: number): string {
  const routes = execFileSync("ip", ["-4", "route", "show"], { encoding: "utf8" });
  for (let attempt = 0; attempt < 256; attempt++) {
    const second = 100 + ((pid + attempt * 7919) % 100);
    const third = (pid + attempt) % 256;
    const prefix = `10.${second}.${third}`;
    if (!routes.includes(`${prefix}.`)) return prefix;
  }
  throw new Error("no free 10.x.y.0/24 subnet for the test hosts (every candidate is routed)");
}

export class NetnsHosts {
  /** Host i's address is `addresses[i - 1]`; the bridge (this process) has `gateway`. */
  readonly addresses: readonly string[];
  readonly gateway: string;
  private readonly bridge: string;
  private readonly cutLinks = new Set<string>();
  private readonly downHosts = new Set<number>();
  /** How the conditions were applied: "netem", or "iptables" (loss only: no netem here). */
  private applied: "netem" | "iptables" = "netem";
  private closed = false;
  private unregister: () => void = () => {};

  private constructor(
    readonly count: number,
    private readonly prefix: string,
    readonly conditions: Required<LanConditions>,
  ) {
    this.bridge = `bb${process.pid}`;
    this.gateway = `${prefix}.1`;
    this.addresses = Array.from({ length: count }, (_, i) => `${prefix}.${10 + i + 1}`);
  }

  /**
   * Makes `count` hosts on a fresh bridge, each with loopback up, its address and the LAN's
   * conditions on both ends of its cable. Removes what dead runs left behind first.
   */
  static async create(options: NetnsHostsOptions): Promise<NetnsHosts> {
    const why = netnsUnsupported();
    if (why !== null) throw new Error(`cannot make separate hosts: ${why}`);
    removeStaleHosts();
    const conditions = {
      delayMs: options.delayMs ?? 0.2,
      jitterMs: options.jitterMs ?? 0.05,
      lossPercent: options.lossPercent ?? 0,
    };
    const hosts = new NetnsHosts(options.count, freeSubnet(process.pid), conditions);
    hosts.unregister = onCleanup(() => hosts.removeSync());
    try {
      await hosts.build();
    } catch (error) {
      hosts.removeSync();
      hosts.unregister();
      throw error;
    }
    return hosts;
  }

  /** Host `id`'s namespace name (hosts are numbered from 1). */
  namespace(id: number): string {
    this.check(id);
    return `baton-${process.pid}-h${id}`;
  }

  address(id: number): string {
    this.check(id);
    return this.addresses[id - 1]!;
  }

  /** A command and its arguments, to run inside host `id`: `ip netns exec <ns> …`. */
  wrap(id: number, command: string, args: readonly string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.namespace(id), command, ...args]];
  }

  /** Drops host `from`'s packets to host `to` as they leave `from` (idempotent). */
  async cut(from: number, to: number): Promise<void> {
    const key = `${from}>${to}`;
    if (this.cutLinks.has(key)) return;
    await this.inHost(from, "iptables", ["-w", "-A", "OUTPUT", ...this.cutRule(to)]);
    this.cutLinks.add(key);
  }

  /** Lets host `from`'s packets reach host `to` again (idempotent). */
  async heal(from: number, to: number): Promise<void> {
    const key = `${from}>${to}`;
    if (!this.cutLinks.has(key)) return;
    await this.inHost(from, "iptables", ["-w", "-D", "OUTPUT", ...this.cutRule(to)]);
    this.cutLinks.delete(key);
  }

  /** The directed links cut now, as `[from, to]`. */
  cuts(): [number, number][] {
    return [...this.cutLinks].map((key) => key.split(">").map(Number) as [number, number]);
  }

  /** Host `id` drops off the network: the bridge's end of its cable goes down. */
  async down(id: number): Promise<void> {
    await run("ip", ["link", "set", this.cable(id), "down"]);
    this.downHosts.add(id);
  }

  /** Plugs host `id` back in. */
  async up(id: number): Promise<void> {
    await run("ip", ["link", "set", this.cable(id), "up"]);
    this.downHosts.delete(id);
  }

  isDown(id: number): boolean {
    return this.downHosts.has(id);
  }

  /** Heals every cut and plugs every host back in. */
  async healAll(): Promise<void> {
    for (const [from, to] of this.cuts()) await this.heal(from, to);
    for (const id of [...this.downHosts]) await this.up(id);
  }

  /** What the LAN adds as it was applied: all of it with netem, only loss without. */
  get conditionsApplied(): Required<LanConditions> {
    return this.applied === "netem"
      ? this.conditions
      : { delayMs: 0, jitterMs: 0, lossPercent: this.conditions.lossPercent };
  }

  /** A line for reports: what the LAN adds, and what could not be added here. */
  describe(): string {
    const c = this.conditions;
    const loss = c.lossPercent > 0 ? `, ${c.lossPercent} % loss` : "";
    const lan =
      this.applied === "netem"
        ? `netem ${c.delayMs} ms ± ${c.jitterMs} ms one way${loss}`
        : `no added delay (this kernel has no netem)${loss === "" ? "" : `; iptables${loss}`}`;
    return `${this.count} network namespaces on a bridge (${this.prefix}.0/24), ${lan}`;
  }

  /** Removes the namespaces (their processes must be gone) and the bridge. */
  async close(): Promise<void> {
    this.removeSync();
    this.unregister();
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 1 || id > this.count) {
      throw new Error(`no host ${id}: hosts are 1 to ${this.count}`);
    }
  }

  /** The bridge's end of host `id`'s cable (at most 15 characters, as Linux requires). */
  private cable(id: number): string {
    this.check(id);
    return `bv${process.pid}h${id}`;
  }

  private inHost(id: number, command: string, args: readonly string[]): Promise<unknown> {
    return run("ip", ["netns", "exec", this.namespace(id), command, ...args]);
  }

  private cutRule(to: number): string[] {
    return ["-d", `${this.address(to)}/32`, "-j", "DROP"];
  }

  private netemArgs(): string[] {
    const c = this.conditions;
    // Each direction crosses two netem queues (the sender's eth0, the receiver's cable
    // end on the bridge): each adds half.
    const args = ["delay", `${c.delayMs / 2}ms`];
    if (c.jitterMs > 0) args.push(`${c.jitterMs / 2}ms`, "distribution", "normal");
    if (c.lossPercent > 0) args.push("loss", `${c.lossPercent / 2}%`);
    return args;
  }

  private async build(): Promise<void> {
    this.applied = netemAvailable() ? "netem" : "iptables";
    await run("ip", ["link", "add", this.bridge, "type", "bridge"]);
    await run("ip", ["addr", "add", `${this.gateway}/24`, "dev", this.bridge]);
    await run("ip", ["link", "set", this.bridge, "up"]);
    for (let id = 1; id <= this.count; id++) {
      const ns = this.namespace(id);
      const cable = this.cable(id);
      await run("ip", ["netns", "add", ns]);
      await run("ip", ["link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await run("ip", ["link", "set", cable, "master", this.bridge]);
      await run("ip", ["link", "set", cable, "up"]);
      await this.inHost(id, "ip", ["link", "set", "lo", "up"]);
      await this.inHost(id, "ip", ["addr", "add", `${this.address(id)}/24`, "dev", "eth0"]);
      await this.inHost(id, "ip", ["link", "set", "eth0", "up"]);
      await this.inHost(id, "ip", ["route", "add", "default", "via", this.gateway]);
      if (this.applied === "netem") {
        await run("tc", ["qdisc", "add", "dev", cable, "root", "netem", ...this.netemArgs()]);
        await this.inHost(id, "tc", [
          ...["qdisc", "add", "dev", "eth0", "root", "netem", ...this.netemArgs()],
        ]);
      } else if (this.conditions.lossPercent > 0) {
        // Each direction crosses the sender's OUTPUT and the receiver's INPUT: half each.
        const probability = String(this.conditions.lossPercent / 200);
        for (const [chain, side] of [
          ["INPUT", "-i"],
          ["OUTPUT", "-o"],
        ] as const) {
          await this.inHost(id, "iptables", [
            ...["-w", "-A", chain, side, "eth0", "-m", "statistic", "--mode", "random"],
            ...["--probability", probability, "-j", "DROP"],
          ]);
        }
      }
    }
  }

  private removeSync(): void {
    if (this.closed) return;
    this.closed = true;
    // Deleting a namespace deletes its cable too, but later (the kernel does it in the
    // background): the cable goes first, at once.
    for (let id = 1; id <= this.count; id++) {
      quiet("ip", ["link", "delete", this.cable(id)]);
      quiet("ip", ["netns", "delete", this.namespace(id)]);
    }
    quiet("ip", ["link", "delete", this.bridge]);
  }
}

/**
 * The fault campaign's Network over hosts of their own: cuts between hosts, and a whole
 * host dropping off the network. Closing it heals everything; the hosts themselves are
 * closed by their owner once the processes on them are gone.
 */
export function hostsNetwork(hosts: NetnsHosts): Network {
  return {
    method: "netns",
    cut: (from, to) => hosts.cut(from, to),
    heal: (from, to) => hosts.heal(from, to),
    healAll: () => hosts.healAll(),
    cutLinks: (): Link[] => hosts.cuts().map(([from, to]) => ({ from, to })),
    close: () => hosts.healAll(),
    hostDown: (id) => hosts.down(id),
    hostUp: (id) => hosts.up(id),
  };
}
