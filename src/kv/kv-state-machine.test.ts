import { describe, expect, it } from "vitest";
import { AssertionError } from "../shared/assert.js";
import {
  encodeCommand,
  type KvCommand,
  type KvResult,
  kvPackr,
  type WriteOptions,
} from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { defaultKvLimits, type KvLimits } from "./limits.js";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** Feeds commands to a state machine as a log would: increasing indexes, a given time. */
class Driver {
  index = 0;
  time = 0;
  readonly sm: KvStateMachine;

  constructor(limits: Partial<KvLimits> = {}) {
    this.sm = new KvStateMachine({ ...defaultKvLimits(), ...limits });
  }

  run(command: KvCommand, timeMs = this.time): KvResult {
    this.index++;
    this.time = timeMs;
    return this.sm.apply(encodeCommand(command), { index: this.index, term: 1, time: timeMs });
  }

  put(key: string, value: string, options: WriteOptions = {}, timeMs = this.time): KvResult {
    return this.run({ type: "put", key, value: text(value), ...options }, timeMs);
  }

  del(key: string, options: WriteOptions = {}, timeMs = this.time): KvResult {
    return this.run({ type: "delete", key, ...options }, timeMs);
  }

  value(key: string): string | null {
    const entry = this.sm.get(key);
    return entry === null ? null : new TextDecoder().decode(entry.value);
  }
}

const session = (clientId: string, seq: number) => ({ session: { clientId, seq } });

describe("kv state machine", () => {
  it("kv: put, get and delete track per-key and store revisions (log indexes)", () => {
    const kv = new Driver();
    expect(kv.sm.get("a")).toBeNull();
    expect(kv.put("a", "1")).toEqual({ ok: true, revision: 1 });
    expect(kv.put("b", "2")).toEqual({ ok: true, revision: 2 });
    expect(kv.put("a", "3")).toEqual({ ok: true, revision: 3 });
    expect(kv.sm.get("a")).toEqual({ value: text("3"), revision: 3 });
    expect(kv.sm.get("b")?.revision).toBe(2);
    expect(kv.sm.revision).toBe(3);
    expect(kv.del("b")).toEqual({ ok: true, revision: 4 });
    expect(kv.sm.get("b")).toBeNull();
    expect(kv.del("b")).toEqual({ ok: false, code: "not_found" });
    // A failed command modifies nothing, so the store revision stays at the last change.
    expect(kv.sm.revision).toBe(4);
    expect(kv.sm.size).toBe(1);
  });

  it("kv: compare-and-set applies only on a matching revision (0 means absent)", () => {
    const kv = new Driver();
    expect(kv.put("a", "1", { ifRevision: 0 })).toEqual({ ok: true, revision: 1 });
    expect(kv.put("a", "2", { ifRevision: 0 })).toEqual({
      ok: false,
      code: "precondition_failed",
      currentRevision: 1,
    });
    expect(kv.put("a", "2", { ifRevision: 1 })).toEqual({ ok: true, revision: 3 });
    expect(kv.put("b", "x", { ifRevision: 5 })).toEqual({
      ok: false,
      code: "precondition_failed",
      currentRevision: 0,
    });
    expect(kv.del("a", { ifRevision: 1 })).toEqual({
      ok: false,
      code: "precondition_failed",
      currentRevision: 3,
    });
    expect(kv.del("a", { ifRevision: 3 })).toEqual({ ok: true, revision: 6 });
    expect(kv.del("a", { ifRevision: 0 })).toEqual({ ok: false, code: "not_found" });
    expect(kv.del("a", { ifRevision: 6 })).toEqual({
      ok: false,
      code: "precondition_failed",
      currentRevision: 0,
    });
    expect(kv.value("a")).toBeNull();
    expect(kv.value("b")).toBeNull();
  });

  it("kv: bad commands are results, applied nowhere (garbage bytes, over-limit fields)", () => {
    const kv = new Driver({ keyBytesMax: 3, valueBytesMax: 2 });
    const garbage = kv.sm.apply(Uint8Array.of(0xc1), { index: 1, term: 1, time: 0 });
    expect(garbage).toMatchObject({ ok: false, code: "invalid_command", reason: "malformed" });
    const wrongVersion = kvPackr.pack([9, "put", "k", text("v"), null, null, null, null]);
    expect(kv.sm.apply(wrongVersion, { index: 2, term: 1, time: 0 })).toMatchObject({
      reason: "malformed",
    });
    kv.index = 2;
    expect(kv.put("long", "v")).toMatchObject({ code: "invalid_command", reason: "key_too_long" });
    expect(kv.put("k", "vvv")).toMatchObject({ reason: "value_too_large" });
    expect(kv.put("k", "v", session("c", 0))).toMatchObject({ reason: "session_invalid" });
    expect(kv.sm.size).toBe(0);
    expect(kv.sm.sessionCount).toBe(0);
    expect(kv.sm.revision).toBe(0);
  });

  it("kv: the runtime applying out of order or twice is a bug (assertion)", () => {
    const kv = new Driver();
    kv.put("a", "1");
    const command = encodeCommand({ type: "put", key: "a", value: text("2") });
    expect(() => kv.sm.apply(command, { index: 1, term: 1, time: 0 })).toThrow(AssertionError);
    expect(() => kv.sm.apply(command, { index: 2, term: 1, time: Number.NaN })).toThrow(
      AssertionError,
    );
    expect(() => kv.sm.apply(command, { index: 2.5, term: 1, time: 0 })).toThrow(AssertionError);
  });

  it("kv: results handed out are frozen (callers cannot change replicated state)", () => {
    const kv = new Driver();
    const result = kv.put("a", "1", session("c", 1));
    expect(Object.isFrozen(result)).toBe(true);
  });
});

describe("kv sessions", () => {
  it("sessions: a retried seq returns the first result without applying again", () => {
    // Raft dissertation §6.3: the state machine answers a duplicate from the session.
    const [kv, control] = [new Driver(), new Driver()];
    for (const replica of [kv, control]) {
      replica.put("a", "1", session("c", 1));
      replica.put("a", "other");
    }
    const retry = kv.put("a", "1", session("c", 1));
    expect(retry).toEqual({ ok: true, revision: 1 });
    expect(kv.value("a")).toBe("other");
    expect(kv.sm.get("a")?.revision).toBe(2);
    // The retry changes no more than a command that does nothing at the same index and time.
    control.sm.apply(Uint8Array.of(0xc1), { index: 3, term: 1, time: 0 });
    expect(kv.sm.stateHash()).toBe(control.sm.stateHash());
  });

  it("sessions: failed outcomes are remembered too (precondition failed, then retried)", () => {
    const kv = new Driver();
    kv.put("a", "1");
    const failed = kv.put("a", "2", { ifRevision: 0, ...session("c", 1) });
    expect(failed).toMatchObject({ code: "precondition_failed", currentRevision: 1 });
    kv.del("a");
    // The retry must not see the key's absence now: it gets the original answer.
    expect(kv.put("a", "2", { ifRevision: 0, ...session("c", 1) })).toEqual(failed);
    expect(kv.value("a")).toBeNull();
  });

  it("sessions: a lower seq is stale and an unknown session must start at seq 1", () => {
    const kv = new Driver();
    expect(kv.put("a", "1", session("c", 1))).toEqual({ ok: true, revision: 1 });
    expect(kv.put("a", "2", session("c", 2))).toEqual({ ok: true, revision: 2 });
    expect(kv.put("a", "x", session("c", 1))).toEqual({
      ok: false,
      code: "session_stale",
      lastSeq: 2,
    });
    // Gaps are fine: a seq above the last one is a new request.
    expect(kv.put("a", "5", session("c", 5))).toEqual({ ok: true, revision: 4 });
    expect(kv.put("a", "x", session("unknown", 3))).toEqual({
      ok: false,
      code: "session_expired",
    });
    expect(kv.value("a")).toBe("5");
    expect(kv.sm.sessionCount).toBe(1);
  });

  it("sessions: expire by log time, never by the node's clock (TTL 1000 ms)", () => {
    const kv = new Driver({ sessionTtlMs: 1000 });
    kv.put("a", "1", session("c", 1), 10_000);
    kv.put("a", "2", session("c", 2), 10_999);
    kv.put("b", "x", {}, 11_998);
    // Still alive: the last use at 10_999 is 999 ms ago.
    expect(kv.put("a", "2", session("c", 2), 11_998)).toEqual({ ok: true, revision: 2 });
    kv.put("b", "y", {}, 12_998);
    expect(kv.sm.sessionCount).toBe(0);
    expect(kv.put("a", "3", session("c", 3), 12_998)).toEqual({
      ok: false,
      code: "session_expired",
    });
    expect(kv.value("a")).toBe("2");
  });

  it("sessions: log time is clamped so a master with a slow clock cannot revive entries", () => {
    const kv = new Driver({ sessionTtlMs: 1000 });
    kv.put("a", "1", session("c", 1), 5000);
    kv.put("b", "x", {}, 7000);
    // A new master's clock is behind: the session stays expired.
    expect(kv.put("a", "2", session("c", 2), 5500)).toEqual({
      ok: false,
      code: "session_expired",
    });
  });

  it("sessions: fractional and negative log times are floored and clamped the same everywhere", () => {
    const [kv, twin] = [new Driver({ sessionTtlMs: 1000 }), new Driver({ sessionTtlMs: 1000 })];
    kv.put("a", "1", session("c", 1), 999.9);
    twin.put("a", "1", session("c", 1), 999);
    kv.put("a", "2", {}, -5);
    twin.put("a", "2", {}, 0);
    expect(kv.sm.stateHash()).toBe(twin.sm.stateHash());
    expect(kv.put("b", "x", session("c", 2), 1998.5)).toEqual({ ok: true, revision: 3 });
  });

  it("sessions: expiry work per apply is bounded and expired entries count as absent", () => {
    const kv = new Driver({ sessionTtlMs: 100, expiryCountMaxPerApply: 2 });
    for (let i = 0; i < 10; i++) kv.put("a", "v", session(`c${i}`, 1), i);
    kv.put("b", "x", {}, 1000);
    expect(kv.sm.sessionCount).toBe(8);
    expect(kv.put("a", "again", session("c9", 2), 1000)).toEqual({
      ok: false,
      code: "session_expired",
    });
    expect(kv.sm.sessionCount).toBe(6);
  });

  it("sessions: a full table evicts the least recently used, identically on two replicas", () => {
    const replicas = [new Driver({ sessionCountMax: 3 }), new Driver({ sessionCountMax: 3 })];
    for (const kv of replicas) {
      kv.put("k", "1", session("a", 1), 1);
      kv.put("k", "2", session("b", 1), 2);
      kv.put("k", "3", session("c", 1), 2);
      kv.put("k", "4", session("a", 2), 3);
      kv.put("k", "5", session("d", 1), 4);
      expect(kv.sm.sessionCount).toBe(3);
      expect(kv.put("k", "x", session("b", 2), 5)).toEqual({ ok: false, code: "session_expired" });
      expect(kv.put("k", "5", session("d", 1), 5)).toEqual({ ok: true, revision: 5 });
      expect(kv.put("k", "4", session("a", 2), 5)).toEqual({ ok: true, revision: 4 });
    }
    expect(replicas[0]!.sm.stateHash()).toBe(replicas[1]!.sm.stateHash());
  });
});

describe("kv idempotency keys", () => {
  it("idempotency: a repeated key returns the first result without applying again", () => {
    const kv = new Driver();
    const first = kv.put("a", "1", { idempotencyKey: "req-1" });
    kv.put("a", "2");
    expect(kv.put("a", "1", { idempotencyKey: "req-1" })).toEqual(first);
    expect(kv.value("a")).toBe("2");
    expect(kv.sm.idempotencyKeyCount).toBe(1);
  });

  it("idempotency: a key reused for a different command is refused, not applied", () => {
    const kv = new Driver();
    kv.put("a", "1", { idempotencyKey: "req-1" });
    expect(kv.put("a", "other", { idempotencyKey: "req-1" })).toEqual({
      ok: false,
      code: "idempotency_key_reused",
    });
    expect(kv.del("a", { idempotencyKey: "req-1" })).toMatchObject({
      code: "idempotency_key_reused",
    });
    expect(kv.value("a")).toBe("1");
  });

  it("idempotency: keys expire a TTL after first use (log time, TTL 1000 ms)", () => {
    const kv = new Driver({ idempotencyTtlMs: 1000 });
    kv.del("a", { idempotencyKey: "k" }, 0);
    expect(kv.put("a", "1", { idempotencyKey: "k" }, 500)).toMatchObject({
      code: "idempotency_key_reused",
    });
    expect(kv.del("a", { idempotencyKey: "k" }, 999)).toEqual({ ok: false, code: "not_found" });
    // Retries do not extend the key's life: at 1000 ms it is gone and the request is new.
    expect(kv.put("a", "1", { idempotencyKey: "k" }, 1000)).toEqual({ ok: true, revision: 4 });
  });

  it("idempotency: a full table evicts the oldest key, identically on two replicas", () => {
    const replicas = [
      new Driver({ idempotencyKeyCountMax: 2 }),
      new Driver({ idempotencyKeyCountMax: 2 }),
    ];
    for (const kv of replicas) {
      kv.put("a", "1", { idempotencyKey: "x" }, 1);
      kv.put("a", "2", { idempotencyKey: "y" }, 1);
      kv.put("a", "3", { idempotencyKey: "z" }, 2);
      expect(kv.sm.idempotencyKeyCount).toBe(2);
      expect(kv.put("a", "1", { idempotencyKey: "x" }, 3)).toEqual({ ok: true, revision: 4 });
    }
    expect(replicas[0]!.sm.stateHash()).toBe(replicas[1]!.sm.stateHash());
  });

  it("idempotency: with a session too, a new seq reusing a key gets the key's result", () => {
    const kv = new Driver();
    const first = kv.put("a", "1", { idempotencyKey: "k", ...session("c", 1) });
    kv.put("a", "2");
    expect(kv.put("a", "1", { idempotencyKey: "k", ...session("c", 2) })).toEqual(first);
    expect(kv.put("a", "1", { idempotencyKey: "k", ...session("c", 2) })).toEqual(first);
    expect(kv.value("a")).toBe("2");
  });
});
