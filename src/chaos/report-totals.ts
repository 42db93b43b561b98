/**
 * The sums behind `src/chaos/totals.ts`: adds up the verdict.json files of several campaign
 * reports and writes them as docs/reliability.md shows them. It only reads reports.
 *
 * A campaign directory without a readable verdict.json is a campaign that threw before it
 * could judge (the cluster never agreed on a master, a fault could not be undone): it is
 * counted as a failed run and named, never dropped, so that the totals cannot look better
 * than the runs were.
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

export interface CampaignTotalsSum {
  /** Every directory given, judged or not. */
  readonly runs: number;
  /** Runs whose verdict failed, and runs without a verdict. */
  readonly failedRuns: number;
  /** Directories without a readable verdict.json, with why. */
  readonly unjudged: readonly string[];
  readonly seconds: number;
  readonly sums: Readonly<Record<(typeof SUMMED)[number], number>>;
  readonly faults: Readonly<Record<string, number>>;
  readonly verdictFails: Readonly<Record<string, number>>;
  readonly recoveryMax: number;
  /** One markdown table row per judged run. */
  readonly rows: readonly string[];
}

/** Adds up the reports in `dirs`; a directory without a verdict counts as a failed run. */
export function sumReports(dirs: readonly string[]): CampaignTotalsSum {
  const sums = Object.fromEntries(SUMMED.map((k) => [k, 0])) as Record<
    (typeof SUMMED)[number],
    number
  >;
  const faults: Record<string, number> = {};
  const verdictFails: Record<string, number> = {};
  const unjudged: string[] = [];
  const rows: string[] = [];
  let failedRuns = 0;
  let seconds = 0;
  let recoveryMax = 0;
  for (const dir of dirs) {
    let report: Report;
    try {
      report = JSON.parse(readFileSync(join(dir, "verdict.json"), "utf8")) as Report;
    } catch (error) {
      failedRuns++;
      unjudged.push(`${dir}: ${(error as Error).message}`);
      continue;
    }
    const t = report.totals;
    if (!report.ok) failedRuns++;
    seconds += report.options.durationMs / 1000;
    for (const k of SUMMED) sums[k] += t[k] ?? 0;
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
  return {
    runs: dirs.length,
    failedRuns,
    unjudged,
    seconds,
    sums,
    faults,
    verdictFails,
    recoveryMax,
    rows,
  };
}

/** The totals as docs/reliability.md shows them: a table of the runs, then the sums. */
export function totalsText(total: CampaignTotalsSum): string {
  const { sums, faults } = total;
  const lines = [
    "| seed | nodes | fault phase (s) | operations | indeterminate | faults | new masters | recovery (ms) | verdict |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...total.rows,
    "",
    `runs: ${total.runs} (failed: ${total.failedRuns}, of which without a verdict: ${total.unjudged.length}), fault phase: ${(total.seconds / 60).toFixed(1)} min`,
    ...total.unjudged.map((line) => `  no verdict: ${line}`),
    `operations: ${sums.operations} (ok ${sums.ok}, failed ${sums.failed}, indeterminate ${sums.indeterminate})`,
    `faults: ${Object.entries(faults)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")} (total ${Object.values(faults).reduce((a, b) => a + b, 0)})`,
    `state transfers: ${sums.stateTransfers} (in the runs that count them)`,
    `new masters: ${sums.failovers}; unexpected exits: ${sums.unexpectedExits}; slowest recovery after healing: ${total.recoveryMax} ms`,
    `runs failing each verdict: ${Object.entries(total.verdictFails)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`,
  ];
  return lines.join("\n");
}
