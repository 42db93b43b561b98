import { describe, expect, it } from "vitest";
import type { KvCommand, KvResult } from "../../kv/index.js";
import { ExactlyOnceChecker } from "./exactly-once.js";
import { SafetyViolation } from "./safety.js";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

const put = (value: string, idempotencyKey = "k1"): KvCommand => ({
  type: "put",
  key: "a",
  value: text(value),
  idempotencyKey,
});

const ok = (revision: number): KvResult => ({ ok: true, revision });

describe("exactly-once checker", () => {
  it("exactly-once: a retry answered from the table passes on every node (same answer)", () => {
    const c = new ExactlyOnceChecker();
    for (const node of [1, 2, 3]) c.applied(node, 4, put("v"), ok(4), true);
    for (const node of [1, 2, 3]) c.applied(node, 9, put("v"), ok(4), false);
    expect(c.executed("k1")).toBe(true);
    expect(c.revisionOf("a", "v")).toBe(4);
    expect(c.revisionOf("a", "w")).toBeUndefined();
    expect(c.answeredFromTable).toBe(1);
  });

  it("exactly-once: a refusal that changed the store anyway is caught (a refused delete deleted)", () => {
    const c = new ExactlyOnceChecker();
    const del: KvCommand = { type: "delete", key: "a", idempotencyKey: "d1" };
    const refused: KvResult = {
      ok: false,
      code: "table_full",
      table: "idempotency",
      retryAfterMs: 1000,
    };
    expect(() => c.applied(1, 6, del, refused, true)).toThrow(
      /refused the write with idempotency key d1 at index 6 .* but changed the store/,
    );
    expect(c.executedIndex("idempotency key d1")).toBeUndefined();
  });

  it("exactly-once: a write applied at a second index is caught", () => {
    const c = new ExactlyOnceChecker();
    c.applied(1, 4, put("v"), ok(4), true);
    expect(() => c.applied(1, 9, put("v"), ok(9), true)).toThrow(
      /idempotency key k1 was applied twice, at index 4 and again at index 9/,
    );
  });

  it("exactly-once: a retry answered differently from the first is caught (no store change)", () => {
    const c = new ExactlyOnceChecker();
    const failed: KvResult = { ok: false, code: "precondition_failed", currentRevision: 2 };
    c.applied(1, 4, put("v"), failed, false);
    const again: KvResult = { ok: false, code: "precondition_failed", currentRevision: 7 };
    expect(() => c.applied(1, 9, put("v"), again, false)).toThrow(
      /answered .*"currentRevision":2.* at index 4 \(node 1\) but .*"currentRevision":7/,
    );
  });

  it("exactly-once: refusals apply and record nothing, so the request may be answered later", () => {
    const c = new ExactlyOnceChecker();
    const full: KvResult = { ok: false, code: "table_full", table: "idempotency", retryAfterMs: 5 };
    c.applied(1, 3, put("v"), full, false);
    c.applied(1, 4, put("v"), { ok: false, code: "session_stale", lastSeq: 2 }, false);
    c.applied(1, 5, put("v"), ok(5), true);
    c.applied(1, 6, put("v"), { ok: false, code: "session_expired" }, false);
    expect(c.refused).toBe(1);
    expect(c.executed("k1")).toBe(true);
  });

  it("exactly-once: nodes answering differently at one index are caught (determinism)", () => {
    const c = new ExactlyOnceChecker();
    c.applied(1, 4, put("v"), ok(4), true);
    expect(() => c.applied(2, 4, put("v"), ok(3), true)).toThrow(/determinism: node 2/);
  });

  it("exactly-once: answers the workload never provokes are caught (key reused, bad command)", () => {
    const c = new ExactlyOnceChecker();
    expect(() =>
      c.applied(1, 1, put("v"), { ok: false, code: "idempotency_key_reused" }, false),
    ).toThrow(SafetyViolation);
    expect(() => c.applied(1, 2, null, ok(2), true)).toThrow(/does not decode/);
  });

  it("exactly-once: a session-tagged write without an idempotency key is applied once and answered alike", () => {
    const c = new ExactlyOnceChecker();
    const tagged = (seq: number, value: string): KvCommand => ({
      type: "put",
      key: "a",
      value: text(value),
      session: { clientId: "c1s1", seq },
    });
    c.applied(1, 4, tagged(1, "v"), ok(4), true);
    c.applied(2, 6, tagged(1, "v"), ok(4), false); // a retry answered from the session
    c.applied(1, 7, tagged(1, "v"), { ok: false, code: "session_stale", lastSeq: 2 }, false);
    expect(c.answeredFromTable).toBe(1);
    expect(() => c.applied(1, 9, tagged(1, "v"), ok(9), true)).toThrow(
      /session c1s1 seq 1 was applied twice, at index 4 and again at index 9/,
    );
    expect(() => c.applied(1, 10, tagged(1, "v"), ok(7), false)).toThrow(
      /session c1s1 seq 1 was answered/,
    );
  });

  it("exactly-once: a session's writes change the store in the order of their seqs", () => {
    const c = new ExactlyOnceChecker();
    const tagged = (seq: number): KvCommand => ({
      type: "delete",
      key: "a",
      session: { clientId: "c2s1", seq },
    });
    c.applied(1, 4, tagged(1), ok(4), true);
    c.applied(1, 5, tagged(3), ok(5), true);
    c.applied(2, 5, tagged(3), ok(5), true); // another node, the same index
    expect(() => c.applied(1, 8, tagged(2), ok(8), true)).toThrow(
      /session c2s1 changed the store with seq 2 at index 8 \(node 1\) after seq 3 at index 5/,
    );
  });
});
