import { describe, expect, it, vi } from "vitest";
import { type KvResult, KvStateMachine } from "../kv/index.js";
import { runSeed } from "./run.js";
import { casAsTxn, casTxn, putsOf } from "./store-ops.js";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("sim store operations", () => {
  it("sim store: a compare-and-set as a transaction, and the puts it made", () => {
    const txn = casTxn("k", 3, bytes("v"), { idempotencyKey: "i" });
    expect(txn).toEqual({
      type: "txn",
      compare: [{ key: "k", target: "revision", revision: 3 }],
      success: [{ type: "put", key: "k", value: bytes("v") }],
      failure: [],
      idempotencyKey: "i",
    });
    expect(putsOf(txn, { ok: true, revision: 9, succeeded: true })).toEqual([
      { type: "put", key: "k", value: bytes("v") },
    ]);
    expect(putsOf(txn, { ok: true, revision: 8, succeeded: false })).toEqual([]);
    expect([1, 2, 3, 4].map(casAsTxn)).toEqual([false, true, false, true]);
  });

  it("sim store: a seed's workload applies transactions both ways and stays linearizable", () => {
    const outcomes = { succeeded: 0, failed: 0 };
    const apply = KvStateMachine.prototype.apply;
    const spy = vi.spyOn(KvStateMachine.prototype, "apply").mockImplementation(function (
      this: KvStateMachine,
      ...args: Parameters<KvStateMachine["apply"]>
    ): KvResult {
      const result = apply.apply(this, args);
      if (result.ok && result.succeeded === true) outcomes.succeeded++;
      if (result.ok && result.succeeded === false) outcomes.failed++;
      return result;
    });
    try {
      const result = runSeed(1);
      expect(result.violation).toBeUndefined();
      expect(result.ok).toBe(true);
    } finally {
      spy.mockRestore();
    }
    expect(outcomes.succeeded).toBeGreaterThan(0);
    expect(outcomes.failed).toBeGreaterThan(0);
  });
});
