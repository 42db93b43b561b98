/**
 * Measures both simulators on the same seeds, in this one process: seeds per second and
 * simulated seconds per wall-clock second (virtual time of every run, faults and the
 * settling after them, over the wall time the runs took), and the CPU seconds the runs
 * took, which a busy machine distorts less than wall time.
 *
 *   npx tsx scripts/sim-speed.ts [--seeds 100] [--from 1]
 */

import { runSeed } from "../src/sim/run.js";
import { runWholeNode } from "../src/sim/whole-node.js";

const arg = (name: string, fallback: number): number =>
  process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback;
const seeds = arg("--seeds", 100);
const from = arg("--from", 1);

async function measure(
  name: string,
  run: (seed: number) => Promise<{ ok: boolean; virtualMs: number }>,
) {
  const started = performance.now();
  const cpu = process.cpuUsage();
  let virtualMs = 0;
  let violations = 0;
  for (let seed = from; seed < from + seeds; seed++) {
    const r = await run(seed);
    virtualMs += r.virtualMs;
    if (!r.ok) violations++;
  }
  const wall = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const cpuSeconds = (used.user + used.system) / 1e6;
  console.log(
    `${name}: seeds ${from}..${from + seeds - 1} in ${wall.toFixed(1)} s: ${(seeds / wall).toFixed(2)} seeds/s, ` +
      `${(virtualMs / 1000 / wall).toFixed(1)} simulated s per wall s, ${cpuSeconds.toFixed(1)} s of CPU ` +
      `(${(seeds / cpuSeconds).toFixed(2)} seeds per CPU s), ${violations} violations`,
  );
}

await measure("core simulator      ", async (seed) => runSeed(seed));
await measure("whole-node simulator", (seed) => runWholeNode(seed));
