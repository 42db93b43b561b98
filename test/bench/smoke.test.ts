/**
 * CI smoke run of both benchmarks (`npm run bench` and `npm run bench:failover`) with a
 * tiny duration, so that they never rot: each must start its clusters, drive load, stop
 * every process and write results that parse, with counts above zero. Timings are not
 * checked here (CI machines vary); docs/benchmarks.md holds the measured figures.
 *
 * Nodes run from dist/ when it is up to date and from the sources otherwise (--from auto),
 * so that this test never builds. etcd is compared in the throughput run only when it is
 * already installed (the test never installs anything); the fail-over run is Baton's
 * alone, to keep the test short on two cores, and skips bringing the signalled node back.
 * The partition fault needs root and iptables (bench/partition.ts): without them its case
 * is skipped.
 */

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { partitionUnsupported } from "../../bench/partition.js";
import { runScript as run } from "../../harness/processes.js";
import { useTempDir } from "../../harness/vitest-hooks.js";
import { netnsUnsupported } from "../../src/chaos/hosts.js";
import { pidAlive } from "../../src/chaos/process-registry.js";

const etcdInstalled = spawnSync("etcd", ["--version"]).status === 0;
const compare = etcdInstalled ? ["--compare", "etcd"] : [];
const root = useTempDir("baton-bench-smoke-");

interface BenchResults {
  runs: { system: string; result: { ops: number; errors: number } }[];
  comparisons: {
    baton: { opsPerSecond: number; nodesCpuUsPerOp: number | null } | null;
    throughputRatio: number | null;
  }[];
}

interface FailoverResults {
  systems: {
    system: string;
    rounds: {
      fault: string;
      windowMs: number;
      partition?: { stoppedServingMs: number | null; isolatedAcks: number };
      rolling?: { order: number[]; extraTerms: number; unaskedCandidacies: number | null };
    }[];
    writes: { acknowledged: number; lost: string[]; duplicated: string[] };
  }[];
}

describe("bench: smoke", () => {
  it("bench: throughput (spread over every node, so through backups too) and fail-over (kill, switchover) benchmarks run and write parseable results (tiny duration)", async () => {
    const benchOut = join(root, "bench");
    const failoverOut = join(root, "failover");
    const switchoverOut = join(root, "switchover");
    const [bench, failover, switchover] = await Promise.all([
      run("bench/main.ts", [
        ...["--smoke", "--from", "auto", "--via", "all", "--out", benchOut],
        ...compare,
      ]),
      run("bench/failover.ts", ["--smoke", "--from", "auto", "--out", failoverOut]),
      run("bench/failover.ts", [
        ...["--smoke", "--from", "auto", "--faults", "switchover", "--out", switchoverOut],
      ]),
    ]);
    expect(bench.code, bench.output).toBe(0);
    expect(failover.code, failover.output).toBe(0);
    expect(switchover.code, switchover.output).toBe(0);

    for (const file of ["results.json", "results.md", "index.html"]) {
      expect(existsSync(join(benchOut, file)), file).toBe(true);
    }
    const results = JSON.parse(
      readFileSync(join(benchOut, "results.json"), "utf8"),
    ) as BenchResults;
    const systems = etcdInstalled ? ["baton", "etcd"] : ["baton"];
    for (const system of systems) {
      const mine = results.runs.filter((r) => r.system === system);
      expect(mine.length, system).toBeGreaterThan(0);
      for (const r of mine) expect(r.result.ops, system).toBeGreaterThan(0);
    }
    expect(results.comparisons.every((c) => (c.baton?.opsPerSecond ?? 0) > 0)).toBe(true);
    // The nodes' CPU time per request is read from /proc for every case.
    expect(results.comparisons.every((c) => (c.baton?.nodesCpuUsPerOp ?? 0) > 0)).toBe(true);
    expect(readFileSync(join(benchOut, "results.md"), "utf8")).toContain("nodes CPU µs/op");
    if (etcdInstalled)
      expect(results.comparisons.every((c) => c.throughputRatio !== null)).toBe(true);
    expect(readFileSync(join(benchOut, "index.html"), "utf8")).toContain("<svg");

    for (const out of [failoverOut, switchoverOut]) {
      const fo = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as FailoverResults;
      expect(fo.systems.map((s) => s.system)).toEqual(["baton"]);
      for (const s of fo.systems) {
        expect(s.rounds.length, s.system).toBe(1);
        expect(s.writes.acknowledged, s.system).toBeGreaterThan(0);
        expect(s.writes.lost, s.system).toEqual([]);
        expect(s.writes.duplicated, s.system).toEqual([]);
      }
    }
  }, 180_000);

  it("bench: the throughput benchmark sends its load through wrk, a C load generator, to a backup (--generator wrk --via backup)", async () => {
    const out = join(root, "wrk");
    const bench = await run("bench/main.ts", [
      ...["--smoke", "--from", "auto", "--generator", "wrk", "--via", "backup", "--out", out],
    ]);
    expect(bench.code, bench.output).toBe(0);
    expect(bench.output).toContain("by wrk");
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
    expect(results.runs.length).toBeGreaterThan(0);
    for (const r of results.runs) {
      expect(r.result.ops, bench.output).toBeGreaterThan(0);
      expect(r.result.errors, bench.output).toBe(0);
    }
  }, 120_000);

  it("bench: the fail-over benchmark restarts every node in turn with SIGTERM through the client library (--faults rolling --writer client)", async () => {
    const out = join(root, "rolling");
    const failover = await run("bench/failover.ts", [
      ...["--smoke", "--from", "auto", "--faults", "rolling", "--writer", "client"],
      ...["--out", out],
    ]);
    expect(failover.code, failover.output).toBe(0);
    const fo = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as FailoverResults;
    for (const s of fo.systems) {
      expect(s.rounds.map((r) => r.fault)).toEqual(["rolling"]);
      expect(s.rounds[0]?.rolling?.order.length).toBe(3);
      expect(s.writes.acknowledged).toBeGreaterThan(0);
      expect(s.writes.lost).toEqual([]);
      expect(s.writes.duplicated).toEqual([]);
    }
  }, 120_000);

  it.skipIf(partitionUnsupported() !== null)(
    "bench: the fail-over benchmark cuts the master off, heals, and removes its iptables chains",
    async () => {
      const out = join(root, "partition");
      const failover = await run("bench/failover.ts", [
        ...["--smoke", "--from", "auto", "--faults", "partition", "--out", out],
      ]);
      expect(failover.code, failover.output).toBe(0);
      const fo = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as FailoverResults;
      expect(fo.systems.map((s) => s.system)).toEqual(["baton"]);
      for (const s of fo.systems) {
        expect(s.rounds.map((r) => r.fault)).toEqual(["partition"]);
        // Check-quorum: the isolated master stepped down, and acknowledged nothing new.
        expect(s.rounds[0]?.partition?.stoppedServingMs, failover.output).not.toBeNull();
        expect(s.rounds[0]?.partition?.isolatedAcks).toBe(0);
        expect(s.writes.acknowledged).toBeGreaterThan(0);
        expect(s.writes.lost).toEqual([]);
        expect(s.writes.duplicated).toEqual([]);
      }
      // No chain of a finished run is left behind.
      const listing = spawnSync("iptables", ["-w", "-S"], { encoding: "utf8" }).stdout;
      const left = [...listing.matchAll(/^-N BATON-PART-(\d+)/gm)].filter(
        ([, pid]) => !pidAlive(Number(pid)),
      );
      expect(left.map(([chain]) => chain)).toEqual([]);
    },
    120_000,
  );

  it.skipIf(netnsUnsupported() !== null)(
    "bench: the fail-over benchmark takes the master's host off the network (--hosts netns --faults silent) and removes the hosts",
    async () => {
      const out = join(root, "silent");
      const failover = await run("bench/failover.ts", [
        ...["--smoke", "--from", "auto", "--hosts", "netns", "--faults", "silent", "--out", out],
      ]);
      expect(failover.code, failover.output).toBe(0);
      const fo = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as FailoverResults;
      for (const s of fo.systems) {
        expect(s.rounds.map((r) => r.fault)).toEqual(["silent"]);
        expect(s.writes.acknowledged).toBeGreaterThan(0);
        expect(s.writes.lost).toEqual([]);
        expect(s.writes.duplicated).toEqual([]);
      }
      // No namespace of a finished run is left behind.
      const namespaces = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
      const left = [...namespaces.matchAll(/^baton-(\d+)-h\d+/gm)].filter(
        ([, pid]) => !pidAlive(Number(pid)),
      );
      expect(left.map(([name]) => name)).toEqual([]);
    },
    120_000,
  );
});
