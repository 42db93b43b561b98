/**
 * The totals over several campaign reports: a directory without a verdict.json (a campaign
 * that threw before judging) is a failed run, named in the output, never dropped.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { sumReports, totalsText } from "../../src/chaos/report-totals.js";

const roots: string[] = [];

afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** A campaign directory under `root`, with a verdict.json when `ok` is given. */
function campaign(root: string, seed: number, ok?: boolean): string {
  const dir = join(root, `seed-${seed}`);
  mkdirSync(dir);
  if (ok === undefined) return dir;
  const verdict = {
    ok,
    seed,
    method: "relay",
    options: { durationMs: 60_000, nodes: 3 },
    totals: {
      operations: 100,
      ok: 90,
      failed: 5,
      indeterminate: 5,
      faults: { split: 2 },
      failovers: 1,
      unexpectedExits: 0,
      stateTransfers: 0,
      recoveryMs: { n1: 120, n2: 80, n3: 95 },
    },
    verdicts: { linearizable: { ok, detail: "" } },
  };
  writeFileSync(join(dir, "verdict.json"), JSON.stringify(verdict));
  return dir;
}

describe("chaos totals", () => {
  it("totals: a campaign directory without a verdict counts as a failed run (a campaign that threw)", () => {
    const root = mkdtempSync(join(tmpdir(), "baton-totals-"));
    roots.push(root);
    const dirs = [campaign(root, 1, true), campaign(root, 2), campaign(root, 3, false)];
    const total = sumReports(dirs);
    expect(total.runs).toBe(3);
    expect(total.failedRuns).toBe(2);
    expect(total.unjudged).toHaveLength(1);
    expect(total.unjudged[0]).toContain("seed-2");
    expect(total.sums.operations).toBe(200);
    const text = totalsText(total);
    expect(text).toContain("runs: 3 (failed: 2, of which without a verdict: 1)");
    expect(text).toContain(`no verdict: ${dirs[1]}`);
  });
});
