/**
 * The integration-test harness: real `baton start` processes on 127.0.0.1 (cluster.ts)
 * plus the vitest hooks that make them safe to use. A test file calls
 * `useClusterHarness()` once at top level; after each test every process the test spawned
 * is killed by its PID and every temporary directory removed, whether the test passed or
 * failed, and a failed test prints the tail of each node's log first. A process 'exit'
 * handler (in cluster.ts) does the same should the runner exit without the hooks.
 */

import { afterAll, afterEach } from "vitest";
import { Cluster, cleanupAll } from "./cluster.js";

export * from "./cluster.js";

/** Lines of each node's log printed when a test fails. */
const FAILURE_LOG_LINES = Number(process.env.BATON_IT_LOG_LINES ?? 40);

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
