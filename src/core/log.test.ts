import { describe, expect, it } from "vitest";
import type { Entry } from "../protocol/messages.js";
import { ReplicaLog } from "./log.js";

const e = (index: number, term: number): Entry => ({
  index,
  term,
  kind: "noop",
  data: new Uint8Array(),
});
const empty = { index: 0, term: 0 };

/** An entry of `bytes` bytes of data. */
const sized = (index: number, term: number, bytes: number): Entry => ({
  ...e(index, term),
  data: new Uint8Array(bytes),
});

describe("replica log", () => {
  it("log: the bytes above the commit index follow appends, replaced suffixes, commits and a state transfer", () => {
    const log = new ReplicaLog(empty, [sized(1, 1, 10), sized(2, 1, 20), sized(3, 1, 40)], 1);
    expect(log.uncommittedBytes()).toBe(60);
    log.append([sized(4, 1, 80)]);
    expect(log.uncommittedBytes()).toBe(140);
    // Entries 3 and 4 are replaced by a shorter suffix of a later term.
    log.merge(2, [sized(3, 2, 5)]);
    expect(log.uncommittedBytes()).toBe(25);
    log.commitTo(2);
    expect(log.uncommittedBytes()).toBe(5);
    log.commitTo(3);
    expect(log.uncommittedBytes()).toBe(0);
    log.append([sized(4, 2, 7)]);
    log.resetToSnapshot({ index: 9, term: 2 });
    expect(log.uncommittedBytes()).toBe(0);
  });

  it("log: merge keeps matching entries and replaces a conflicting suffix (Raft §5.3)", () => {
    const log = new ReplicaLog(empty, [e(1, 1), e(2, 1), e(3, 1)], 1);
    expect(log.merge(1, [e(2, 1), e(3, 2), e(4, 2)])).toBe(4);
    expect([1, 2, 3, 4].map((i) => log.termAt(i))).toEqual([1, 1, 2, 2]);
  });

  it("log: a stale, shorter append does not truncate newer entries", () => {
    const log = new ReplicaLog(empty, [e(1, 1), e(2, 1), e(3, 1)], 0);
    expect(log.merge(0, [e(1, 1)])).toBe(1);
    expect(log.lastIndex()).toBe(3);
  });

  it("log: truncating a committed entry is a bug and throws", () => {
    const log = new ReplicaLog(empty, [e(1, 1), e(2, 1)], 2);
    expect(() => log.merge(1, [e(2, 2)])).toThrow(/truncating committed entry 2/);
  });

  it("log: entries are handed to storage once, and again after a truncation", () => {
    const log = new ReplicaLog(empty, [], 0);
    log.append([e(1, 1), e(2, 1)]);
    expect(log.takeUnpersisted().map((x) => x.index)).toEqual([1, 2]);
    expect(log.takeUnpersisted()).toEqual([]);
    log.merge(1, [e(2, 2)]);
    expect(log.takeUnpersisted().map((x) => [x.index, x.term])).toEqual([[2, 2]]);
  });

  it("log: a durability report for an overwritten entry is ignored", () => {
    const log = new ReplicaLog(empty, [], 0);
    log.append([e(1, 1), e(2, 1)]);
    log.takeUnpersisted();
    log.merge(1, [e(2, 2)]);
    expect(log.markDurable(2, 1)).toBe(false);
    expect(log.durableIndex()).toBe(0);
    log.takeUnpersisted();
    expect(log.markDurable(2, 2)).toBe(true);
  });

  it("log: up-to-date compares last terms, then lengths (Raft §5.4.1)", () => {
    const log = new ReplicaLog(empty, [e(1, 1), e(2, 2)], 0);
    expect(log.isUpToDate(2, 2)).toBe(true);
    expect(log.isUpToDate(1, 2)).toBe(false);
    expect(log.isUpToDate(9, 1)).toBe(false);
    expect(log.isUpToDate(1, 3)).toBe(true);
  });

  it("log: the back-off hint finds the last index with a term at most the given one", () => {
    const log = new ReplicaLog(empty, [e(1, 1), e(2, 1), e(3, 3), e(4, 3)], 0);
    expect(log.lastIndexWithTermAtMost(4, 2)).toBe(2);
    expect(log.lastIndexWithTermAtMost(4, 3)).toBe(4);
    expect(log.lastIndexWithTermAtMost(9, 0)).toBe(0);
  });
});
