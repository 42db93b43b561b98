/**
 * `npm test`'s test run, in two lanes at once: vitest runs one worker on a 2-core machine,
 * and most of the suite (real clusters, fail-overs, campaigns) spends its time waiting on
 * timers and processes, while the simulator's sweeps are pure CPU with no clock of their
 * own. The CPU lane (the simulators and the core they drive) runs beside the rest, so the
 * second core does work, and nothing in it can be made late by the load it adds.
 *
 * The main lane streams its output as it goes; the other lane's output is kept and printed
 * in one piece when it ends, so the two never interleave. The exit code is non-zero when
 * either lane fails. Extra arguments go to both vitest runs (e.g. `-t name`).
 *
 *   node scripts/test-lanes.mjs [vitest args...]
 */

import { spawn } from "node:child_process";

/** Deterministic, CPU-bound files: simulated time only, no real timers to miss. */
const CPU_LANE = ["test/sim/", "src/sim/", "src/core/"];
/**
 * Run in the CPU lane once the simulators are done, so both cores stay busy to the end:
 * the chaos campaigns judge histories (safety, linearizability), not how fast a
 * fail-over is, so the load of the main lane beside them cannot fail them.
 */
const AFTER_CPU = ["test/chaos/"];

const extra = process.argv.slice(2);
const vitest = ["node_modules/vitest/vitest.mjs", "run"];
const children = new Set();

function run(name, args, { stream }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...vitest, ...args, ...extra], {
      stdio: stream ? "inherit" : ["ignore", "pipe", "pipe"],
      detached: true,
      env: process.env,
    });
    children.add(child);
    const kept = [];
    if (!stream) {
      child.stdout.on("data", (chunk) => kept.push(chunk));
      child.stderr.on("data", (chunk) => kept.push(chunk));
    }
    child.on("close", (code, signal) => {
      children.delete(child);
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      if (!stream) {
        process.stdout.write(`\n===== ${name} lane (kept while the main lane ran) =====\n`);
        process.stdout.write(Buffer.concat(kept));
      }
      const verdict = code === 0 ? "passed" : `FAILED (${signal ?? `exit ${code}`})`;
      process.stdout.write(`===== ${name} lane ${verdict} in ${seconds} s =====\n`);
      resolve(code === 0);
    });
  });
}

function stopAll(signal) {
  for (const child of children) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  }
  process.exit(1);
}
process.on("SIGINT", () => stopAll("SIGINT"));
process.on("SIGTERM", () => stopAll("SIGTERM"));

process.stdout.write(
  `test lanes: CPU lane ${CPU_LANE.join(" ")}, then ${AFTER_CPU.join(" ")}, beside the main lane (the rest)\n`,
);
const results = await Promise.all([
  run("CPU", CPU_LANE, { stream: false }).then(async (cpu) => [
    cpu,
    await run("chaos", AFTER_CPU, { stream: false }),
  ]),
  run(
    "main",
    [...CPU_LANE, ...AFTER_CPU].flatMap((dir) => ["--exclude", `${dir}**`]),
    { stream: true },
  ),
]).then((lanes) => lanes.flat());
process.exit(results.every(Boolean) ? 0 : 1);
