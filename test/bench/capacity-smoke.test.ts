/**
 * CI smoke run of `npm run bench:capacity` with tiny sizes (--smoke: 1,500 keys, a log of
 * 1,000 entries, a 2 MB state transfer), so that it never rots: it must start its four
 * clusters, write, sample memory, restart a backup both ways, transfer state to an empty
 * node, stop every process it started and write results that parse. Timings are not
 * checked here (CI machines vary); docs/benchmarks.md holds the measured figures.
 *
 * Nodes run from dist/ when it is up to date and from the sources otherwise (--from auto),
 * so that this test never builds.
 */

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { CapacityReport } from "../../bench/capacity-report.js";
import { runScript as run } from "../../harness/processes.js";
import { useTempDir } from "../../harness/vitest-hooks.js";

const root = useTempDir("baton-capacity-smoke-");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("bench: capacity smoke", () => {
  it("bench: the capacity benchmark runs every phase and writes parseable results (tiny sizes)", async () => {
    const out = join(root, "capacity");
    const result = await run("bench/capacity.ts", ["--smoke", "--from", "auto", "--out", out]);
    expect(result.code, result.output).toBe(0);

    for (const file of ["results.json", "results.md", "index.html"]) {
      expect(existsSync(join(out, file)), file).toBe(true);
    }
    expect(readFileSync(join(out, "index.html"), "utf8")).toContain("<svg");
    for (const heading of ["## Memory per node", "## Restart time", "## State transfer"]) {
      expect(result.stdout, heading).toContain(heading);
    }
    const report = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as CapacityReport;

    // Memory: every node of both clusters at 0 keys and after the writes.
    for (const config of ["default snapshots", "no snapshots"] as const) {
      const rows = report.memory.filter((r) => r.config === config);
      // The no-snapshot cluster is filled to a log of 1,000 entries, of which the cluster
      // writes a few itself (a no-op per term, the configuration entries that record the
      // cluster id and the members' incarnations).
      const written = config === "default snapshots" ? 1500 : 990;
      expect(rows.filter((r) => r.keys === 0).length, config).toBe(3);
      expect(rows.filter((r) => r.keys >= written).length, config).toBeGreaterThanOrEqual(3);
      for (const r of rows) {
        expect(r.sample.rssBytes, config).toBeGreaterThan(0);
        expect(r.sample.peakRssBytes, config).toBeGreaterThanOrEqual(r.sample.rssBytes);
      }
      expect(rows.some((r) => r.role === "master" && r.sample.heapUsedBytes !== null)).toBe(true);
      expect(
        rows.some((r) => r.keys > 0 && r.walBytes > 0),
        config,
      ).toBe(true);
    }

    // Restarts: a backup stopped both ways with a log of 1,000 entries, and caught up;
    // with no snapshots (every key), then with the default ones over 100 keys (history).
    const noSnapshots = report.restarts.filter((r) => r.config === "no snapshots");
    const history = report.restarts.filter((r) => r.config === "default snapshots");
    expect(noSnapshots.map((r) => r.signal).sort()).toEqual(["SIGKILL", "SIGTERM"]);
    expect(history.map((r) => r.signal).sort()).toEqual(["SIGKILL", "SIGTERM"]);
    for (const r of history) {
      expect(r.keys, r.signal).toBe(100);
      expect(r.logEntries, r.signal).toBeGreaterThanOrEqual(1000);
      expect(r.caughtUpMs, r.signal).toBeGreaterThan(0);
    }
    for (const r of noSnapshots) {
      expect(r.logEntries, r.signal).toBeGreaterThanOrEqual(1000);
      expect(r.snapshotIndex, r.signal).toBe(0);
      expect(r.storageRecoveredMs, r.signal).not.toBeNull();
      expect(r.listeningMs, r.signal).not.toBeNull();
      expect(r.caughtUpMs, r.signal).toBeGreaterThan(0);
    }

    // State transfer: 2 MiB of values reached the empty node, next to the disk's own rate.
    expect(report.transfers.length).toBe(1);
    const t = report.transfers[0]!;
    expect(t.snapshotBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    expect(t.disk.bytes).toBeGreaterThan(0);
    expect(t.disk.mbPerSecond).toBeGreaterThan(0);
    expect(t.adoptedMbPerSecond).toBeGreaterThan(0);
    expect(t.caughtUpMs).toBeGreaterThan(0);
    // The elections it counted (a healthy cluster holds none; not asserted on a CI machine).
    expect(Number.isInteger(t.elections) && t.elections >= 0).toBe(true);
    expect(typeof t.masterChanged).toBe("boolean");

    // Every node process it started is gone.
    const pids = new Set(report.memory.map((r) => r.sample.pid));
    expect([...pids].filter(alive)).toEqual([]);
  }, 180_000);
});
