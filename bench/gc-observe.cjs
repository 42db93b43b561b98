/**
 * Counts a process's garbage collections, for benchmarks that start Baton's nodes: preload
 * it into every process of a run, and each writes one line per process into GC_OUT
 * (default /tmp/baton-gc), the file named by its PID, once a second and at exit:
 *
 *   GC_OUT=/tmp/gc NODE_OPTIONS="--require $PWD/bench/gc-observe.cjs" \
 *     npm run bench:capacity -- --phases transfer --transfer-mb 400 --baton-cli dist/cli/main.js
 *   cat /tmp/gc/*.txt
 *
 * A line: the process's command line (cut), then full ("major") and other collections,
 * each with their count and total time, and the longest one.
 */

const { PerformanceObserver, constants } = require("node:perf_hooks");
const { mkdirSync, writeFileSync } = require("node:fs");

const dir = process.env.GC_OUT || "/tmp/baton-gc";
let major = 0;
let minor = 0;
let majorMs = 0;
let minorMs = 0;
let longestMs = 0;

new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      major++;
      majorMs += entry.duration;
    } else {
      minor++;
      minorMs += entry.duration;
    }
    longestMs = Math.max(longestMs, entry.duration);
  }
}).observe({ entryTypes: ["gc"] });

mkdirSync(dir, { recursive: true });
function write() {
  const command = process.argv.slice(1).join(" ").slice(0, 120);
  writeFileSync(
    `${dir}/${process.pid}.txt`,
    `${command} | major=${major} ${majorMs.toFixed(0)}ms minor=${minor} ${minorMs.toFixed(0)}ms longest=${longestMs.toFixed(1)}ms\n`,
  );
}
setInterval(write, 1000).unref();
process.on("exit", write);
