import { describe, expect, it } from "vitest";
import type { Replica } from "../../core/replica.js";
import type { Entry } from "../../protocol/messages.js";
import { SafetyChecker, SafetyViolation } from "./safety.js";

/** A stand-in exposing just what the checker reads from a replica. */
function fake(role: string, term: number, log: Entry[], commitIndex: number): Replica {
  return {
    role,
    term,
    commitIndex,
    lastIndex: log.length,
    snapshotIndex: 0,
    entryAt: (i: number) => log[i - 1],
  } as unknown as Replica;
}

const entry = (index: number, term: number): Entry => ({
  index,
  term,
  kind: "noop",
  data: new Uint8Array(),
});

describe("safety checker", () => {
  it("safety: two masters in one term are caught", () => {
    const c = new SafetyChecker();
    c.restarted(1, 1);
    c.restarted(2, 1);
    c.check(1, fake("master", 3, [], 0));
    expect(() => c.check(2, fake("master", 3, [], 0))).toThrow(/two masters in term 3/);
  });

  it("safety: different entries at one index and term are caught (log matching)", () => {
    const c = new SafetyChecker();
    c.restarted(1, 1);
    c.restarted(2, 1);
    c.check(1, fake("backup", 1, [entry(1, 1)], 0));
    expect(() => c.check(2, fake("backup", 1, [entry(1, 1)], 0))).toThrow(SafetyViolation);
  });

  it("safety: logs that agree at an index but not before it are caught (log matching)", () => {
    const c = new SafetyChecker();
    const shared = entry(2, 2);
    c.restarted(1, 1);
    c.restarted(2, 1);
    c.check(1, fake("backup", 2, [entry(1, 1), shared], 0));
    expect(() => c.check(2, fake("backup", 2, [entry(1, 1), shared], 0))).toThrow(
      /different entry at index 1/,
    );
  });

  it("safety: a committed entry that changes is caught", () => {
    const c = new SafetyChecker();
    c.restarted(1, 1);
    c.restarted(2, 1);
    c.check(1, fake("backup", 1, [entry(1, 1)], 1));
    expect(() => c.check(2, fake("backup", 2, [entry(1, 2)], 1))).toThrow(/committed entry 1/);
  });

  it("safety: a commit index going backwards is caught (same incarnation)", () => {
    const c = new SafetyChecker();
    const log = [entry(1, 1), entry(2, 1)];
    c.restarted(1, 1);
    c.check(1, fake("backup", 1, log, 2));
    expect(() => c.check(1, fake("backup", 1, log, 1))).toThrow(/went back/);
  });

  it("safety: a new master missing a committed entry is caught (leader completeness)", () => {
    const c = new SafetyChecker();
    const log = [entry(1, 1), entry(2, 1)];
    c.restarted(1, 1);
    c.restarted(2, 1);
    c.check(1, fake("master", 1, log, 2));
    expect(() => c.check(2, fake("master", 2, [log[0]!], 1))).toThrow(/without committed entry 2/);
  });

  it("safety: applying an entry that is not committed is caught", () => {
    const c = new SafetyChecker();
    c.restarted(1, 1);
    expect(() => c.applied(1, entry(1, 1))).toThrow(/not known committed/);
  });
});
