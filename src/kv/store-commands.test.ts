import { describe, expect, it } from "vitest";
import type { KvChange } from "./change-history.js";
import {
  decodeCommand,
  decodeResult,
  encodeCommand,
  encodeResult,
  type KvCommand,
  type KvResult,
  validateCommand,
} from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { defaultKvLimits, type KvLimits } from "./limits.js";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const decoder = new TextDecoder();

/** Feeds commands to a state machine as a log would: increasing indexes, a term, a time. */
class Driver {
  index = 0;
  time = 0;
  term = 1;
  readonly sm: KvStateMachine;

  constructor(limits: Partial<KvLimits> = {}) {
    this.sm = new KvStateMachine({ ...defaultKvLimits(), ...limits });
  }

  run(command: KvCommand, timeMs = this.time): KvResult {
    this.index++;
    this.time = timeMs;
    const context = { index: this.index, term: this.term, time: timeMs };
    return this.sm.apply(encodeCommand(command), context);
  }

  put(key: string, value: string, lease?: number): KvResult {
    return this.run({ type: "put", key, value: text(value), ...(lease ? { lease } : {}) });
  }

  keys(prefix = ""): string[] {
    const page = this.sm.range({ prefix, after: null, limit: 1_000_000, valueBytesMax: Infinity });
    return page.items.map((item) => item.key);
  }
}

describe("store commands: encoding", () => {
  it("commands: format 2 commands round trip (every type and option)", () => {
    const commands: KvCommand[] = [
      { type: "put", key: "k", value: text("v"), lease: 7 },
      { type: "put", key: "k", value: text("v"), lease: 7, ifRevision: 3, idempotencyKey: "i" },
      { type: "delete_range", prefix: "p/", session: { clientId: "c", seq: 2 } },
      {
        type: "txn",
        compare: [
          { key: "a", target: "revision", revision: 0 },
          { key: "b", target: "value", value: text("x") },
          { key: "c", target: "exists", exists: true },
        ],
        success: [
          { type: "put", key: "a", value: text("1") },
          { type: "put", key: "l", value: text("2"), lease: 4 },
        ],
        failure: [{ type: "delete", key: "a" }],
        idempotencyKey: "t",
      },
      { type: "lease_grant", ttlMs: 5000 },
      { type: "lease_keepalive", id: 3 },
      { type: "lease_revoke", id: 3 },
      { type: "tick" },
    ];
    for (const command of commands) {
      expect(decodeCommand(encodeCommand(command))).toEqual({ ok: true, command });
    }
  });

  it("commands: results with details round trip", () => {
    const results: KvResult[] = [
      { ok: true, revision: 4, deleted: 2 },
      { ok: true, revision: 4, succeeded: false },
      { ok: true, revision: 0, lease: { id: 9, ttlMs: 5000 } },
      { ok: false, code: "lease_not_found", leaseId: 12 },
      { ok: false, code: "table_full", table: "leases", retryAfterMs: 100 },
    ];
    for (const result of results) expect(decodeResult(encodeResult(result))).toEqual(result);
  });

  it("commands: bad transactions and leases are refused naming the field and limit", () => {
    const limits = { ...defaultKvLimits(), txnOpCountMax: 2 };
    const put = { type: "put", key: "k", value: text("v") } as const;
    expect(
      validateCommand({ type: "txn", compare: [], success: [put, put, put], failure: [] }, limits),
    ).toEqual({
      reason: "txn_invalid",
      message: "success holds 3 items; the limit is 2",
      field: "success",
    });
    expect(
      validateCommand(
        { type: "txn", compare: [], success: [], failure: [{ type: "delete", key: "" }] },
        limits,
      ),
    ).toEqual({
      reason: "key_invalid",
      message: "failure[0].delete.key must be non-empty, well-formed Unicode",
      field: "failure[0].delete.key",
    });
    expect(validateCommand({ type: "lease_grant", ttlMs: 10 }, limits)?.message).toBe(
      "ttlSeconds must be 1 to 604800",
    );
    expect(validateCommand({ type: "lease_revoke", id: 0 }, limits)?.reason).toBe("lease_invalid");
    expect(validateCommand({ type: "delete_range", prefix: "" }, limits)?.message).toBe(
      "prefix must be non-empty, well-formed Unicode",
    );
  });
});

describe("store commands: ranges and transactions", () => {
  it("range: pages of keys in order under a prefix, at one revision", () => {
    const kv = new Driver();
    for (const key of ["b/2", "a/1", "b/1", "c", "b/3", "b"]) kv.put(key, key);
    expect(kv.keys("b/")).toEqual(["b/1", "b/2", "b/3"]);
    expect(kv.keys()).toEqual(["a/1", "b", "b/1", "b/2", "b/3", "c"]);
    const first = kv.sm.range({ prefix: "b", after: null, limit: 2, valueBytesMax: Infinity });
    expect(first.items.map((i) => i.key)).toEqual(["b", "b/1"]);
    expect(first).toMatchObject({ revision: 6, more: true });
    const second = kv.sm.range({ prefix: "b", after: "b/1", limit: 2, valueBytesMax: Infinity });
    expect(second.items.map((i) => i.key)).toEqual(["b/2", "b/3"]);
    expect(second.more).toBe(false);
    // A byte bound stops a page early, but never before its first key.
    const small = kv.sm.range({ prefix: "", after: null, limit: 10, valueBytesMax: 1 });
    expect(small.items.map((i) => i.key)).toEqual(["a/1"]);
    expect(small.more).toBe(true);
  });

  it("range: keys deleted and written again between reads are listed as they are now", () => {
    const kv = new Driver();
    kv.put("k1", "1");
    kv.put("k2", "2");
    expect(kv.keys()).toEqual(["k1", "k2"]);
    kv.run({ type: "delete", key: "k1" });
    kv.put("k0", "0");
    kv.put("k1", "again");
    kv.run({ type: "delete", key: "k2" });
    expect(kv.keys()).toEqual(["k0", "k1"]);
  });

  it("delete_range: deletes every key under the prefix at one revision", () => {
    const kv = new Driver();
    for (const key of ["p/a", "p/b", "q"]) kv.put(key, "v");
    expect(kv.run({ type: "delete_range", prefix: "p/" })).toEqual({
      ok: true,
      revision: 4,
      deleted: 2,
    });
    expect(kv.keys()).toEqual(["q"]);
    // Nothing to delete changes nothing, so the revision stays.
    expect(kv.run({ type: "delete_range", prefix: "p/" })).toEqual({
      ok: true,
      revision: 4,
      deleted: 0,
    });
  });

  it("txn: compares on revision, value and existence, then applies one branch atomically", () => {
    const kv = new Driver();
    kv.put("a", "1"); // revision 1
    const txn = (compare: unknown[]): KvResult =>
      kv.run({
        type: "txn",
        compare: compare as never,
        success: [
          { type: "put", key: "a", value: text("2") },
          { type: "put", key: "b", value: text("2") },
        ],
        failure: [{ type: "delete", key: "a" }],
      });
    expect(
      txn([
        { key: "a", target: "revision", revision: 1 },
        { key: "a", target: "value", value: text("1") },
        { key: "b", target: "exists", exists: false },
      ]),
    ).toEqual({ ok: true, revision: 2, succeeded: true });
    expect(kv.sm.get("a")?.revision).toBe(2);
    expect(kv.sm.get("b")?.revision).toBe(2);
    expect(txn([{ key: "a", target: "value", value: text("1") }])).toEqual({
      ok: true,
      revision: 3,
      succeeded: false,
    });
    expect(kv.sm.get("a")).toBeNull();
    // A failed comparison with an empty branch changes nothing.
    expect(
      kv.run({
        type: "txn",
        compare: [{ key: "zz", target: "exists", exists: true }],
        success: [],
        failure: [],
      }),
    ).toEqual({ ok: true, revision: 3, succeeded: false });
  });

  it("txn: a branch naming a lease not held changes nothing", () => {
    const kv = new Driver();
    const result = kv.run({
      type: "txn",
      compare: [],
      success: [
        { type: "put", key: "a", value: text("1") },
        { type: "put", key: "b", value: text("1"), lease: 99 },
      ],
      failure: [],
    });
    expect(result).toEqual({ ok: false, code: "lease_not_found", leaseId: 99 });
    expect(kv.sm.get("a")).toBeNull();
  });

  it("txn: a retry with the same idempotency key is answered from the first result", () => {
    const kv = new Driver();
    const command: KvCommand = {
      type: "txn",
      compare: [{ key: "n", target: "exists", exists: false }],
      success: [{ type: "put", key: "n", value: text("1") }],
      failure: [],
      idempotencyKey: "once",
    };
    expect(kv.run(command)).toEqual({ ok: true, revision: 1, succeeded: true });
    expect(kv.run(command)).toEqual({ ok: true, revision: 1, succeeded: true });
    expect(kv.sm.revision).toBe(1);
  });
});

describe("store commands: leases", () => {
  it("lease: keys attached to a lease are deleted when it expires in log time", () => {
    const kv = new Driver();
    const granted = kv.run({ type: "lease_grant", ttlMs: 2000 }, 0);
    expect(granted).toEqual({ ok: true, revision: 0, lease: { id: 1, ttlMs: 2000 } });
    expect(kv.put("s/1", "x", 1)).toEqual({ ok: true, revision: 2 });
    kv.put("s/2", "y", 1);
    kv.put("plain", "z");
    kv.run({ type: "tick" }, 1000);
    expect(kv.sm.lease(1)).toEqual({ id: 1, ttlMs: 2000, remainingMs: 1000, keys: 2 });
    kv.run({ type: "lease_keepalive", id: 1 }, 1500);
    kv.run({ type: "tick" }, 2500);
    expect(kv.keys()).toEqual(["plain", "s/1", "s/2"]);
    kv.run({ type: "tick" }, 3500);
    expect(kv.keys()).toEqual(["plain"]);
    expect(kv.sm.leaseCount).toBe(0);
    expect(kv.run({ type: "lease_keepalive", id: 1 })).toEqual({
      ok: false,
      code: "lease_not_found",
      leaseId: 1,
    });
    expect(kv.put("k", "v", 1)).toEqual({ ok: false, code: "lease_not_found", leaseId: 1 });
  });

  it("lease: a lease past its deadline has ended though more are due than one apply removes", () => {
    const kv = new Driver();
    // 70 leases of 1 s at one log time; more than leaseExpiryCountMaxPerApply (64).
    for (let i = 0; i < 70; i++) kv.run({ type: "lease_grant", ttlMs: 1000 }, 0);
    expect(kv.put("held", "x", 70)).toMatchObject({ ok: true });
    // 1.5 s later the first 64 are removed in this apply; the others have ended all the same.
    expect(kv.run({ type: "lease_keepalive", id: 70 }, 1500)).toEqual({
      ok: false,
      code: "lease_not_found",
      leaseId: 70,
    });
    expect(kv.sm.lease(69)).toBeNull();
    expect(kv.put("other", "y", 68)).toEqual({ ok: false, code: "lease_not_found", leaseId: 68 });
    const txn = kv.run({
      type: "txn",
      compare: [],
      success: [{ type: "put", key: "t", value: text("v"), lease: 67 }],
      failure: [],
    });
    expect(txn).toEqual({ ok: false, code: "lease_not_found", leaseId: 67 });
    kv.run({ type: "tick" }, 1600);
    expect(kv.keys()).toEqual([]);
    expect(kv.sm.leaseCount).toBe(0);
  });

  it("lease: a new term does not bring back a lease already answered as ended", () => {
    const kv = new Driver();
    for (let i = 0; i < 70; i++) kv.run({ type: "lease_grant", ttlMs: 1000 }, 0);
    expect(kv.put("held", "x", 70)).toMatchObject({ ok: true });
    // 64 end here; lease 70 is past its deadline and answered as ended, not yet removed.
    expect(kv.run({ type: "lease_keepalive", id: 70 }, 1500)).toMatchObject({
      code: "lease_not_found",
    });
    // The next command is a new master's first: it renews only leases still held before it.
    kv.term = 2;
    kv.run({ type: "tick" }, 1600);
    expect(kv.sm.lease(70)).toBeNull();
    expect(kv.keys()).toEqual([]);
  });

  it("lease: revoke deletes its keys; a put without the lease detaches the key", () => {
    const kv = new Driver();
    kv.run({ type: "lease_grant", ttlMs: 5000 });
    kv.put("a", "1", 1);
    kv.put("b", "1", 1);
    kv.put("b", "2");
    expect(kv.run({ type: "lease_revoke", id: 1 })).toEqual({ ok: true, revision: 5 });
    expect(kv.keys()).toEqual(["b"]);
  });

  it("lease: a command of a new term gives every lease its full time to live again", () => {
    const kv = new Driver();
    kv.run({ type: "lease_grant", ttlMs: 2000 }, 0);
    kv.put("a", "1", 1);
    kv.run({ type: "tick" }, 1000);
    kv.run({ type: "tick" }, 1900);
    kv.term = 2;
    kv.run({ type: "tick" }, 2100);
    expect(kv.sm.lease(1)?.remainingMs).toBe(2000);
    kv.run({ type: "tick" }, 3000);
    kv.run({ type: "tick" }, 4000);
    expect(kv.keys()).toEqual(["a"]);
    kv.run({ type: "tick" }, 4200);
    expect(kv.keys()).toEqual([]);
  });

  it("lease: the table refuses grants beyond its limit until a lease ends", () => {
    const kv = new Driver({ leaseCountMax: 1 });
    kv.run({ type: "lease_grant", ttlMs: 1000 });
    expect(kv.run({ type: "lease_grant", ttlMs: 1000 })).toEqual({
      ok: false,
      code: "table_full",
      table: "leases",
      retryAfterMs: 1000,
    });
    kv.run({ type: "lease_revoke", id: 1 });
    expect(kv.run({ type: "lease_grant", ttlMs: 1000 }).ok).toBe(true);
  });

  it("lease: leases and leased keys survive a snapshot, and expire the same afterwards", () => {
    const kv = new Driver();
    kv.run({ type: "lease_grant", ttlMs: 2000 }, 0);
    kv.put("a", "1", 1);
    kv.put("b", "1", 1);
    kv.put("c", "1");
    const copy = new KvStateMachine(kv.sm.limits);
    copy.restoreChunks(kv.sm.snapshotChunks());
    expect(copy.stateHash()).toBe(kv.sm.stateHash());
    expect(copy.lease(1)).toEqual(kv.sm.lease(1));
    const tick = encodeCommand({ type: "tick" });
    for (const [step, time] of [1000, 2000].entries()) {
      const context = { index: kv.index + 1 + step, term: 1, time };
      copy.apply(tick, context);
      kv.sm.apply(tick, context);
    }
    expect(copy.stateHash()).toBe(kv.sm.stateHash());
    expect(copy.get("a")).toBeNull();
    expect(copy.get("c")).not.toBeNull();
  });
});

describe("store commands: watch history", () => {
  it("watch: changes arrive in revision order, from a past revision and live", () => {
    const kv = new Driver();
    kv.put("w/a", "1");
    kv.put("x", "1");
    kv.put("w/b", "2");
    const seen: KvChange[] = [];
    const start = kv.sm.watch(2, { changes: (c) => seen.push(...c), reset: () => {} });
    expect(start.ok).toBe(true);
    if (!start.ok) return;
    expect(start.backlog.map((c) => [c.key, c.revision])).toEqual([
      ["x", 2],
      ["w/b", 3],
    ]);
    kv.run({ type: "delete_range", prefix: "w/" });
    expect(seen.map((c) => [c.type, c.key, c.revision])).toEqual([
      ["delete", "w/a", 4],
      ["delete", "w/b", 4],
    ]);
    start.cancel();
    kv.put("y", "1");
    expect(seen.length).toBe(2);
    expect(decoder.decode(start.backlog[0]!.value!)).toBe("1");
  });

  it("watch: the history drops whole old revisions past its bound, then says compacted", () => {
    const kv = new Driver({ watchHistoryCountMax: 2 });
    kv.put("a", "1");
    kv.put("b", "1");
    kv.put("c", "1");
    expect(kv.sm.watchStartRevision).toBe(2);
    expect(kv.sm.watch(1, { changes: () => {}, reset: () => {} })).toEqual({
      ok: false,
      startRevision: 2,
    });
  });

  it("watch: a restore starts the history after the snapshot's revision and ends watches", () => {
    const kv = new Driver();
    kv.put("a", "1");
    const other = new Driver();
    other.put("a", "1");
    other.put("b", "1");
    let ended = false;
    const start = kv.sm.watch(1, { changes: () => {}, reset: () => (ended = true) });
    expect(start.ok).toBe(true);
    kv.sm.restoreChunks(other.sm.snapshotChunks());
    expect(ended).toBe(true);
    expect(kv.sm.watchStartRevision).toBe(3);
  });
});

describe("store commands: the key index against a model", () => {
  it("range: random puts, deletes and prefix deletes list what a sorted model lists (20 seeds)", () => {
    for (let seed = 1; seed <= 20; seed++) {
      let state = seed;
      const random = (bound: number): number => {
        state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
        return state % bound;
      };
      const kv = new Driver();
      const model = new Map<string, string>();
      for (let step = 0; step < 400; step++) {
        const key = `${"abc"[random(3)]}/${random(30)}`;
        const choice = random(10);
        if (choice < 6) {
          kv.put(key, String(step));
          model.set(key, String(step));
        } else if (choice < 9) {
          kv.run({ type: "delete", key });
          model.delete(key);
        } else {
          const prefix = `${"abc"[random(3)]}/${random(3)}`;
          kv.run({ type: "delete_range", prefix });
          for (const k of [...model.keys()]) if (k.startsWith(prefix)) model.delete(k);
        }
        if (random(8) === 0) {
          const prefix = ["", "a/", "b/1", "c/2"][random(4)]!;
          const expected = [...model.keys()].filter((k) => k.startsWith(prefix)).sort();
          // Read in pages of three, joined by the last key, as the HTTP API does.
          const listed: string[] = [];
          let after: string | null = null;
          for (;;) {
            const page = kv.sm.range({ prefix, after, limit: 3, valueBytesMax: Infinity });
            listed.push(...page.items.map((i) => i.key));
            if (!page.more) break;
            after = page.items.at(-1)!.key;
          }
          expect(listed, `seed ${seed}, step ${step}`).toEqual(expected);
        }
      }
    }
  });
});

describe("store commands: bounds of the derived structures", () => {
  it("range: many deletes with no new key compact the index and still list what is left", () => {
    const kv = new Driver();
    for (let i = 0; i < 3000; i++) kv.put(`k/${String(i).padStart(4, "0")}`, "v");
    expect(kv.keys("k/")).toHaveLength(3000);
    for (let i = 0; i < 3000; i += 3)
      kv.run({ type: "delete", key: `k/${String(i).padStart(4, "0")}` });
    const left = kv.keys("k/");
    expect(left).toHaveLength(2000);
    expect(left[0]).toBe("k/0001");
  });

  it("watch: the history's byte bound drops old revisions whole", () => {
    const kv = new Driver({ watchHistoryBytesMax: 2000 });
    const big = "x".repeat(600);
    for (let i = 0; i < 5; i++) kv.put(`k${i}`, big);
    // Each change costs its value and some bookkeeping: only the newest fit in 2000 bytes.
    expect(kv.sm.watchStartRevision).toBeGreaterThan(1);
    const start = kv.sm.watch(kv.sm.watchStartRevision, { changes: () => {}, reset: () => {} });
    expect(start.ok && start.backlog.map((c) => c.revision)).toEqual(
      Array.from({ length: 6 - kv.sm.watchStartRevision }, (_, i) => kv.sm.watchStartRevision + i),
    );
  });
});
