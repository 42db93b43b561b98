/**
 * The faults verdict: faults drawn but skipped are recorded with their reason rather than
 * dropped, unfinished ones are counted, kinds never drawn are named, and a kind skipped
 * every time it was drawn fails the verdict. The schedule runs against stand-ins (no
 * processes) on a campaign clock that each reading moves on by seconds.
 */

import { describe, expect, it } from "vitest";
import type { CampaignMembers } from "../../src/chaos/members.js";
import {
  checkFaults,
  type FaultSkip,
  type FaultWindow,
  type NemesisContext,
  runNemeses,
} from "../../src/chaos/nemesis.js";
import type { Network } from "../../src/chaos/network.js";
import type { ChaosNode } from "../../src/chaos/processes.js";
import { Prng } from "../../src/core/prng.js";

/** A context of stand-ins: every member of the campaign a test does not care about. */
function standIns(clock: () => number): NemesisContext {
  return {
    prng: new Prng(1),
    nodes: [1, 2, 3].map((id) => ({ id })) as unknown as ChaosNode[],
    network: {} as Network,
    now: clock,
    currentMaster: () => 1,
    healthy: () => false,
    restart: () => {},
    members: {} as CampaignMembers,
    unaskedCandidacies: () => 0,
    stallsPastElection: () => 0,
    probeWrite: async () => ({ acknowledged: false, answer: "503 ERR_NO_MASTER" }),
    operatorProblems: [],
    windows: [],
    skips: [],
    faultMs: [1, 1],
    quietMs: [0, 0],
  };
}

function window(kind: FaultWindow["kind"], unfinished?: string): FaultWindow {
  return { kind, start: 0, end: 1, nodes: [1], detail: "", ...(unfinished ? { unfinished } : {}) };
}

describe("chaos faults", () => {
  it("faults: a wipe drawn while the cluster never gets healthy is recorded as skipped, and skipped every time fails the verdict", async () => {
    let clock = 0;
    const windows: FaultWindow[] = [];
    const skips: FaultSkip[] = [];
    const context: NemesisContext = {
      ...standIns(() => clock),
      // Every reading moves the campaign on by 5 s, so a 10 s wait ends after a few.
      now: () => (clock += 5000),
      windows,
      skips,
    };
    await runNemeses(context, ["wipe-restart"], 120_000);
    expect(windows).toEqual([]);
    expect(skips.length).toBeGreaterThan(2);
    expect(skips[0]).toMatchObject({
      kind: "wipe-restart",
      reason: "the cluster was not healthy within 10000 ms",
    });
    const verdict = checkFaults(["wipe-restart"], windows, skips);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toContain(
      `wipe-restart was drawn ${skips.length} times and skipped every time: the cluster was not healthy within 10000 ms`,
    );
  });

  it("faults: a cut proves itself: a write through the cut-off node acknowledged fails the verdict, refused passes", async () => {
    const run = async (acknowledged: boolean) => {
      let clock = 0;
      const windows: FaultWindow[] = [];
      const probed: number[] = [];
      const cuts: string[] = [];
      await runNemeses(
        {
          ...standIns(() => clock),
          network: {
            cut: async (a: number, b: number) => {
              cuts.push(`${a}>${b}`);
            },
            healAll: async () => {},
          } as unknown as Network,
          // Each reading moves the campaign on by 50 ms: sleeps of 0 ms keep the test fast.
          now: () => (clock += 50),
          probeWrite: async (id) => {
            probed.push(id);
            return { acknowledged, answer: acknowledged ? "200" : "no answer (TimeoutError)" };
          },
          windows,
          faultMs: [1500, 1500],
          quietMs: [0, 0],
        },
        ["isolate-master"],
        1700,
      );
      return { verdict: checkFaults(["isolate-master"], windows, []), windows, probed, cuts };
    };
    const refused = await run(false);
    expect(refused.cuts).toEqual(["1>2", "2>1", "1>3", "3>1"]);
    expect(refused.probed).toEqual([1]);
    expect(refused.verdict.ok).toBe(true);
    expect(refused.windows[0]!.detail).toMatch(
      /a write through n1 at \d+ ms: no answer \(TimeoutError\), as a cut-off node must/,
    );
    const missed = await run(true);
    expect(missed.verdict.ok).toBe(false);
    expect(missed.verdict.problems?.[0]).toMatch(
      /^isolate-master at [0-9.]+ s: n1 acknowledged a write sent through it alone \d+ ms into the cut: its links were not cut$/,
    );
  });

  it("faults: a campaign in which no fault ran fails: its verdicts are about a cluster left alone", () => {
    const verdict = checkFaults(["split", "kill-master"], [], []);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toMatch(/^no fault ran/);
  });

  it("faults: a rolling restart with an election nobody asked for fails (a stopped master did not hand over), unless a node logged a stall past the election timeout", async () => {
    let windows: FaultWindow[] = [];
    const run = async (unasked: number, stalls = 0) => {
      windows = [];
      const stopped: number[] = [];
      let clock = 0;
      const nodes = [1, 2, 3].map((id) => ({
        id,
        stop: async () => {
          stopped.push(id);
        },
      }));
      await runNemeses(
        {
          ...standIns(() => clock),
          nodes: nodes as unknown as ChaosNode[],
          now: () => (clock += 50),
          healthy: () => true,
          unaskedCandidacies: () => unasked,
          stallsPastElection: () => stalls,
          windows,
          faultMs: [1000, 1000],
          quietMs: [0, 0],
        },
        ["rolling-restart"],
        1200,
      );
      expect(stopped.sort()).toEqual([1, 2, 3]);
      return checkFaults(["rolling-restart"], windows, []);
    };
    expect((await run(0)).ok).toBe(true);
    const verdict = await run(2);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toContain(
      "2 candidacies no master asked for: a stopped master did not hand over",
    );
    // A machine that starved a node past the election timeout explains the election.
    const excused = await run(1, 1);
    expect(excused.ok).toBe(true);
    expect(windows[0]?.detail).toContain(
      "unasked candidacies: 1; event-loop stalls past the election timeout: 1",
    );
  });

  it("faults: skipped, unfinished and never-drawn kinds are reported without failing (a short campaign draws few)", () => {
    const windows = [window("split"), window("switchover", "not done (ERR_CONFLICT)")];
    const skips: FaultSkip[] = [
      { kind: "pause-master", at: 5, reason: "n1, the master, was stopped" },
      { kind: "replace", at: 9, reason: "the cluster was not healthy within 10000 ms" },
      { kind: "replace", at: 19, reason: "the cluster was not healthy within 10000 ms" },
    ];
    const verdict = checkFaults(
      ["split", "switchover", "pause-master", "replace", "flap"],
      windows,
      skips,
    );
    expect(verdict).toEqual({
      ok: true,
      detail:
        "ran: split 1; skipped: pause-master 1 (n1, the master, was stopped), " +
        "replace 2 (the cluster was not healthy within 10000 ms); not finished: switchover 1; " +
        "never drawn: flap",
    });
    // Skipped three times and never run: the campaign could not make that fault at all.
    const third = { kind: "replace" as const, at: 29, reason: "the cluster was not healthy" };
    expect(checkFaults(["replace"], windows, [...skips, third]).ok).toBe(false);
    // Once it ran, skips are only counted.
    expect(checkFaults(["replace"], [window("replace")], [...skips, third]).ok).toBe(true);
  });

  it("faults: a master fault with no master known is skipped, not made on a node drawn at random", async () => {
    let clock = 0;
    const windows: FaultWindow[] = [];
    const skips: FaultSkip[] = [];
    const signals: string[] = [];
    const nodes = [1, 2, 3].map((id) => ({
      id,
      state: "running",
      killIfRunning: async () => {
        signals.push(`SIGKILL n${id}`);
        return true;
      },
      signal: (signal: string) => signals.push(`${signal} n${id}`),
    }));
    await runNemeses(
      {
        ...standIns(() => clock),
        nodes: nodes as unknown as ChaosNode[],
        now: () => (clock += 10),
        currentMaster: () => null,
        windows,
        skips,
      },
      ["kill-master", "pause-master", "isolate-master"],
      200,
    );
    expect(signals).toEqual([]);
    expect(windows).toEqual([]);
    expect(skips.length).toBeGreaterThan(2);
    for (const skip of skips) expect(skip.reason).toBe("no master was known");
    const verdict = checkFaults(["kill-master", "pause-master", "isolate-master"], windows, skips);
    expect(verdict.ok).toBe(false);
    expect(verdict.detail).toMatch(/^ran: none; skipped: /);
  });

  it("faults: a kill or pause of a node that is not running is skipped, and a kill that found the node gone did not finish", async () => {
    let clock = 0;
    const windows: FaultWindow[] = [];
    const skips: FaultSkip[] = [];
    const killed: number[] = [];
    // n1 is the master and stopped; n2 and n3 run, but n3's process is gone by the time
    // the signal is sent (it exited on its own).
    const nodes = [1, 2, 3].map((id) => ({
      id,
      state: id === 1 ? "stopped" : "running",
      killIfRunning: async () => {
        if (id !== 2) return false;
        killed.push(id);
        return true;
      },
      signal: () => {
        throw new Error("no signal may go to a stopped node");
      },
    }));
    await runNemeses(
      {
        ...standIns(() => clock),
        nodes: nodes as unknown as ChaosNode[],
        now: () => (clock += 10),
        windows,
        skips,
      },
      ["kill-master", "pause-master", "kill-any"],
      400,
    );
    expect(skips.filter((s) => s.kind !== "kill-any").length).toBeGreaterThan(0);
    for (const skip of skips) expect(skip.reason).toMatch(/^n1(, the master,)? was stopped$/);
    expect(windows.every((w) => w.kind === "kill-any")).toBe(true);
    const byNode = (id: number) => windows.filter((w) => w.nodes[0] === id);
    expect(byNode(2).length).toBeGreaterThan(0);
    expect(byNode(3).length).toBeGreaterThan(0);
    for (const w of byNode(2)) expect(w.unfinished).toBeUndefined();
    for (const w of byNode(3)) {
      expect(w.unfinished).toBe("n3 was not running when SIGKILL was sent: nothing was killed");
    }
    expect(killed.length).toBe(byNode(2).length);
  });

  it("faults: a window that did not finish is not counted as run: a kind that never finished, drawn three times, fails", () => {
    const refused = "not done (ERR_INVALID_INPUT: to: not a member)";
    const windows = [1, 2, 3].map(() => window("switchover", refused));
    const verdict = checkFaults(["switchover", "split"], [...windows, window("split")], []);
    expect(verdict.ok).toBe(false);
    expect(verdict.detail).toBe("ran: split 1; not finished: switchover 3");
    expect(verdict.problems).toEqual([
      `switchover was drawn 3 times and never ran: not finished 3 (${refused})`,
    ]);
    // Only unfinished windows: no fault ran at all.
    expect(checkFaults(["switchover"], windows.slice(0, 1), []).problems?.[0]).toMatch(
      /^no fault ran/,
    );
  });
});
