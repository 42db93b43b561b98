import { describe, expect, it } from "vitest";
import { captureIo } from "../../../harness/doubles/capture-io.js";
import { ERROR_STATUS } from "../../http/error-status.js";
import { inCliWords, reportError } from "./exit-code.js";

/** What the HTTP API says that a command-line user cannot act on. */
const HTTP_WORDS =
  /Retry-After|\b(GET|POST|PUT|DELETE) \/|If-Match|Idempotency-Key|and resend|named field/;

function reported(error: unknown): { code: number; err: string } {
  const io = captureIo();
  const code = reportError(io, error);
  return { code, err: io.err() };
}

describe("the CLI says a node's advice in the command line's terms", () => {
  it("no code's advice, as a node appends it, keeps the HTTP API's words", () => {
    for (const [code, { advice }] of Object.entries(ERROR_STATUS)) {
      expect(inCliWords(`something happened; ${advice}`), code).not.toMatch(HTTP_WORDS);
    }
  });

  it("advice quoted inside a give-up's last error is said in the CLI's terms too", () => {
    const busy = ERROR_STATUS.ERR_BUSY?.advice;
    expect(inCliWords(`put: gave up (3 attempts; last error: x: HTTP 503: busy; ${busy})`)).toBe(
      "put: gave up (3 attempts; last error: x: HTTP 503: busy; it is too busy for this now; run the command again shortly)",
    );
  });

  it("an unknown lease, a compacted revision and a conflict end with a command to run, said once", () => {
    const lease = reported({
      code: "ERR_LEASE_NOT_FOUND",
      message: `lease 7 does not exist; ${ERROR_STATUS.ERR_LEASE_NOT_FOUND?.advice}`,
    });
    expect(lease).toEqual({
      code: 1,
      err: "baton: lease 7 does not exist; grant a new one with `baton lease grant SECONDS` and use its id\n",
    });
    const compacted = reported({ code: "ERR_COMPACTED", message: "revision 3 is compacted" });
    expect(compacted.err).toBe(
      "baton: revision 3 is compacted; list the keys again (`baton list`) and watch from a later revision\n",
    );
    const conflict = reported({
      code: "ERR_CONFLICT",
      message: `a change is under way; ${ERROR_STATUS.ERR_CONFLICT?.advice}`,
    });
    expect(conflict).toEqual({
      code: 1,
      err: "baton: a change is under way; nothing was changed; check `baton status` and act on what it shows\n",
    });
  });

  it("a failed precondition names the key and the revision to retry with, once", () => {
    const r = reported({
      code: "ERR_PRECONDITION_FAILED",
      key: "a b",
      currentRevision: 9,
      message: `key "a b" is at revision 9, not 4; ${ERROR_STATUS.ERR_PRECONDITION_FAILED?.advice}`,
    });
    expect(r).toEqual({
      code: 1,
      err: "baton: key \"a b\" is at revision 9, not 4; read it with `baton get 'a b'` and retry with --if-revision 9\n",
    });
  });

  it("a busy node, a full exactly-once table, a stopping node and an unknown outcome say what to do once", () => {
    for (const code of ["ERR_BUSY", "ERR_TABLE_FULL", "ERR_SHUTTING_DOWN", "ERR_INDETERMINATE"]) {
      const advice = ERROR_STATUS[code]?.advice;
      const r = reported({ code, message: `put: it happened; ${advice}` });
      expect(r.code, code).toBe(3);
      expect(r.err, code).not.toMatch(HTTP_WORDS);
      expect(r.err, code).not.toMatch(/retry shortly/);
      // The advice, in the CLI's terms, ends the line and is said only once.
      const said = r.err.slice("baton: put: it happened; ".length, -1);
      expect(r.err.split(said).length - 1, code).toBe(1);
      expect(r.err.endsWith(`; ${said}\n`), code).toBe(true);
    }
    // A message without the node's advice (the client's own) gets the CLI's.
    expect(reported({ code: "ERR_BUSY", message: "put: it happened" }).err).toBe(
      "baton: put: it happened; it is too busy for this now; run the command again shortly\n",
    );
  });
});
