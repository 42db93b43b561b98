/**
 * The vitest hooks that make real processes safe in a test file. A file that starts
 * clusters calls `useClusterHarness()` once at top level: after each test every process the
 * test spawned is killed by its PID and every temporary directory removed, whether the test
 * passed or failed, and a failed test prints the tail of each node's log first. The process
 * registry's exit hook does the same should the runner exit without the hooks.
 * `useTempDir()` gives a file one temporary directory, removed after its tests.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach } from "vitest";
import { Cluster, destroyAll } from "./cluster.js";
import { cleanupSync, makeTempDir, removeTempDir } from "./processes.js";

/** Lines of each node's log printed when a test fails. */
const FAILURE_LOG_LINES = Number(process.env.BATON_IT_LOG_LINES ?? 40);

/**
 * With BATON_IT_LOG_DIR set, every node's whole log is also written there after each test,
 * passed or failed, one file per cluster (a passing run is the baseline a failure is read
 * against).
 */
const LOG_DIR = process.env.BATON_IT_LOG_DIR;

function saveLogs(testName: string): void {
  if (LOG_DIR === undefined || LOG_DIR === "") return;
  mkdirSync(LOG_DIR, { recursive: true });
  const base = testName.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 80);
  Cluster.live().forEach((cluster, n) => {
    const file = join(LOG_DIR, `${base}-${Date.now()}-${n}.log`);
    writeFileSync(file, cluster.logTails(Number.MAX_SAFE_INTEGER));
  });
}

async function cleanupAll(): Promise<void> {
  await destroyAll();
  cleanupSync();
}

/** Registers the cleanup (and failure report) hooks for the calling test file. */
export function useClusterHarness(): void {
  afterEach(async (context) => {
    saveLogs(context.task.name);
    if (context.task.result?.state === "fail") {
      for (const cluster of Cluster.live()) {
        console.error(
          `\n=== "${context.task.name}" failed; the last ${FAILURE_LOG_LINES} log lines of each node (${cluster.root}) ===\n${cluster.logTails(FAILURE_LOG_LINES)}\n` +
            `\n=== the cluster's timeline (roles, starts, stops, links lost; seconds from its first event) ===\n${cluster.timeline()}\n`,
        );
      }
    }
    await cleanupAll();
  });
  afterAll(cleanupAll);
}

/** A temporary directory for the calling test file, removed after its last test. */
export function useTempDir(prefix: string): string {
  const dir = makeTempDir(prefix);
  afterAll(() => removeTempDir(dir));
  return dir;
}
