import { describe, expect, it } from "vitest";
import { checkLinearizable, type HistoryOp } from "./linearizability.js";
import { checkRevisionOrder, type RevisionWitness } from "./revision-order.js";

/**
 * A witness from a list of committed writes: name, index, key, value (null: a delete).
 * Writes not listed never changed the store.
 */
function witness(
  writes: readonly { name: string; index: number; key: string; value: string | null }[],
): RevisionWitness {
  return {
    executedIndex: (name) => writes.find((w) => w.name === name)?.index,
    valueAt: (key, revision) => {
      const last = writes
        .filter((w) => w.key === key && w.index <= revision)
        .sort((a, b) => a.index - b.index)
        .at(-1);
      return last?.value ?? null;
    },
  };
}

let nextId = 1;
/** An operation invoked at event `from` and, unless `to` is null, completed at event `to`. */
function op(
  fields: Pick<HistoryOp, "client" | "key" | "op"> & Partial<HistoryOp>,
  from: number,
  to: number | null,
): HistoryOp {
  return {
    id: nextId++,
    invokedAt: from,
    completedAt: to,
    outcome: to === null ? "info" : "ok",
    invokedSeq: from,
    ...(to === null ? {} : { completedSeq: to }),
    ...fields,
  };
}

const read = (client: number, key: string, output: string | null, revision: number) =>
  ({ client, key, op: { kind: "read" }, output, servedRevision: revision }) as const;
const write = (client: number, key: string, value: string, name: string) =>
  ({ client, key, op: { kind: "write", value }, writeName: name }) as const;

describe("revision-order checker", () => {
  it("revision order: reads at revisions that follow real time, with the committed values, pass", () => {
    const w = witness([{ name: "a", index: 3, key: "k", value: "1" }]);
    const history = [
      op(write(1, "k", "1", "a"), 1, 2),
      op(read(2, "k", "1", 3), 3, 4),
      op(read(3, "k", "1", 5), 5, 6),
    ];
    expect(checkRevisionOrder(history, w)).toEqual({
      violation: null,
      stats: { reads: 2, writes: 1 },
    });
  });

  it("revision order: a stale read of a transaction's second key, after a read that saw the first, fails (the per-key check passes it)", () => {
    // One transaction wrote k0 and k1 at index 5; its answer was lost (indeterminate).
    const w = witness([
      { name: "t", index: 5, key: "k0", value: "x" },
      { name: "t", index: 5, key: "k1", value: "y" },
    ]);
    const history = [
      op(write(1, "k0", "x", "t"), 1, null),
      op(write(1, "k1", "y", "t"), 2, null),
      op(read(2, "k0", "x", 5), 3, 4),
      // Later, another node answers k1 from before the transaction.
      op(read(2, "k1", null, 4), 5, 6),
    ];
    expect(checkLinearizable(history).ok).toBe(true);
    const verdict = checkRevisionOrder(history, w);
    expect(verdict.violation).toMatch(
      /op \d+ \(client 2, read k1\) was served at revision 4, though op \d+ \(client 2, read k0\), completed before it was invoked, was served at revision 5/,
    );
  });

  it("revision order: a read in the same instant as the write's acknowledgement still comes after it", () => {
    const w = witness([{ name: "a", index: 7, key: "k", value: "1" }]);
    // Virtual time 100 for both; the events say the write completed first.
    const history = [
      { ...op(write(1, "k", "1", "a"), 1, 2), invokedAt: 90, completedAt: 100 },
      { ...op(read(1, "k", null, 6), 3, 4), invokedAt: 100, completedAt: 110 },
    ];
    expect(checkRevisionOrder(history, w).violation).toMatch(
      /served at revision 6, though op \d+ \(client 1, write k\), acknowledged before it was invoked, changed the store at index 7/,
    );
  });

  it("revision order: a value that is not the committed one at the read's revision fails", () => {
    const w = witness([
      { name: "a", index: 2, key: "k", value: "1" },
      { name: "b", index: 4, key: "k", value: "2" },
    ]);
    const history = [op(read(1, "k", "2", 3), 1, 2)];
    expect(checkRevisionOrder(history, w).violation).toMatch(
      /read k = "2" at revision 3, where the committed history has "1"/,
    );
  });

  it("revision order: a write at an index a read completed before it was invoked had already passed fails", () => {
    const w = witness([{ name: "a", index: 3, key: "k", value: "1" }]);
    // The read of another key served at 5; the write, invoked after it completed, got 3.
    const history = [op(read(1, "j", null, 5), 1, 2), op(write(2, "k", "1", "a"), 3, null)];
    expect(checkRevisionOrder(history, w).violation).toMatch(
      /changed the store at index 3, though op \d+ \(client 1, read j\), completed before it was invoked, was served at revision 5/,
    );
  });

  it("revision order: writes that never changed the store, and failed reads, constrain nothing", () => {
    const w = witness([]);
    const history = [
      op(write(1, "k", "1", "never"), 1, 2),
      { ...op(read(2, "k", null, 0), 3, null), outcome: "fail" as const },
      op(read(2, "k", null, 0), 4, 5),
    ];
    expect(checkRevisionOrder(history, w)).toEqual({
      violation: null,
      stats: { reads: 1, writes: 0 },
    });
  });

  describe("writes that changed nothing, at the index where they were decided", () => {
    /** The witness above, also knowing where each write was first answered. */
    const decided = (
      writes: Parameters<typeof witness>[0],
      answered: Record<string, number>,
    ): RevisionWitness => ({ ...witness(writes), answeredIndex: (name) => answered[name] });
    const cas = (client: number, key: string, expected: string | null, name: string) =>
      ({
        client,
        key,
        op: { kind: "cas", expected, value: `${name}-new` },
        output: false,
        writeName: name,
      }) as const;
    const absent = (client: number, key: string, name: string) =>
      ({ client, key, op: { kind: "delete" }, output: false, writeName: name }) as const;

    it("revision order: a compare-and-set refused below the client's own acknowledged put (in the same instant) fails", () => {
      const w = decided([{ name: "a", index: 3, key: "k", value: "1" }], { a: 3, b: 3 });
      // Invoked in the event after the put completed: decided at 3, on the store below it.
      const history = [op(write(1, "k", "1", "a"), 1, 2), op(cas(1, "k", "1", "b"), 3, 4)];
      expect(checkRevisionOrder(history, w).violation).toMatch(
        /was refused at index 3, where k held null, the value it expected|was served at revision 2, though op \d+ \(client 1, write k\), acknowledged before it was invoked, changed the store at index 3/,
      );
    });

    it("revision order: a refused compare-and-set or an absent key's delete must find the store as it said", () => {
      const w = decided([{ name: "a", index: 3, key: "k", value: "1" }], { a: 3, b: 5, c: 6 });
      const wrongCas = [op(write(1, "k", "1", "a"), 1, 2), op(cas(2, "k", "1", "b"), 3, 4)];
      expect(checkRevisionOrder(wrongCas, w).violation).toMatch(
        /cas k\) was refused at index 5, where k held "1", the value it expected/,
      );
      const wrongDelete = [op(write(1, "k", "1", "a"), 1, 2), op(absent(2, "k", "c"), 3, 4)];
      expect(checkRevisionOrder(wrongDelete, w).violation).toMatch(
        /delete k\) found no key at index 6, where k held "1"/,
      );
    });

    it("revision order: refusals decided where the store said so, after what came before, pass, and what follows sees at least their store", () => {
      const w = decided(
        [
          { name: "a", index: 3, key: "k", value: "1" },
          { name: "d", index: 7, key: "k", value: null },
        ],
        { a: 3, b: 5, d: 7, c: 9 },
      );
      const history = [
        op(write(1, "k", "1", "a"), 1, 2),
        op(cas(1, "k", "0", "b"), 3, 4),
        op({ client: 1, key: "k", op: { kind: "delete" }, output: true, writeName: "d" }, 5, 6),
        op(absent(1, "k", "c"), 7, 8),
      ];
      expect(checkRevisionOrder(history, w).violation).toBeNull();
      // A read invoked after the absent key's delete completed (decided at 9, on the store
      // at 8), served at 7: after every acknowledged write, but older than that store.
      const stale = [...history, op(read(2, "k", null, 7), 9, 10)];
      expect(checkRevisionOrder(stale, w).violation).toMatch(
        /was served at revision 7, though op \d+ \(client 1, delete k\), completed before it was invoked, was served at revision 8/,
      );
    });
  });
});
