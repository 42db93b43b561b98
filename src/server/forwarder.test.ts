import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Entry, NodeId } from "../protocol/messages.js";
import type { Role } from "../protocol/status.js";
import { realClock } from "../shared/clock.js";
import { BusyError, IndeterminateError, NoMasterError, TimeoutError } from "../shared/errors.js";
import { FORWARD_HOLD_MS, Forwarder, type ForwarderHost } from "./forwarder.js";

/**
 * The backup's side of forwarding against a scripted node: what the caller is told in each
 * case must follow what the backup can prove about whether the command was applied.
 */

interface Sent {
  readonly kind: "proposal" | "read";
  readonly to: NodeId;
  readonly requestId: number;
}

class FakeHost implements ForwarderHost {
  readonly id = 2;
  readonly logger = pino({ level: "silent" });
  readonly clock = realClock;
  readonly requestTimeoutMs = 5000;
  currentRole: Role = "backup";
  master: NodeId | null = 1;
  currentTerm = 1;
  applied = 0;
  reachable = true;
  readonly sent: Sent[] = [];
  localProposals = 0;
  role = (): Role => this.currentRole;
  acceptsWrites = (): boolean => true;
  masterId = (): NodeId | null => this.master;
  term = (): number => this.currentTerm;
  appliedIndex = (): number => this.applied;
  sendProposal = (to: NodeId, requestId: number): boolean => {
    if (this.reachable) this.sent.push({ kind: "proposal", to, requestId });
    return this.reachable;
  };
  sendRead = (to: NodeId, requestId: number): boolean => {
    if (this.reachable) this.sent.push({ kind: "read", to, requestId });
    return this.reachable;
  };
  proposeLocally = async (): Promise<unknown> => {
    this.localProposals++;
    return "local";
  };
  readLocally = async (): Promise<void> => {};
}

function command(index: number, term: number): Entry {
  return { index, term, kind: "command", data: new Uint8Array() };
}

function proposed(f: Forwarder, sent: Sent, index: number, entryTerm: number, from = sent.to) {
  f.onProposalResponse({
    type: "forward_proposal_response",
    from,
    to: 2,
    term: entryTerm,
    requestId: sent.requestId,
    outcome: "proposed",
    index,
    entryTerm,
  });
}

/** `from` answers send `requestId` with not_master, from its term `term`. */
function notMaster(f: Forwarder, from: NodeId, term: number, requestId: number) {
  f.onProposalResponse({
    type: "forward_proposal_response",
    from,
    to: 2,
    term,
    requestId,
    outcome: "not_master",
    index: 0,
    entryTerm: 0,
  });
}

/** Lets the turn of the event loop end: the forwarder sends what it was asked in it. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

let host: FakeHost;
let forwarder: Forwarder;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  host = new FakeHost();
  forwarder = new Forwarder(host);
});

afterEach(() => {
  vi.useRealTimers();
});

describe("forwarder", () => {
  it("forwarding: the requests of one turn of the event loop leave together when it ends", async () => {
    const results = [forwarder.propose(Uint8Array.of(1)), forwarder.propose(Uint8Array.of(2))];
    const read = forwarder.read();
    expect(host.sent).toEqual([]);
    await turn();
    expect(host.sent).toEqual([
      { kind: "proposal", to: 1, requestId: 1 },
      { kind: "proposal", to: 1, requestId: 2 },
      { kind: "read", to: 1, requestId: 3 },
    ]);
    forwarder.failAll(new Error("stopped"), "this node stopped");
    // Sent commands may still be applied by the master: in doubt, never "stopped".
    for (const r of results) {
      await expect(r).rejects.toMatchObject({
        code: "ERR_INDETERMINATE",
        message: expect.stringContaining("this node stopped before it answered"),
      });
    }
    await expect(read).rejects.toThrow("stopped");
  });

  it("forwarding: a request settled before its turn ends is not sent", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    forwarder.failAll(new Error("stopped"), "this node stopped");
    await expect(result).rejects.toThrow("stopped"); // never sent: known not applied
    await turn();
    expect(host.sent).toEqual([]);
  });

  it("forwarding: a proposed command resolves with this node's own result for its entry", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    expect(host.sent).toEqual([{ kind: "proposal", to: 1, requestId: 1 }]);
    proposed(forwarder, host.sent[0]!, 7, 1);
    host.applied = 7;
    forwarder.onApplied(command(7, 1), "the result");
    await expect(result).resolves.toBe("the result");
    expect(forwarder.inFlight).toBe(0);
  });

  it("forwarding: another term's entry at the proposed index means it was not applied", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1);
    forwarder.onApplied(command(7, 2), "someone else's");
    await expect(result).rejects.toBeInstanceOf(NoMasterError);
  });

  it("forwarding: two writes proposed at one index by masters of two terms each settle by the entry applied there", async () => {
    const first = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1);
    // Master 1 is replaced before index 7 is applied here; master 3 takes a second write and
    // proposes it at index 7 too, in term 2.
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    const second = forwarder.propose(Uint8Array.of(2));
    await turn();
    proposed(forwarder, host.sent.at(-1)!, 7, 2);
    host.applied = 7;
    forwarder.onApplied(command(7, 2), "the second write's result");
    expect(forwarder.inFlight).toBe(0);
    await expect(second).resolves.toBe("the second write's result");
    await expect(first).rejects.toBeInstanceOf(NoMasterError);
  });

  it("forwarding: a write at an index that times out leaves another write at that index waiting", async () => {
    const first = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1);
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    vi.advanceTimersByTime(host.requestTimeoutMs / 2);
    const second = forwarder.propose(Uint8Array.of(2));
    await turn();
    proposed(forwarder, host.sent.at(-1)!, 7, 2);
    // The first write's deadline passes before index 7 is applied.
    vi.advanceTimersByTime(host.requestTimeoutMs / 2 + 1);
    await expect(first).rejects.toBeInstanceOf(TimeoutError);
    forwarder.onApplied(command(7, 2), "the second write's result");
    expect(forwarder.inFlight).toBe(0);
    await expect(second).resolves.toBe("the second write's result");
  });

  it("forwarding: the master replaced before it answered makes the write indeterminate", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    await expect(result).rejects.toBeInstanceOf(IndeterminateError);
  });

  it("forwarding: a proposed write survives a master change and settles by its entry", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1);
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    forwarder.onApplied(command(7, 1), "committed by the new master");
    await expect(result).resolves.toBe("committed by the new master");
  });

  it("forwarding: the answer arriving after the entry was applied still finds its result", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    forwarder.onApplied(command(7, 1), "early");
    host.applied = 7;
    proposed(forwarder, host.sent[0]!, 7, 1);
    await expect(result).resolves.toBe("early");
  });

  it("forwarding: a refusal (not the master) sends the write to the next master, never back", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    forwarder.onProposalResponse({
      type: "forward_proposal_response",
      from: 1,
      to: 2,
      term: 1,
      requestId: 1,
      outcome: "not_master",
      index: 0,
      entryTerm: 0,
    });
    forwarder.poll();
    expect(host.sent).toHaveLength(1); // master 1 refused in term 1: not asked again
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    // Under a new id: a master answers a copy of request 1 as it answered request 1, so a
    // send after a refusal must never look like a copy of the refused one.
    expect(host.sent[1]).toEqual({ kind: "proposal", to: 3, requestId: 2 });
    // An answer to the refused id changes nothing now.
    proposed(forwarder, { kind: "proposal", to: 3, requestId: 1 }, 8, 2);
    proposed(forwarder, host.sent[1]!, 9, 2);
    forwarder.onApplied(command(8, 2), "other");
    forwarder.onApplied(command(9, 2), "done");
    await expect(result).resolves.toBe("done");
  });

  it("forwarding: a node that refused as a candidate is sent the write once it wins that term", async () => {
    host.currentTerm = 6;
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    expect(host.sent).toEqual([{ kind: "proposal", to: 1, requestId: 1 }]);
    // Node 1, master of term 6, lost its backups and stands in the election of term 7: it
    // answers from there. Until this node learns who won term 7, node 1 is not asked again.
    notMaster(forwarder, 1, 7, 1);
    forwarder.poll();
    expect(host.sent).toHaveLength(1);
    host.master = null;
    host.currentTerm = 7;
    vi.advanceTimersByTime(FORWARD_HOLD_MS / 10);
    forwarder.poll();
    expect(host.sent).toHaveLength(1);
    // Node 1 won term 7. Its refusal said "not proposed", so the write goes to it again,
    // under a new id, and is applied once.
    host.master = 1;
    vi.advanceTimersByTime(FORWARD_HOLD_MS / 10);
    forwarder.poll();
    expect(host.sent[1]).toEqual({ kind: "proposal", to: 1, requestId: 2 });
    proposed(forwarder, host.sent[1]!, 9, 7);
    host.applied = 9;
    forwarder.onApplied(command(9, 7), "done");
    await expect(result).resolves.toBe("done");
    expect(forwarder.counters.noMaster).toBe(0);
  });

  /** The write went to node 1 again under request id 2, was proposed at (index, term) and applied. */
  async function expectResentAndApplied(result: Promise<unknown>, index: number, term: number) {
    expect(host.sent[1]).toEqual({ kind: "proposal", to: 1, requestId: 2 });
    proposed(forwarder, host.sent[1]!, index, term);
    forwarder.onApplied(command(index, term), "done");
    await expect(result).resolves.toBe("done");
  }

  it("forwarding: a refusal from an earlier term does not keep the write from the master of a later one", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    // Node 1 stepped down in term 1 and won term 2; this node hears of term 2 first.
    host.currentTerm = 2;
    notMaster(forwarder, 1, 1, 1);
    await expectResentAndApplied(result, 4, 2);
  });

  it("forwarding: the believed master's refusal holds for its whole term, then the write fails 'not applied'", async () => {
    host.currentTerm = 3;
    const result = forwarder.propose(Uint8Array.of(1));
    const settled = result.catch((e: unknown) => e);
    await turn();
    // Node 1, master of term 3 here, refuses in term 3: it stepped down, or hands over.
    notMaster(forwarder, 1, 3, 1);
    vi.advanceTimersByTime(FORWARD_HOLD_MS - 1);
    forwarder.poll();
    expect(host.sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    forwarder.poll();
    expect(await settled).toBeInstanceOf(NoMasterError);
    expect(host.sent).toHaveLength(1);
  });

  it("forwarding: the believed master's refusal ends with its term", async () => {
    host.currentTerm = 3;
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    notMaster(forwarder, 1, 3, 1);
    forwarder.poll();
    expect(host.sent).toHaveLength(1);
    host.currentTerm = 4; // node 1 is master again, of term 4
    forwarder.poll();
    await expectResentAndApplied(result, 5, 4);
  });

  it("forwarding: a read refused by a candidate is asked again of it once it wins that term", async () => {
    host.currentTerm = 6;
    const read = forwarder.read();
    await turn();
    const refusal = { type: "forward_read_response", from: 1, to: 2, requestId: 1 } as const;
    forwarder.onReadResponse({ ...refusal, term: 7, ok: false, index: 0 });
    expect(host.sent).toHaveLength(1);
    host.currentTerm = 7; // node 1 won term 7
    vi.advanceTimersByTime(FORWARD_HOLD_MS / 10);
    forwarder.poll();
    expect(host.sent.map((s) => s.to)).toEqual([1, 1]);
    // The second send went out under a new request id.
    forwarder.onReadResponse({ ...refusal, requestId: 2, term: 7, ok: true, index: 3 });
    host.applied = 3;
    forwarder.serveReads();
    await read;
  });

  it("forwarding: a late copy of an answer to an earlier send of a read is not taken for the answer to the next", async () => {
    host.currentTerm = 6;
    const read = forwarder.read();
    await turn();
    const refusal = { type: "forward_read_response", from: 1, to: 2, requestId: 1 } as const;
    forwarder.onReadResponse({ ...refusal, term: 7, ok: false, index: 0 });
    host.currentTerm = 7; // node 1 won term 7
    forwarder.poll();
    expect(host.sent.map((s) => s.to)).toEqual([1, 1]);
    // A duplicate of the first refusal (a network that delivers twice): read as node 1
    // refusing as the master of term 7, it held the read until NoMasterError.
    forwarder.onReadResponse({ ...refusal, term: 7, ok: false, index: 0 });
    forwarder.onReadResponse({ ...refusal, requestId: 2, term: 7, ok: true, index: 3 });
    host.applied = 3;
    forwarder.serveReads();
    await read;
  });

  it("forwarding: a busy master's refusal is BusyError (nothing was proposed)", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    forwarder.onProposalResponse({
      type: "forward_proposal_response",
      from: 1,
      to: 2,
      term: 1,
      requestId: 1,
      outcome: "busy",
      index: 0,
      entryTerm: 0,
    });
    await expect(result).rejects.toBeInstanceOf(BusyError);
  });

  it("forwarding: with no master known a write is held, then answered 'not applied'", async () => {
    host.master = null;
    const result = forwarder.propose(Uint8Array.of(1));
    const settled = result.catch((e: unknown) => e);
    vi.advanceTimersByTime(FORWARD_HOLD_MS);
    forwarder.poll();
    expect(await settled).toBeInstanceOf(NoMasterError);
    expect(host.sent).toHaveLength(0);
  });

  it("forwarding: a held write runs locally when this node is elected", async () => {
    host.master = null;
    const result = forwarder.propose(Uint8Array.of(1));
    host.currentRole = "master";
    host.master = 2;
    forwarder.poll();
    await expect(result).resolves.toBe("local");
    expect(host.localProposals).toBe(1);
  });

  it("forwarding: an unanswered write times out as 'may still be applied'", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    const settled = result.catch((e: unknown) => e);
    vi.advanceTimersByTime(host.requestTimeoutMs);
    expect(await settled).toBeInstanceOf(TimeoutError);
  });

  it("forwarding: a state transfer past a proposed entry makes its result unknowable", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1);
    forwarder.onSnapshotAdopted(10);
    await expect(result).rejects.toBeInstanceOf(IndeterminateError);
  });

  it("forwarding: an answer from a node the write was not sent to is ignored", async () => {
    const result = forwarder.propose(Uint8Array.of(1));
    await turn();
    proposed(forwarder, host.sent[0]!, 7, 1, 3);
    forwarder.onApplied(command(7, 1), "not ours");
    expect(forwarder.inFlight).toBe(1);
    proposed(forwarder, host.sent[0]!, 8, 1);
    forwarder.onApplied(command(8, 1), "ours");
    await expect(result).resolves.toBe("ours");
  });

  it("forwarding: a read waits for the confirmed index and is asked again of a new master", async () => {
    const read = forwarder.read();
    await turn();
    let done = false;
    void read.then(() => {
      done = true;
    });
    host.master = 3;
    host.currentTerm = 2;
    forwarder.poll();
    expect(host.sent.map((s) => s.to)).toEqual([1, 3]);
    // Asked again under a new request id.
    expect(host.sent.map((s) => s.requestId)).toEqual([1, 2]);
    forwarder.onReadResponse({
      type: "forward_read_response",
      from: 3,
      to: 2,
      term: 2,
      requestId: 2,
      ok: true,
      index: 12,
    });
    host.applied = 11;
    forwarder.serveReads();
    await Promise.resolve();
    expect(done).toBe(false);
    host.applied = 12;
    forwarder.serveReads();
    await read;
  });
});
