import { describe, expect, it } from "vitest";
import type { WatchChange } from "../client/index.js";
import type { BankRecord } from "./bank.js";
import { checkWatch, type WatchRecords } from "./watch-check.js";
import type { OpRecord } from "./workload.js";

function op(fields: Partial<OpRecord> & Pick<OpRecord, "id" | "key" | "kind">): OpRecord {
  return { client: 1, nodes: [1], invokedAt: 0, completedAt: 1, outcome: "ok", ...fields };
}

const history: OpRecord[] = [
  op({ id: 1, key: "k", kind: "write", value: "a", revision: 3 }),
  op({ id: 2, key: "k", kind: "cas", value: "b", expected: "a", output: true, revision: 5 }),
  op({ id: 3, key: "k", kind: "cas", value: "c", expected: "z", output: false }),
  op({ id: 4, key: "k", kind: "delete", output: true, revision: 6 }),
];

const change = (type: "put" | "delete", value: string | null, revision: number): WatchChange => ({
  type,
  key: "k",
  value,
  revision,
});

describe("chaos watch verdict", () => {
  it("watch verdict: every acknowledged change once and in order passes", () => {
    const changes = [change("put", "a", 3), change("put", "b", 5), change("delete", null, 6)];
    expect(checkWatch(history, changes, null)).toMatchObject({ ok: true });
  });

  it("watch verdict: a gap, a duplicate, a step back and an invented value each fail", () => {
    const verdict = checkWatch(
      history,
      [
        change("put", "b", 5),
        change("put", "b", 5),
        change("put", "a", 3),
        change("put", "zz", 6),
        change("delete", null, 6),
      ],
      null,
    );
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      "delivered twice: put k@5",
      "revision went back: k at 3 after 5",
      "invented: k = zz at 6",
    ]);
    const gap = checkWatch(history, [change("put", "a", 3), change("delete", null, 6)], null);
    expect(gap.problems).toEqual(["missed: put k@5 (operation 2)"]);
  });

  it("watch verdict: a watch that stalled short of the last acknowledged change, or ended by another error, fails", () => {
    const stalled = checkWatch(history, [change("put", "a", 3)], null, 6);
    expect(stalled.ok).toBe(false);
    expect(stalled.problems).toEqual([
      "the watch stopped at revision 3, short of 6, the last acknowledged change's",
    ]);
    const ended = checkWatch(history, [change("put", "a", 3)], "TypeError: fetch failed", 6);
    expect(ended.problems).toEqual(["the watch ended: TypeError: fetch failed"]);
    const whole = [change("put", "a", 3), change("put", "b", 5), change("delete", null, 6)];
    expect(checkWatch(history, whole, null, 6)).toMatchObject({ ok: true });
  });

  it("watch verdict: a watch that ended early is judged up to where it got", () => {
    const changes = [change("put", "a", 3), change("put", "b", 5)];
    const verdict = checkWatch(history, changes, "ERR_COMPACTED: gone");
    expect(verdict.ok).toBe(true);
    expect(verdict.detail).toContain("2 of 3 acknowledged changes checked");
    expect(verdict.detail).toContain(
      "ended early (ERR_COMPACTED: gone), leaving the 1 acknowledged changes after revision 5 unchecked",
    );
  });

  it("watch verdict: a watch that checked none of the acknowledged changes fails (compacted before the first, or every one in a gap)", () => {
    const nothing = checkWatch(history, [], "ERR_COMPACTED: gone");
    expect(nothing.ok).toBe(false);
    expect(nothing.problems).toEqual([
      "the watch checked none of the 3 acknowledged changes (it reached revision 0)",
    ]);
    // Reopened after revisions 1-6, and nothing of the workload's came after them.
    const gapped = checkWatch(history, [bank(7)], null, 7, [{ from: 1, to: 6 }]);
    expect(gapped.ok).toBe(false);
    expect(gapped.detail).toContain("revisions 1-6 compacted everywhere");
    // A gap excuses what it covers, and only that.
    const reopened = [change("put", "a", 3), change("delete", null, 6)];
    const partly = checkWatch(history, reopened, null, 6, [{ from: 4, to: 5 }]);
    expect(partly).toMatchObject({ ok: true });
    expect(partly.detail).toContain("2 of 3 acknowledged changes checked");
  });

  it("watch verdict: a write applied again at a new revision fails (one operation, two changes)", () => {
    const write = [op({ id: 1, key: "k", kind: "write", value: "v", revision: 12 })];
    const twice = checkWatch(write, [change("put", "v", 10), change("put", "v", 12)], null, 12);
    expect(twice.ok).toBe(false);
    expect(twice.problems).toEqual([
      "applied at another revision: put k@10 (v), operation 1 was acknowledged at 12",
    ]);
    // An operation of unknown outcome may have made one change, anywhere, but not two (beside
    // a confirmed write on another key: with none confirmed, the watch checks nothing).
    const unknown = [
      op({ id: 1, key: "k", kind: "write", value: "v", outcome: "indeterminate" }),
      op({ id: 2, key: "j", kind: "write", value: "w", revision: 11 }),
    ];
    const j: WatchChange = { type: "put", key: "j", value: "w", revision: 11 };
    const once = checkWatch(unknown, [change("put", "v", 10), j], null);
    expect(once).toMatchObject({ ok: true });
    const again = checkWatch(unknown, [change("put", "v", 10), j, change("put", "v", 12)], null);
    expect(again.problems).toEqual([
      "applied twice: put k@12 (v), operation 1 already made put k@10 (v)",
    ]);
  });

  it("watch verdict: a delete applied twice, or one nobody issued, fails", () => {
    const deletes = [
      op({ id: 1, key: "k", kind: "write", value: "u", revision: 9 }),
      op({ id: 2, key: "k", kind: "write", value: "w", revision: 11 }),
      op({ id: 3, key: "k", kind: "delete", output: true, revision: 12 }),
    ];
    const changes = [
      change("put", "u", 9),
      change("delete", null, 10),
      change("put", "w", 11),
      change("delete", null, 12),
    ];
    const verdict = checkWatch(deletes, changes, null, 12);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      "a delete nobody issued, or one applied twice: delete k@10 (no acknowledged delete at that revision, nor one of unknown outcome left)",
    ]);
    // A delete of unknown outcome accounts for one delete, at any revision.
    const unknown = [...deletes, op({ id: 4, key: "k", kind: "delete", outcome: "indeterminate" })];
    expect(checkWatch(unknown, changes, null, 12)).toMatchObject({ ok: true });
    // A delete answered "not found" deleted nothing.
    const nothing = [...deletes, op({ id: 4, key: "k", kind: "delete", output: false })];
    expect(checkWatch(nothing, changes, null, 12).ok).toBe(false);
  });

  it("watch verdict: a change made by an operation that definitely failed fails", () => {
    const failed = [
      op({ id: 1, key: "k", kind: "write", value: "a", revision: 3 }),
      op({ id: 2, key: "k", kind: "write", value: "x", outcome: "failed", error: "ERR_NO_MASTER" }),
    ];
    const verdict = checkWatch(failed, [change("put", "a", 3), change("put", "x", 4)], null, 3);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      "a failed operation took effect: put k@4 (x) by operation 2 (ERR_NO_MASTER)",
    ]);
    // A compare-and-set whose comparison failed changed nothing either (operation 3 above).
    const refused = checkWatch(history, [change("put", "a", 3), change("put", "c", 4)], null);
    expect(refused.problems).toContain(
      "a failed operation took effect: put k@4 (c) by operation 3, whose comparison failed",
    );
  });

  it("watch verdict: changes of keys the workload never used (bank, leases) are checked against the stream alone", () => {
    const whole = [
      ...opening(1),
      lease("put", 2),
      change("put", "a", 3),
      account("a0", "90", 4),
      account("a1", "110", 4),
      change("put", "b", 5),
      change("delete", null, 6),
      lease("delete", 7),
    ];
    const verdict = checkWatch(history, whole, null, 6);
    expect(verdict).toMatchObject({ ok: true });
    expect(verdict.detail).toContain("bank and lease keys (their clients keep no record)");
    expect(verdict.detail).toContain("6 changes checked against the stream alone");
    expect(verdict.detail).toContain("1 bank transactions balanced");
  });

  it("watch verdict: a change at an acknowledged operation's revision that is not its own fails, value included (an indeterminate write cannot take that revision)", () => {
    const writes = [
      op({ id: 1, key: "k", kind: "write", value: "a", revision: 3 }),
      op({ id: 2, key: "k", kind: "write", value: "b", outcome: "indeterminate", completedAt: 2 }),
      op({ id: 3, key: "k", kind: "read", output: "a", revision: 3, invokedAt: 5, completedAt: 6 }),
    ];
    // The timed-out write's value at the revision the acknowledged write was answered with.
    const wrong = checkWatch(writes, [change("put", "b", 3)], null, 3);
    expect(wrong.ok).toBe(false);
    expect(wrong.problems).toEqual(["wrong value: put k@3 came as b, operation 1 wrote a"]);
    // That change did not use up the write of unknown outcome: it may still be applied once.
    const later = [change("put", "a", 3), change("put", "b", 7)];
    expect(checkWatch(writes, later, null, 3)).toMatchObject({ ok: true });
    // One command per revision: another key's change, or a delete, cannot share it.
    const shared = checkWatch(writes, [change("put", "a", 3), bank(3)], null, 3);
    expect(shared.problems).toEqual([
      "a change at a revision another operation made: put bank/a0@3 (100), where operation 1 was acknowledged with put k@3 (a)",
    ]);
    // But a lease that ended as the write moved log time on deletes its keys at that revision.
    const ended = [lease("put", 2), lease("delete", 3), change("put", "a", 3)];
    expect(checkWatch(writes, ended, null, 3)).toMatchObject({ ok: true });
    const deleted = checkWatch(writes, [change("delete", null, 3)], null, 3);
    expect(deleted.problems).toEqual([
      "missed: put k@3 (operation 1)",
      "a change at a revision another operation made: delete k@3, where operation 1 was acknowledged with put k@3 (a)",
      "deleted while gone: delete k@3, the key did not exist",
    ]);
  });

  it("watch verdict: a watch ended by ERR_COMPACTED leaves the rest unchecked, and fails when the rest is most of it", () => {
    const verdict = checkWatch(thousand, [put(1)], "ERR_COMPACTED: gone", 1000);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      "the watch checked only 1 of the 1000 acknowledged changes in the revisions it had to see, less than 50%: 999 were in revisions it could not see (after 1)",
    ]);
    expect(verdict.detail).toContain(
      "1 of 1000 acknowledged changes checked; the watch ended early (ERR_COMPACTED: gone), leaving the 999 acknowledged changes after revision 1 unchecked",
    );
  });

  it("watch verdict: gaps fail when they held most of the acknowledged changes, and name what they held", () => {
    const gapped = checkWatch(thousand, [put(1), put(1000)], null, 1000, [{ from: 2, to: 999 }]);
    expect(gapped.ok).toBe(false);
    expect(gapped.problems).toEqual([
      "the watch checked only 2 of the 1000 acknowledged changes in the revisions it had to see, less than 50%: 998 were in revisions it could not see (2-999)",
    ]);
    // A gap of a few hundred revisions in a thousand, as a fail-over under compaction makes.
    const seen = Array.from({ length: 601 }, (_, i) => put(i === 0 ? 1 : i + 400));
    const small = checkWatch(thousand, seen, null, 1000, [{ from: 2, to: 400 }]);
    expect(small).toMatchObject({ ok: true });
    expect(small.detail).toContain(
      "601 of 1000 acknowledged changes checked; revisions 2-400 compacted everywhere before the watch got there (it reopened after them; 399 acknowledged changes in them unchecked)",
    );
  });

  it("watch verdict: an operation of unknown outcome cannot explain a revision committed before it was invoked", () => {
    const ordered = [
      op({
        id: 1,
        key: "k",
        kind: "write",
        value: "a",
        revision: 3,
        invokedAt: 0,
        completedAt: 10,
      }),
      op({
        id: 2,
        key: "k",
        kind: "write",
        value: "b",
        revision: 5,
        invokedAt: 20,
        completedAt: 30,
      }),
    ];
    const late = { outcome: "indeterminate", invokedAt: 1000, completedAt: 2500 } as const;
    const deletes = [...ordered, op({ id: 9, key: "k", kind: "delete", ...late })];
    const between = [change("put", "a", 3), change("delete", null, 4), change("put", "b", 5)];
    expect(checkWatch(deletes, between, null, 5).problems).toEqual([
      "a delete nobody issued, or one applied twice: delete k@4 (no acknowledged delete at that revision, and of the deletes of unknown outcome left, operation 9 was invoked at 1000 ms, after operation 2's answer (at 30 ms) had shown revision 5 committed)",
    ]);
    const writes = [...ordered, op({ id: 9, key: "k", kind: "write", value: "c", ...late })];
    const put4 = [change("put", "a", 3), change("put", "c", 4), change("put", "b", 5)];
    expect(checkWatch(writes, put4, null, 5).problems).toEqual([
      "operation 9, of unknown outcome, cannot have made put k@4 (c): operation 9 was invoked at 1000 ms, after operation 2's answer (at 30 ms) had shown revision 5 committed",
    ]);
    // Invoked once revision 3 was known, but before revision 5 was: revision 4 was still open.
    const early = { ...late, invokedAt: 15 };
    const inTime = [...ordered, op({ id: 9, key: "k", kind: "delete", ...early })];
    expect(checkWatch(inTime, between, null, 5)).toMatchObject({ ok: true });
  });

  it("watch verdict: a bank transaction that makes or loses money, a bank account made later, and a delete of a key already gone fail", () => {
    const halfDone = [
      ...opening(1),
      account("a0", "90", 2),
      lease("delete", 3),
      account("a2", "100", 4),
      lease("put", 5),
    ];
    const verdict = checkWatch([], halfDone, null);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      "a bank transaction made or lost money at 2: 100 before, 90 after (bank/a0=90)",
      "deleted while gone: delete lease/1@3, the key did not exist",
      "bank accounts made after the books were opened, at 4: bank/a2",
    ]);
    // After a gap the stream no longer knows the balances or which keys exist.
    const reopened = [...opening(1), account("a0", "90", 9), lease("delete", 9), bank(10)];
    const afterGap = checkWatch([], reopened, null, 0, [{ from: 2, to: 8 }]);
    expect(afterGap).toMatchObject({ ok: true });
  });
});

/** A bank account's change, a key the workload never used. */
function bank(revision: number): WatchChange {
  return { type: "put", key: "bank/a0", value: "100", revision };
}

function account(name: string, value: string, revision: number): WatchChange {
  return { type: "put", key: `bank/${name}`, value, revision };
}

/** The bank's opening transaction, here of two accounts. */
function opening(revision: number): WatchChange[] {
  return [account("a0", "100", revision), account("a1", "100", revision)];
}

function lease(type: "put" | "delete", revision: number): WatchChange {
  return { type, key: "lease/1", value: type === "put" ? "held" : null, revision };
}

/** A thousand acknowledged writes over four keys, one a revision; put(r) is revision r's. */
const thousand = Array.from({ length: 1000 }, (_, i) =>
  op({ id: i + 1, key: `k${i % 4}`, kind: "write", value: `v${i + 1}`, revision: i + 1 }),
);

function put(revision: number): WatchChange {
  return { type: "put", key: `k${(revision - 1) % 4}`, value: `v${revision}`, revision };
}

describe("chaos watch verdict against the bank's and the leases' records, and the reads", () => {
  // A write of unknown outcome that a read then found, two transfers between the same two
  // accounts, and a lease whose key was attached and then ended: each change the stream
  // must hold, and each could be dropped without the stream contradicting itself.
  const history: OpRecord[] = [
    op({ id: 1, key: "k", kind: "write", value: "a", revision: 2, invokedAt: 10, completedAt: 15 }),
    op({
      id: 2,
      key: "k",
      kind: "write",
      value: "b",
      outcome: "indeterminate",
      invokedAt: 20,
      completedAt: 1530,
      error: "TimeoutError",
    }),
    op({ id: 3, key: "k", kind: "read", output: "b", revision: 4, invokedAt: 30, completedAt: 35 }),
    op({ id: 4, key: "k", kind: "write", value: "c", revision: 9, invokedAt: 60, completedAt: 65 }),
  ];
  const opening = transaction(1, { outcome: "ok", revision: 1 }, [100, 100, 100], 0, null);
  const first = transaction(2, { outcome: "ok", revision: 5 }, [90, 110], 40, 1);
  const second = transaction(3, { outcome: "ok", revision: 7 }, [85, 115], 50, 5);
  const records: WatchRecords = {
    bank: [opening, first, second],
    leases: [{ key: "lease/1", id: 11, revision: 3, refused: false }],
    leasesEndedBy: 9,
  };
  const stream: WatchChange[] = [
    ...accounts([100, 100, 100], 1),
    change("put", "a", 2),
    lease("put", 3),
    change("put", "b", 4),
    ...accounts([90, 110], 5),
    lease("delete", 6),
    ...accounts([85, 115], 7),
    change("put", "c", 9),
  ];
  const without = (revision: number): WatchChange[] =>
    stream.filter((c) => c.revision !== revision);

  it("watch verdict: a stream that holds every recorded change passes, and says what it matched", () => {
    const verdict = checkWatch(history, stream, null, 9, [], records);
    expect(verdict).toMatchObject({ ok: true });
    expect(verdict.detail).toContain(
      "2 of 2 acknowledged changes checked, 1 more that only a read showed",
    );
    expect(verdict.detail).toContain(
      "bank and lease keys: 9 changes checked, 2 bank transactions balanced, 3 bank transactions matched to their records, 1 lease keys checked",
    );
  });

  it("watch verdict: a bank transfer dropped before another between the same accounts fails (the books still balance)", () => {
    const verdict = checkWatch(history, without(5), null, 9, [], records);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      // Transaction 3 compared the revision transaction 2 made, which the stream lacks.
      "bank transaction 3 was applied at 7 though its comparison failed there: bank/a0@5, but bank/a0 was at revision 1 (100) as of revision 6",
      "missed: bank transaction 2, acknowledged at 5 (bank/a0=90 bank/a1=110)",
    ]);
  });

  it("watch verdict: the last bank transfer dropped fails, inside the stream or after its end", () => {
    expect(checkWatch(history, without(7), null, 9, [], records).problems).toEqual([
      "missed: bank transaction 3, acknowledged at 7 (bank/a0=85 bank/a1=115)",
    ]);
    // The bank's last transfer came after the workload's last write: the watch must reach it.
    const last = transaction(4, { outcome: "ok", revision: 10 }, [80, 120], 70, 7);
    const longer = { ...records, bank: [...records.bank, last] };
    expect(checkWatch(history, stream, null, 9, [], longer).problems).toEqual([
      "the watch stopped at revision 9, short of 10, the last acknowledged change's",
    ]);
  });

  it("watch verdict: a bank transaction refused, or of unknown outcome but sent too late, cannot have made a change", () => {
    const refused = transaction(2, { outcome: "refused" }, [90, 110], 40, 1);
    const verdict = checkWatch(history, stream, null, 9, [], {
      ...records,
      bank: [opening, refused, second],
    });
    expect(verdict.problems).toEqual([
      "a refused bank transaction took effect: bank/a0=90 bank/a1=110 at 5, which only transaction 2 sent, and its comparison failed",
    ]);
    // Of unknown outcome, it may have made them, or not.
    const unknown = transaction(2, { outcome: "unknown" }, [90, 110], 40, 1);
    const maybe = { ...records, bank: [opening, unknown, second] };
    expect(checkWatch(history, stream, null, 9, [], maybe)).toMatchObject({ ok: true });
    // Not applied, the transfer after it compared the opening's revisions.
    const notApplied = {
      ...records,
      bank: [opening, unknown, transaction(3, { outcome: "ok", revision: 7 }, [85, 115], 50, 1)],
    };
    expect(checkWatch(history, without(5), null, 9, [], notApplied)).toMatchObject({ ok: true });
    // But not once the transfer at 7 had been answered when it was sent.
    const late = transaction(2, { outcome: "unknown" }, [90, 110], 55, 1);
    const tooLate = checkWatch(history, stream, null, 9, [], {
      ...records,
      bank: [opening, late, second],
    });
    expect(tooLate.problems).toEqual([
      "bank transaction 2, of unknown outcome, cannot have made bank/a0=90 bank/a1=110 at 5: transaction 2 was invoked at 55 ms, after bank transaction 3's answer (at 51 ms) had shown revision 7 committed",
    ]);
    // Nor can a bank change come from nowhere.
    const stray = [...stream.slice(0, -1), ...accounts([95, 105], 8), stream.at(-1)!];
    expect(checkWatch(history, stray, null, 9, [], records).problems).toEqual([
      "a bank change no transaction the bank sent explains: bank/a0=95 bank/a1=105 at 8",
    ]);
  });

  it("watch verdict: a bank transaction is applied only where its comparison held, and refused only where it failed", () => {
    // Acknowledged, but it compared the opening's revisions where transaction 2 had moved them.
    const stale = transaction(3, { outcome: "ok", revision: 7 }, [85, 115], 50, 1);
    expect(
      checkWatch(history, stream, null, 9, [], { ...records, bank: [opening, first, stale] })
        .problems,
    ).toEqual([
      "bank transaction 3 was applied at 7 though its comparison failed there: bank/a0@1, but bank/a0 was at revision 5 (90) as of revision 6",
    ]);
    // Of unknown outcome, sent in time and putting the same, but compared what was no more.
    const unknown = transaction(3, { outcome: "unknown" }, [85, 115], 50, 1);
    expect(
      checkWatch(history, stream, null, 9, [], { ...records, bank: [opening, first, unknown] })
        .problems,
    ).toEqual([
      "bank transaction 3, of unknown outcome, cannot have made bank/a0=85 bank/a1=115 at 7: its comparison failed there: bank/a0@1, but bank/a0 was at revision 5 (90) as of revision 6",
    ]);
    // The opening compares that no account exists: applied again later, it fails.
    const again = [...stream.slice(0, -1), ...accounts([100, 100, 100], 8), stream.at(-1)!];
    const reopened = transaction(4, { outcome: "ok", revision: 8 }, [100, 100, 100], 60, null);
    expect(
      checkWatch(history, again, null, 9, [], { ...records, bank: [...records.bank, reopened] })
        .problems,
    ).toEqual([
      "bank transaction 4 was applied at 8 though its comparison failed there: bank/a0 absent, but bank/a0 was at revision 7 (85) as of revision 7",
    ]);
    // Refused where its comparison held (nothing had moved the accounts since 5): wrong.
    const refusedHeld = transaction(4, { outcome: "refused", refusedAt: 6 }, [80, 120], 55, 5);
    const refusedFailed = transaction(5, { outcome: "refused", refusedAt: 8 }, [80, 120], 60, 5);
    expect(
      checkWatch(history, stream, null, 9, [], {
        ...records,
        bank: [...records.bank, refusedHeld, refusedFailed],
      }).problems,
    ).toEqual([
      "bank transaction 4 was refused at revision 6, but its comparison held there (bank/a0@5, bank/a1@5)",
    ]);
    // Where the stream cannot tell (a gap since the accounts' last change, or a revision
    // the watch has not passed), nothing is held against a transaction.
    const gapped = checkWatch(history, stream, null, 9, [{ from: 6, to: 6 }], {
      ...records,
      bank: [
        opening,
        first,
        stale,
        transaction(4, { outcome: "refused", refusedAt: 9 }, [1], 60, 7),
      ],
    });
    expect(gapped).toMatchObject({ ok: true });
  });

  it("watch verdict: a lease key's attach put, or its delete once every lease ended, dropped fails", () => {
    expect(checkWatch(history, without(6), null, 9, [], records).problems).toEqual([
      "lease/1 (lease 11) was never deleted after its put at 3, though every lease had ended by revision 9",
    ]);
    expect(checkWatch(history, without(3), null, 9, [], records).problems).toEqual([
      "deleted while gone: delete lease/1@6, the key did not exist",
      "missed: put lease/1@3, the key of lease 11, attached at that revision",
    ]);
    // An attach refused because the lease was gone put nothing.
    const refused = {
      ...records,
      leases: [{ ...records.leases[0]!, revision: null, refused: true }],
    };
    expect(checkWatch(history, stream, null, 9, [], refused).problems).toEqual([
      "a refused attach took effect: put lease/1@3, though attaching it to lease 11 was refused (ERR_LEASE_NOT_FOUND)",
    ]);
    // Until every lease has been seen ended, a key may still be there.
    const open = { ...records, leasesEndedBy: null };
    expect(checkWatch(history, without(6), null, 9, [], open)).toMatchObject({ ok: true });
  });

  it("watch verdict: the change of a write of unknown outcome that a read found, dropped, fails", () => {
    expect(checkWatch(history, without(4), null, 9, [], records).problems).toEqual([
      "missed: put k@4 (b), which read 3 found",
    ]);
    const other = stream.map((c) => (c.revision === 4 ? { ...c, value: "z" } : c));
    expect(checkWatch(history, other, null, 9, [], records).problems).toContain(
      "wrong value: put k@4 came as z, read 3 found b",
    );
  });
});

/**
 * Bank transaction `id`, sent at `at` ms and answered 1 ms later, putting `balances` to
 * a0… if each of them is at revision `compared` (null: if none of them exists).
 */
function transaction(
  id: number,
  answer: { outcome: BankRecord["outcome"]; revision?: number; refusedAt?: number },
  balances: readonly number[],
  at: number,
  compared: number | null,
): BankRecord {
  const keys = balances.map((_, i) => `bank/a${i}`);
  return {
    id,
    puts: balances.map((amount, i) => [keys[i]!, String(amount)] as const),
    compare: keys.map((key) =>
      compared === null ? { key, exists: false } : { key, revision: compared },
    ),
    invokedAt: at,
    completedAt: at + 1,
    ...answer,
  };
}

/** One revision's changes of accounts a0…, to `balances`. */
function accounts(balances: readonly number[], revision: number): WatchChange[] {
  return balances.map((amount, i) => account(`a${i}`, String(amount), revision));
}
