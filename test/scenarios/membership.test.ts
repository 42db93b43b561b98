/**
 * Membership changes at the core: one member at a time through the log, learners that
 * neither vote nor count, promotion only once caught up, and the refusals that change
 * nothing (a change in flight, before the master committed an entry of its term, the
 * master removing itself, a removal that leaves no live majority).
 */

import { describe, expect, it } from "vitest";
import { Harness } from "./harness.js";

function cluster(count: number, checkQuorum = true): Harness {
  const h = new Harness();
  h.addNodes(count, { checkQuorum }, true);
  h.campaign(1);
  h.stabilize();
  h.propose(1, "a");
  h.stabilize();
  return h;
}

describe("membership", () => {
  it("membership: a learner replaying the log across several appends is not removed by a configuration from before its addition (two entries per append)", () => {
    const h = new Harness();
    h.addNodes(3, { appendEntriesMax: 2 }, true);
    h.campaign(1);
    h.stabilize();
    // A configuration that does not list node 5 (node 4's addition), then more entries
    // than one append carries, then node 5's addition.
    h.addLearner(1, 4);
    h.stabilize();
    for (const text of ["a", "b", "c", "d", "e"]) h.propose(1, text);
    h.stabilize();
    h.addLearner(1, 5);
    h.stabilize();
    h.join(5, 1);
    h.tickAll(20);
    expect(h.out.filter((l) => l.startsWith("5 removed"))).toEqual([]);
    expect(h.node(5).commitIndex).toBe(h.node(1).commitIndex);
    // Removed for real, it says so.
    h.change(1, { type: "remove", id: 5 });
    h.tickAll(10);
    expect(h.out.filter((l) => l.startsWith("5 removed"))).toHaveLength(1);
  });

  it("membership: a learner catches up, counts for nothing until promoted, then votes", () => {
    const h = cluster(3);
    expect(h.addLearner(1, 4)).toBe("1 logged the change at 3");
    h.stabilize();
    // Not started yet: promoting it is refused, nothing changes.
    expect(h.change(1, { type: "promote", id: 4 })).toBe("1 refused: not_caught_up");
    h.join(4, 1);
    h.tickAll(10);
    expect(h.status(4)).toBe("4: backup (learner) term 1 master 1 commit 3 last 3");
    // A learner does not count: with 2 and 3 cut off, nothing commits.
    h.partition([
      [1, 4],
      [2, 3],
    ]);
    h.propose(1, "b");
    h.stabilize();
    expect(h.node(1).commitIndex).toBe(3);
    h.heal();
    h.tickAll(10);
    expect(h.change(1, { type: "promote", id: 4 })).toBe("1 logged the change at 5");
    h.tickAll(10);
    expect(h.node(1).members.map((m) => [m.id, m.voter])).toEqual([
      [1, true],
      [2, true],
      [3, true],
      [4, true],
    ]);
    // Now a voter: with 2 and 3 cut off, 1 and 4 are not a majority of four either.
    h.partition([
      [1, 4],
      [2, 3],
    ]);
    h.propose(1, "c");
    h.stabilize();
    expect(h.node(1).commitIndex).toBe(5);
    h.heal();
    h.tickAll(10);
    expect(h.node(1).commitIndex).toBe(6);
    expect(h.node(4).isVoter).toBe(true);
  });

  it("membership: one change at a time, and only after the master committed an entry of its term", () => {
    const h = cluster(3, false);
    h.addLearner(1, 4);
    // The add is not committed yet (nothing delivered): a second change waits.
    expect(h.change(1, { type: "remove", id: 3 })).toBe("1 refused: in_progress");
    h.tickAll(6); // the commit of the add reaches every node
    // A new master refuses changes until its own first entry is committed.
    h.crash(1);
    h.campaign(2);
    for (let round = 0; round < 10 && h.node(2).role !== "master"; round++) h.deliver();
    expect(h.node(2).role).toBe("master");
    expect(h.change(2, { type: "remove", id: 3 })).toBe("2 refused: not_ready");
    h.stabilize();
    expect(h.change(2, { type: "remove", id: 1 })).toBe("2 logged the change at 5");
  });

  it("membership: the master does not remove itself, the last voter stays, a removal keeps a live majority", () => {
    const h = cluster(3);
    expect(h.change(1, { type: "remove", id: 1 })).toBe("1 refused: is_master");
    h.crash(3);
    h.tickAll(40);
    // 3 is silent: removing 2 would leave 1 and 3, of which only 1 answers.
    expect(h.change(1, { type: "remove", id: 2 })).toBe("1 refused: no_quorum");
    expect(h.change(1, { type: "remove", id: 3 })).toBe("1 logged the change at 3");
    h.tickAll(5);
    expect(h.change(1, { type: "remove", id: 2 })).toBe("1 logged the change at 4");
    h.tickAll(5);
    expect(h.node(1).members.map((m) => m.id)).toEqual([1]);
    expect(h.change(1, { type: "remove", id: 1 })).toBe("1 refused: last_voter");
  });

  it("membership: a removed member learns it from the log and says so", () => {
    const h = cluster(3);
    h.change(1, { type: "remove", id: 3 });
    h.tickAll(10);
    expect(h.out.filter((l) => l.includes("removed"))).toEqual([
      "3 removed: the configuration committed at index 3 no longer lists node 3",
    ]);
    expect(h.node(1).peerProgress().has(3)).toBe(false);
  });

  it("membership: an added member's address or id must be new", () => {
    const h = cluster(3);
    expect(
      h.change(1, {
        type: "add",
        member: { id: 2, incarnation: 5, voter: false, peerAddress: "x:1", httpUrl: "" },
      }),
    ).toBe("1 refused: exists");
    expect(
      h.change(1, {
        type: "add",
        member: { id: 7, incarnation: 5, voter: false, peerAddress: "n1:7000", httpUrl: "" },
      }),
    ).toBe("1 refused: exists");
    expect(
      h.change(1, {
        type: "add",
        member: { id: 7, incarnation: 0, voter: false, peerAddress: "x:1", httpUrl: "" },
      }),
    ).toBe("1 refused: bad_request");
  });
  it("membership: a member removed and added back is a new directory to the master (command-line incarnations)", () => {
    const h = new Harness();
    h.addNodes(3, {}, true, false);
    h.campaign(1);
    h.stabilize();
    h.propose(1, "a");
    h.stabilize();
    h.tickAll(5);
    // Node 3's directory is lost; the master still knows what the old one held.
    h.wipe(3);
    h.change(1, { type: "remove", id: 3 });
    h.tickAll(5);
    h.addLearner(1, 3);
    h.tickAll(5);
    // Not started: what the master knew of the old directory does not promote the new one.
    expect(h.change(1, { type: "promote", id: 3 })).toBe("1 refused: not_caught_up");
    expect(h.node(1).peerProgress().get(3)?.match).toBe(0);
    h.join(3, 1);
    h.tickAll(10);
    expect(h.change(1, { type: "promote", id: 3 })).toBe("1 logged the change at 5");
  });

  it("membership: a TimeoutNow that reaches its target after the target was removed starts no election (whole-node seed 917249)", () => {
    const h = cluster(3);
    // The master hands over to node 3, but every TimeoutNow is delayed in the network.
    h.holdWhere((m) => m.type === "timeout_now");
    expect(h.node(1).transferMastership(3)).toEqual({ ok: true, target: 3 });
    h.process(1);
    h.tickAll(80);
    expect(h.held.length, "TimeoutNow sent and held").toBeGreaterThan(0);
    expect(h.node(1).role, "the switchover lapsed").toBe("master");
    // Node 3 is removed: it holds the configuration without it, and is cut off before it
    // learns that the configuration committed (so it is still running, a backup of 1).
    expect(h.change(1, { type: "remove", id: 3 })).toMatch(/^1 logged the change at \d+$/);
    h.deliver(3);
    h.cutOneWay(1, 3);
    h.stabilize();
    expect(h.node(1).changeInProgress, "the removal committed").toBe(false);
    expect(h.node(3).isVoter).toBe(false);
    expect(h.status(3)).toMatch(/^3: backup .* master 1 /);
    // A TimeoutNow arrives late: node 3 is not a voter, so it does not run.
    const before = h.out.length;
    h.clearHoldRules();
    h.release();
    h.healLink(1, 3);
    expect(h.deliver(3, (m) => m.type === "timeout_now")).toBeGreaterThan(0);
    expect(h.out.slice(before)).toEqual([]);
    expect(h.node(1).role).toBe("master");
  });
});
