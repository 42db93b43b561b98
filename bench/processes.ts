/**
 * The processes and directories a benchmark starts: cluster nodes (Baton or etcd) and
 * load generators. This file owns them: every PID it spawns and every temporary directory
 * it makes is recorded in one registry that `cleanup()` empties, and an 'exit' hook and
 * SIGINT/SIGTERM handlers empty it as a last resort. It signals only the PIDs it spawned,
 * never a process found by name.
 *
 * It also knows where the repository is, finds free loopback ports, and makes sure the
 * built CLI (`dist/`) is not older than the sources before a benchmark runs it.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const livePids = new Set<number>();
const liveDirs = new Set<string>();
let hooksInstalled = false;

/** Kills (SIGKILL) every process still registered and removes every registered directory. */
export function cleanupSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGCONT");
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  livePids.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once("exit", cleanupSync);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping every process it started\n`);
      cleanupSync();
      process.exit(130);
    });
  }
}

/** A fresh temporary directory, removed by the cleanup. */
export function makeTempDir(prefix: string): string {
  installHooks();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

/**
 * Removes a directory made by makeTempDir now; with BATON_BENCH_KEEP=1 in the environment
 * it is left in place (data directories and node logs, to look into a run) and named.
 */
export function removeTempDir(dir: string): void {
  liveDirs.delete(dir);
  if (process.env.BATON_BENCH_KEEP === "1") {
    process.stderr.write(`kept ${dir} (BATON_BENCH_KEEP=1)\n`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

/** `count` distinct free TCP ports on `host`. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((done, fail) => {
          const server = createServer();
          server.once("error", fail);
          server.listen(0, host, () => done(server));
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

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** Polls `probe` until it returns a value other than undefined; throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (performance.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * One long-running process whose output goes to a log file: a cluster node. It can be
 * killed, paused, resumed and started again with the same command.
 */
export class ManagedProcess {
  private child: ChildProcess | null = null;
  private exitPromise: Promise<void> = Promise.resolve();
  private pausedNow = false;

  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly args: readonly string[],
    readonly logFile: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
    /** Run as this numeric uid and gid (root only), e.g. for per-node iptables rules. */
    private readonly runAs: { readonly uid: number; readonly gid: number } | null = null,
  ) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null && !this.pausedNow;
  }

  start(): void {
    if (this.child !== null) throw new Error(`${this.name} is already running`);
    installHooks();
    const log = createWriteStream(this.logFile, { flags: "a" });
    const child = spawn(this.command, this.args, {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: this.env,
      ...(this.runAs === null ? {} : { uid: this.runAs.uid, gid: this.runAs.gid }),
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${this.name}: spawn of ${this.command} failed`);
    livePids.add(pid);
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    this.child = child;
    this.pausedNow = false;
    this.exitPromise = new Promise<void>((done) => {
      child.once("exit", () => {
        livePids.delete(pid);
        if (this.child === child) {
          this.child = null;
          this.pausedNow = false;
        }
        log.end();
        done();
      });
    });
  }

  signal(signal: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === null) throw new Error(`${this.name} is not running`);
    process.kill(pid, signal);
    if (signal === "SIGSTOP") this.pausedNow = true;
    if (signal === "SIGCONT") this.pausedNow = false;
  }

  async kill(): Promise<void> {
    if (this.child === null) return;
    if (this.pausedNow) this.signal("SIGCONT");
    this.signal("SIGKILL");
    await this.exitPromise;
  }

  /** SIGTERM, then SIGKILL after `graceMs` (a clean stop lets `--cpu-prof` write). */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child === null) return;
    if (this.pausedNow) this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => {
      if (this.child !== null) this.signal("SIGKILL");
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtimeMs(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** True when dist/cli/main.js exists and is not older than any file of src/. */
export function distIsFresh(): boolean {
  const built = join(REPO_ROOT, "dist", "cli", "main.js");
  return existsSync(built) && statSync(built).mtimeMs >= newestMtimeMs(join(REPO_ROOT, "src"));
}

/**
 * Runs `npm run build` when dist/cli/main.js is missing or older than a file of src/, so
 * that the benchmark never measures a stale build. Throws when the build fails.
 */
export function ensureBuilt(log: (line: string) => void): void {
  if (distIsFresh()) return;
  log("building the CLI (dist/ is missing or older than src/): npm run build");
  const startedAt = Date.now();
  const result = spawnSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: "inherit" });
  if (result.status === 0) return;
  // tsc still emits when it reports type errors; a checkout shared with work in progress
  // elsewhere may have some. Measure what it emitted, and say so, rather than nothing.
  const built = join(REPO_ROOT, "dist", "cli", "main.js");
  if (existsSync(built) && statSync(built).mtimeMs >= startedAt - 1000) {
    log("warning: npm run build reported errors (above); measuring the JavaScript it emitted");
    return;
  }
  throw new Error(`npm run build failed (exit ${result.status})`);
}

/**
 * Where nodes start from: "dist" and "source" as asked; "auto" is dist when it is fresh
 * (no build needed) and the sources otherwise, for the smoke test.
 */
export function resolveFrom(from: string): "dist" | "source" {
  if (from === "dist" || from === "source") return from;
  if (from === "auto") return distIsFresh() ? "dist" : "source";
  throw new Error(`--from: dist, source or auto, not ${from}`);
}
