/**
 * A real Baton cluster for integration tests and benchmarks: every node is its own
 * `baton start` process with its own data directory under one temporary root. This file
 * owns the cluster's shape: it allocates free ports, builds each node's flags, spawns,
 * kills (SIGKILL), stops (SIGTERM), pauses (SIGSTOP), resumes (SIGCONT) and restarts nodes,
 * with the same data directory or a wiped one, keeps or files their log lines, and waits
 * until a master is agreed or a node has caught up.
 *
 * The processes and directories belong to the one registry (src/chaos/process-registry.ts):
 * it signals only the PIDs it spawned and removes everything at exit should a run die.
 * Nothing here imports vitest, so that benchmarks use it too; vitest-hooks.ts adds the
 * test hooks.
 */

import { chmodSync, chownSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import type { NetnsHosts } from "../src/chaos/hosts.js";
import { NodeProcess } from "../src/chaos/processes.js";
import { type BatonClient, createClient, type Member } from "../src/client/index.js";
import {
  agreedMaster,
  batonCommand,
  freePorts,
  makeTempDir,
  removeTempDir,
  type StatusView,
  waitFor,
} from "./processes.js";

/** Lines of each node's log kept in memory (older ones are dropped). */
const LOG_LINES_MAX = 20_000;

/** One HTTP exchange with a timeout; the body is read whole. */
export async function httpRequest(
  url: string,
  options: {
    method?: "GET" | "PUT" | "DELETE" | "POST";
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

/** The log events a cluster's timeline shows (`Cluster.timeline`). */
const TIMELINE_EVENTS = new Set([
  "start",
  "serving",
  "role",
  "shutdown",
  "stop",
  "switchover",
  "peer_down",
  "fault",
  "fatal",
  "recovery",
  "config",
  "removed",
  "joining",
  "bootstrap",
]);

function timelineText(line: LogLine): string {
  const msg = line.json?.msg;
  return typeof msg === "string" ? msg : line.text;
}

/** Where a node's process lives: addresses, data directory, how it is launched. */
export interface NodeSetup {
  readonly id: number;
  readonly host: string;
  readonly ports: { readonly peer: number; readonly http: number };
  readonly dataDir: string;
  readonly command: string;
  readonly env: NodeJS.ProcessEnv;
  readonly uid: number | undefined;
  /** A log file, or null to keep the lines in memory (`log`). */
  readonly logFile: string | null;
  readonly scheme: "http" | "https";
}

/**
 * One member of the cluster (a NodeProcess: addresses, data directory, current process),
 * with its output in memory for the tests or in a log file for the benchmarks.
 */
export class ClusterNode extends NodeProcess {
  /** Every line the node printed, over all its starts (the newest LOG_LINES_MAX), in memory. */
  readonly log: LogLine[] = [];
  private readonly logWaiters = new Set<() => void>();

  constructor(setup: NodeSetup) {
    super(
      setup.id,
      setup.host,
      setup.ports,
      setup.dataDir,
      setup.command,
      {
        env: setup.env,
        runAs: setup.uid === undefined ? null : { uid: setup.uid, gid: setup.uid },
        ...(setup.logFile === null
          ? {
              onLine: (line, stream) => this.capture(stream, line),
              onExit: (exit) =>
                this.capture("stderr", `[harness] pid ${exit.pid} exited (${exit.how})`),
            }
          : { logFile: setup.logFile }),
      },
      setup.scheme,
    );
  }

  /** Resolves when the current process (if any) has exited. */
  exited(): Promise<void> {
    return this.process.exited();
  }

  /** SIGTERM (a clean stop), then SIGKILL if the process is still there after `graceMs`. */
  stop(graceMs = 5000): Promise<void> {
    return this.process.stop(graceMs);
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

  private capture(stream: "stdout" | "stderr", text: string): void {
    let json: Record<string, unknown> | null = null;
    if (text.startsWith("{")) {
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = null;
      }
    }
    const incarnation = this.incarnation;
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
  /**
   * Nodes 1..bootstrapSize are the members on every `--peers`; the others are not members
   * until added (`baton member add`), and start with `--join <node 1's URL>` instead.
   * @default size
   */
  readonly bootstrapSize?: number;
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
  /** The `baton` command. @default the sources' own (tsx) */
  readonly launcher?: { readonly command: string; readonly args: readonly string[] };
  /** Node.js flags before the launcher's arguments, e.g. ["--cpu-prof"]. */
  readonly nodeFlags?: readonly string[];
  /** The loopback host of each node. @default 127.0.0.1 for all */
  readonly hosts?: readonly string[];
  /**
   * A numeric uid (and gid) per node (root only): each node runs under its own, with its
   * directories chowned to it, so that iptables can tell the nodes' packets apart by owner.
   */
  readonly uids?: readonly number[];
  /** "memory": each node's lines in `node.log` (tests); "files": `<root>/n<id>.log`. */
  readonly log?: "memory" | "files";
  /** Prefix of the temporary root's name. @default "baton-cluster-" */
  readonly rootPrefix?: string;
  /**
   * Run the nodes with mutual TLS between them and HTTPS, from a directory holding
   * `ca.crt` and `node<id>/node.crt`, `node<id>/node.key` (made by `baton certs`). This
   * process must trust the CA: run it with NODE_EXTRA_CA_CERTS=<dir>/ca.crt.
   */
  readonly tlsDir?: string;
  /**
   * With `tlsDir`, which links use TLS: both (the default), only the peer links (clients
   * speak plain HTTP), or only the HTTP API (peers speak plain TCP): to tell the cost of
   * each apart in benchmarks.
   */
  readonly tlsOnly?: "peer" | "http";
  /**
   * Run each node on a host of its own: node i in network namespace i of these hosts, at
   * its address, with ports 7100+i (peer) and 8100+i (HTTP). `hosts` is then ignored.
   */
  readonly netns?: NetnsHosts;
}

/** The `baton start` flags that give node `id` its certificates from `dir` (see tlsOnly). */
function tlsArgs(dir: string, id: number, only?: "peer" | "http"): string[] {
  const own = join(dir, `node${id}`);
  const peer = [
    ...["--tls-ca", join(dir, "ca.crt"), "--tls-cert", join(own, "node.crt")],
    ...["--tls-key", join(own, "node.key")],
  ];
  const http = ["--http-tls-cert", join(own, "node.crt"), "--http-tls-key", join(own, "node.key")];
  if (only === "peer") return peer;
  if (only === "http") return http;
  return [...peer, ...http];
}

/** Every cluster started and not yet cleaned up, for the hooks' failure report. */
const liveClusters = new Set<Cluster>();

export class Cluster {
  readonly nodes: readonly ClusterNode[];
  readonly root: string;
  private readonly options: ClusterOptions;
  private readonly peers: string;
  private readonly launchArgs: readonly string[];

  private constructor(options: ClusterOptions, root: string, nodes: ClusterNode[]) {
    this.options = options;
    this.root = root;
    this.nodes = nodes;
    const bootstrap = options.bootstrapSize ?? nodes.length;
    this.peers = nodes
      .filter((n) => n.id <= bootstrap)
      .map((n) => `${n.id}=${n.peerAddress}`)
      .join(",");
    const launcher = options.launcher ?? batonCommand("source");
    this.launchArgs = [...(options.nodeFlags ?? []), ...launcher.args];
  }

  /**
   * Allocates ports and a temporary root, spawns the nodes of `startIds` and, when at
   * least a majority was started, waits (up to `masterTimeoutMs`) until they agree on a
   * master.
   */
  static async start(options: ClusterOptions = {}, masterTimeoutMs = 30_000): Promise<Cluster> {
    const size = options.size ?? 3;
    const root = makeTempDir(options.rootPrefix ?? "baton-cluster-");
    const ids = Array.from({ length: size }, (_, i) => i + 1);
    const netns = options.netns;
    if (netns !== undefined && netns.count < size) {
      throw new Error(
        `${size} nodes need ${size} hosts; these network namespaces are ${netns.count}`,
      );
    }
    const hosts = ids.map((id) => netns?.address(id) ?? options.hosts?.[id - 1] ?? "127.0.0.1");
    // Two ports per node, from one call per host, so that no port is handed out twice. A
    // host of its own (a network namespace) has every port free.
    const ports = new Map<string, number[]>();
    for (const host of new Set(hosts)) {
      const count = 2 * hosts.filter((h) => h === host).length;
      const id = hosts.indexOf(host) + 1;
      ports.set(host, netns === undefined ? await freePorts(count, host) : [7100 + id, 8100 + id]);
    }
    const nodes = ids.map((id) => {
      const free = ports.get(hosts[id - 1]!)!;
      return Cluster.setUpNode(options, root, id, hosts[id - 1]!, [free.shift()!, free.shift()!]);
    });
    const cluster = new Cluster(options, root, nodes);
    liveClusters.add(cluster);
    // A node started later through its process (a benchmark's late joiner) gets its flags.
    for (const node of nodes) node.process.useArgs(cluster.commandLine(node.id));
    const startIds = options.startIds ?? ids;
    for (const id of startIds) cluster.startNode(id);
    if (2 * startIds.length > size) await cluster.waitForMaster({ timeoutMs: masterTimeoutMs });
    return cluster;
  }

  /** Directories and environment of node `id` (chowned to its uid, if any). */
  private static setUpNode(
    options: ClusterOptions,
    root: string,
    id: number,
    host: string,
    [peerPort, httpPort]: readonly [number, number],
  ): ClusterNode {
    const dataDir = join(root, `n${id}`);
    mkdirSync(dataDir, { recursive: true });
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
    const uid = options.uids?.[id - 1];
    if (uid !== undefined) {
      // Other uids must reach their own directories inside; tsx and node write caches
      // under TMPDIR, which stays inside the root too.
      chmodSync(root, 0o711);
      const tmp = join(root, `tmp${id}`);
      mkdirSync(tmp);
      for (const dir of [dataDir, tmp]) chownSync(dir, uid, uid);
      Object.assign(env, { TMPDIR: tmp, HOME: tmp });
    }
    return new ClusterNode({
      id,
      host,
      ports: { peer: peerPort, http: httpPort },
      dataDir,
      // Inside a network namespace: `ip netns exec <ns> <launcher> …` (commandLine).
      command:
        options.netns === undefined ? (options.launcher ?? batonCommand("source")).command : "ip",
      env,
      uid,
      logFile: options.log === "files" ? join(root, `n${id}.log`) : null,
      scheme: options.tlsDir === undefined || options.tlsOnly === "peer" ? "http" : "https",
    });
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
    const member = id <= (o.bootstrapSize ?? this.nodes.length);
    const args = [
      ...["--id", String(id), "--listen", node.peerAddress, "--http", node.httpAddress],
      ...(member ? ["--peers", this.peers] : ["--join", this.node(1).url]),
      ...["--data", node.dataDir, "--log-level", o.logLevel ?? "info"],
    ];
    if (o.electionMs !== undefined) args.push("--election-ms", o.electionMs);
    if (o.heartbeatMs !== undefined) args.push("--heartbeat-ms", String(o.heartbeatMs));
    if (o.snapshotEntries !== undefined) {
      args.push("--snapshot-entries", String(o.snapshotEntries));
    }
    if (o.tlsDir !== undefined) args.push(...tlsArgs(o.tlsDir, id, o.tlsOnly));
    // Off loopback a node wants TLS and tokens unless told it is a test without them.
    else if (o.netns !== undefined) args.push("--insecure");
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
   * is. Does not wait for it to serve. A node whose data directory is lost comes back
   * through `replace` instead.
   */
  async restart(id: number): Promise<void> {
    const node = this.node(id);
    await node.kill();
    this.startNode(id);
  }

  /**
   * Replaces node `id` as an operator replaces a machine whose disk was lost: kills it,
   * empties its data directory, removes it and adds it back as a learner with the same
   * addresses (`baton member replace`: a new member incarnation), starts it with
   * `--join <url of a running member>`, and, unless `promote` is false, promotes it once
   * it has caught up (`baton member promote`). Resolves when the last step is committed.
   */
  async replace(
    id: number,
    options: { readonly promote?: boolean; readonly timeoutMs?: number } = {},
  ): Promise<void> {
    const node = this.node(id);
    await node.kill();
    node.wipe();
    const others = this.nodes.filter((n) => n.id !== id && n.state === "running");
    if (others.length === 0) throw new Error(`replace ${id}: no other node is running`);
    const client = createClient({
      endpoints: others.map((n) => n.url),
      deadlineMs: 20_000,
      attemptTimeoutMs: 1000,
      ...(this.options.tlsDir === undefined
        ? {}
        : { ca: readFileSync(join(this.options.tlsDir, "ca.crt")) }),
    });
    try {
      await client.removeMember(id);
      await client.addMember({ id, peerAddress: node.peerAddress, httpUrl: node.url });
      this.startNode(id, ["--join", others[0]!.url]);
      if (options.promote !== false) {
        await promoteWhenCaughtUp(client, id, options.timeoutMs ?? 30_000);
      }
    } finally {
      await client.close();
    }
  }

  /** Starts a node that was never started or was stopped, without waiting. */
  startNode(id: number, extraArgs: readonly string[] = []): void {
    this.node(id).start([...this.commandLine(id), ...extraArgs]);
  }

  /** The arguments of node `id`'s process: Node.js flags, the launcher's, `start` and its. */
  private commandLine(id: number): string[] {
    const args = [...this.launchArgs, "start", ...this.argsFor(id)];
    const netns = this.options.netns;
    if (netns === undefined) return args;
    // `ip netns exec` execs the command: the pid the harness signals is the node's own.
    const launcher = this.options.launcher ?? batonCommand("source");
    return netns.wrap(id, launcher.command, args)[1];
  }

  /** The status of every running node that answers, by id. */
  async statuses(timeoutMs = 1000): Promise<Map<number, StatusView>> {
    const answers = await Promise.all(this.nodes.map((n) => n.status(timeoutMs)));
    const out = new Map<number, StatusView>();
    for (const s of answers) if (s !== null) out.set(s.id, s);
    return out;
  }

  /**
   * The master that the running, unpaused nodes (or those of `among`, minus `exclude`)
   * agree on now, in a term of at least `minTerm` (see agreedMaster); null while they do
   * not agree.
   */
  async agreedMaster(
    options: { among?: readonly number[]; exclude?: readonly number[]; minTerm?: number } = {},
  ): Promise<StatusView | null> {
    const ids = (options.among ?? this.nodes.map((n) => n.id)).filter(
      (id) => !(options.exclude ?? []).includes(id) && this.node(id).state === "running",
    );
    const answers = await Promise.all(ids.map((id) => this.node(id).status(500)));
    return agreedMaster(answers, options.minTerm ?? 0);
  }

  /** Waits until agreedMaster (with the same options) names a master; returns its status. */
  async waitForMaster(
    options: {
      among?: readonly number[];
      exclude?: readonly number[];
      minTerm?: number;
      timeoutMs?: number;
    } = {},
  ): Promise<StatusView> {
    const minTerm = options.minTerm ?? 0;
    return waitFor(
      `an agreed master${options.exclude?.length ? ` other than ${options.exclude.join(", ")}` : ""}${minTerm > 0 ? ` in term >= ${minTerm}` : ""}`,
      async () => (await this.agreedMaster(options)) ?? undefined,
      options.timeoutMs ?? 15_000,
    );
  }

  /**
   * Whether node `id` has applied everything the master had committed when asked: its
   * appliedIndex reaches the commitIndex the master reported just before; null when there
   * is no master or the node does not answer.
   */
  async caughtUp(id: number): Promise<{ appliedIndex: number; commitIndex: number } | null> {
    const statuses = await this.statuses(500);
    const master = [...statuses.values()].find((s) => s.role === "master");
    if (master === undefined) return null;
    const node = id === master.id ? master : await this.node(id).status(500);
    if (node === null || node.appliedIndex < master.commitIndex) return null;
    return { appliedIndex: node.appliedIndex, commitIndex: master.commitIndex };
  }

  /** Waits until caughtUp(id) holds; returns both figures. */
  async waitCaughtUp(
    id: number,
    timeoutMs = 20_000,
  ): Promise<{ appliedIndex: number; commitIndex: number }> {
    return waitFor(
      `node ${id} to catch up with the master`,
      async () => (await this.caughtUp(id)) ?? undefined,
      timeoutMs,
      50,
    );
  }

  /** The last `lines` lines of every node's log, for a failure report. */
  /**
   * The events that tell a cluster's story (roles, starts and stops, links lost, hand-overs,
   * faults, process exits) of every node, merged in time order: the part of a failure report
   * that the last lines of each log often miss.
   */
  timeline(): string {
    const lines = this.nodes.flatMap((n) =>
      n.log
        .filter(
          (l) =>
            (l.json !== null && TIMELINE_EVENTS.has(String(l.json.event))) ||
            l.text.startsWith("[harness]"),
        )
        .map((l) => ({ at: l.at, text: `n${n.id}#${l.incarnation} ${timelineText(l)}` })),
    );
    const origin = lines.length === 0 ? 0 : Math.min(...lines.map((l) => l.at));
    return lines
      .sort((a, b) => a.at - b.at)
      .map((l) => `  +${((l.at - origin) / 1000).toFixed(3)} s ${l.text}`)
      .join("\n");
  }

  logTails(lines = 40): string {
    return this.nodes
      .map((n) => `--- node ${n.id} (pid ${n.pid ?? "none"}, ${n.state}) ---\n${n.tail(lines)}`)
      .join("\n");
  }

  /**
   * Ends every process of this cluster, SIGKILL (paused ones too) or, with `graceMs`, SIGTERM
   * first (so that `--cpu-prof` profiles are written), and removes its data unless
   * BATON_BENCH_KEEP=1.
   */
  async destroy(graceMs?: number): Promise<void> {
    liveClusters.delete(this);
    await Promise.all(
      this.nodes.map((n) => (graceMs === undefined ? n.kill() : n.stop(graceMs)).catch(() => {})),
    );
    removeTempDir(this.root);
  }
}

/** Destroys every live cluster. */
export async function destroyAll(): Promise<void> {
  await Promise.all(Cluster.live().map((c) => c.destroy()));
}

/** The cluster id each node shows in `GET /v1/status` (null: none yet, or no answer). */
export async function clusterIds(cluster: Cluster): Promise<(string | null)[]> {
  return Promise.all(
    cluster.nodes.map(async (n) => {
      try {
        const answer = await httpRequest(`${n.url}/v1/status`, { timeoutMs: 1000 });
        const id = (JSON.parse(answer.body.toString("utf8")) as { clusterId?: unknown }).clusterId;
        return typeof id === "string" ? id : null;
      } catch {
        return null;
      }
    }),
  );
}

/**
 * Promotes learner `id` (`baton member promote`), retrying while it is still catching up
 * (409 ERR_CONFLICT), for up to `timeoutMs`; resolves with the members.
 */
export async function promoteWhenCaughtUp(
  client: BatonClient,
  id: number,
  timeoutMs = 30_000,
): Promise<Member[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await client.promoteMember(id);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== "ERR_CONFLICT" || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/**
 * A client library instance for `cluster`, as the integration tests use it: a deadline of
 * 20 s, attempts of at most 1 s.
 */
export function clientFor(cluster: Cluster): BatonClient {
  return createClient({
    endpoints: cluster.endpoints(),
    deadlineMs: 20_000,
    attemptTimeoutMs: 1000,
  });
}
