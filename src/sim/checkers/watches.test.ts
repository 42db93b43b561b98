import { describe, expect, it } from "vitest";
import type { KvChange } from "../../kv/index.js";
import { CommittedChanges, checkWatcher, type WatchedChange, type WatchRecord } from "./watches.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const put = (key: string, value: string, revision: number): KvChange => ({
  type: "put",
  key,
  value: bytes(value),
  revision,
});
const del = (key: string, revision: number): KvChange => ({
  type: "delete",
  key,
  value: null,
  revision,
});
const seen = (c: KvChange): WatchRecord => ({
  kind: "change",
  change: {
    type: c.type,
    key: c.key,
    value: c.value === null ? null : new TextDecoder().decode(c.value),
    revision: c.revision,
  } satisfies WatchedChange,
});

/** Revisions 1..6: puts, a transaction over two keys, a prefix delete, a lease key expiring. */
function history(): { committed: CommittedChanges; all: KvChange[][] } {
  const all: KvChange[][] = [
    [put("k0", "a", 1)],
    [put("lease1", "x", 2)],
    [put("k0", "b", 3), put("k1", "c", 3)],
    [], // a read barrier, a tick: no change
    [del("k0", 5), del("k1", 5)],
    [del("lease1", 6), put("k1", "d", 6)],
  ];
  const committed = new CommittedChanges();
  all.forEach((changes, i) => {
    const puts = changes.flatMap((c) =>
      c.type === "put" ? [{ key: c.key, value: c.value! }] : [],
    );
    committed.applied(1, i + 1, changes, puts);
  });
  return { committed, all };
}

const watcher = (prefix: string, records: WatchRecord[], fromRevision = 1) => ({
  id: 1,
  prefix,
  fromRevision,
  records,
});

describe("watch checker", () => {
  it("watches: every change once, in order, passes (prefix, transaction, prefix delete)", () => {
    const { committed, all } = history();
    const records = all
      .flat()
      .filter((c) => c.key.startsWith("k"))
      .map(seen);
    const verdict = checkWatcher(committed, watcher("k", records), 6);
    expect(verdict.problems).toEqual([]);
    expect(verdict.delivered).toBe(6);
  });

  it("watches: a lease's expiry is a delete the watcher of its key must get", () => {
    const { committed, all } = history();
    const records = all
      .flat()
      .filter((c) => c.key === "lease1" && c.type === "put")
      .map(seen);
    expect(checkWatcher(committed, watcher("lease1", records), 6).problems).toEqual([
      "missed delete lease1 at revision 6",
    ]);
  });

  it("watches: a missed change of a revision cut in the middle is reported", () => {
    const { committed, all } = history();
    const records = all
      .flat()
      .filter((c) => c.key.startsWith("k") && !(c.key === "k1" && c.revision === 5))
      .map(seen);
    expect(checkWatcher(committed, watcher("k", records), 6).problems).toEqual([
      "missed delete k1 at revision 5",
    ]);
  });

  it("watches: a change delivered twice (a resume that skipped too little) is reported", () => {
    const { committed } = history();
    const records = [put("k0", "a", 1), put("k0", "b", 3), put("k0", "b", 3)].map(seen);
    expect(checkWatcher(committed, watcher("k0", records), 3).problems).toEqual([
      "delivered twice: put k0=b at revision 3",
    ]);
  });

  it("watches: out of order, a wrong value and a change never committed are reported", () => {
    const { committed } = history();
    const records = [put("k0", "b", 3), put("k0", "a", 1), put("k0", "z", 5), put("k0", "q", 7)];
    expect(checkWatcher(committed, watcher("k0", records.map(seen)), 6).problems).toEqual([
      "revision went back: put k0=a at revision 1 after revision 3",
      "delivered out of order: put k0=a at revision 1, after later changes",
      "delivered put k0=z at revision 5, which was never committed (committed there: delete k0 at revision 5)",
      "delivered put k0=q at revision 7, outside revisions 1..6",
      "missed delete k0 at revision 5",
    ]);
  });

  it("watches: an announced compaction excuses the gap before its restart, and only that", () => {
    const { committed, all } = history();
    const k = all.flat().filter((c) => c.key.startsWith("k"));
    const records: WatchRecord[] = [
      seen(k[0]!),
      { kind: "compacted", resumeRevision: 2, restartRevision: 5 },
      ...k.filter((c) => c.revision >= 5).map(seen),
    ];
    const verdict = checkWatcher(committed, watcher("k", records), 6);
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ compactions: 1, missedAfterCompaction: 2 });
    // The same gap without the announcement is two missed changes.
    const silent = records.filter((r) => r.kind === "change");
    expect(checkWatcher(committed, watcher("k", silent), 6).problems).toEqual([
      "missed put k0=b at revision 3",
      "missed put k1=c at revision 3",
    ]);
  });

  it("watches: a watcher from a later revision is judged from there", () => {
    const { committed } = history();
    const records = [del("k1", 5), put("k1", "d", 6)].map(seen);
    expect(checkWatcher(committed, watcher("k1", records, 4), 6).problems).toEqual([]);
  });

  it("watches: nodes that made different changes at one index, or a history that does not fold into the store, are violations", () => {
    const { committed } = history();
    const b = put("k0", "b", 3);
    expect(() => committed.applied(2, 3, [b], [{ key: "k0", value: bytes("b") }])).toThrow(
      /node 2 made the changes/,
    );
    // A put the command did not make (a failed transaction's success branch, say).
    expect(() => committed.applied(2, 7, [put("k0", "z", 7)], [])).toThrow(
      /node 2 reported the puts \[k0=z\] at index 7; the command there wrote \[\]/,
    );
    expect(committed.mismatch(6, new Map([["k1", { value: "d", revision: 6 }]]))).toBeNull();
    expect(committed.mismatch(6, new Map([["k1", { value: "c", revision: 3 }]]))).toMatch(
      /holds k1=c at revision 3; the applied changes give d at revision 6/,
    );
    expect(committed.mismatch(6, new Map())).toBe(
      "the applied changes leave k1, which the store does not hold",
    );
  });
});
