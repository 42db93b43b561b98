/**
 * Adds up the verdict.json files of several campaign reports, for docs/reliability.md:
 * `npx tsx src/chaos/totals.ts results/chaos/hour/seed-*`. It only reads reports.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";

interface Report {
  ok: boolean;
  seed: number;
  options: { durationMs: number; nodes: number };
  totals: {
    operations: number;
    ok: number;
    failed: number;
    indeterminate: number;
    faults: Record<string, number>;
    failovers: number;
    unexpectedExits: number;
    stateTransfers?: number;
    recoveryMs: Record<string, number | null>;
  };
  verdicts: Record<string, { ok: boolean; detail: string }>;
  method: string;
}

/** The per-run figures that add up across runs. */
const SUMMED = [
  "operations",
  "ok",
  "failed",
  "indeterminate",
  "failovers",
  "unexpectedExits",
  "stateTransfers",
] as const;

const dirs = process.argv.slice(2);
const sum = { runs: 0, seconds: 0, ...Object.fromEntries(SUMMED.map((k) => [k, 0])) } as Record<
  "runs" | "seconds" | (typeof SUMMED)[number],
  number
>;
const faults: Record<string, number> = {};
const verdictFails: Record<string, number> = {};
let recoveryMax = 0;
const rows: string[] = [];
for (const dir of dirs) {
  let report: Report;
  try {
    report = JSON.parse(readFileSync(join(dir, "verdict.json"), "utf8")) as Report;
  } catch {
    continue;
  }
  const t = report.totals;
  sum.runs++;
  sum.seconds += report.options.durationMs / 1000;
  for (const k of SUMMED) sum[k] += t[k] ?? 0;
  for (const [kind, n] of Object.entries(t.faults)) faults[kind] = (faults[kind] ?? 0) + n;
  for (const [name, v] of Object.entries(report.verdicts)) {
    verdictFails[name] = (verdictFails[name] ?? 0) + (v.ok ? 0 : 1);
  }
  const recovery = Math.max(
    ...Object.values(t.recoveryMs).map((v) => v ?? Number.POSITIVE_INFINITY),
  );
  recoveryMax = Math.max(recoveryMax, recovery);
  const faultCount = Object.values(t.faults).reduce((a, b) => a + b, 0);
  rows.push(
    `| ${report.seed} | ${report.options.nodes} | ${report.options.durationMs / 1000} | ${t.operations} | ${t.indeterminate} | ${faultCount} | ${t.failovers} | ${recovery} | ${report.ok ? "pass" : "FAIL"} |`,
  );
}
console.log(
  "| seed | nodes | fault phase (s) | operations | indeterminate | faults | new masters | recovery (ms) | verdict |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
console.log("");
console.log(`runs: ${sum.runs}, fault phase: ${(sum.seconds / 60).toFixed(1)} min`);
console.log(
  `operations: ${sum.operations} (ok ${sum.ok}, failed ${sum.failed}, indeterminate ${sum.indeterminate})`,
);
console.log(
  `faults: ${Object.entries(faults)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ")} (total ${Object.values(faults).reduce((a, b) => a + b, 0)})`,
);
console.log(`state transfers: ${sum.stateTransfers} (in the runs that count them)`);
console.log(
  `new masters: ${sum.failovers}; unexpected exits: ${sum.unexpectedExits}; slowest recovery after healing: ${recoveryMax} ms`,
);
console.log(
  `runs failing each verdict: ${Object.entries(verdictFails)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ")}`,
);
