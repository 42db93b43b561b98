import { describe, expect, it } from "vitest";
import type { WatchChange } from "../client/index.js";
import { checkWatch } from "./watch-check.js";
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
    const verdict = checkWatch(history, [change("put", "a", 3)], "ERR_COMPACTED: gone");
    expect(verdict.ok).toBe(true);
    expect(verdict.detail).toContain("1 of 3 acknowledged changes checked");
    expect(verdict.detail).toContain("ended early (ERR_COMPACTED: gone)");
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
    // An operation of unknown outcome may have made one change, anywhere, but not two.
    const unknown = [op({ id: 1, key: "k", kind: "write", value: "v", outcome: "indeterminate" })];
    const once = checkWatch(unknown, [change("put", "v", 10)], null);
    expect(once).toMatchObject({ ok: true });
    const again = checkWatch(unknown, [change("put", "v", 10), change("put", "v", 12)], null);
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

  it("watch verdict: changes of keys the workload never used (bank, leases) are not its to judge", () => {
    const whole = [
      change("put", "a", 3),
      change("put", "b", 5),
      bank(5),
      change("delete", null, 6),
    ];
    const leaseEnd: WatchChange = { type: "delete", key: "lease/1", value: null, revision: 7 };
    expect(checkWatch(history, [...whole, leaseEnd], null, 6)).toMatchObject({ ok: true });
  });
});

/** A bank account's change, a key the workload never used. */
function bank(revision: number): WatchChange {
  return { type: "put", key: "bank/a0", value: "100", revision };
}
