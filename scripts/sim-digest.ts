/**
 * Prints one line per seed with a digest of everything the run reported (every count,
 * the verdict, the virtual time), and with `--trace` a digest of the full trace too: two
 * builds that must run every seed alike (a speed-up of the simulator, say) print the same
 * lines, so `diff` of the two outputs is the determinism check. For the whole-node
 * simulator the digest also covers the virtual time of every step the runner took.
 *
 *   npx tsx scripts/sim-digest.ts [--seeds 300] [--from 1] [--whole-node] [--trace]
 */

import { createHash } from "node:crypto";
import type { RunResult } from "../src/sim/run.js";
import { runSeed } from "../src/sim/run.js";
import { runWholeNode } from "../src/sim/whole-node.js";

const arg = (name: string, fallback: number): number =>
  process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback;
const seeds = arg("--seeds", 300);
const from = arg("--from", 1);
const wholeNode = process.argv.includes("--whole-node");
const trace = process.argv.includes("--trace");

const hash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);

for (let seed = from; seed < from + seeds; seed++) {
  const steps = createHash("sha256");
  let stepCount = 0;
  const onStep = (now: number) => {
    stepCount++;
    steps.update(`${now};`);
  };
  const r: RunResult = wholeNode
    ? await runWholeNode(seed, { trace, onStep })
    : runSeed(seed, { trace });
  const { trace: lines, violation, ...counts } = r;
  // A violation's stack names source lines, which move with any edit: hash it without them.
  const where = /\((?:[^()]*\/)?([^/()]+):\d+:\d+\)/g;
  const verdict = violation?.replace(where, "($1)") ?? null;
  const traced = trace ? ` trace ${hash(lines.join("\n"))} (${lines.length} lines)` : "";
  const stepped = wholeNode ? ` steps ${stepCount} ${steps.digest("hex").slice(0, 16)}` : "";
  console.log(
    `seed ${seed} ${r.ok ? "ok" : "VIOLATION"} ops ${r.operations} commit ${r.commitIndex} ` +
      `virtual ${r.virtualMs.toFixed(3)} result ${hash(JSON.stringify({ ...counts, verdict }))}${stepped}${traced}`,
  );
}
