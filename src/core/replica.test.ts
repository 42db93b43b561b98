import { describe, expect, it } from "vitest";
import type { Append, Entry, Message } from "../protocol/messages.js";
import { defaultReplicaConfig, type ReplicaConfig } from "./config.js";
import { Prng } from "./prng.js";
import { Replica } from "./replica.js";

const e = (index: number, term: number): Entry => ({
  index,
  term,
  kind: "noop",
  data: new Uint8Array(),
});

function backupWith(entries: Entry[], term: number): Replica {
  return new Replica(defaultReplicaConfig(2, [1, 2, 3]), new Prng(1), {
    hardState: { term, votedFor: null, commitIndex: 0 },
    snapshot: { index: 0, term: 0 },
    entries,
  });
}

/** Node 1 of 1-2-3, master of term 1 with node 2's vote, its Readies taken. */
function electedMaster(config: Partial<ReplicaConfig> = {}): Replica {
  const master = new Replica(
    { ...defaultReplicaConfig(1, [1, 2, 3]), preVote: false, ...config },
    new Prng(1),
  );
  master.campaign();
  master.ready();
  master.step({
    ...{ type: "vote_response", incarnation: 0, from: 2, to: 1, term: 1 },
    ...{ preVote: false, granted: true },
  });
  master.ready();
  return master;
}

/**
 * Node 1 of 1-2-3, restarted on a log compacted into a snapshot at 10 (entries 11 and 12
 * of term 1), master of term 2 with node 2's vote; backup 2, empty, rejected its first
 * append, so the master wants a state transfer to it.
 */
function masterTransferringTo2(): Replica {
  const master = new Replica(
    { ...defaultReplicaConfig(1, [1, 2, 3]), preVote: false },
    new Prng(1),
    {
      hardState: { term: 1, votedFor: 1, commitIndex: 12 },
      snapshot: { index: 10, term: 1 },
      entries: [e(11, 1), e(12, 1)],
    },
  );
  master.campaign();
  master.ready();
  master.step({
    ...{ type: "vote_response", incarnation: 0, from: 2, to: 1, term: 2 },
    ...{ preVote: false, granted: true },
  });
  const first = appendsTo2(master.ready());
  expect(master.role).toBe("master");
  expect(first.map((m) => m.prevIndex)).toEqual([12]);
  // The master probes back to its snapshot, which backup 2 does not hold either.
  master.step(rejection(12, 0));
  expect(appendsTo2(master.ready()).map((m) => m.prevIndex)).toEqual([10]);
  master.step(rejection(10, 0));
  expect(master.ready().transfers).toEqual([2]);
  return master;
}

/** Backup 2's answer "I do not hold `prevIndex`; my log ends at `last`" in term 2. */
function rejection(prevIndex: number, last: number) {
  return {
    ...{ type: "append_response" as const, incarnation: 0, from: 2, to: 1, term: 2 },
    ...{ success: false, index: prevIndex, hintIndex: last, hintTerm: last === 0 ? 0 : 1 },
  };
}

/** The appends to node 2 a Ready sends, at once or after the master's own write. */
const appendsTo2 = (ready: { messages: readonly Message[]; messagesNow: readonly Message[] }) =>
  [...ready.messagesNow, ...ready.messages].filter(
    (m): m is Append => m.type === "append" && m.to === 2,
  );

describe("replica", () => {
  it("replica: a finished state transfer probes from after the snapshot at once, and the backup's answer, whenever its install ends, moves it on", () => {
    const master = masterTransferringTo2();
    master.transferDone(2, 10);
    // A probe without entries: the backup answers it only once it has installed the state.
    expect(appendsTo2(master.ready()).map((m) => [m.prevIndex, m.entries.length])).toEqual([
      [10, 0],
    ]);
    expect(master.peerProgress().get(2)?.state).toBe("probe");
    // A late answer to an append from before the transfer changes nothing; another
    // heartbeat answer lets another probe go, still without entries.
    master.step(rejection(12, 0));
    master.step({
      ...{ type: "heartbeat_response", incarnation: 0, from: 2, to: 1, term: 2 },
      ...{ readContext: 0 },
    });
    expect(appendsTo2(master.ready()).map((m) => [m.prevIndex, m.entries.length])).toEqual([
      [10, 0],
    ]);
    // The backup installed the snapshot and answered: the entries after it go at once.
    master.step({
      ...{ type: "append_response", incarnation: 0, from: 2, to: 1, term: 2 },
      ...{ success: true, index: 10, hintIndex: 0, hintTerm: 0 },
    });
    expect(appendsTo2(master.ready()).map((m) => [m.prevIndex, m.entries.length])).toEqual([
      [10, 3],
    ]);
    expect(master.peerProgress().get(2)).toMatchObject({ state: "replicate", match: 10 });
  });

  it("replica: a backup that does not hold the transferred snapshot after all (restarted before its install was durable) gets another transfer", () => {
    const master = masterTransferringTo2();
    master.transferDone(2, 10);
    master.ready();
    master.step(rejection(10, 0));
    expect(master.ready().transfers).toEqual([2]);
    // A transfer that ends for a snapshot older than the one needed (begun in an earlier
    // term) probes from what the backup holds, which asks for another transfer.
    master.transferDone(2, 9);
    expect(master.ready().transfers).toEqual([2]);
  });

  it("replica: proposals over uncommittedBytesMax are refused as busy until a commit frees room; one alone is always accepted", () => {
    const master = electedMaster({ uncommittedBytesMax: 100 });
    master.persisted(1, 1);
    // Its no-op (index 1) commits with node 2's acknowledgement.
    master.step({
      ...{ type: "append_response", incarnation: 0, from: 2, to: 1, term: 1 },
      ...{ success: true, index: 1, hintIndex: 0, hintTerm: 0 },
    });
    master.ready();
    expect(master.commitIndex).toBe(1);
    // Larger than the bound, but nothing else waits: accepted.
    expect(master.propose(new Uint8Array(150))).toMatchObject({ ok: true, index: 2 });
    expect(master.propose(new Uint8Array(1))).toEqual({ ok: false, reason: "busy" });
    master.ready();
    master.persisted(2, 1);
    master.step({
      ...{ type: "append_response", incarnation: 0, from: 2, to: 1, term: 1 },
      ...{ success: true, index: 2, hintIndex: 0, hintTerm: 0 },
    });
    master.ready();
    expect(master.propose(new Uint8Array(60))).toMatchObject({ ok: true, index: 3 });
    expect(master.propose(new Uint8Array(40))).toMatchObject({ ok: true, index: 4 });
    expect(master.propose(new Uint8Array(1))).toEqual({ ok: false, reason: "busy" });
  });

  it("replica: a master whose switchover target's vote request was lost steps down as handed over when the target's first append arrives", () => {
    const master = electedMaster();
    master.step({
      ...{ type: "append_response", incarnation: 0, from: 2, to: 1, term: 1 },
      ...{ success: true, index: 1, hintIndex: 0, hintTerm: 0 },
    });
    master.ready();
    expect(master.transferMastership(2)).toEqual({ ok: true, target: 2 });
    master.ready();
    master.step({
      ...{ type: "append", incarnation: 0, from: 2, to: 1, term: 2, prevIndex: 1, prevTerm: 1 },
      ...{ entries: [e(2, 2)], commitIndex: 1 },
    });
    const roles = master.ready().events.filter((event) => event.type === "role");
    expect(roles).toMatchObject([{ role: "backup", handover: true }]);
    // Another node's append of a newer term is no handover.
    const other = electedMaster();
    expect(other.transferMastership(2)).toMatchObject({ ok: true });
    other.step({
      ...{ type: "append", incarnation: 0, from: 3, to: 1, term: 2, prevIndex: 1, prevTerm: 1 },
      ...{ entries: [e(2, 2)], commitIndex: 1 },
    });
    expect(other.ready().events.filter((event) => event.type === "role")).toMatchObject([
      { role: "backup", handover: false },
    ]);
  });

  it("replica: a backup commits only what the append verified, not a stale suffix beyond it (Raft §5.3)", () => {
    // Entries 3 and 4 of term 1 are a deposed master's leftovers; master 1 of term 2
    // sends a short append ending at 2 with a commit index of 4.
    const r = backupWith([e(1, 1), e(2, 1), e(3, 1), e(4, 1)], 2);
    r.step({
      type: "append",
      incarnation: 0,
      from: 1,
      to: 2,
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [e(2, 1)],
      commitIndex: 4,
    });
    expect(r.commitIndex).toBe(2);
    expect(r.lastIndex).toBe(4);
  });

  it("replica: a heartbeat never commits beyond the log (a backup that lost its data)", () => {
    const r = backupWith([], 1);
    r.step({
      type: "heartbeat",
      incarnation: 0,
      from: 1,
      to: 2,
      term: 1,
      commitIndex: 9,
      readContext: 0,
    });
    expect(r.commitIndex).toBe(0);
    const answer = r.ready().messages.find((m) => m.type === "append_response");
    expect(answer).toMatchObject({ success: false, index: 9, hintIndex: 0 });
  });

  it("replica: a vote is refused to a candidate whose log is behind (Raft §5.4.1)", () => {
    const r = backupWith([e(1, 1), e(2, 2)], 2);
    r.step({
      type: "vote_request",
      incarnation: 0,
      from: 3,
      to: 2,
      term: 3,
      preVote: false,
      handover: false,
      lastIndex: 5,
      lastTerm: 1,
    });
    const vote = r.ready().messages.find((m) => m.type === "vote_response");
    expect(vote).toMatchObject({ granted: false });
    expect(r.votedFor).toBeNull();
  });

  it("replica: the master's appends may leave before its own write; votes only after", () => {
    const master = new Replica(
      { ...defaultReplicaConfig(1, [1, 2, 3]), preVote: false },
      new Prng(1),
    );
    master.campaign();
    const candidacy = master.ready();
    expect(candidacy.hardState).toMatchObject({ term: 1, votedFor: 1 });
    expect(candidacy.messagesNow).toEqual([]);
    expect(candidacy.messages.filter((m) => m.type === "vote_request")).toHaveLength(2);
    master.step({
      type: "vote_response",
      incarnation: 0,
      from: 2,
      to: 1,
      term: 1,
      preVote: false,
      granted: true,
    });
    const elected = master.ready();
    expect(master.role).toBe("master");
    expect(elected.messagesNow.filter((m) => m.type === "append")).toHaveLength(2);
    // The master counts itself only once `persisted` says its entry is durable.
    master.step({
      type: "append_response",
      incarnation: 0,
      from: 2,
      to: 1,
      term: 1,
      success: true,
      index: 1,
      hintIndex: 0,
      hintTerm: 0,
    });
    expect(master.commitIndex).toBe(0);
    master.persisted(1, 1);
    expect(master.commitIndex).toBe(1);
  });

  it("replica: a commit's news leaves at once, to every backup holding the entry, without waiting for new entries or a tick", () => {
    const master = electedMaster();
    master.persisted(1, 1);
    const ack = (from: number, index: number) =>
      master.step({
        ...{ type: "append_response", incarnation: 0, from, to: 1, term: 1 },
        ...{ success: true, index, hintIndex: 0, hintTerm: 0 },
      });
    ack(2, 1);
    ack(3, 1);
    master.ready();
    const news = () =>
      master
        .ready()
        .messagesNow.filter((m) => m.type === "append")
        .map((m) => [m.to, m.commitIndex, m.entries.length]);
    // A write (a backup's forwarded one, say). Backup 2 holds it first; it commits when the
    // master's own write ends, and backup 2 hears of it then, with no tick and no new entry.
    master.propose(new Uint8Array([1]));
    expect(news()).toEqual([
      [2, 1, 1],
      [3, 1, 1],
    ]);
    ack(2, 2);
    expect(master.commitIndex).toBe(1);
    master.persisted(2, 1);
    expect(master.commitIndex).toBe(2);
    expect(master.hasReady()).toBe(true);
    expect(news()).toEqual([[2, 2, 0]]);
    // Backup 3 answers later: it is told as soon as it holds the committed entry.
    ack(3, 2);
    expect(news()).toEqual([[3, 2, 0]]);
    // Once told, not again.
    expect(master.hasReady()).toBe(false);
  });

  it("replica: a peer's message that breaks a rule is refused and changes nothing", () => {
    const master = electedMaster();
    const before = { role: master.role, term: master.term, last: master.lastIndex };
    const refused = [
      // A second master in this master's own term (a forged hello would send this).
      {
        type: "append",
        incarnation: 0,
        from: 2,
        to: 1,
        term: 1,
        prevIndex: 0,
        prevTerm: 0,
        entries: [],
        commitIndex: 0,
      },
      {
        type: "heartbeat",
        incarnation: 0,
        from: 3,
        to: 1,
        term: 1,
        commitIndex: 0,
        readContext: 0,
      },
      // An acknowledgement past the end of the master's log.
      {
        type: "append_response",
        incarnation: 0,
        from: 2,
        to: 1,
        term: 1,
        success: true,
        index: 99,
        hintIndex: 0,
        hintTerm: 0,
      },
      // Not addressed here, from itself.
      { type: "heartbeat_response", incarnation: 0, from: 2, to: 3, term: 1, readContext: 0 },
      { type: "heartbeat_response", incarnation: 0, from: 1, to: 1, term: 1, readContext: 0 },
    ] as const;
    for (const message of refused) {
      const result = master.step(message);
      expect(result.ok, message.type).toBe(false);
    }
    // A node that is not (or no longer) a member is no fault of the link: ignored.
    const stranger = master.step({
      type: "heartbeat_response",
      incarnation: 0,
      from: 7,
      to: 1,
      term: 1,
      readContext: 0,
    });
    expect(stranger).toMatchObject({ ok: true, ignored: "not_member" });
    expect({ role: master.role, term: master.term, last: master.lastIndex }).toEqual(before);
    expect(master.hasReady()).toBe(false);
  });

  it("replica: a backup refuses a second master in its term and entries above a message's term", () => {
    const r = backupWith([e(1, 1)], 2);
    r.step({
      type: "heartbeat",
      incarnation: 0,
      from: 1,
      to: 2,
      term: 2,
      commitIndex: 0,
      readContext: 0,
    });
    r.ready();
    const second = r.step({
      type: "heartbeat",
      incarnation: 0,
      from: 3,
      to: 2,
      term: 2,
      commitIndex: 0,
      readContext: 0,
    });
    expect(second).toMatchObject({
      ok: false,
      violation: expect.stringContaining("second master"),
    });
    expect(r.masterId).toBe(1);
    const forged = r.step({
      type: "append",
      incarnation: 0,
      from: 1,
      to: 2,
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [e(2, 5)],
      commitIndex: 2,
    });
    expect(forged.ok).toBe(false);
    expect(r.lastIndex).toBe(1);
  });
});
