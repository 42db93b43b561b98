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
    expect(verdict.detail).toContain("ended early (ERR_COMPACTED: gone)");
  });
});
