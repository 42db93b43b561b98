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
    // From the stamp 0 (-5 counts as 0), 999.5 ms later is 999 ms of log time: still alive.
    expect(kv.put("b", "x", session("c", 2), 999.5)).toEqual({ ok: true, revision: 3 });
    expect(kv.sm.logTimeMs).toBe(999);
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

  it("sessions: a full table refuses a new session and never evicts a live one (two replicas)", () => {
    const replicas = [new Driver({ sessionCountMax: 3 }), new Driver({ sessionCountMax: 3 })];
    for (const kv of replicas) {
      kv.put("k", "1", session("a", 1), 1);
      kv.put("k", "2", session("b", 1), 2);
      kv.put("k", "3", session("c", 1), 2);
      expect(kv.put("k", "4", session("d", 1), 4)).toEqual({
        ok: false,
        code: "table_full",
        table: "sessions",
        retryAfterMs: 1000,
      });
      expect(kv.sm.sessionCount).toBe(3);
      expect(kv.value("k")).toBe("3");
      // Every session still answers its retries and takes its next request.
      expect(kv.put("k", "2", session("b", 1), 5)).toEqual({ ok: true, revision: 2 });
      expect(kv.put("k", "5", session("a", 2), 5)).toEqual({ ok: true, revision: 6 });
    }
    expect(replicas[0]!.sm.stateHash()).toBe(replicas[1]!.sm.stateHash());
  });

  it("sessions: a new session is opened once the oldest expires (TTL 1000 ms)", () => {
    const kv = new Driver({ sessionCountMax: 2, sessionTtlMs: 1000 });
    kv.put("k", "1", session("a", 1), 0);
    kv.put("k", "2", session("b", 1), 400);
    expect(kv.put("k", "3", session("c", 1), 900)).toMatchObject({
      code: "table_full",
      retryAfterMs: 100,
    });
    expect(kv.put("k", "3", session("c", 1), 1000)).toEqual({ ok: true, revision: 4 });
    expect(kv.put("k", "x", session("a", 2), 1000)).toEqual({ ok: false, code: "session_expired" });
    expect(kv.put("k", "2", session("b", 1), 1000)).toEqual({ ok: true, revision: 2 });
  });

  it("sessions: a refusal is not recorded, so the same seq is applied once there is room", () => {
    const kv = new Driver({ idempotencyKeyCountMax: 1, idempotencyWindowMs: 5000 });
    kv.put("k", "1", { idempotencyKey: "x" }, 0);
    const refused = kv.put("k", "2", { idempotencyKey: "y", ...session("c", 1) }, 1000);
    expect(refused).toEqual({
      ok: false,
      code: "table_full",
      table: "idempotency",
      retryAfterMs: 1000,
    });
    expect(kv.sm.sessionCount).toBe(0);
    for (const time of [2000, 3000, 4000]) {
      expect(kv.put("k", "2", { idempotencyKey: "y", ...session("c", 1) }, time)).toMatchObject({
        code: "table_full",
      });
    }
    expect(kv.put("k", "2", { idempotencyKey: "y", ...session("c", 1) }, 5000)).toEqual({
      ok: true,
      revision: 6,
    });
    expect(kv.put("k", "2", { idempotencyKey: "y", ...session("c", 1) }, 5000)).toEqual({
      ok: true,
      revision: 6,
    });
    expect(kv.value("k")).toBe("2");
  });
});

describe("kv log time", () => {
  it("log time: advances by the stamps' differences, never back, at most one step each", () => {
    const kv = new Driver({ logTimeStepMsMax: 1000 });
    const times = [1_700_000_000_000, 1_700_000_000_250, 1_700_000_003_250, 1_699_999_000_000];
    const logTimes = times.map((time) => {
      kv.put("k", "v", {}, time);
      return kv.sm.logTimeMs;
    });
    // The first command starts log time; a jump of 3 s counts 1 s; a jump back counts 0.
    expect(logTimes).toEqual([0, 250, 1250, 1250]);
    // After a jump back, the clock's own progress counts again at once (no freeze).
    kv.put("k", "v", {}, 1_699_999_000_400);
    expect(kv.sm.logTimeMs).toBe(1650);
  });

  it("log time: a master clock jumping forward by an hour on one entry does not expire every key", () => {
    const kv = new Driver();
    const start = 1_700_000_000_000;
    for (let i = 0; i < 10; i++) kv.put("k", `v${i}`, { idempotencyKey: `key-${i}` }, start + i);
    // One entry stamped an hour ahead, then the clock is corrected (or another master
    // with a right clock takes over): every key is still in its window.
    kv.put("k", "jump", {}, start + 3_600_000);
    kv.put("k", "after", {}, start + 20);
    expect(kv.sm.logTimeMs).toBe(1009);
    for (let i = 0; i < 10; i++) {
      expect(kv.put("k", `v${i}`, { idempotencyKey: `key-${i}` })).toEqual({
        ok: true,
        revision: i + 1,
      });
    }
    expect(kv.value("k")).toBe("after");
    // A clock that stays an hour ahead costs the same one step: its later stamps advance
    // log time by their own differences only.
    const ahead = new Driver();
    ahead.put("k", "v", { idempotencyKey: "old" }, start);
    for (let ms = 3_600_000; ms <= 3_600_000 + 60_000; ms += 100)
      ahead.put("k", "x", {}, start + ms);
    expect(ahead.sm.logTimeMs).toBe(61_000);
    expect(ahead.put("k", "v", { idempotencyKey: "old" })).toEqual({ ok: true, revision: 1 });
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

  it("idempotency: keys expire their window after first use (log time, window 1000 ms)", () => {
    const kv = new Driver({ idempotencyWindowMs: 1000, logTimeStepMsMax: 500 });
    kv.del("a", { idempotencyKey: "k" }, 0);
    expect(kv.put("a", "1", { idempotencyKey: "k" }, 500)).toMatchObject({
      code: "idempotency_key_reused",
    });
    expect(kv.del("a", { idempotencyKey: "k" }, 999)).toEqual({ ok: false, code: "not_found" });
    // Retries do not extend the key's life: at 1000 ms it is gone and the request is new.
    expect(kv.put("a", "1", { idempotencyKey: "k" }, 1000)).toEqual({ ok: true, revision: 4 });
  });

  it("idempotency: a retry after 100,001 other writes is still answered from the table (defaults)", () => {
    const kv = new Driver();
    const start = 1_700_000_000_000;
    const first = kv.put("k", "first", { idempotencyKey: "retried" }, start);
    // 100,001 keyed writes at 5,000 a second: 20 s, within the window.
    for (let i = 0; i < 100_001; i++) {
      kv.put("k", `w${i}`, { idempotencyKey: `other-${i}` }, start + Math.floor(i / 5));
    }
    expect(kv.sm.idempotencyKeyCount).toBe(100_002);
    expect(kv.put("k", "first", { idempotencyKey: "retried" })).toEqual(first);
    expect(kv.value("k")).toBe("w100000");
  });

  it("idempotency: a full table refuses new keys, still answers retries, never applies twice", () => {
    const replicas = [
      new Driver({ idempotencyKeyCountMax: 2, idempotencyWindowMs: 10_000 }),
      new Driver({ idempotencyKeyCountMax: 2, idempotencyWindowMs: 10_000 }),
    ];
    for (const kv of replicas) {
      const x = kv.put("a", "1", { idempotencyKey: "x" }, 1000);
      const y = kv.put("a", "2", { idempotencyKey: "y" }, 1500);
      expect(kv.put("a", "3", { idempotencyKey: "z" }, 2000)).toEqual({
        ok: false,
        code: "table_full",
        table: "idempotency",
        retryAfterMs: 1000,
      });
      expect(kv.value("a")).toBe("2");
      expect(kv.put("a", "1", { idempotencyKey: "x" }, 2500)).toEqual(x);
      expect(kv.put("a", "2", { idempotencyKey: "y" }, 2500)).toEqual(y);
      expect(kv.value("a")).toBe("2");
      // Writes without a key need no room; their stamps move log time on.
      for (let time = 3000; time <= 10_500; time += 500) kv.put("b", "tick", {}, time);
      // Close to the oldest key's expiry, the client is told how long is left.
      expect(kv.put("a", "3", { idempotencyKey: "z" }, 10_800)).toMatchObject({
        code: "table_full",
        retryAfterMs: 200,
      });
      // At log time 10,000 after "x" was first used, "x" expires and "z" takes its place.
      const z = kv.put("a", "3", { idempotencyKey: "z" }, 11_000);
      expect(z).toEqual({ ok: true, revision: 23 });
      expect(kv.put("a", "3", { idempotencyKey: "z" }, 11_000)).toEqual(z);
      expect(kv.put("a", "2", { idempotencyKey: "y" }, 11_000)).toEqual(y);
      expect(kv.sm.idempotencyKeyCount).toBe(2);
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
