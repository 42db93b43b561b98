/**
 * Network partitions between real node processes. It owns one question: which directed
 * links (node A's packets to node B) are cut right now, and making the machine agree. Two
 * ways to cut a link, behind one interface:
 *
 * - `iptables`: each node listens (peer and HTTP ports) on its own loopback address
 *   (`nodeHost`) and dials its peers from it, so a rule dropping source A to destination
 *   B cuts every packet A sends B, on every connection, in whichever direction it was
 *   opened. Rules live in one chain of their own (BATON-CHAOS-<pid>) jumped to from INPUT.
 *   Clients dial from 127.0.0.1, which no rule names.
 * - `relay`: without root, every node reaches each peer through a relay port of this
 *   process; cutting A to B stops the relay forwarding the bytes A sends B (TCP
 *   back-pressure then stalls the sender, as a dropped packet would), and new connections
 *   between them wait. Only node-to-node traffic goes through relays.
 *
 * It also owns every iptables chain that the campaign, the tests and the benchmarks make
 * (IptablesChains; the benchmarks' partitions by process owner build on it): each is
 * named after the process that made it, removed on close, at exit, SIGINT or SIGTERM
 * (through the process registry), and by the next user when its process died without.
 *
 * It must never leave a rule or a listening relay behind, and never touch a chain that it
 * did not create or that a live process still owns.
 */

import { execFile, execFileSync } from "node:child_process";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { promisify } from "node:util";
import { onCleanup, pidAlive } from "./process-registry.js";

const run = promisify(execFile);

/** `netns`: each node on a host of its own (src/chaos/hosts.ts), cuts between hosts. */
export type PartitionMethod = "iptables" | "relay" | "netns";

/** A directed link: packets from `from` to `to`. */
export interface Link {
  readonly from: number;
  readonly to: number;
}

export interface Network {
  readonly method: PartitionMethod;
  /** Cuts packets from `from` to `to` (idempotent). */
  cut(from: number, to: number): Promise<void>;
  /** Heals that one direction (idempotent). */
  heal(from: number, to: number): Promise<void>;
  /** Heals every link. */
  healAll(): Promise<void>;
  /** The links cut now. */
  cutLinks(): Link[];
  /** Heals everything and releases every rule, chain, relay and socket. */
  close(): Promise<void>;
  /**
   * Hosts of their own only: node `id`'s whole host drops off the network (no reset, no
   * close), and comes back. Undefined where the nodes share one machine's loopback.
   */
  readonly hostDown?: (id: number) => Promise<void>;
  readonly hostUp?: (id: number) => Promise<void>;
}

const linkKey = (from: number, to: number): string => `${from}>${to}`;

function parseLinkKey(key: string): Link {
  const [from, to] = key.split(">").map(Number);
  return { from: from!, to: to! };
}

// ---------------------------------------------------------------- iptables chains

/** Every chain this module makes is named `BATON-<KIND>-<pid>`, with an optional `-<SUB>`. */
const CHAIN_PATTERN = /^-N (BATON-[A-Z]+-(\d+))(-[A-Z]+)?$/;
const HOOKS = ["INPUT", "OUTPUT"] as const;
const QUIET = { stdio: "ignore" } as const;

/** The name of this process's chain of kind `prefix` ("BATON-CHAOS-"), plus `suffix`. */
export function chainName(prefix: string, suffix = ""): string {
  return `${prefix}${process.pid}${suffix}`;
}

/**
 * Why this process cannot manage iptables rules (not root, no usable iptables, or the kernel
 * refuses one of the `probe` rules: a match it lacks), or null when it can. The probe rules
 * go into a throwaway chain that is removed before this returns.
 */
export function iptablesUnsupported(probe: readonly (readonly string[])[] = []): string | null {
  if (process.getuid?.() !== 0) return "iptables rules need root";
  const chain = chainName("BATON-PROBE-");
  try {
    execFileSync("iptables", ["-w", "-N", chain], QUIET);
  } catch {
    return "iptables is missing or unusable";
  }
  try {
    for (const rule of probe) execFileSync("iptables", ["-w", "-A", chain, ...rule], QUIET);
    return null;
  } catch {
    return "iptables lacks a match these rules need (owner, conntrack or connmark)";
  } finally {
    removeChainsSync(chain);
  }
}

/** Whether this process can manage iptables rules: root and a working iptables. */
export function iptablesUsable(): boolean {
  return iptablesUnsupported() === null;
}

/** Unhooks `main` from INPUT and OUTPUT, then flushes and deletes it and `others`; quiet. */
function removeChainsSync(main: string, ...others: string[]): void {
  // Each step may fail when an earlier run got part-way; carry on with the rest.
  for (const hook of HOOKS) {
    for (;;) {
      try {
        execFileSync("iptables", ["-w", "-D", hook, "-j", main], QUIET);
      } catch {
        break;
      }
    }
  }
  for (const step of ["-F", "-X"]) {
    for (const chain of [main, ...others]) {
      try {
        execFileSync("iptables", ["-w", step, chain], QUIET);
      } catch {
        // Gone already, or never made.
      }
    }
  }
}

/** Removes the Baton chains of processes that are no longer running; returns their names. */
export function removeStaleChains(): string[] {
  let listing = "";
  try {
    listing = execFileSync("iptables", ["-w", "-S"], { encoding: "utf8" });
  } catch {
    return [];
  }
  const families = new Map<string, string[]>();
  for (const line of listing.split("\n")) {
    const match = CHAIN_PATTERN.exec(line.trim());
    if (match === null || pidAlive(Number(match[2]))) continue;
    const subs = families.get(match[1]!) ?? [];
    if (match[3] !== undefined) subs.push(`${match[1]}${match[3]}`);
    families.set(match[1]!, subs);
  }
  for (const [main, subs] of families) removeChainsSync(main, ...subs);
  return [...families.keys()];
}

/** Applies `lines` with iptables-restore --noflush: all of them or none, at once. */
export function iptablesRestore(lines: readonly string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = execFile("iptables-restore", ["--noflush"], (error, _stdout, stderr) => {
      if (error === null) done();
      else fail(new Error(`iptables-restore: ${stderr.trim() || error.message}`));
    });
    child.stdin?.end(`${["*filter", ...lines, "COMMIT"].join("\n")}\n`);
  });
}

/**
 * The iptables chains of one user in this process: a main chain (`chainName(prefix)`)
 * jumped to first from `hook`, and sub-chains named with a suffix. Opening removes the
 * chains of dead processes first; the chains are removed on close and, through the process
 * registry, at exit, SIGINT or SIGTERM.
 */
export class IptablesChains {
  readonly main: string;
  private closed = false;
  private unregister: () => void = () => {};

  private constructor(
    prefix: string,
    private readonly subs: readonly string[],
  ) {
    this.main = chainName(prefix);
  }

  /**
   * Makes the chains, with `rules` (iptables-restore lines: `-A <chain> ...`) in place
   * before the main chain is hooked, all in one step.
   */
  static async open(options: {
    readonly prefix: string;
    readonly hook: (typeof HOOKS)[number];
    /** Suffixes of the sub-chains, e.g. ["-CUT"]. */
    readonly subChains?: readonly string[];
    readonly rules?: readonly string[];
  }): Promise<IptablesChains> {
    removeStaleChains();
    const chains = new IptablesChains(options.prefix, options.subChains ?? []);
    const all = [chains.main, ...chains.subs.map((s) => chains.sub(s))];
    removeChainsSync(chains.main, ...all.slice(1));
    chains.unregister = onCleanup(() => chains.close());
    try {
      await iptablesRestore([
        ...all.map((chain) => `:${chain} - [0:0]`),
        ...(options.rules ?? []),
        `-I ${options.hook} 1 -j ${chains.main}`,
      ]);
    } catch (error) {
      chains.close();
      throw error;
    }
    return chains;
  }

  /** The name of sub-chain `suffix`. */
  sub(suffix: string): string {
    return `${this.main}${suffix}`;
  }

  /** Runs `iptables -w <args>`; nothing once closed. */
  async iptables(args: readonly string[]): Promise<void> {
    if (!this.closed) await run("iptables", ["-w", ...args]);
  }

  /** Applies `lines` at once (see iptablesRestore); throws once closed. */
  async restore(lines: readonly string[]): Promise<void> {
    if (this.closed) throw new Error(`the chains ${this.main} are closed`);
    await iptablesRestore(lines);
  }

  /** Unhooks and removes every chain; idempotent and synchronous (it runs at exit too). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    removeChainsSync(this.main, ...this.subs.map((s) => this.sub(s)));
    this.unregister();
  }
}

// ---------------------------------------------------------------- iptables network

/**
 * The loopback address node `id` listens on when partitions use iptables:
 * 127.<a>.<b>.<10 + id>, with a.b taken from this process's pid, so that campaigns running
 * side by side (a developer's and `npm test`'s) never cut each other's nodes.
 */
export function nodeHost(id: number, pid = process.pid): string {
  return `127.${(pid >> 8) & 255}.${pid & 255}.${10 + id}`;
}

export class IptablesNetwork implements Network {
  readonly method = "iptables" as const;
  private readonly cut_ = new Set<string>();

  private constructor(private readonly chains: IptablesChains) {}

  /** Makes the campaign's chain, hooked from INPUT (after removing stale ones). */
  static async open(): Promise<IptablesNetwork> {
    return new IptablesNetwork(
      await IptablesChains.open({ prefix: "BATON-CHAOS-", hook: "INPUT" }),
    );
  }

  get chain(): string {
    return this.chains.main;
  }

  async cut(from: number, to: number): Promise<void> {
    const key = linkKey(from, to);
    if (this.cut_.has(key)) return;
    this.cut_.add(key);
    await this.chains.iptables(["-A", this.chain, ...this.ruleOf(from, to)]);
  }

  async heal(from: number, to: number): Promise<void> {
    if (!this.cut_.delete(linkKey(from, to))) return;
    await this.chains.iptables(["-D", this.chain, ...this.ruleOf(from, to)]);
  }

  async healAll(): Promise<void> {
    this.cut_.clear();
    await this.chains.iptables(["-F", this.chain]);
  }

  cutLinks(): Link[] {
    return [...this.cut_].map(parseLinkKey);
  }

  async close(): Promise<void> {
    this.cut_.clear();
    this.chains.close();
  }

  private ruleOf(from: number, to: number): string[] {
    return ["-s", nodeHost(from), "-d", nodeHost(to), "-j", "DROP"];
  }
}

// ---------------------------------------------------------------- relay

interface Pipe {
  readonly from: number;
  readonly to: number;
  readonly source: Socket;
  readonly sink: Socket;
}

/**
 * One relay per directed pair (dialler, peer): node `dialler` is told that `peer` lives at
 * the relay's port, and the relay forwards to the peer's real address. Bytes of a relayed
 * connection flow both ways, so each connection has two pipes: dialler to peer and back.
 */
export class RelayNetwork implements Network {
  readonly method = "relay" as const;
  private readonly cut_ = new Set<string>();
  private readonly servers: Server[] = [];
  private readonly pipes = new Set<Pipe>();
  private readonly sockets = new Set<Socket>();
  private readonly ports = new Map<string, number>();
  private closed = false;

  private constructor(private readonly host: string) {}

  /**
   * Opens a relay for every ordered pair of `targets` (id to the real host:port of its
   * peer listener).
   */
  static async open(targets: ReadonlyMap<number, { host: string; port: number }>) {
    const network = new RelayNetwork("127.0.0.1");
    for (const dialler of targets.keys()) {
      for (const [peer, target] of targets) {
        if (peer === dialler) continue;
        const port = await network.listen(dialler, peer, target);
        network.ports.set(linkKey(dialler, peer), port);
      }
    }
    return network;
  }

  /** The address node `dialler` must use for `peer`. */
  addressFor(dialler: number, peer: number): string {
    const port = this.ports.get(linkKey(dialler, peer));
    if (port === undefined) throw new Error(`no relay from ${dialler} to ${peer}`);
    return `${this.host}:${port}`;
  }

  async cut(from: number, to: number): Promise<void> {
    if (this.closed) return;
    this.cut_.add(linkKey(from, to));
    for (const pipe of this.pipes) if (pipe.from === from && pipe.to === to) pipe.source.pause();
  }

  async heal(from: number, to: number): Promise<void> {
    if (!this.cut_.delete(linkKey(from, to))) return;
    for (const pipe of this.pipes) if (pipe.from === from && pipe.to === to) pipe.source.resume();
  }

  async healAll(): Promise<void> {
    for (const link of this.cutLinks()) await this.heal(link.from, link.to);
  }

  cutLinks(): Link[] {
    return [...this.cut_].map(parseLinkKey);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cut_.clear();
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(
      this.servers.map((server) => new Promise<void>((done) => server.close(() => done()))),
    );
  }

  private listen(
    dialler: number,
    peer: number,
    target: { host: string; port: number },
  ): Promise<number> {
    const server = createServer({ pauseOnConnect: true }, (inbound) => {
      const outbound = netConnect({ host: target.host, port: target.port });
      this.track(inbound);
      this.track(outbound);
      outbound.once("connect", () => {
        this.addPipe({ from: dialler, to: peer, source: inbound, sink: outbound });
        this.addPipe({ from: peer, to: dialler, source: outbound, sink: inbound });
      });
      const closeBoth = (): void => {
        inbound.destroy();
        outbound.destroy();
      };
      inbound.on("error", closeBoth).on("close", closeBoth);
      outbound.on("error", closeBoth).on("close", closeBoth);
    });
    this.servers.push(server);
    return new Promise((done, fail) => {
      server.once("error", fail);
      server.listen({ host: this.host, port: 0 }, () => {
        done((server.address() as { port: number }).port);
      });
    });
  }

  private addPipe(pipe: Pipe): void {
    this.pipes.add(pipe);
    pipe.source.on("data", (chunk: Buffer) => {
      if (!pipe.sink.write(chunk)) {
        pipe.source.pause();
        pipe.sink.once("drain", () => {
          if (!this.cut_.has(linkKey(pipe.from, pipe.to))) pipe.source.resume();
        });
      }
    });
    pipe.source.once("close", () => this.pipes.delete(pipe));
    if (!this.cut_.has(linkKey(pipe.from, pipe.to))) pipe.source.resume();
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }
}
