/**
 * Real Baton nodes as processes: how to launch the `baton` command that sits next to the
 * running code, what a node's `/v1/status` says and when a set of answers agrees on one
 * master, and ChaosNode, one `baton start` of a fault campaign with its own data directory,
 * host address and log file. A ChaosNode notices exits it did not cause, reads the role
 * changes and state transfers its node logs, and asks it for its status.
 *
 * The processes themselves belong to the registry (process-registry.ts): it spawns them,
 * signals only the PIDs it spawned, and kills them at exit should the campaign die.
 */

import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Agent, request } from "undici";
import { makeDirectory } from "../shared/make-directory.js";
import { type ErrorLine, parseErrorLine } from "./checks.js";
import {
  ManagedProcess,
  type ManagedProcessOptions,
  type ProcessState,
} from "./process-registry.js";

/** The package root: the repository from the sources, the installed package from dist/. */
export const PACKAGE_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The command that runs the `baton` CLI next to this code: `node dist/cli/main.js` when this
 * runs compiled (plain node), `node --import tsx src/cli/main.ts` when it runs from the
 * sources. Spawn it with `cwd: PACKAGE_ROOT`, where tsx resolves.
 */
export function batonLauncher(): { readonly command: string; readonly args: readonly string[] } {
  const fromSource = import.meta.url.endsWith(".ts");
  const main = fileURLToPath(new URL(`../cli/main.${fromSource ? "ts" : "js"}`, import.meta.url));
  return { command: process.execPath, args: fromSource ? ["--import", "tsx", main] : [main] };
}

/** `--snapshot-entries` of every campaign node: small, so state transfer happens often. */
const SNAPSHOT_ENTRIES = 500;

/** Lines of a node's output kept for the report of an unexpected exit. */
const RECENT_LINES_MAX = 30;

/** Error lines of a node kept for the report. */
const ERROR_LINES_MAX = 20;

/** Whether `baton start` knows `--join` (a wiped node rejoins without voting). */
export function startSupportsJoin(): boolean {
  const { command, args } = batonLauncher();
  try {
    const help = execFileSync(command, [...args, "start", "--help"], {
      cwd: PACKAGE_ROOT,
      encoding: "utf8",
    });
    return help.includes("--join");
  } catch {
    return false;
  }
}

/** What `GET /v1/status` answers: the fields the campaign, tests and benchmarks read. */
export interface StatusView {
  readonly id: number;
  readonly role: "master" | "backup" | "candidate";
  readonly term: number;
  readonly master: number | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  /** With `?digest=true` only. */
  readonly stateDigest?: string;
}

/**
 * Node `url`'s `/v1/status` (with the state digest when asked), or null when it does not
 * answer 200 within `timeoutMs`.
 */
export async function fetchStatus(
  url: string,
  options: { readonly timeoutMs: number; readonly agent?: Agent; readonly digest?: boolean },
): Promise<StatusView | null> {
  try {
    const response = await request(`${url}/v1/status${options.digest ? "?digest=true" : ""}`, {
      ...(options.agent === undefined ? {} : { dispatcher: options.agent }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    const text = await response.body.text();
    return response.statusCode === 200 ? (JSON.parse(text) as StatusView) : null;
  } catch {
    return null;
  }
}

/**
 * The master that every one of `answers` agrees on: all answered, exactly one says it is
 * master in term T (at least `minTerm`), and every other one is a backup of it in term T.
 * Null otherwise.
 */
export function agreedMaster(
  answers: readonly (StatusView | null)[],
  minTerm = 0,
): StatusView | null {
  if (answers.length === 0 || answers.some((s) => s === null)) return null;
  const all = answers as readonly StatusView[];
  const masters = all.filter((s) => s.role === "master");
  const master = masters[0];
  if (masters.length !== 1 || master === undefined || master.term < minTerm) return null;
  return all.every((s) => s.term === master.term && s.master === master.id) ? master : null;
}

/** A role a node logged, in campaign milliseconds. */
export interface RoleEvent {
  readonly at: number;
  readonly node: number;
  readonly role: string;
  readonly term: number;
  /** Why the node took the role, as it logged it (`no heartbeat from a master`, …). */
  readonly reason?: string;
}

/**
 * Whether a role change a node logged (`{"event":"role","role","reason"}`) is a candidacy
 * that no master asked for: an election after a timeout or a lost connection, as opposed
 * to the one a master's switchover (or a SIGTERM's hand-over) starts.
 */
export function isUnaskedCandidacy(role: unknown, reason: unknown): boolean {
  return role === "candidate" && !String(reason ?? "").startsWith("switchover");
}

/**
 * The wall-clock time and length of an event-loop stall a node logged (src/app/stall-log.ts)
 * when it reached the node's shortest election timeout; null for any other line.
 */
export function stallPastElection(line: string): { wallAt: number; ms: number } | null {
  if (!line.includes('"event":"stall"')) return null;
  try {
    const json = JSON.parse(line) as { time?: unknown; ms?: unknown; electionMsMin?: unknown };
    const { time, ms, electionMsMin } = json;
    if (typeof time !== "number" || typeof ms !== "number") return null;
    if (typeof electionMsMin !== "number" || ms < electionMsMin) return null;
    return { wallAt: time, ms };
  } catch {
    return null; // Not a JSON line after all.
  }
}

/**
 * An exit the campaign did not cause, or a stop that did not end cleanly (exit code 0
 * within the grace time; see ProcessExit.expected).
 */
export interface UnexpectedExit {
  readonly at: number;
  readonly node: number;
  readonly how: string;
  /** Whether the campaign was stopping the node (SIGTERM) when it ended so. */
  readonly stopping: boolean;
  readonly tail: string[];
}

/**
 * One Baton node as a process: its addresses, its data directory and its current process
 * (ManagedProcess, in the registry). The campaign's ChaosNode and the harness's cluster
 * nodes are this with their own way of launching and of reading what the node prints.
 */
export class NodeProcess {
  readonly peerAddress: string;
  readonly httpAddress: string;
  readonly url: string;
  /** The node's process: signal, kill, stop and start it again through this. */
  readonly process: ManagedProcess;

  constructor(
    readonly id: number,
    readonly host: string,
    ports: { readonly peer: number; readonly http: number },
    readonly dataDir: string,
    command: string,
    options: ManagedProcessOptions,
    scheme: "http" | "https" = "http",
  ) {
    this.peerAddress = `${host}:${ports.peer}`;
    this.httpAddress = `${host}:${ports.http}`;
    this.url = `${scheme}://${this.httpAddress}`;
    this.process = new ManagedProcess(`node ${id}`, command, [], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, NO_COLOR: "1" },
      ...options,
    });
  }

  get pid(): number | null {
    return this.process.pid;
  }

  get state(): ProcessState {
    return this.process.state;
  }

  get incarnation(): number {
    return this.process.incarnation;
  }

  /** Starts the node's process with `args` (the launcher's and everything after). */
  start(args: readonly string[]): void {
    makeDirectory(this.dataDir);
    this.process.start(args);
  }

  /** Sends `signal` to the node's process (only to the PID it spawned). */
  signal(signal: NodeJS.Signals): void {
    this.process.signal(signal);
  }

  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void> {
    return this.process.kill();
  }

  /** kill(), saying whether the node had a process to kill. */
  killIfRunning(): Promise<boolean> {
    return this.process.killIfRunning();
  }

  /** Empties the data directory (of a stopped node). */
  wipe(): void {
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** The node's `/v1/status`, or null when it does not run or answer within `timeoutMs`. */
  async status(
    timeoutMs = 1000,
    options: { readonly agent?: Agent; readonly digest?: boolean } = {},
  ): Promise<StatusView | null> {
    if (this.state !== "running") return null;
    return fetchStatus(this.url, { timeoutMs, ...options });
  }
}

export interface NodeSpec {
  readonly id: number;
  /** The address both listeners bind. */
  readonly host: string;
  readonly peerPort: number;
  readonly httpPort: number;
  readonly dataDir: string;
  /** `--peers` as this node must see it (relays differ per node). */
  readonly peers: string;
  /**
   * Runs the node inside its host's network namespace: the command and arguments to start
   * instead (`ip netns exec <ns> …`). Its listeners are then off loopback: `--insecure`.
   */
  readonly wrap?: (command: string, args: readonly string[]) => [string, string[]];
}

/**
 * A node of a fault campaign: launched from the CLI next to this code with small snapshots,
 * logging to `<logDir>/n<id>.log`, reporting the role changes, state transfers and
 * unexpected exits it reads in its output.
 */
export class ChaosNode extends NodeProcess {
  /** State transfers this node completed (restored a snapshot from the master). */
  stateTransfers = 0;
  /** Lines this node logged at error or fatal level (the first ERROR_LINES_MAX of them). */
  readonly errorLines: ErrorLine[] = [];
  /** How many lines it logged at error or fatal level, those not kept included. */
  errorLineCount = 0;
  /**
   * The event-loop stalls it logged past its shortest election timeout (src/app/stall-log.ts),
   * at wall-clock ms: long enough for backups to call an election with no fault at all.
   */
  readonly stallsPastElection: { readonly wallAt: number; readonly ms: number }[] = [];
  private readonly recent: string[] = [];

  constructor(
    readonly spec: NodeSpec,
    logDir: string,
    private readonly clock: { now(): number; wallOrigin: number },
    private readonly onRole: (event: RoleEvent) => void,
    onUnexpectedExit: (exit: UnexpectedExit) => void,
  ) {
    makeDirectory(logDir);
    const ports = { peer: spec.peerPort, http: spec.httpPort };
    const command = spec.wrap === undefined ? batonLauncher().command : "ip";
    super(spec.id, spec.host, ports, spec.dataDir, command, {
      logFile: join(logDir, `n${spec.id}.log`),
      onLine: (line) => this.onLine(line),
      onExit: (exit) => {
        if (exit.expected) return;
        const tail = [...this.recent];
        const { how, stopping } = exit;
        onUnexpectedExit({ at: this.clock.now(), node: this.id, how, stopping, tail });
      },
    });
  }

  spawn(extraArgs: readonly string[] = []): void {
    const { spec } = this;
    const args = [
      ...[
        "start",
        "--id",
        String(spec.id),
        "--listen",
        this.peerAddress,
        "--http",
        this.httpAddress,
      ],
      ...["--peers", spec.peers, "--data", spec.dataDir, "--log-level", "info"],
      // Snapshots every few hundred entries, and a short log behind them, so that a wiped
      // or long-absent node comes back by state transfer, not by replaying the whole log.
      ...["--snapshot-entries", String(SNAPSHOT_ENTRIES), "--snapshot-keep-entries", "100"],
      ...(spec.wrap === undefined ? [] : ["--insecure"]),
      ...extraArgs,
    ];
    const launcher = batonLauncher();
    this.start(
      spec.wrap === undefined
        ? [...launcher.args, ...args]
        : spec.wrap(launcher.command, [...launcher.args, ...args])[1],
    );
  }

  /** SIGTERM (a master hands its role over first), then waits for the exit. */
  stop(graceMs?: number): Promise<void> {
    return this.process.stop(graceMs);
  }

  /** Sends `signal` to the node's process, if it has one. */
  override signal(signal: NodeJS.Signals): void {
    if (this.pid !== null) super.signal(signal);
  }

  private noteErrorLine(error: ErrorLine): void {
    this.errorLineCount++;
    if (this.errorLines.length < ERROR_LINES_MAX) this.errorLines.push(error);
  }

  private onLine(line: string): void {
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES_MAX) this.recent.shift();
    if (line.includes("state transfer complete")) this.stateTransfers++;
    const error = parseErrorLine(line, this.id, this.clock.wallOrigin);
    if (error !== null) this.noteErrorLine(error);
    const stall = stallPastElection(line);
    if (stall !== null) this.stallsPastElection.push(stall);
    if (!line.includes('"event":"role"')) return;
    try {
      const json = JSON.parse(line) as {
        time?: number;
        role?: string;
        term?: number;
        reason?: unknown;
      };
      if (typeof json.time !== "number" || typeof json.role !== "string") return;
      const at = json.time - this.clock.wallOrigin;
      const reason = typeof json.reason === "string" ? { reason: json.reason } : {};
      this.onRole({ at, node: this.id, role: json.role, term: json.term ?? 0, ...reason });
    } catch {
      // Not a JSON line after all.
    }
  }
}
