import { describe, expect, it } from "vitest";
import { NoMasterError, TableFullError, TimeoutError } from "../shared/errors.js";
import {
  describeError,
  describeKvFailure,
  ERROR_STATUS,
  InputLimitError,
  retryAfterSeconds,
} from "./error-status.js";

describe("http error status", () => {
  it("error status: every code is ERR_ upper case with a status and advice", () => {
    for (const [code, entry] of Object.entries(ERROR_STATUS)) {
      expect(code).toMatch(/^ERR_[A-Z_]+$/);
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.advice.length).toBeGreaterThan(10);
      // Retry-After goes with 503 only: a 4xx will fail again however long one waits.
      expect(entry.retry).toBe(
        entry.status === 503 && code !== "ERR_WRONG_ROLE" && code !== "ERR_DASHBOARD_MISSING",
      );
    }
  });

  it("error status: Retry-After is whole seconds rounded up, at least 1", () => {
    expect([0, 1, 500, 1000, 1001, 2500, Number.NaN].map(retryAfterSeconds)).toEqual([
      1, 1, 1, 1, 2, 3, 1,
    ]);
  });

  it("error status: a catalogued error keeps its code and message and gains advice", () => {
    const answer = describeError(new NoMasterError(1500));
    expect(answer).toEqual({
      status: 503,
      retryAfterSeconds: 2,
      body: {
        code: "ERR_NO_MASTER",
        error: expect.stringMatching(/^no master is reachable .*; retry after/),
        // The wait in ms too: Retry-After rounds it up to whole seconds.
        retryAfterMs: 1500,
      },
      unexpected: false,
    });
    expect(describeError(new TimeoutError("slow")).body.error).toMatch(/Idempotency-Key/);
  });

  it("error status: an input error with a bound names the field and the limit", () => {
    const answer = describeError(new InputLimitError("key", "is too long", 1024));
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ code: "ERR_INVALID_INPUT", field: "key", limit: 1024 });
  });

  it("error status: anything else is 500 ERR_INTERNAL, unexpected, without its message", () => {
    for (const thrown of [new Error("db password"), "a string", null, { code: "ERR_MADE_UP" }]) {
      const answer = describeError(thrown);
      expect(answer.status).toBe(500);
      expect(answer.unexpected).toBe(true);
      expect(answer.body.code).toBe("ERR_INTERNAL");
      expect(answer.body.error).not.toContain("password");
    }
  });

  it("error status: each failed key-value result gets its own code and status", () => {
    const cases = [
      [
        { ok: false, code: "precondition_failed", currentRevision: 4 },
        412,
        "ERR_PRECONDITION_FAILED",
      ],
      [{ ok: false, code: "not_found" }, 404, "ERR_NOT_FOUND"],
      [{ ok: false, code: "session_stale", lastSeq: 3 }, 409, "ERR_SESSION_STALE"],
      [{ ok: false, code: "session_expired" }, 409, "ERR_SESSION_EXPIRED"],
      [{ ok: false, code: "idempotency_key_reused" }, 422, "ERR_IDEMPOTENCY_KEY_REUSED"],
      [
        { ok: false, code: "invalid_command", reason: "value_too_large", message: "big" },
        413,
        "ERR_TOO_LARGE",
      ],
      [
        { ok: false, code: "invalid_command", reason: "key_too_long", message: "long" },
        400,
        "ERR_INVALID_INPUT",
      ],
    ] as const;
    for (const [result, status, code] of cases) {
      const answer = describeKvFailure(result, "k");
      expect(answer.status, result.code).toBe(status);
      expect(answer.body.code).toBe(code);
      expect(answer.retryAfterSeconds).toBeNull();
    }
    const precondition = describeKvFailure(cases[0][0], "k");
    expect(precondition.body).toMatchObject({ key: "k", currentRevision: 4 });
    // A 413 names the limit it broke, as the HTTP layer's own 413s do.
    expect(describeKvFailure(cases[5][0], "k", { valueBytesMax: 1024 }).body).toMatchObject({
      code: "ERR_TOO_LARGE",
      field: "value",
      limit: 1024,
    });
    const invalid = describeKvFailure(cases[6][0], "k");
    expect(invalid.body).toMatchObject({ field: "key", error: expect.stringMatching(/^long; /) });
  });

  it("error status: a full exactly-once table is 503 ERR_TABLE_FULL with Retry-After", () => {
    const answer = describeKvFailure(
      { ok: false, code: "table_full", table: "idempotency", retryAfterMs: 1000 },
      "k",
    );
    expect(answer).toEqual({
      status: 503,
      retryAfterSeconds: 1,
      body: {
        code: "ERR_TABLE_FULL",
        table: "idempotency",
        retryAfterMs: 1000,
        error: expect.stringMatching(
          /^the write was not applied: .*idempotency keys.*Idempotency-Key/,
        ),
      },
      unexpected: false,
    });
    expect(describeError(new TableFullError("sessions", 2500)).retryAfterSeconds).toBe(3);
  });
});
