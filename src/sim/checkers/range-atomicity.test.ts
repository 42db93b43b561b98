import { describe, expect, it } from "vitest";
import type { KvCommand } from "../../kv/index.js";
import { RangeAtomicityChecker } from "./range-atomicity.js";
import { SafetyViolation } from "./safety.js";

const bytes = new TextEncoder().encode("v");
const txn: KvCommand = {
  type: "txn",
  compare: [],
  success: [
    { type: "put", key: "k0", value: bytes },
    { type: "put", key: "k1", value: bytes },
  ],
  failure: [],
};

describe("range atomicity checker", () => {
  it("range reads: a read that sees a two-key transaction whole, or not at all, passes", () => {
    const checker = new RangeAtomicityChecker();
    checker.applied(5, txn, { ok: true, revision: 5, succeeded: true }, true);
    checker.checkRange(1, 4, [{ key: "k0", revision: 3 }]);
    checker.checkRange(1, 6, [
      { key: "k0", revision: 5 },
      { key: "k1", revision: 6 },
    ]);
    expect(checker.reads).toBe(2);
  });

  it("range reads: a read that sees half of a transaction is torn", () => {
    const checker = new RangeAtomicityChecker();
    checker.applied(5, txn, { ok: true, revision: 5, succeeded: true }, true);
    expect(() =>
      checker.checkRange(2, 5, [
        { key: "k0", revision: 5 },
        { key: "k1", revision: 2 },
      ]),
    ).toThrow(SafetyViolation);
  });

  it("range reads: a key newer than the read's revision is a violation", () => {
    const checker = new RangeAtomicityChecker();
    expect(() => checker.checkRange(2, 5, [{ key: "k0", revision: 6 }])).toThrow(SafetyViolation);
  });
});
