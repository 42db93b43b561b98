/**
 * Member identity at the core: the schedules in which a node whose data directory was
 * wiped, and that came back with its old command line and `--join`, broke safety before
 * every message named the incarnation of the data directory that sent it. Each schedule
 * runs twice: as it happens now (the wiped directory has a new incarnation, which the
 * configuration does not list, so its votes and acknowledgements are ignored) and as a
 * negative control in which the wiped directory keeps its old identity, which is what a
 * node without identities did; the control must break, or the schedule proves nothing.
 */

import { describe, expect, it } from "vitest";
import { defaultReplicaConfig } from "../../src/core/config.js";
import { Prng } from "../../src/core/prng.js";
import { Replica } from "../../src/core/replica.js";
import type { Append, Entry, Heartbeat, Message } from "../../src/protocol/messages.js";
import { Harness } from "./harness.js";

const text = new TextEncoder();

/** Terms in which two different nodes became master, from the trace. */
function doubleMasters(h: Harness): string[] {
  const masters = new Map<number, Set<number>>();
  for (const line of h.out) {
    const match = /^(\d+) became master at term (\d+)/.exec(line);
    if (match === null) continue;
    const term = Number(match[2]);
    const set = masters.get(term) ?? new Set<number>();
    set.add(Number(match[1]));
    masters.set(term, set);
  }
  return [...masters]
    .filter(([, nodes]) => nodes.size > 1)
    .map(([term, nodes]) => `term ${term}: ${[...nodes].join(" and ")}`);
}

const isVoteRequest = (from: number, to: number) => (m: Message) =>
  m.type === "vote_request" && m.from === from && m.to === to;

/**
 * Five nodes, master 1 in term 1. Node 2 runs for term 2 and node 5 votes for it; that
 * grant, and 2's requests to the others, are slow. Node 5's directory is wiped and it
 * restarts with `--join`; it learns term 1 from three peers and catches up with master 1.
 * Node 3 then runs for term 2 and asks 4 and 5. When the slow messages arrive, 2 has 5's
 * old vote and 1's.
 */
function preWipeVoteSchedule(keepIdentity: boolean): Harness {
  const h = new Harness();
  h.addNodes(5, { checkQuorum: false, preVote: false }, true);
  h.campaign(1);
  h.stabilize();
  h.propose(1, "a");
  h.stabilize();

  h.campaign(2);
  for (const to of [1, 3, 4]) h.holdWhere(isVoteRequest(2, to));
  h.deliver(5);
  h.hold((m) => m.type === "vote_response" && m.from === 5 && m.to === 2);
  h.frozen.add(2);
  h.partition([[2], [5]]);

  h.wipe(5, { keepIdentity });
  h.restart(5, { join: true });
  h.tickAll(80);

  h.partition([[3], [1, 2]]);
  h.campaign(3);
  h.stabilize();

  h.clearHoldRules();
  h.healLink(2, 5);
  h.release((m) => m.from === 2 || m.from === 5);
  h.stabilize();
  return h;
}

/**
 * Five nodes, master 1. Entry "x" reaches only 2 and 5; 5's acknowledgement is slow.
 * Node 5's directory is wiped; it restarts with `--join` and catches up to the commit
 * index, but not to "x". Then its old acknowledgement arrives: were it counted as the
 * new directory's, "x" would be committed on 1, 2 and a node that does not hold it, and
 * with 1 and 2 gone, 3, 4 and 5 elect a master without it.
 */
function staleAckSchedule(keepIdentity: boolean): { h: Harness; committedX: boolean } {
  const h = new Harness();
  h.addNodes(5, { checkQuorum: false, preVote: false, appendEntriesMax: 1 }, true);
  h.campaign(1);
  h.stabilize();
  h.propose(1, "a");
  h.stabilize();

  const carriesX = (m: Message) => m.type === "append" && m.entries.some((e) => e.index === 3);
  h.holdWhere((m) => carriesX(m) && (m.to === 3 || m.to === 4));
  h.holdWhere((m) => m.type === "append_response" && m.from === 5 && m.index === 3);
  h.propose(1, "x");
  h.stabilize();
  h.holdWhere((m) => carriesX(m) && m.to === 5);

  h.wipe(5, { keepIdentity });
  h.restart(5, { join: true });
  h.tickAll(80);
  // The slow acknowledgement of the old directory arrives.
  h.release((m) => m.type === "append_response" && m.from === 5 && m.index === 3);
  h.stabilize();
  const committedX = h.node(1).commitIndex >= 3;

  h.crash(1);
  h.crash(2);
  h.clearHoldRules();
  h.held = [];
  h.campaign(3);
  h.stabilize();
  h.tickAll(200);
  return { h, committedX };
}

/** Whether some running master's log lacks "x" at index 3. */
function lostX(h: Harness): boolean {
  for (const id of [3, 4, 5]) {
    const r = h.nodes.get(id)!;
    if (r.role !== "master") continue;
    const entry = r.entryAt(3);
    if (entry === undefined || new TextDecoder().decode(entry.data) !== "x") return true;
  }
  return false;
}

describe("identity", () => {
  it("identity: a vote granted before a wipe is not counted again by the new directory (5 nodes)", () => {
    const h = preWipeVoteSchedule(false);
    expect(doubleMasters(h)).toEqual([]);
    expect(h.ignored.some((line) => line.includes("node 5 incarnation 52"))).toBe(true);
  });

  it("identity: negative control: a wiped directory that keeps its identity votes twice in a term", () => {
    const h = preWipeVoteSchedule(true);
    expect(doubleMasters(h)).toEqual(["term 2: 3 and 2"]);
  });

  it("identity: an acknowledgement from the wiped directory is not the new one's (5 nodes)", () => {
    const { h, committedX } = staleAckSchedule(false);
    expect(committedX).toBe(true);
    expect(lostX(h)).toBe(false);
    expect(h.ignored.some((line) => line.includes("node 5 incarnation 52"))).toBe(true);
  });

  it("identity: negative control: with the old identity a committed entry is lost", () => {
    const { h, committedX } = staleAckSchedule(true);
    expect(committedX).toBe(true);
    expect(lostX(h)).toBe(true);
  });

  // A wiped node followed a stale master (term 1) that sent it a divergent entry; then
  // the master of term 2, which believes node 5 holds its entries up to 2 (an earlier
  // incarnation of 5 acknowledged them), sends a heartbeat with commit index 2.
  it("identity: a heartbeat commits only what this node confirmed with its master", () => {
    const config = defaultReplicaConfig(5, [1, 2, 3, 4, 5]);
    const r = new Replica(config, new Prng(1));
    const entry = (index: number, term: number, data: string): Entry => ({
      index,
      term,
      kind: data === "" ? "noop" : "command",
      data: text.encode(data),
    });
    const stale: Append = {
      type: "append",
      incarnation: 0,
      from: 2,
      to: 5,
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1, ""), entry(2, 1, "y")],
      commitIndex: 0,
    };
    expect(r.step(stale).ok).toBe(true);
    r.ready();
    const heartbeat: Heartbeat = {
      type: "heartbeat",
      incarnation: 0,
      from: 3,
      to: 5,
      term: 2,
      commitIndex: 2,
      readContext: 0,
    };
    r.step(heartbeat);
    expect(r.commitIndex).toBe(0);
    const answer = r.ready().messages.find((m) => m.type === "append_response");
    expect(answer).toMatchObject({ success: false });
    // The master of term 2 starts over and replaces the divergent entry.
    r.step({
      type: "append",
      incarnation: 0,
      from: 3,
      to: 5,
      term: 2,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1, ""), entry(2, 2, "z")],
      commitIndex: 2,
    });
    expect(r.commitIndex).toBe(2);
    expect(new TextDecoder().decode(r.entryAt(2)!.data)).toBe("z");
  });
});
