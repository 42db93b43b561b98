/**
 * CI smoke run of `npm run bench:idle` for a few seconds (the demo through tsx, an event
 * stream open to every node instead of a browser), so that it never rots: it must start
 * the demo, agree on a master, sample every node, stop the demo's whole process group and
 * write results that parse. The hour-long figure is in docs/benchmarks.md.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freeConsecutivePorts, isFree, runScript as run } from "../../harness/processes.js";
import { useTempDir } from "../../harness/vitest-hooks.js";

const root = useTempDir("baton-bench-idle-smoke-");

describe("bench: idle smoke", () => {
  it("bench: the idle demo check watches the demo's nodes and stops them (6 s)", async () => {
    const out = join(root, "idle");
    const [peer, http] = [await freeConsecutivePorts(3), await freeConsecutivePorts(3)];
    const result = await run("bench/idle.ts", [
      "--duration",
      "6s",
      "--no-browser",
      "--peer-port",
      String(peer),
      "--http-port",
      String(http),
      "--out",
      out,
    ]);
    // A CI machine may be loaded enough for an election: the exit code is not asserted.
    expect(result.output).toContain("s of the idle demo");
    const json = JSON.parse(readFileSync(join(out, "idle.json"), "utf8")) as {
      durationS: number;
      electionsStarted: number;
      firstMaster: { id: number; term: number };
      longestLoopDelayMsByNode: Record<string, number>;
    };
    expect(json.durationS).toBeGreaterThanOrEqual(6);
    expect(json.firstMaster.term).toBeGreaterThanOrEqual(1);
    expect(Object.keys(json.longestLoopDelayMsByNode).length).toBe(3);
    // Every node's log is kept for a post-mortem, with its role changes in it.
    const logs = ["n1.log", "n2.log", "n3.log"].map((name) =>
      readFileSync(join(out, "logs", name), "utf8"),
    );
    expect(logs.some((text) => text.includes('"event":"role"'))).toBe(true);
    // The demo's nodes are gone: their HTTP ports are free again.
    for (let i = 0; i < 3; i++) expect(await isFree(http + i), `port ${http + i}`).toBe(true);
  }, 120_000);
});
