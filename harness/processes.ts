/**
 * What tests and benchmarks need to run real programs: the repository's root, the `baton`
 * command (built or from the sources), a build that is never stale, and running a script
 * to completion. Processes, temporary directories, free ports and waiting come from the
 * fault campaign's own modules (src/chaos), re-exported here so that tests and benchmarks
 * import them from one place: one registry, one cleanup, for all three.
 */

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ManagedProcess,
  removeTempDir as removeRegisteredDir,
} from "../src/chaos/process-registry.js";
import { batonLauncher } from "../src/chaos/processes.js";

export {
  cleanupSync,
  freeConsecutivePorts,
  freePorts,
  isFree,
  ManagedProcess,
  type ManagedProcessOptions,
  makeTempDir,
  type ProcessState,
} from "../src/chaos/process-registry.js";
export { agreedMaster, fetchStatus, type StatusView } from "../src/chaos/processes.js";
export { sleep, waitFor } from "../src/chaos/wait.js";

/** The repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Removes a directory made by makeTempDir now; with BATON_BENCH_KEEP=1 in the environment
 * it is left in place (data directories and node logs, to look into a run) and named.
 */
export function removeTempDir(dir: string): void {
  const keep = process.env.BATON_BENCH_KEEP === "1";
  if (keep) process.stderr.write(`kept ${dir} (BATON_BENCH_KEEP=1)\n`);
  removeRegisteredDir(dir, keep);
}

/** Where nodes start from: the built CLI (dist/) or the sources through tsx. */
export type LaunchFrom = "dist" | "source";

/**
 * The `baton` command: from "source" the sources' own (tsx), from "dist" `node
 * dist/cli/main.js`, or `cli` instead of it (another build's, to compare).
 */
export function batonCommand(
  from: LaunchFrom,
  cli?: string,
): { readonly command: string; readonly args: readonly string[] } {
  if (from === "source") return batonLauncher();
  return { command: process.execPath, args: [cli ?? join(REPO_ROOT, "dist", "cli", "main.js")] };
}

/**
 * `baton demo` from the sources (tsx) with its data in `data`, the nodes on three
 * consecutive ports from each of `peerPort` and `httpPort`, writing `load` a second.
 */
export function demoCommand(options: {
  readonly data: string;
  readonly peerPort: number;
  readonly httpPort: number;
  readonly load: number;
}): { readonly command: string; readonly args: readonly string[] } {
  const launcher = batonCommand("source");
  return {
    command: launcher.command,
    args: [
      ...launcher.args,
      "demo",
      "--data",
      options.data,
      "--peer-port",
      String(options.peerPort),
      "--http-port",
      String(options.httpPort),
      "--load",
      String(options.load),
    ],
  };
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
 * that a benchmark never measures a stale build. Throws when the build fails.
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
 * (no build needed) and the sources otherwise, for the smoke tests.
 */
export function resolveFrom(from: string): LaunchFrom {
  if (from === "dist" || from === "source") return from;
  if (from === "auto") return distIsFresh() ? "dist" : "source";
  throw new Error(`--from: dist, source or auto, not ${from}`);
}

/**
 * Runs a TypeScript program of the repository (`bench/main.ts`) with tsx to completion, as
 * a registered process; resolves with its exit code, its stdout, and stdout and stderr line
 * by line as they came. With `passStderr` its stderr lines go on to this process's too.
 */
export function runScript(
  script: string,
  args: readonly string[],
  options: { readonly passStderr?: boolean } = {},
): Promise<{ code: number | null; stdout: string; output: string }> {
  let stdout = "";
  let output = "";
  return new Promise((done) => {
    const program = new ManagedProcess(
      script,
      process.execPath,
      ["--import", "tsx", join(REPO_ROOT, script), ...args],
      {
        cwd: REPO_ROOT,
        // The program ends its own processes when it gets this at our cleanup.
        cleanupSignal: "SIGTERM",
        onLine: (line, stream) => {
          if (stream === "stdout") stdout += `${line}\n`;
          else if (options.passStderr === true) process.stderr.write(`${line}\n`);
          output += `${line}\n`;
        },
        onExit: (exit) => done({ code: exit.code, stdout, output }),
      },
    );
    program.start();
  });
}
