import { describe, expect, it } from "vitest";
import { checkAcknowledged } from "./acknowledged.js";
import type { HistoryOp, KvOp } from "./linearizability.js";

/** Writes that changed the store, by name, at their log index. */
function applied(indexes: Record<string, number>) {
  return { executedIndex: (name: string) => indexes[name] };
}

let nextId = 1;
function op(op: KvOp, fields: Partial<HistoryOp> = {}): HistoryOp {
  return {
    id: nextId++,
    client: 1,
    key: "k0",
    op,
    invokedAt: 0,
    completedAt: 10,
    outcome: "ok",
    writeName: `idempotency key w${nextId}`,
    ...fields,
  };
}

describe("acknowledged writes against the log", () => {
  it("acknowledged: a put, a delete of a key that existed and a compare-and-set that held, acknowledged but applied nowhere, are lost writes", () => {
    const lost = [
      op({ kind: "write", value: "a" }),
      op({ kind: "delete" }, { output: true }),
      op({ kind: "cas", expected: "a", value: "b" }, { output: true }),
    ];
    for (const write of lost) {
      expect(checkAcknowledged([write], applied({}))).toBe(
        `op ${write.id} (client 1, ${write.op.kind} k0, ${write.writeName}) was acknowledged, but no node applied it`,
      );
      expect(checkAcknowledged([write], applied({ [write.writeName!]: 7 }))).toBeNull();
    }
  });

  it("acknowledged: what changed nothing by its own answer, and what was never answered, need no index", () => {
    const history = [
      op({ kind: "delete" }, { output: false }),
      op({ kind: "cas", expected: "a", value: "b" }, { output: false }),
      op({ kind: "write", value: "c" }, { outcome: "info", completedAt: null }),
      { ...op({ kind: "read" }, { output: null }), writeName: "a read has none" },
    ];
    expect(checkAcknowledged(history, applied({}))).toBeNull();
  });

  it("acknowledged: a write every answer called not applied must have changed nothing", () => {
    const refused = op(
      { kind: "write", value: "a" },
      { outcome: "info", completedAt: null, refusedNotApplied: true },
    );
    expect(checkAcknowledged([refused], applied({}))).toBeNull();
    expect(checkAcknowledged([refused], applied({ [refused.writeName!]: 12 }))).toBe(
      `op ${refused.id} (client 1, write k0, ${refused.writeName}) was refused as not applied by every answer, but changed the store at index 12`,
    );
  });
});
