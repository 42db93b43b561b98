/**
 * Network partitions between real node processes. It owns one question: which directed
 * links (node A's packets to node B) are cut right now, and making the machine agree. Two
 * ways to cut a link, behind one interface:
 *
 * - `iptables`: each node listens (peer and HTTP ports) on its own loopback address
 *   (`nodeHost`) and dials its peers from it, so a rule dropping source A to destination
 *   B cuts every packet A sends B, on every connection, in whichever direction it was
 *   opened. Rules live in one chain of their own (BATON-CHAOS-<pid>) jumped to from INPUT;
 *   the chain is removed on close, on SIGINT/SIGTERM and at process exit, and chains left by
 *   dead campaigns are removed at start. Clients dial from 127.0.0.1, which no rule names.
 * - `relay`: without root, every node reaches each peer through a relay port of this
 *   process; cutting A to B stops the relay forwarding the bytes A sends B (TCP
 *   back-pressure then stalls the sender, as a dropped packet would), and new connections
 *   between them wait. Only node-to-node traffic goes through relays.
 *
 * It must never leave a rule or a listening relay behind, and never touch a chain that it
 * did not create or that a live campaign still owns.
 */

import { execFile, execFileSync } from "node:child_process";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { promisify } from "node:util";

const run = promisify(execFile);

export type PartitionMethod = "iptables" | "relay";

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
}

const linkKey = (from: number, to: number): string => `${from}>${to}`;

function parseLinkKey(key: string): Link {
  const [from, to] = key.split(">").map(Number);
  return { from: from!, to: to! };
}

// ---------------------------------------------------------------- iptables

const CHAIN_PREFIX = "BATON-CHAOS-";

/** Whether this process can manage iptables rules: root and an iptables binary. */
export function iptablesUsable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync("iptables", ["-w", "-S", "INPUT"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * The loopback address node `id` listens on when partitions use iptables:
 * 127.<a>.<b>.<10 + id>, with a.b taken from this process's pid, so that campaigns running
 * side by side (a developer's and `npm test`'s) never cut each other's nodes.
 */
export function nodeHost(id: number, pid = process.pid): string {
  return `127.${(pid >> 8) & 255}.${pid & 255}.${10 + id}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function removeChainSync(chain: string): void {
  const quiet = { stdio: "ignore" } as const;
  // Each step may fail when an earlier run got part-way; carry on with the rest.
  for (;;) {
    try {
      execFileSync("iptables", ["-w", "-D", "INPUT", "-j", chain], quiet);
    } catch {
      break;
    }
  }
  try {
    execFileSync("iptables", ["-w", "-F", chain], quiet);
  } catch {
    // The chain is gone already.
  }
  try {
    execFileSync("iptables", ["-w", "-X", chain], quiet);
  } catch {
    // The chain is gone already.
  }
}

/** Removes BATON-CHAOS chains whose campaign process is no longer running. */
export function removeStaleChains(): string[] {
  let listing = "";
  try {
    listing = execFileSync("iptables", ["-w", "-S"], { encoding: "utf8" });
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const line of listing.split("\n")) {
    const match = /^-N (BATON-CHAOS-(\d+))$/.exec(line.trim());
    if (match === null) continue;
    const [, chain, pid] = match;
    if (pidAlive(Number(pid))) continue;
    removeChainSync(chain!);
    removed.push(chain!);
  }
  return removed;
}

export class IptablesNetwork implements Network {
  readonly method = "iptables" as const;
  readonly chain = `${CHAIN_PREFIX}${process.pid}`;
  private readonly cut_ = new Set<string>();
  private closed = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.closeSync();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  private readonly onExit = (): void => this.closeSync();

  private constructor() {}

  /** Creates the chain (after removing stale ones) and installs the cleanup hooks. */
  static async open(): Promise<IptablesNetwork> {
    removeStaleChains();
    const network = new IptablesNetwork();
    removeChainSync(network.chain);
    await run("iptables", ["-w", "-N", network.chain]);
    process.once("exit", network.onExit);
    process.once("SIGINT", network.onSignal);
    process.once("SIGTERM", network.onSignal);
    await run("iptables", ["-w", "-I", "INPUT", "-j", network.chain]);
    return network;
  }

  async cut(from: number, to: number): Promise<void> {
    const key = linkKey(from, to);
    if (this.closed || this.cut_.has(key)) return;
    this.cut_.add(key);
    await run("iptables", ["-w", "-A", this.chain, ...this.ruleOf(from, to)]);
  }

  async heal(from: number, to: number): Promise<void> {
    const key = linkKey(from, to);
    if (this.closed || !this.cut_.delete(key)) return;
    await run("iptables", ["-w", "-D", this.chain, ...this.ruleOf(from, to)]);
  }

  async healAll(): Promise<void> {
    if (this.closed) return;
    this.cut_.clear();
    await run("iptables", ["-w", "-F", this.chain]);
  }

  cutLinks(): Link[] {
    return [...this.cut_].map(parseLinkKey);
  }

  async close(): Promise<void> {
    this.closeSync();
  }

  private closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    this.cut_.clear();
    removeChainSync(this.chain);
    process.off("exit", this.onExit);
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
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
