/**
 * A real Baton cluster for integration tests and benchmarks: every node is its own
 * `baton start` process on 127.0.0.1 with its own temporary data directory. This file
 * owns those processes and directories: it allocates free loopback ports, spawns nodes,
 * captures their JSON log lines, waits until a master is agreed, and kills (SIGKILL),
 * stops (SIGTERM), pauses (SIGSTOP), resumes (SIGCONT) and restarts nodes, with the
 * same data directory or a wiped one.
 *
 * It must never leave a process or a directory behind: every PID and directory it makes
 * is recorded in one registry that `cleanupAll()` empties (test hooks call it) and that a
 * process 'exit' handler empties as a last resort. It signals only the PIDs it spawned,
 * never a process found by name. It imports nothing from vitest, so that scripts (the
 * fail-over benchmark) can use it too; harness.ts adds the test hooks.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { request } from "undici";

/** The repository root: nodes run from here, as `node --import tsx src/cli/main.ts`. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAIN = join(REPO_ROOT, "src", "cli", "main.ts");

/** Lines of each node's log kept in memory (older ones are dropped). */
const LOG_LINES_MAX = 20_000;

// ---------------------------------------------------------------- the registry

const livePids = new Set<number>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/** Kills every PID this module spawned that is still running, and removes its dirs. */
export function cleanupAllSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  livePids.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // The last resort, should a test runner exit without running the hooks.
  process.once("exit", cleanupAllSync);
}

/** A fresh temporary directory, removed by the cleanup. */
export function makeTempDir(prefix = "baton-it-"): string {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

/**
 * `count` distinct free TCP ports on 127.0.0.1: each is bound to port 0, read, and closed
 * once all are read (so the same port is not handed out twice in one call).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((done, fail) => {
          const server = createServer();
          server.once("error", fail);
          server.listen(0, "127.0.0.1", () => done(server));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no TCP address");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((done) => s.close(() => done()))));
  return ports;
}

// ---------------------------------------------------------------- small helpers

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * Polls `probe` every `intervalMs` until it returns a value other than undefined, and
 * returns it; throws after `timeoutMs` with `what` and the last probe error, if any.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 25,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() >= deadline) {
      const detail = lastError === null ? "" : ` (last error: ${String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** The fields of `GET /v1/status` the tests read. */
export interface NodeStatusView {
  readonly id: number;
  readonly role: "master" | "backup" | "candidate";
  readonly term: number;
  readonly master: number | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex?: number;
}

/** One HTTP exchange with a timeout; the body is read whole. */
export async function httpRequest(
  url: string,
  options: {
    method?: "GET" | "PUT" | "DELETE";
    headers?: Record<string, string>;
    body?: string | Uint8Array;
    timeoutMs?: number;
  } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const response = await request(url, {
    method: options.method ?? "GET",
    headers: options.headers ?? {},
    body: options.body ?? null,
    signal: AbortSignal.timeout(options.timeoutMs ?? 2000),
  });
  const body = Buffer.from(await response.body.arrayBuffer());
  return { status: response.statusCode, headers: response.headers, body };
}

// ---------------------------------------------------------------- nodes

/** One captured log line: the raw text and, when it is JSON, the parsed object. */
export interface LogLine {
  readonly at: number;
  readonly incarnation: number;
  readonly stream: "stdout" | "stderr";
  readonly text: string;
  readonly json: Record<string, unknown> | null;
}

export type NodeState = "stopped" | "running" | "paused";

/** One member of the cluster: its addresses and data directory, and its current process. */
export class ClusterNode {
  readonly peerAddress: string;
  readonly httpAddress: string;
  readonly url: string;
  /** Every line the node printed, over all its incarnations (the newest LOG_LINES_MAX). */
  readonly log: LogLine[] = [];
  /** How many times a process was spawned for this node. */
  incarnation = 0;
  private child: ChildProcess | null = null;
  private exitPromise: Promise<void> = Promise.resolve();
  private paused = false;
  private readonly logWaiters = new Set<() => void>();

  constructor(
    readonly id: number,
    peerPort: number,
    httpPort: number,
    readonly dataDir: string,
  ) {
    this.peerAddress = `127.0.0.1:${peerPort}`;
    this.httpAddress = `127.0.0.1:${httpPort}`;
    this.url = `http://${this.httpAddress}`;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get state(): NodeState {
    if (this.child === null) return "stopped";
    return this.paused ? "paused" : "running";
  }

  /** Spawns the node's process with `args` (everything after `start`). */
  spawn(args: readonly string[]): void {
    if (this.child !== null) throw new Error(`node ${this.id} is already running`);
    installExitHook();
    mkdirSync(this.dataDir, { recursive: true });
    this.incarnation++;
    const incarnation = this.incarnation;
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "start", ...args], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`node ${this.id}: spawn failed`);
    livePids.add(pid);
    this.child = child;
    this.paused = false;
    this.exitPromise = new Promise<void>((done) => {
      child.once("exit", (code, signal) => {
        livePids.delete(pid);
        this.capture(incarnation, "stderr", `[harness] process ${pid} exited (${signal ?? code})`);
        if (this.child === child) {
          this.child = null;
          this.paused = false;
        }
        done();
      });
    });
    // A spawn error (ENOENT, EAGAIN) is followed by 'exit' or leaves pid undefined.
    child.once("error", (error) => this.capture(incarnation, "stderr", `[harness] ${error}`));
    const follow = (stream: NodeJS.ReadableStream, name: "stdout" | "stderr"): void => {
      createInterface({ input: stream }).on("line", (line) =>
        this.capture(incarnation, name, line),
      );
    };
    follow(child.stdout!, "stdout");
    follow(child.stderr!, "stderr");
  }

  /** Sends `signal` to this node's process (only to the PID this harness spawned). */
  signal(signal: NodeJS.Signals): void {
    const child = this.child;
    if (child === null || child.pid === undefined) {
      throw new Error(`node ${this.id} is not running`);
    }
    process.kill(child.pid, signal);
    if (signal === "SIGSTOP") this.paused = true;
    if (signal === "SIGCONT") this.paused = false;
  }

  /** Resolves when the current process (if any) has exited. */
  exited(): Promise<void> {
    return this.exitPromise;
  }

  /** SIGKILL, then waits for the exit. */
  async kill(): Promise<void> {
    if (this.child === null) return;
    this.signal("SIGKILL");
    await this.exitPromise;
  }

  /** SIGTERM (a clean stop), then SIGKILL if the process is still there after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child === null) return;
    if (this.paused) this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => {
      if (this.child !== null) this.signal("SIGKILL");
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }

  /** This node's `/v1/status`, or null when it does not answer within `timeoutMs`. */
  async status(timeoutMs = 1000): Promise<NodeStatusView | null> {
    if (this.state !== "running") return null;
    try {
      const response = await httpRequest(`${this.url}/v1/status`, { timeoutMs });
      if (response.status !== 200) return null;
      return JSON.parse(response.body.toString("utf8")) as NodeStatusView;
    } catch {
      return null;
    }
  }

  /** The parsed log lines of `event` (all incarnations, or since `sinceAt`). */
  events(event: string, sinceAt = 0): Record<string, unknown>[] {
    return this.log
      .filter((line) => line.at >= sinceAt && line.json?.event === event)
      .map((line) => line.json!);
  }

  /** Resolves with the first log line after `sinceAt` that `match` accepts. */
  async waitForLog(
    what: string,
    match: (line: LogLine) => boolean,
    timeoutMs: number,
    sinceAt = 0,
  ): Promise<LogLine> {
    const find = (): LogLine | undefined => this.log.find((l) => l.at >= sinceAt && match(l));
    const found = find();
    if (found !== undefined) return found;
    return new Promise<LogLine>((done, fail) => {
      const check = (): void => {
        const line = find();
        if (line === undefined) return;
        clearTimeout(timer);
        this.logWaiters.delete(check);
        done(line);
      };
      const timer = setTimeout(() => {
        this.logWaiters.delete(check);
        fail(new Error(`timed out after ${timeoutMs} ms waiting for node ${this.id}: ${what}`));
      }, timeoutMs);
      this.logWaiters.add(check);
    });
  }

  /** The last `count` lines, for a failure report. */
  tail(count: number): string {
    return this.log
      .slice(-count)
      .map((l) => `  [n${this.id}#${l.incarnation} ${l.stream}] ${l.text}`)
      .join("\n");
  }

  private capture(incarnation: number, stream: "stdout" | "stderr", text: string): void {
    let json: Record<string, unknown> | null = null;
    if (text.startsWith("{")) {
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = null;
      }
    }
    this.log.push({ at: performance.now(), incarnation, stream, text, json });
    if (this.log.length > LOG_LINES_MAX) this.log.splice(0, this.log.length - LOG_LINES_MAX);
    for (const waiter of [...this.logWaiters]) waiter();
  }
}

// ---------------------------------------------------------------- the cluster

export interface ClusterOptions {
  /** Number of nodes. @default 3 */
  readonly size?: number;
  /** Nodes started by `Cluster.start` (the rest can be started later). @default all */
  readonly startIds?: readonly number[];
  /** `--election-ms`, e.g. "300-600". @default the node's own default */
  readonly electionMs?: string;
  /** `--heartbeat-ms`. @default the node's own default */
  readonly heartbeatMs?: number;
  /** `--snapshot-entries`. @default the node's own default */
  readonly snapshotEntries?: number;
  /** `--log-level`. @default "info" */
  readonly logLevel?: string;
  /** More flags for every node. */
  readonly extraArgs?: readonly string[];
}

/** Every cluster started and not yet cleaned up, for the hooks' failure report. */
const liveClusters = new Set<Cluster>();

export class Cluster {
  readonly nodes: readonly ClusterNode[];
  readonly root: string;
  private readonly options: ClusterOptions;
  private readonly peers: string;

  private constructor(options: ClusterOptions, root: string, nodes: ClusterNode[]) {
    this.options = options;
    this.root = root;
    this.nodes = nodes;
    this.peers = nodes.map((n) => `${n.id}=${n.peerAddress}`).join(",");
  }

  /**
   * Allocates ports and a temporary root, spawns the nodes of `startIds` and, when at
   * least a majority was started, waits (up to `masterTimeoutMs`) until they agree on a
   * master.
   */
  static async start(options: ClusterOptions = {}, masterTimeoutMs = 30_000): Promise<Cluster> {
    const size = options.size ?? 3;
    const ports = await freePorts(2 * size);
    const root = makeTempDir("baton-cluster-");
    const nodes = Array.from(
      { length: size },
      (_, i) => new ClusterNode(i + 1, ports[2 * i]!, ports[2 * i + 1]!, join(root, `n${i + 1}`)),
    );
    const cluster = new Cluster(options, root, nodes);
    liveClusters.add(cluster);
    const startIds = options.startIds ?? nodes.map((n) => n.id);
    for (const id of startIds) cluster.node(id).spawn(cluster.argsFor(id));
    if (2 * startIds.length > size) await cluster.waitForMaster({ timeoutMs: masterTimeoutMs });
    return cluster;
  }

  /** Every cluster not yet cleaned up. */
  static live(): Cluster[] {
    return [...liveClusters];
  }

  node(id: number): ClusterNode {
    const node = this.nodes.find((n) => n.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** The HTTP base URLs of every node, for a client. */
  endpoints(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** The `baton start` flags of node `id`. */
  argsFor(id: number): string[] {
    const node = this.node(id);
    const o = this.options;
    const args = [
      "--id",
      String(id),
      "--listen",
      node.peerAddress,
      "--http",
      node.httpAddress,
      "--peers",
      this.peers,
      "--data",
      node.dataDir,
      "--log-level",
      o.logLevel ?? "info",
    ];
    if (o.electionMs !== undefined) args.push("--election-ms", o.electionMs);
    if (o.heartbeatMs !== undefined) args.push("--heartbeat-ms", String(o.heartbeatMs));
    if (o.snapshotEntries !== undefined) {
      args.push("--snapshot-entries", String(o.snapshotEntries));
    }
    args.push(...(o.extraArgs ?? []));
    return args;
  }

  async kill(id: number): Promise<void> {
    await this.node(id).kill();
  }

  async stop(id: number): Promise<void> {
    await this.node(id).stop();
  }

  pause(id: number): void {
    this.node(id).signal("SIGSTOP");
  }

  resume(id: number): void {
    this.node(id).signal("SIGCONT");
  }

  /**
   * Starts node `id` again (killing it first if it runs), with its data directory as it
   * is, or emptied when `wipe` is set (and then started with `--join`, as an operator
   * must). Does not wait for it to serve.
   */
  async restart(id: number, options: { wipe?: boolean } = {}): Promise<void> {
    const node = this.node(id);
    await node.kill();
    if (options.wipe === true) {
      rmSync(node.dataDir, { recursive: true, force: true });
      node.spawn([...this.argsFor(id), "--join"]);
    } else {
      node.spawn(this.argsFor(id));
    }
  }

  /** Starts a node that was never started or was stopped, without waiting. */
  startNode(id: number): void {
    this.node(id).spawn(this.argsFor(id));
  }

  /** The status of every running node that answers, by id. */
  async statuses(timeoutMs = 1000): Promise<Map<number, NodeStatusView>> {
    const answers = await Promise.all(this.nodes.map((n) => n.status(timeoutMs)));
    const out = new Map<number, NodeStatusView>();
    for (const s of answers) if (s !== null) out.set(s.id, s);
    return out;
  }

  /**
   * Waits until the running, unpaused nodes (or those of `among`, minus `exclude`) agree:
   * exactly one says it is master in term T, and every other one says it is a backup of
   * that master in term T. `minTerm` asks for a term at least that high. Returns the
   * master's status.
   */
  async waitForMaster(
    options: {
      among?: readonly number[];
      exclude?: readonly number[];
      minTerm?: number;
      timeoutMs?: number;
    } = {},
  ): Promise<NodeStatusView> {
    const ids = (options.among ?? this.nodes.map((n) => n.id)).filter(
      (id) => !(options.exclude ?? []).includes(id) && this.node(id).state === "running",
    );
    const minTerm = options.minTerm ?? 0;
    return waitFor(
      `a master agreed by nodes ${ids.join(", ")}${minTerm > 0 ? ` in term >= ${minTerm}` : ""}`,
      async () => {
        const answers = await Promise.all(ids.map((id) => this.node(id).status(500)));
        if (answers.some((s) => s === null)) return undefined;
        const all = answers as NodeStatusView[];
        const masters = all.filter((s) => s.role === "master");
        if (masters.length !== 1) return undefined;
        const master = masters[0]!;
        if (master.term < minTerm) return undefined;
        const agreed = all.every((s) => s.term === master.term && s.master === master.id);
        return agreed ? master : undefined;
      },
      options.timeoutMs ?? 15_000,
    );
  }

  /**
   * Waits until node `id` has applied everything the master had committed when asked:
   * its appliedIndex reaches the commitIndex the master reported just before. Returns
   * both figures.
   */
  async waitCaughtUp(
    id: number,
    timeoutMs = 20_000,
  ): Promise<{ appliedIndex: number; commitIndex: number }> {
    return waitFor(
      `node ${id} to catch up with the master`,
      async () => {
        const statuses = await this.statuses(500);
        const master = [...statuses.values()].find((s) => s.role === "master");
        if (master === undefined) return undefined;
        const node = id === master.id ? master : await this.node(id).status(500);
        if (node === null || node.appliedIndex < master.commitIndex) return undefined;
        return { appliedIndex: node.appliedIndex, commitIndex: master.commitIndex };
      },
      timeoutMs,
      50,
    );
  }

  /** The last `lines` lines of every node's log, for a failure report. */
  logTails(lines = 40): string {
    return this.nodes
      .map((n) => `--- node ${n.id} (pid ${n.pid ?? "none"}, ${n.state}) ---\n${n.tail(lines)}`)
      .join("\n");
  }

  /** Kills every process of this cluster (SIGKILL, paused ones too) and removes its data. */
  async destroy(): Promise<void> {
    liveClusters.delete(this);
    await Promise.all(this.nodes.map((n) => n.kill().catch(() => {})));
    rmSync(this.root, { recursive: true, force: true });
    liveDirs.delete(this.root);
  }
}

/** Destroys every live cluster and anything else still registered. */
export async function cleanupAll(): Promise<void> {
  await Promise.all(Cluster.live().map((c) => c.destroy()));
  cleanupAllSync();
}
