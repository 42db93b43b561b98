/**
 * The vitest hooks that make real processes safe in a test file. A file that starts
 * clusters calls `useClusterHarness()` once at top level: after each test every process the
 * test spawned is killed by its PID and every temporary directory removed, whether the test
 * passed or failed, and a failed test prints the tail of each node's log first. The process
 * registry's exit hook does the same should the runner exit without the hooks.
 * `useTempDir()` gives a file one temporary directory, removed after its tests.
 */

import { afterAll, afterEach } from "vitest";
import { Cluster, destroyAll } from "./cluster.js";
import { cleanupSync, makeTempDir, removeTempDir } from "./processes.js";

/** Lines of each node's log printed when a test fails. */
const FAILURE_LOG_LINES = Number(process.env.BATON_IT_LOG_LINES ?? 40);

async function cleanupAll(): Promise<void> {
  await destroyAll();
  cleanupSync();
}

/** Registers the cleanup (and failure report) hooks for the calling test file. */
export function useClusterHarness(): void {
  afterEach(async (context) => {
    if (context.task.result?.state === "fail") {
      for (const cluster of Cluster.live()) {
        console.error(
          `\n=== "${context.task.name}" failed; the last ${FAILURE_LOG_LINES} log lines of each node (${cluster.root}) ===\n${cluster.logTails(FAILURE_LOG_LINES)}\n`,
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
