/**
 * CI smoke run of `npm run bench:learner` with a tiny state (2 MiB), so that it never
 * rots: it must start its cluster, fill it, add node 4 as a learner, start it with --join,
 * promote it once caught up, stop every process and write results that parse. Timings are
 * not checked here (CI machines vary); docs/benchmarks.md holds the measured figures.
 * Nodes run from dist/ when it is up to date and from the sources otherwise.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { LearnerResult } from "../../bench/learner.js";
import { runScript as run } from "../../harness/processes.js";
import { useTempDir } from "../../harness/vitest-hooks.js";

const root = useTempDir("baton-bench-learner-smoke-");

describe("bench: smoke", () => {
  it("bench: adding a learner to a filled cluster runs to its promotion and writes parseable results (2 MiB)", async () => {
    const out = join(root, "learner");
    const result = await run("bench/learner.ts", ["--smoke", "--from", "auto", "--out", out]);
    expect(result.code, result.output).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as LearnerResult;
    expect(json.fill.bytes).toBe(2 * 2 ** 20);
    expect(json.promotedMs).toBeGreaterThan(0);
    expect(json.caughtUpMs).not.toBeNull();
    expect(json.stateTransfers.length).toBeGreaterThan(0);
  }, 120_000);
});
