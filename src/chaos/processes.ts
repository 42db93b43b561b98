/**
 * The real node processes of a fault campaign: one `baton start` per node, each with its
 * own data directory, host address and log file. It owns those processes and nothing else:
 * it spawns them, signals them by the PIDs it spawned (never by name), notices exits it
 * did not cause, reads the role changes they log, and asks them for their status.
 *
 * Every PID it spawned is killed at process exit as a last resort, so that a campaign that
 * dies never leaves a node behind.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, rmSync, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type Agent, request } from "undici";

/** The repository root: nodes run as `node --import tsx src/cli/main.ts start`. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAIN = join(REPO_ROOT, "src", "cli", "main.ts");

/** `--snapshot-entries` of every node: small, so state transfer happens often. */
const SNAPSHOT_ENTRIES = 500;

const livePids = new Set<number>();
let exitHookInstalled = false;

function killAllSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGCONT");
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  livePids.clear();
}

/** A free TCP port on `host`, found by listening on port 0 there. */
export function freePort(host: string): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, host, () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => done(port));
    });
  });
}

/** Whether `baton start` knows `--join` (a wiped node rejoins without voting). */
export function startSupportsJoin(): boolean {
  try {
    const help = execFileSync(process.execPath, ["--import", "tsx", MAIN, "start", "--help"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    });
    return help.includes("--join");
  } catch {
    return false;
  }
}

/** What `GET /v1/status?digest=true` answers, the fields the campaign reads. */
export interface StatusView {
  readonly id: number;
  readonly role: "master" | "backup" | "candidate";
  readonly term: number;
  readonly master: number | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly stateDigest?: string;
}

/** A role a node logged, in campaign milliseconds. */
export interface RoleEvent {
  readonly at: number;
  readonly node: number;
  readonly role: string;
  readonly term: number;
}

/** An exit the campaign did not cause. */
export interface UnexpectedExit {
  readonly at: number;
  readonly node: number;
  readonly how: string;
  readonly tail: string[];
}

export type NodeState = "stopped" | "running" | "paused";

export interface NodeSpec {
  readonly id: number;
  /** The address both listeners bind. */
  readonly host: string;
  readonly peerPort: number;
  readonly httpPort: number;
  readonly dataDir: string;
  /** `--peers` as this node must see it (relays differ per node). */
  readonly peers: string;
}

export class ChaosNode {
  readonly url: string;
  state: NodeState = "stopped";
  incarnation = 0;
  /** State transfers this node completed (restored a snapshot from the master). */
  stateTransfers = 0;
  private child: ChildProcess | null = null;
  private exitPromise: Promise<void> = Promise.resolve();
  /** Set just before a signal that ends the process, so its exit is not a surprise. */
  private expectExit = false;
  private readonly recent: string[] = [];

  constructor(
    readonly spec: NodeSpec,
    private readonly logFile: WriteStream,
    private readonly clock: { now(): number; wallOrigin: number },
    private readonly onRole: (event: RoleEvent) => void,
    private readonly onUnexpectedExit: (exit: UnexpectedExit) => void,
  ) {
    this.url = `http://${spec.host}:${spec.httpPort}`;
  }

  get id(): number {
    return this.spec.id;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  spawn(extraArgs: readonly string[] = []): void {
    if (this.child !== null) throw new Error(`node ${this.id} is already running`);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once("exit", killAllSync);
    }
    const { spec } = this;
    mkdirSync(spec.dataDir, { recursive: true });
    const args = [
      ...["--import", "tsx", MAIN, "start", "--id", String(spec.id)],
      ...["--listen", `${spec.host}:${spec.peerPort}`, "--http", `${spec.host}:${spec.httpPort}`],
      ...["--peers", spec.peers, "--data", spec.dataDir, "--log-level", "info"],
      // Snapshots every few hundred entries, and a short log behind them, so that a wiped
      // or long-absent node comes back by state transfer, not by replaying the whole log.
      ...["--snapshot-entries", String(SNAPSHOT_ENTRIES), "--snapshot-keep-entries", "100"],
      ...extraArgs,
    ];
    const child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`node ${this.id}: spawn failed`);
    this.incarnation++;
    livePids.add(pid);
    this.child = child;
    this.state = "running";
    this.expectExit = false;
    this.write(`[chaos] incarnation ${this.incarnation}: pid ${pid} ${args.slice(3).join(" ")}`);
    this.exitPromise = new Promise<void>((done) => {
      child.once("exit", (code, signal) => {
        livePids.delete(pid);
        const how = signal ?? `code ${code}`;
        this.write(`[chaos] pid ${pid} exited (${how})`);
        if (this.child === child) {
          this.child = null;
          this.state = "stopped";
        }
        if (!this.expectExit) {
          this.onUnexpectedExit({
            at: this.clock.now(),
            node: this.id,
            how,
            tail: [...this.recent],
          });
        }
        done();
      });
    });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => this.onLine(line));
    }
  }

  signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    if (signal === "SIGKILL" || signal === "SIGTERM") this.expectExit = true;
    process.kill(pid, signal);
    if (signal === "SIGSTOP") this.state = "paused";
    if (signal === "SIGCONT") this.state = "running";
  }

  async kill(): Promise<void> {
    if (this.child === null) return;
    if (this.state === "paused") this.signal("SIGCONT");
    this.signal("SIGKILL");
    await this.exitPromise;
  }

  wipe(): void {
    rmSync(this.spec.dataDir, { recursive: true, force: true });
  }

  async status(agent: Agent, timeoutMs: number): Promise<StatusView | null> {
    if (this.state !== "running") return null;
    try {
      const response = await request(`${this.url}/v1/status?digest=true`, {
        dispatcher: agent,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await response.body.text();
      return response.statusCode === 200 ? (JSON.parse(text) as StatusView) : null;
    } catch {
      return null;
    }
  }

  private onLine(line: string): void {
    this.write(line);
    this.recent.push(line);
    if (this.recent.length > 30) this.recent.shift();
    if (line.includes("state transfer complete")) this.stateTransfers++;
    if (!line.includes('"event":"role"')) return;
    try {
      const json = JSON.parse(line) as { time?: number; role?: string; term?: number };
      if (typeof json.time !== "number" || typeof json.role !== "string") return;
      const at = json.time - this.clock.wallOrigin;
      this.onRole({ at, node: this.id, role: json.role, term: json.term ?? 0 });
    } catch {
      // Not a JSON line after all.
    }
  }

  private write(line: string): void {
    this.logFile.write(`${line}\n`);
  }
}

/** Opens the log file of node `id` in `logDir`. */
export function openNodeLog(logDir: string, id: number): WriteStream {
  mkdirSync(logDir, { recursive: true });
  return createWriteStream(join(logDir, `n${id}.log`), { flags: "a" });
}
