/**
 * The campaign's verdicts on small hand-made histories, each of which can be argued on
 * paper: a lost acknowledged write, a write applied twice, a stale read, and an
 * indeterminate write that did take effect (which is no violation). And the tally of the
 * errors the campaign's loops carry on after: refusals the faults explain are counted,
 * answers that say the requests are wrong are problems.
 */

import { describe, expect, it } from "vitest";
import {
  checkExactlyOnce,
  checkHistory,
  checkNoErrors,
  checkNoLostWrites,
  ErrorTally,
  isInternalError,
  parseErrorLine,
} from "../../src/chaos/checks.js";
import type { OpRecord } from "../../src/chaos/workload.js";
import { UnexpectedResponseError } from "../../src/client/errors.js";
import { InvalidInputError, NoMasterError, TimeoutError } from "../../src/shared/errors.js";

let nextId = 1;

function op(fields: Partial<OpRecord> & Pick<OpRecord, "kind" | "invokedAt">): OpRecord {
  return {
    id: nextId++,
    client: 1,
    key: "k",
    nodes: [1],
    completedAt: fields.invokedAt + 10,
    outcome: "ok",
    ...fields,
  };
}

describe("chaos checks", () => {
  it("chaos: a final state older than an acknowledged write is a lost write", () => {
    const history = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 0 }),
      op({ kind: "write", value: "b", revision: 9, invokedAt: 20 }),
      op({ kind: "read", output: "a", revision: 5, invokedAt: 100, final: true }),
    ];
    const verdict = checkNoLostWrites(history);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toContain("final revision 5 < acknowledged write");
    expect(checkHistory(history).ok).toBe(false);
  });

  it("chaos: an absent key is excused only by a delete that may have come after the acknowledged write", () => {
    const before = [
      op({ kind: "delete", output: true, revision: 3, invokedAt: 0 }),
      op({ kind: "write", value: "a", revision: 5, invokedAt: 20 }),
      op({ kind: "read", output: null, invokedAt: 100, final: true }),
    ];
    const verdict = checkNoLostWrites(before);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toContain("absent, but");
    // An acknowledged delete at a later revision, or one whose outcome is unknown and
    // that overlapped the write, may explain it.
    const later = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 20 }),
      op({ kind: "delete", output: true, revision: 8, invokedAt: 40 }),
      op({ kind: "read", output: null, invokedAt: 100, final: true }),
    ];
    expect(checkNoLostWrites(later).ok).toBe(true);
    // An unknown outcome, even one given up before the write was invoked: a forwarded
    // request may still be applied after its client gave up.
    const unknown = [
      op({ kind: "delete", outcome: "indeterminate", completedAt: 10, invokedAt: 0 }),
      op({ kind: "write", value: "a", revision: 5, invokedAt: 20 }),
      op({ kind: "read", output: null, invokedAt: 100, final: true }),
    ];
    expect(checkNoLostWrites(unknown).ok).toBe(true);
    // A delete answered "not found" deleted nothing.
    const nothing = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 20 }),
      op({ kind: "delete", output: false, invokedAt: 40 }),
      op({ kind: "read", output: null, invokedAt: 100, final: true }),
    ];
    expect(checkNoLostWrites(nothing).ok).toBe(false);
  });

  it("chaos: the last acknowledged write in the final state is no loss", () => {
    const history = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 0 }),
      op({ kind: "cas", expected: "a", value: "b", output: true, revision: 9, invokedAt: 20 }),
      op({ kind: "read", output: "b", revision: 9, invokedAt: 100, final: true }),
    ];
    expect(checkNoLostWrites(history).ok).toBe(true);
    expect(checkHistory(history).ok).toBe(true);
  });

  it("chaos: one value at two revisions was applied twice", () => {
    const history = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 0, nodes: [1, 2] }),
      op({ kind: "read", output: "a", revision: 7, invokedAt: 50 }),
    ];
    const verdict = checkExactlyOnce(history);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toBe("value a seen at revisions 5, 7");
  });

  it("chaos: a read of an overwritten value after the overwrite completed is not linearizable", () => {
    const history = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 0 }),
      op({ kind: "write", value: "b", revision: 6, invokedAt: 20 }),
      op({ kind: "read", output: "a", revision: 5, invokedAt: 40, stale: true }),
    ];
    const verdict = checkHistory(history);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toMatch(/^k: /);
  });

  it("chaos: an indeterminate write may take effect later (no violation)", () => {
    const history = [
      op({ kind: "write", value: "a", revision: 5, invokedAt: 0 }),
      op({ kind: "write", value: "b", invokedAt: 20, completedAt: 1520, outcome: "indeterminate" }),
      op({ kind: "read", output: "a", revision: 5, invokedAt: 1600 }),
      op({ kind: "read", output: "b", revision: 8, invokedAt: 1700 }),
      op({ kind: "read", output: "b", revision: 8, invokedAt: 1800, final: true }),
    ];
    expect(checkHistory(history).ok).toBe(true);
    expect(checkNoLostWrites(history).ok).toBe(true);
    expect(checkExactlyOnce(history).ok).toBe(true);
  });

  it("chaos: refusals a fault explains are counted, a 4xx that says the request is wrong is a problem", () => {
    const tally = new ErrorTally();
    tally.note(new NoMasterError());
    tally.note(new NoMasterError());
    tally.note(new TimeoutError("deadline passed"));
    tally.note(new UnexpectedResponseError("http://n1", 503, "no master"));
    expect(tally.problems()).toEqual([]);
    tally.note(new InvalidInputError("compare", "not a comparison"));
    tally.note(new UnexpectedResponseError("http://n1", 409, "session expired"));
    expect(tally.problems()).toEqual([
      "1 requests answered ERR_INVALID_INPUT, which no fault explains: compare: not a comparison",
      "1 requests answered HTTP_409, which no fault explains: unexpected answer from http://n1 (HTTP 409): session expired",
    ]);
    expect(tally.detail()).toBe(
      "; errors: ERR_NO_MASTER 2, ERR_TIMEOUT 1, HTTP_503 1, ERR_INVALID_INPUT 1, HTTP_409 1",
    );
  });

  it("chaos: an internal error (500, or any 5xx but 503 and 507) is a bug whichever loop meets it", () => {
    const tally = new ErrorTally();
    tally.note(new UnexpectedResponseError("http://n1", 409, "not caught up"));
    tally.note(new UnexpectedResponseError("http://n1", 507, "quota"));
    // The operator's loop expects refusals: only internal errors count against it.
    expect(tally.internalProblems()).toEqual([]);
    tally.note(new UnexpectedResponseError("http://n2", 500, "internal"));
    tally.note(new UnexpectedResponseError("http://n2", 502, "bad gateway"));
    expect(tally.internalProblems()).toEqual([
      "1 requests answered HTTP_500, an internal error (a bug): unexpected answer from http://n2 (HTTP 500): internal",
      "1 requests answered HTTP_502, an internal error (a bug): unexpected answer from http://n2 (HTTP 502): bad gateway",
    ]);
    expect(tally.problems()).toHaveLength(3);
    expect(isInternalError(null, "ERR_INTERNAL")).toBe(true);
    expect(isInternalError(503, "ERR_TIMEOUT")).toBe(false);
  });

  it("chaos: a node's error and fatal log lines fail noErrors, with their time and message; lower levels do not count", () => {
    const origin = 1_000_000;
    const line = (level: number, msg: string) =>
      JSON.stringify({ level, time: origin + 2500, node: 2, msg });
    expect(parseErrorLine(line(40, "slow disk"), 2, origin)).toBeNull();
    expect(parseErrorLine("not json at all", 2, origin)).toBeNull();
    const error = parseErrorLine(line(50, "receiving a snapshot failed"), 2, origin);
    expect(error).toEqual({ at: 2500, node: 2, line: "receiving a snapshot failed" });
    expect(checkNoErrors([], [{ node: 1, count: 0, lines: [] }]).ok).toBe(true);
    const verdict = checkNoErrors(
      ["n1 PUT k1: 500 ERR_INTERNAL"],
      [
        { node: 1, count: 0, lines: [] },
        { node: 2, count: 30, lines: [error!] },
      ],
    );
    expect(verdict.ok).toBe(false);
    expect(verdict.detail).toBe("1 internal errors answered, 30 error lines logged");
    expect(verdict.problems).toEqual([
      "1 requests answered with an internal error (a bug, by the API's contract): n1 PUT k1: 500 ERR_INTERNAL",
      "n2 logged 30 errors, the first:\n2.5 s receiving a snapshot failed",
    ]);
  });
});
