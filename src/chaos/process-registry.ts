/**
 * Every process and temporary directory that the fault campaign, the tests and the
 * benchmarks start, in one registry, and the one place that cleans them up. It owns
 * spawning (ManagedProcess), the PIDs it spawned, the temporary directories it made and
 * the cleanups other modules register (iptables chains, say): `cleanupSync()` ends them
 * all, and hooks on process 'exit', SIGINT and SIGTERM, installed once, call it as a last
 * resort, so that a program that dies never leaves a node, a rule or a directory behind.
 *
 * It signals only the PIDs it spawned, never a process found by name, and removes only the
 * directories it made.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/**
 * Every PID spawned and still running (negated for a process group of its own, see
 * `ManagedProcessOptions.group`), with the signal that ends it at cleanup.
 */
const livePids = new Map<number, NodeJS.Signals>();
const liveDirs = new Set<string>();
const cleanups = new Set<() => void>();
let hooksInstalled = false;

/**
 * Ends every process still registered (SIGKILL, after SIGCONT for a paused one, or the
 * signal it was registered with), runs the registered cleanups (newest first), and removes
 * every registered directory.
 */
export function cleanupSync(): void {
  for (const [pid, signal] of livePids) {
    try {
      process.kill(pid, "SIGCONT");
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
  livePids.clear();
  for (const cleanup of [...cleanups].reverse()) {
    try {
      cleanup();
    } catch {
      // A cleanup that fails must not keep the others from running.
    }
  }
  cleanups.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once("exit", cleanupSync);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (livePids.size + cleanups.size + liveDirs.size > 0) {
        process.stderr.write(`\n${signal}: stopping every process this program started\n`);
      }
      cleanupSync();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
}

/**
 * Runs `cleanup` (synchronous, once) at `cleanupSync()` or when the process ends, whichever
 * comes first; the returned function unregisters it, for an owner that cleaned up itself.
 */
/** Whether process `pid` exists (EPERM: it does, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function onCleanup(cleanup: () => void): () => void {
  installHooks();
  cleanups.add(cleanup);
  return () => {
    cleanups.delete(cleanup);
  };
}

/** A fresh temporary directory, removed by `removeTempDir` or the cleanup. */
export function makeTempDir(prefix: string): string {
  installHooks();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

/** Removes a directory made by makeTempDir now, or with `keep` only forgets it. */
export function removeTempDir(dir: string, keep = false): void {
  liveDirs.delete(dir);
  if (!keep) rmSync(dir, { recursive: true, force: true });
}

/**
 * Ports for test and benchmark servers come from below the kernel's ephemeral range (where
 * port 0 binds and outgoing connections take their local port): a port picked from inside
 * it can be taken by any process's outgoing connection between the check and the server's
 * bind, and then the server fails with EADDRINUSE. Ports handed out by this process are
 * never handed out again, so two calls never overlap.
 */
const PORTS_FROM = 10_000;
const handedOut = new Set<number>();

/** The first port of the kernel's ephemeral range (32768 where it cannot be read). */
function ephemeralStart(): number {
  try {
    const first = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0],
    );
    return Number.isInteger(first) && first > PORTS_FROM + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A base port with `count` consecutive ports free on every address (so on `host`), none
 * handed out before.
 */
async function pickPorts(count: number, host: string): Promise<number> {
  const end = ephemeralStart() - count;
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = PORTS_FROM + Math.floor(Math.random() * (end - PORTS_FROM));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((port) => handedOut.has(port))) continue;
    // Checked on the wildcard address: a port free there is free on every address, and a
    // node that binds 0.0.0.0 would fail on a port another process holds on 127.0.0.12.
    const free = await Promise.all(ports.map((port) => isFree(port, "0.0.0.0")));
    if (!free.every(Boolean)) continue;
    for (const port of ports) handedOut.add(port);
    return base;
  }
  throw new Error(`no ${count} consecutive free ports found on ${host} below ${end + count}`);
}

/** `count` distinct free TCP ports on `host`, none handed out before by this process. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await pickPorts(1, host));
  return ports;
}

/** A base port with `count` free consecutive ports on 127.0.0.1 (the demo numbers nodes so). */
export function freeConsecutivePorts(count: number): Promise<number> {
  return pickPorts(count, "127.0.0.1");
}

/** Whether nothing listens on `port` of `host` now. */
export function isFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}

export type ProcessState = "stopped" | "running" | "paused";

/** How a process ended. */
export interface ProcessExit {
  readonly pid: number;
  /** The exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** "SIGKILL", "code 1", or "SIGKILL, still running 10000 ms after SIGTERM". */
  readonly how: string;
  /**
   * True when this object ended it: by kill() or SIGKILL through signal(), whatever came of
   * it, or by stop() or SIGTERM through signal() when the process then exited with code 0
   * (within stop()'s grace time). A stopped process that exits with another code, dies of a
   * signal, or ignores SIGTERM until stop() kills it did not stop cleanly: unexpected.
   */
  readonly expected: boolean;
  /** Whether a SIGTERM (a stop) was under way when it ended. */
  readonly stopping: boolean;
}

export interface ManagedProcessOptions {
  /** @default this process's working directory */
  readonly cwd?: string;
  /** @default this process's environment */
  readonly env?: NodeJS.ProcessEnv;
  /** Run as this numeric uid and gid (root only), e.g. for per-node iptables rules. */
  readonly runAs?: { readonly uid: number; readonly gid: number } | null;
  /** Appends what the process prints to this file (over all its starts), with notes. */
  readonly logFile?: string;
  /** Called with each line the process prints. */
  readonly onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Called when the process has exited and its last line of output was read. */
  readonly onExit?: (exit: ProcessExit) => void;
  /**
   * The signal that ends it at cleanup: SIGKILL, or SIGTERM for a program with a registry of
   * its own (a benchmark), so that it ends its own processes. @default "SIGKILL"
   */
  readonly cleanupSignal?: NodeJS.Signals;
  /**
   * Runs the process in a process group of its own and signals the whole group: for a
   * program that starts processes of its own (the demo and its nodes), so that none of
   * them outlives it. Whatever is left of the group when the process exits is killed.
   * @default false
   */
  readonly group?: boolean;
}

/**
 * One long-running process (a cluster node, a load balancer) that can be killed, paused,
 * resumed, stopped and started again with the same or other arguments. Its PID is in the
 * registry for as long as it runs.
 */
export class ManagedProcess {
  /** How many times a process was started. */
  incarnation = 0;
  private child: ChildProcess | null = null;
  private exitPromise: Promise<void> = Promise.resolve();
  private paused = false;
  /**
   * The signal sent to end the current process, set just before it: after SIGKILL any exit
   * is expected, after SIGTERM only a clean one (code 0), as `baton start` ends on SIGTERM
   * after its hand-over (src/cli/commands/start.ts). Null: no end asked for.
   */
  private ending: "SIGKILL" | "SIGTERM" | null = null;
  /** The grace time, in ms, after which stop() had to SIGKILL a process that ignored SIGTERM. */
  private overdueMs: number | null = null;
  private log: WriteStream | null = null;

  constructor(
    readonly name: string,
    private readonly command: string,
    private args: readonly string[],
    private readonly options: ManagedProcessOptions = {},
  ) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get state(): ProcessState {
    if (this.child === null) return "stopped";
    return this.paused ? "paused" : "running";
  }

  /** Started and not paused. */
  get running(): boolean {
    return this.state === "running";
  }

  get logFile(): string | null {
    return this.options.logFile ?? null;
  }

  /** Sets the arguments of the next start() that is given none. */
  useArgs(args: readonly string[]): void {
    this.args = args;
  }

  /** Starts the process, with `args` from now on when given; returns its PID. */
  start(args: readonly string[] = this.args): number {
    if (this.child !== null) throw new Error(`${this.name} is already running`);
    installHooks();
    this.args = args;
    const { runAs } = this.options;
    const child = spawn(this.command, args, {
      cwd: this.options.cwd ?? process.cwd(),
      detached: this.options.group === true,
      stdio: ["ignore", "pipe", "pipe"],
      env: this.options.env ?? process.env,
      ...(runAs === null || runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }),
    });
    // A spawn error (ENOENT, EAGAIN) is followed by 'exit' or leaves pid undefined.
    child.once("error", (error) => this.options.onLine?.(`[${this.name}] ${error}`, "stderr"));
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${this.name}: spawn of ${this.command} failed`);
    livePids.set(this.target(pid), this.options.cleanupSignal ?? "SIGKILL");
    this.incarnation++;
    this.child = child;
    this.paused = false;
    this.ending = null;
    this.overdueMs = null;
    this.log = this.openLog(child);
    this.note(`[${this.name}] start ${this.incarnation}: pid ${pid} ${args.join(" ")}`);
    this.watch(child, pid, this.log);
    return pid;
  }

  /** Sends `signal` to this process (only to the PID it spawned). */
  signal(signal: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === null) throw new Error(`${this.name} is not running`);
    if (signal === "SIGKILL") this.ending = "SIGKILL";
    if (signal === "SIGTERM" && this.ending === null) this.ending = "SIGTERM";
    process.kill(this.target(pid), signal);
    if (signal === "SIGSTOP") this.paused = true;
    if (signal === "SIGCONT") this.paused = false;
  }

  /** Resolves when the current process (if any) has exited. */
  exited(): Promise<void> {
    return this.exitPromise;
  }

  /** SIGKILL (a paused process too), then waits for the exit; nothing when none runs. */
  async kill(): Promise<void> {
    await this.killIfRunning();
  }

  /**
   * kill(), saying whether there was a process to kill: false when it never started or
   * has exited already, which a fault that means to kill must not count as a kill.
   */
  async killIfRunning(): Promise<boolean> {
    if (this.child === null) return false;
    if (this.paused) this.signal("SIGCONT");
    this.signal("SIGKILL");
    await this.exitPromise;
    return true;
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs` (a clean stop lets `--cpu-prof` write). Only an
   * exit with code 0 within the grace time is an expected exit (see ProcessExit.expected).
   */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (child === null || child.pid === undefined) return;
    const pid = child.pid;
    if (this.paused) this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => {
      if (this.child !== child) return;
      // Not through signal(): a kill for being late is no kill that was asked for.
      this.overdueMs = graceMs;
      try {
        process.kill(this.target(pid), "SIGKILL");
      } catch {
        // It exited just now.
      }
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }

  /** What a signal goes to: the PID, or its whole group (a negative PID). */
  private target(pid: number): number {
    return this.options.group === true ? -pid : pid;
  }

  /** Writes `line` into the log file, between the process's own lines. */
  note(line: string): void {
    this.log?.write(`${line}\n`);
  }

  /** Follows `child` to its end: its lines, its exit (state), its close (the report). */
  private watch(child: ChildProcess, pid: number, log: WriteStream | null): void {
    let ending: "SIGKILL" | "SIGTERM" | null = null;
    let overdueMs: number | null = null;
    this.exitPromise = new Promise<void>((done) => {
      child.once("exit", () => {
        livePids.delete(this.target(pid));
        if (this.options.group === true) {
          try {
            process.kill(-pid, "SIGKILL");
          } catch {
            // Nothing was left of the group.
          }
        }
        ending = this.ending;
        overdueMs = this.overdueMs;
        if (this.child === child) {
          this.child = null;
          this.paused = false;
        }
        done();
      });
    });
    // 'close' comes after 'exit' and after the last output: report the exit then, and end
    // the log after that last output.
    child.once("close", (code, signal) => {
      const how =
        overdueMs === null
          ? (signal ?? `code ${code}`)
          : `${signal ?? `code ${code}`}, still running ${overdueMs} ms after SIGTERM`;
      log?.end(`[${this.name}] pid ${pid} exited (${how})\n`);
      if (this.log === log) this.log = null;
      const expected =
        overdueMs === null && (ending === "SIGKILL" || (ending === "SIGTERM" && code === 0));
      const stopping = ending === "SIGTERM";
      this.options.onExit?.({ pid, code, how, expected, stopping });
    });
    const { onLine } = this.options;
    if (onLine === undefined) return;
    for (const [stream, name] of [
      [child.stdout, "stdout"],
      [child.stderr, "stderr"],
    ] as const) {
      if (stream !== null) createInterface({ input: stream }).on("line", (l) => onLine(l, name));
    }
  }

  /** Appends both outputs to the log file; watch() ends it. */
  private openLog(child: ChildProcess): WriteStream | null {
    const { logFile } = this.options;
    if (logFile === undefined) return null;
    const log = createWriteStream(logFile, { flags: "a" });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    return log;
  }
}
