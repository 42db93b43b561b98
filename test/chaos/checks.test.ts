/**
 * The campaign's verdicts on small hand-made histories, each of which can be argued on
 * paper: a lost acknowledged write, a write applied twice, a stale read, and an
 * indeterminate write that did take effect (which is no violation), and a history whose
 * writes were all refused, which checks nothing. And the tally of the errors the campaign's
 * loops and the workload carry on after: refusals the faults explain are counted, answers
 * that say the requests are wrong are problems.
 */

import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import {
  checkExactlyOnce,
  checkHistory,
  checkNoErrors,
  checkNoLostWrites,
  ErrorTally,
  isInternalError,
  parseErrorLine,
} from "../../src/chaos/checks.js";
import { checkWatch } from "../../src/chaos/watch-check.js";
import { type OpRecord, Workload } from "../../src/chaos/workload.js";
import { UnexpectedResponseError } from "../../src/client/errors.js";
import { createHttpServer } from "../../src/http/server.js";
import { InvalidInputError, NoMasterError, TimeoutError } from "../../src/shared/errors.js";
import { errorAnswer, startAnswerProxy } from "./answer-proxy.js";

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

  it("chaos: a history whose writes were all refused checks nothing: linearizable, noLostWrites and watched fail, and say how many writes were confirmed", () => {
    const history: OpRecord[] = [];
    for (let i = 0; i < 10; i++) {
      history.push(
        op({
          kind: "write",
          value: `c1-${i}`,
          outcome: "failed",
          error: "ERR_INVALID_INPUT",
          invokedAt: 100 * i,
        }),
        op({ kind: "read", output: null, invokedAt: 100 * i + 50 }),
      );
    }
    history.push(op({ kind: "read", output: null, invokedAt: 2000, final: true }));
    const linearizable = checkHistory(history);
    expect(linearizable.ok).toBe(false);
    expect(linearizable.detail).toBe(
      "1 keys, 11 operations checked, 0 confirmed writes; none of the 10 writes attempted was confirmed",
    );
    expect(linearizable.problems).toEqual([
      "none of the 10 writes attempted was confirmed: nothing was checked",
    ]);
    const lost = checkNoLostWrites(history);
    expect(lost.ok).toBe(false);
    expect(lost.problems).toEqual([
      "none of the 10 writes attempted was confirmed: nothing was checked",
    ]);
    const watched = checkWatch(history, [], null, 0);
    expect(watched.ok).toBe(false);
    expect(watched.problems).toEqual([
      "none of the 10 writes attempted was confirmed: the watch checked nothing",
    ]);
    // One confirmed write is something to check.
    const one = [...history, op({ kind: "write", value: "c1-x", revision: 2, invokedAt: 2050 })];
    one.push(op({ kind: "read", output: "c1-x", revision: 2, invokedAt: 2100, final: true }));
    expect(checkHistory(one)).toMatchObject({
      ok: true,
      detail: "1 keys, 13 operations checked, 1 confirmed writes",
    });
    expect(checkNoLostWrites(one).ok).toBe(true);
  });

  it("chaos: the workload's answers that say its requests are wrong (400, 413, any 4xx it cannot place) fail noErrors; refusals do not", async () => {
    const node = new LocalKvNode(1);
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    let refused = 0;
    const proxy = await startAnswerProxy(
      (await server.listen("127.0.0.1", 0)).url,
      async (incoming, forward) => {
        if (incoming.method === "GET") return forward();
        refused++;
        if (refused % 3 === 0) return errorAnswer(503, "ERR_NO_MASTER", "no master");
        return refused % 3 === 1
          ? errorAnswer(400, "ERR_INVALID_INPUT", "value: not a value")
          : { status: 418, headers: {}, body: "" };
      },
    );
    const workload = new Workload({
      seed: 1,
      clients: 2,
      keys: 2,
      keyEpochMs: 60_000,
      requestTimeoutMs: 1000,
      attemptsMax: 2,
      thinkMs: 5,
      staleReads: false,
      urls: new Map([[1, proxy.url]]),
      now: () => performance.now(),
    });
    try {
      workload.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await workload.stop();
    } finally {
      await workload.close();
      await new Promise((done) => proxy.server.close(done));
      await server.close();
    }
    expect(refused).toBeGreaterThan(4);
    const wrong = workload.errors.wrongProblems();
    expect(wrong).toHaveLength(2);
    expect(wrong).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^\d+ requests answered ERR_INVALID_INPUT, which no fault explains: value: not a value$/,
        ),
        expect.stringMatching(/^\d+ requests answered HTTP_418, which no fault explains: $/),
      ]),
    );
    const verdict = checkNoErrors(workload.internalErrors, [], wrong);
    expect(verdict.ok).toBe(false);
    expect(verdict.detail).toBe(
      "0 internal errors answered, 2 kinds of wrong-request answers, 0 error lines logged",
    );
    expect(verdict.problems).toEqual(wrong);
    expect(workload.errors.detail()).toMatch(/ERR_NO_MASTER \d+/);
    expect(checkNoErrors([], [], []).detail).toBe(
      "no internal error or wrong-request answer, no error logged by any node",
    );
  });

  it("chaos: answers a node gives are placed as the client library's errors are (by code, else by status)", () => {
    const tally = new ErrorTally();
    tally.noteAnswer(503, "ERR_NO_MASTER", "no master");
    tally.noteAnswer(413, "ERR_TOO_LARGE", "value: at most 1 MiB");
    tally.noteAnswer(422, "ERR_IDEMPOTENCY_KEY_REUSED", "another request had that key");
    tally.noteAnswer(404, null, "");
    tally.noteAnswer(500, "ERR_INTERNAL", "a bug");
    expect(tally.wrongProblems()).toEqual([
      "1 requests answered ERR_TOO_LARGE, which no fault explains: value: at most 1 MiB",
      "1 requests answered ERR_IDEMPOTENCY_KEY_REUSED, which no fault explains: another request had that key",
      "1 requests answered HTTP_404, which no fault explains: ",
    ]);
    expect(tally.internalProblems()).toEqual([
      "1 requests answered ERR_INTERNAL, an internal error (a bug): a bug",
    ]);
    expect([...tally.refused]).toEqual([["ERR_NO_MASTER", 1]]);
  });
});
