/**
 * Tests for the key-value linearizability checker: small hand-made histories whose verdict
 * can be argued on paper, histories generated from a real register (which must pass) and
 * the same histories with one read made impossible (which must fail), and a large history
 * that must check without exhausting the search.
 */

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.js";
import {
  checkLinearizable,
  type HistoryOp,
  type KvOp,
  type LinearizabilityResult,
} from "./linearizability.js";

/** Builds histories tersely: times are [invokedAt, completedAt] and ids count up. */
class HistoryBuilder {
  readonly ops: HistoryOp[] = [];

  read(client: number, output: string | null, at: [number, number], key = "k"): this {
    return this.ok(client, key, { kind: "read" }, at, output);
  }

  write(client: number, value: string, at: [number, number], key = "k"): this {
    return this.ok(client, key, { kind: "write", value }, at);
  }

  delete(client: number, existed: boolean | undefined, at: [number, number], key = "k"): this {
    return this.ok(client, key, { kind: "delete" }, at, existed);
  }

  cas(
    client: number,
    expected: string | null,
    value: string,
    succeeded: boolean,
    at: [number, number],
    key = "k",
  ): this {
    return this.ok(client, key, { kind: "cas", expected, value }, at, succeeded);
  }

  /** An operation whose fate is unknown: it was invoked and never answered. */
  info(client: number, op: KvOp, invokedAt: number, key = "k"): this {
    const id = this.ops.length + 1;
    this.ops.push({ id, client, key, op, invokedAt, completedAt: null, outcome: "info" });
    return this;
  }

  /** An operation the store definitely did not apply. */
  fail(client: number, op: KvOp, at: [number, number], key = "k"): this {
    const id = this.ops.length + 1;
    const [invokedAt, completedAt] = at;
    this.ops.push({ id, client, key, op, invokedAt, completedAt, outcome: "fail" });
    return this;
  }

  private ok(
    client: number,
    key: string,
    op: KvOp,
    at: [number, number],
    output?: string | null | boolean,
  ): this {
    const id = this.ops.length + 1;
    const [invokedAt, completedAt] = at;
    const entry: HistoryOp = { id, client, key, op, invokedAt, completedAt, outcome: "ok" };
    if (output !== undefined) entry.output = output;
    this.ops.push(entry);
    return this;
  }
}

function check(builder: HistoryBuilder): LinearizabilityResult {
  return checkLinearizable(builder.ops);
}

function expectLinearizable(builder: HistoryBuilder): void {
  const result = check(builder);
  expect(result.keys.map((verdict) => verdict.explanation ?? "")).toEqual(
    result.keys.map(() => ""),
  );
  expect(result.ok).toBe(true);
  expect(result.timedOut).toBe(false);
}

function expectViolation(builder: HistoryBuilder): string {
  const result = check(builder);
  expect(result.ok).toBe(false);
  expect(result.timedOut).toBe(false);
  const bad = result.keys.find((verdict) => !verdict.ok);
  expect(bad?.explanation).toBeDefined();
  return bad?.explanation ?? "";
}

describe("linearizability: valid histories", () => {
  it("linearizability: accepts an empty history", () => {
    expect(checkLinearizable([])).toEqual({ ok: true, keys: [], timedOut: false });
  });

  it("linearizability: accepts a read of the initial value (key never written)", () => {
    expectLinearizable(new HistoryBuilder().read(1, null, [0, 1]));
  });

  it("linearizability: accepts sequential writes and reads (one client)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .read(1, null, [0, 1])
        .write(1, "a", [2, 3])
        .read(1, "a", [4, 5])
        .write(1, "b", [6, 7])
        .read(1, "b", [8, 9]),
    );
  });

  it("linearizability: accepts overlapping writes read in either order (a then b)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 10])
        .write(2, "b", [1, 10])
        .read(3, "a", [2, 4])
        .read(3, "b", [5, 7]),
    );
  });

  it("linearizability: accepts overlapping writes read in either order (b then a)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 10])
        .write(2, "b", [1, 10])
        .read(3, "b", [2, 4])
        .read(3, "a", [5, 7])
        .read(4, "a", [11, 12]),
    );
  });

  it("linearizability: accepts a read concurrent with a write (old and new value)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .write(1, "b", [2, 20])
        .read(2, "a", [3, 5])
        .read(3, "b", [4, 6])
        .read(2, "b", [21, 22]),
    );
  });

  it("linearizability: accepts cas success and failure (sequential)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .cas(1, null, "a", true, [0, 1])
        .cas(1, null, "x", false, [2, 3])
        .cas(1, "a", "b", true, [4, 5])
        .cas(1, "a", "c", false, [6, 7])
        .read(1, "b", [8, 9]),
    );
  });

  it("linearizability: accepts concurrent cas where exactly one wins", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .cas(2, "a", "b", true, [2, 10])
        .cas(3, "a", "c", false, [2, 10])
        .read(1, "b", [11, 12]),
    );
  });

  it("linearizability: accepts delete with known and unknown outputs", () => {
    expectLinearizable(
      new HistoryBuilder()
        .delete(1, false, [0, 1])
        .write(1, "a", [2, 3])
        .delete(1, true, [4, 5])
        .read(1, null, [6, 7])
        .write(1, "b", [8, 9])
        .delete(1, undefined, [10, 11])
        .read(1, null, [12, 13]),
    );
  });

  it("linearizability: accepts an indeterminate write that took effect (read much later)", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .info(2, { kind: "write", value: "lost?" }, 2)
        .read(1, "a", [3, 4])
        .read(1, "a", [50, 51])
        .read(1, "lost?", [100, 101]),
    );
  });

  it("linearizability: accepts an indeterminate write that never took effect", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .info(2, { kind: "write", value: "b" }, 2)
        .read(1, "a", [3, 4])
        .read(1, "a", [100, 101]),
    );
  });

  it("linearizability: accepts indeterminate cas and delete taking effect", () => {
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .info(2, { kind: "cas", expected: "a", value: "b" }, 2)
        .read(1, "b", [3, 4])
        .info(3, { kind: "delete" }, 5)
        .read(1, null, [6, 7])
        .cas(1, "b", "c", false, [8, 9]),
    );
  });

  it("linearizability: accepts two indeterminate writes of one value (both needed)", () => {
    // Writes of the same value are interchangeable, and the checker uses them in invocation
    // order; the later one must still be available once the earlier one is spent.
    expectLinearizable(
      new HistoryBuilder()
        .info(1, { kind: "write", value: "x" }, 0)
        .read(2, "x", [10, 20])
        .write(2, "y", [30, 40])
        .info(3, { kind: "write", value: "x" }, 50)
        .read(2, "x", [60, 70]),
    );
  });

  it("linearizability: accepts an indeterminate write first seen by a failed cas", () => {
    // The cas failing proves the value was no longer "a", so the indeterminate write of "b"
    // must already have taken effect; the read then sees it.
    expectLinearizable(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .info(2, { kind: "write", value: "b" }, 2)
        .read(1, "a", [3, 4])
        .cas(1, "a", "c", false, [5, 6])
        .read(1, "b", [7, 8]),
    );
  });

  it("linearizability: ignores indeterminate reads (even impossible outputs)", () => {
    const builder = new HistoryBuilder().write(1, "a", [0, 1]);
    builder.ops.push({
      id: 99,
      client: 2,
      key: "k",
      op: { kind: "read" },
      invokedAt: 2,
      completedAt: null,
      outcome: "info",
      output: "never written",
    });
    const result = check(builder);
    expect(result.ok).toBe(true);
    expect(result.keys[0]?.opCount).toBe(1);
  });

  it("linearizability: ignores failed operations (their effect is never seen)", () => {
    const builder = new HistoryBuilder()
      .write(1, "a", [0, 1])
      .fail(2, { kind: "write", value: "b" }, [2, 3])
      .fail(2, { kind: "delete" }, [4, 5])
      .read(1, "a", [6, 7]);
    expectLinearizable(builder);
    expect(check(builder).keys[0]?.opCount).toBe(2);
  });

  it("linearizability: treats a completion and invocation at the same instant as concurrent", () => {
    expectLinearizable(new HistoryBuilder().read(2, null, [0, 5]).write(1, "a", [5, 6]));
    expectLinearizable(new HistoryBuilder().write(1, "a", [0, 5]).read(2, null, [5, 6]));
  });

  it("linearizability: checks keys independently and reports each, sorted by key", () => {
    const result = check(
      new HistoryBuilder()
        .write(1, "a", [0, 10], "y")
        .write(2, "a", [0, 10], "x")
        .read(3, "a", [11, 12], "y")
        .read(3, null, [13, 14], "z"),
    );
    expect(result.ok).toBe(true);
    expect(result.keys.map(({ key, ok, opCount }) => ({ key, ok, opCount }))).toEqual([
      { key: "x", ok: true, opCount: 1 },
      { key: "y", ok: true, opCount: 2 },
      { key: "z", ok: true, opCount: 1 },
    ]);
  });
});

describe("linearizability: invalid histories", () => {
  it("linearizability: rejects a stale read after a completed write", () => {
    const explanation = expectViolation(
      new HistoryBuilder().write(1, "a", [0, 1]).write(1, "b", [2, 3]).read(2, "a", [4, 5]),
    );
    expect(explanation).toContain('op 3 (client 2, read "a", invoked 4, completed 5)');
    expect(explanation).toContain("places 2 of 3 completed operations");
  });

  it("linearizability: rejects a read of a value never written", () => {
    const explanation = expectViolation(
      new HistoryBuilder().write(1, "a", [0, 1]).read(2, "zz", [2, 3]),
    );
    expect(explanation).toContain("op 2");
    expect(explanation).toContain("no operation on this key that may have taken effect");
  });

  it("linearizability: rejects a new-old inversion (reads after a write's completion)", () => {
    // The read of "b" proves the write of "b" took effect by time 40, after "a" was
    // written (it completed at 10), so a read invoked at 50 cannot see "a" again.
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 10])
        .write(2, "b", [20, 100])
        .read(3, "b", [30, 40])
        .read(4, "a", [50, 60]),
    );
  });

  it("linearizability: rejects two readers observing concurrent writes in opposite orders", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 100])
        .write(2, "b", [0, 100])
        .read(3, "a", [10, 20])
        .read(3, "b", [30, 40])
        .read(4, "b", [50, 60])
        .read(4, "a", [70, 80]),
    );
  });

  it("linearizability: rejects a cas that succeeded when it must have failed", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "b", [0, 1])
        .write(1, "a", [2, 3])
        .cas(2, "b", "c", true, [4, 5]),
    );
  });

  it("linearizability: rejects a cas that failed when it must have succeeded", () => {
    expectViolation(new HistoryBuilder().write(1, "a", [0, 1]).cas(2, "a", "c", false, [2, 3]));
  });

  it("linearizability: rejects a lost acknowledged write (read null afterwards)", () => {
    expectViolation(new HistoryBuilder().write(1, "a", [0, 1]).read(2, null, [2, 3]));
  });

  it("linearizability: rejects a lost acknowledged write (older value read afterwards)", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .write(2, "b", [2, 3])
        .read(3, "a", [4, 5])
        .read(3, "a", [6, 7]),
    );
  });

  it("linearizability: rejects observing a failed write's effect", () => {
    const explanation = expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .fail(2, { kind: "write", value: "b" }, [2, 3])
        .read(1, "b", [4, 5]),
    );
    expect(explanation).toContain('read "b"');
  });

  it("linearizability: rejects observing a failed delete's effect", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .fail(2, { kind: "delete" }, [2, 3])
        .read(1, null, [4, 5]),
    );
  });

  it("linearizability: rejects a delete that reports the wrong existence", () => {
    expectViolation(new HistoryBuilder().write(1, "a", [0, 1]).delete(2, false, [2, 3]));
    expectViolation(new HistoryBuilder().delete(2, true, [0, 1]));
  });

  it("linearizability: rejects a read of an indeterminate write before it was invoked", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .read(2, "b", [2, 3])
        .info(3, { kind: "write", value: "b" }, 4),
    );
  });

  it("linearizability: rejects a read that needs an indeterminate cas whose guard never held", () => {
    expectViolation(
      new HistoryBuilder()
        .write(1, "a", [0, 1])
        .info(2, { kind: "cas", expected: "z", value: "b" }, 2)
        .read(1, "b", [3, 4]),
    );
  });

  it("linearizability: rejects a stale read among many lost indeterminate writes (bounded)", () => {
    // Thirty pending writes could be placed in 2^30 ways; the checker must see that none of
    // them can bring back "a" and say so after a small search.
    const builder = new HistoryBuilder().write(1, "a", [0, 1]).write(1, "b", [2, 3]);
    for (let i = 0; i < 30; i++) builder.info(10 + i, { kind: "write", value: `lost${i}` }, 4 + i);
    builder.read(2, null, [40, 41]).read(2, "a", [50, 51]);
    for (let i = 0; i < 30; i++) builder.info(50 + i, { kind: "delete" }, 4 + i);
    const result = checkLinearizable(builder.ops, { maxStatesPerKey: 100_000 });
    expect(result).toMatchObject({ ok: false, timedOut: false });
    expect(result.keys[0]?.stateCount).toBeLessThan(1000);
  });

  it("linearizability: rejects a stale read among lost writes of distinct observed values (bounded)", () => {
    // Each lost value is observed (a failed cas compares with it), so no two of these
    // writes are interchangeable; what keeps the search small is placing an indeterminate
    // write only where the next operation needs it, and here none ever does.
    const builder = new HistoryBuilder().write(1, "a", [0, 1]);
    for (let i = 0; i < 20; i++) builder.info(10 + i, { kind: "write", value: `x${i}` }, 2 + i);
    for (let i = 0; i < 20; i++) {
      builder.cas(2, `x${i}`, "z", false, [30 + 4 * i, 31 + 4 * i]);
      builder.read(3, "a", [30 + 4 * i, 32 + 4 * i]);
    }
    builder.write(1, "b", [200, 201]).read(2, "a", [210, 211]);
    const result = checkLinearizable(builder.ops, { maxStatesPerKey: 100_000 });
    expect(result).toMatchObject({ ok: false, timedOut: false });
    expect(result.keys[0]?.stateCount).toBeLessThan(5000);
  });

  it("linearizability: fails only the bad key (the others stay ok)", () => {
    const result = check(
      new HistoryBuilder()
        .write(1, "a", [0, 1], "good")
        .read(1, "a", [2, 3], "good")
        .write(1, "a", [0, 1], "bad")
        .read(1, null, [2, 3], "bad"),
    );
    expect(result.ok).toBe(false);
    expect(result.keys.map(({ key, ok }) => ({ key, ok }))).toEqual([
      { key: "bad", ok: false },
      { key: "good", ok: true },
    ]);
  });
});

describe("linearizability: search bounds and input checks", () => {
  it("linearizability: reports a capped search as unknown, apart from a violation (maxStatesPerKey exhausted)", () => {
    const builder = new HistoryBuilder();
    for (let i = 0; i < 20; i++) builder.write(1, `v${i}`, [2 * i, 2 * i + 1]);
    builder
      .read(2, null, [0, 1], "other")
      .write(2, "x", [2, 3], "other")
      .read(2, null, [4, 5], "other");
    const result = checkLinearizable(builder.ops, { maxStatesPerKey: 5 });
    const k = result.keys.find((verdict) => verdict.key === "k");
    expect(k).toMatchObject({ ok: false, timedOut: true, stateCount: 5 });
    expect(k?.explanation).toMatch(/^search capped: cannot prove linearizable/);
    const other = result.keys.find((verdict) => verdict.key === "other");
    expect(other?.timedOut).toBeUndefined();
    expect(other?.explanation).toMatch(/^not linearizable/);
    expect(result.timedOut).toBe(true);
    expect(result.ok).toBe(false);
    expect(checkLinearizable(builder.ops).keys.find((v) => v.key === "k")).toMatchObject({
      ok: true,
    });
  });

  it("linearizability: a capped search is a failure, never a pass (the only key, linearizable)", () => {
    // Twenty sequential writes and a read of the last: linearizable, but the search needs
    // more than three configurations to show it.
    const builder = new HistoryBuilder();
    for (let i = 0; i < 20; i++) builder.write(1, `v${i}`, [2 * i, 2 * i + 1]);
    builder.read(1, "v19", [40, 41]);
    expect(checkLinearizable(builder.ops)).toMatchObject({ ok: true, timedOut: false });
    const capped = checkLinearizable(builder.ops, { maxStatesPerKey: 3 });
    expect(capped).toMatchObject({ ok: false, timedOut: true });
    expect(capped.keys).toEqual([
      expect.objectContaining({
        key: "k",
        ok: false,
        timedOut: true,
        explanation: expect.stringMatching(/^search capped: cannot prove linearizable/),
      }),
    ]);
  });

  it("linearizability: asserts on malformed histories (recorder bugs)", () => {
    const write: KvOp = { kind: "write", value: "a" };
    const base = { client: 1, key: "k", op: write, invokedAt: 5 } as const;
    const malformed: HistoryOp[][] = [
      [{ ...base, id: 1, completedAt: null, outcome: "ok" }],
      [{ ...base, id: 1, completedAt: 4, outcome: "ok" }],
      [
        { ...base, id: 1, completedAt: 6, outcome: "ok" },
        { ...base, id: 1, completedAt: 7, outcome: "ok" },
      ],
      [{ ...base, id: 1, op: { kind: "read" }, completedAt: 6, outcome: "ok" }],
      [
        {
          ...base,
          id: 1,
          op: { kind: "cas", expected: null, value: "a" },
          completedAt: 6,
          outcome: "ok",
        },
      ],
    ];
    for (const history of malformed) {
      expect(() => checkLinearizable(history)).toThrow(AssertionError);
    }
    expect(() => checkLinearizable([], { maxStatesPerKey: 0 })).toThrow(AssertionError);
  });
});

/** A tiny seeded generator (mulberry32) so that every random history replays from its seed. */
class Rng {
  constructor(private seed: number) {}

  next(): number {
    this.seed = (this.seed + 0x6d2b79f5) | 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  int(count: number): number {
    return Math.floor(this.next() * count);
  }
}

interface GeneratorOptions {
  opCount: number;
  keyCount: number;
  clientCount: number;
  /** Chance per tick that a pending operation times out and becomes indeterminate. */
  infoRate: number;
  /** Chance per tick that a pending, not yet applied operation is refused. */
  failRate: number;
}

interface Pending {
  entry: HistoryOp;
  applied: boolean;
}

/**
 * Runs random clients against a real sequential register per key. Each operation takes
 * effect at one random tick between its invocation and completion, so the history is
 * linearizable by construction. An operation that times out becomes indeterminate; if it
 * had not yet taken effect it may still do so later, or never. A client whose operation
 * timed out carries on under a new client id, so that no client has two outstanding.
 * Every written value is unique, which lets mutations pick values that are impossible.
 */
function generateHistory(rng: Rng, options: GeneratorOptions): HistoryOp[] {
  const store = new Map<string, string>();
  const history: HistoryOp[] = [];
  const slots: Array<{ client: number; pending: Pending | null }> = [];
  for (let i = 0; i < options.clientCount; i++) slots.push({ client: i, pending: null });
  let limbo: Pending[] = [];
  let nextClient = options.clientCount;
  for (let time = 0; history.length < options.opCount || slots.some((s) => s.pending); time++) {
    limbo = limbo.filter((late) => {
      if (rng.chance(0.1)) applyToStore(store, late);
      return !late.applied && !rng.chance(0.05);
    });
    for (const slot of slots) {
      const pending = slot.pending;
      if (pending === null) {
        if (history.length < options.opCount && rng.chance(0.5)) {
          const entry = invokeRandom(rng, history.length + 1, slot.client, time, store, options);
          history.push(entry);
          slot.pending = { entry, applied: false };
        }
      } else if (rng.chance(options.infoRate)) {
        delete pending.entry.output;
        if (!pending.applied) limbo.push(pending);
        slot.client = nextClient++;
        slot.pending = null;
      } else if (!pending.applied && rng.chance(options.failRate)) {
        pending.entry.outcome = "fail";
        pending.entry.completedAt = time;
        slot.pending = null;
      } else if (!pending.applied) {
        if (rng.chance(0.3)) applyToStore(store, pending);
      } else if (rng.chance(0.3)) {
        pending.entry.outcome = "ok";
        pending.entry.completedAt = time;
        slot.pending = null;
      }
    }
  }
  return history;
}

function invokeRandom(
  rng: Rng,
  id: number,
  client: number,
  time: number,
  store: Map<string, string>,
  options: GeneratorOptions,
): HistoryOp {
  const key = `key${rng.int(options.keyCount)}`;
  const roll = rng.next();
  let op: KvOp;
  if (roll < 0.4) op = { kind: "read" };
  else if (roll < 0.65) op = { kind: "write", value: `v${id}` };
  else if (roll < 0.8) op = { kind: "delete" };
  else {
    // Guess the current value often enough that some cas operations succeed.
    const current = store.get(key) ?? null;
    const expected = rng.chance(0.6) ? current : rng.chance(0.5) ? null : `v${rng.int(id)}`;
    op = { kind: "cas", expected, value: `v${id}` };
  }
  return { id, client, key, op, invokedAt: time, completedAt: null, outcome: "info" };
}

function applyToStore(store: Map<string, string>, pending: Pending): void {
  const { entry } = pending;
  const current = store.get(entry.key) ?? null;
  pending.applied = true;
  switch (entry.op.kind) {
    case "read":
      entry.output = current;
      return;
    case "write":
      store.set(entry.key, entry.op.value);
      return;
    case "delete":
      entry.output = current !== null;
      store.delete(entry.key);
      return;
    case "cas": {
      const succeeded = current === entry.op.expected;
      if (succeeded) store.set(entry.key, entry.op.value);
      entry.output = succeeded;
      return;
    }
  }
}

function writtenValue(entry: HistoryOp): string | null {
  return entry.op.kind === "write" || entry.op.kind === "cas" ? entry.op.value : null;
}

/**
 * Changes one ok read to a value no linearization allows: one first written by an
 * operation invoked after the read completed ("future"), or one written by an ok write
 * that a later, completed overwrite or delete replaced before the read began ("stale").
 * Values are unique, so only that one operation ever wrote the value.
 */
function mutateOneRead(rng: Rng, history: HistoryOp[], kind: "future" | "stale"): boolean {
  const reads = history.filter((e) => e.outcome === "ok" && e.op.kind === "read");
  const start = rng.int(Math.max(1, reads.length));
  for (let i = 0; i < reads.length; i++) {
    const read = reads[(start + i) % reads.length]!;
    const sameKey = history.filter((e) => e.key === read.key && e.outcome !== "fail");
    const value = kind === "future" ? futureValue(read, sameKey) : staleValue(read, sameKey);
    if (value !== null) {
      read.output = value;
      return true;
    }
  }
  return false;
}

function futureValue(read: HistoryOp, sameKey: HistoryOp[]): string | null {
  const writer = sameKey.find(
    (e) => writtenValue(e) !== null && e.invokedAt > (read.completedAt ?? Infinity),
  );
  return writer === undefined ? null : writtenValue(writer);
}

function staleValue(read: HistoryOp, sameKey: HistoryOp[]): string | null {
  const overwrites = sameKey.filter(
    (e) =>
      e.outcome === "ok" &&
      (e.op.kind === "write" || e.op.kind === "delete" || (e.op.kind === "cas" && e.output)) &&
      (e.completedAt ?? Infinity) < read.invokedAt,
  );
  for (const writer of sameKey) {
    if (writer.outcome !== "ok" || writer.op.kind !== "write") continue;
    const replaced = overwrites.some(
      (x) => x !== writer && (writer.completedAt ?? Infinity) < x.invokedAt,
    );
    if (replaced) return writer.op.value;
  }
  return null;
}

function randomOptions(rng: Rng): GeneratorOptions {
  return {
    opCount: 40 + rng.int(160),
    keyCount: 1 + rng.int(3),
    clientCount: 2 + rng.int(5),
    infoRate: rng.chance(0.5) ? 0.02 : 0,
    failRate: 0.02,
  };
}

const seedCount = 150;

describe("linearizability: randomized histories", () => {
  it("linearizability: accepts histories from a real register (random concurrency, 150 seeds)", () => {
    for (let seed = 1; seed <= seedCount; seed++) {
      const rng = new Rng(seed);
      const history = generateHistory(rng, randomOptions(rng));
      const result = checkLinearizable(history);
      expect({ seed, result }).toMatchObject({ seed, result: { ok: true, timedOut: false } });
    }
  });

  it("linearizability: rejects one read mutated to a future value (150 seeds)", () => {
    let mutated = 0;
    for (let seed = 1; seed <= seedCount; seed++) {
      const rng = new Rng(seed);
      const history = generateHistory(rng, randomOptions(rng));
      if (!mutateOneRead(rng, history, "future")) continue;
      mutated++;
      const result = checkLinearizable(history);
      expect({ seed, result }).toMatchObject({ seed, result: { ok: false, timedOut: false } });
    }
    expect(mutated).toBeGreaterThan(seedCount / 2);
  });

  it("linearizability: rejects one read mutated to a stale value (150 seeds)", () => {
    let mutated = 0;
    for (let seed = 1; seed <= seedCount; seed++) {
      const rng = new Rng(seed);
      const history = generateHistory(rng, randomOptions(rng));
      if (!mutateOneRead(rng, history, "stale")) continue;
      mutated++;
      const result = checkLinearizable(history);
      expect({ seed, result }).toMatchObject({ seed, result: { ok: false, timedOut: false } });
    }
    expect(mutated).toBeGreaterThan(seedCount / 2);
  });

  it("linearizability: rejects one read mutated to a value never written (150 seeds)", () => {
    for (let seed = 1; seed <= seedCount; seed++) {
      const rng = new Rng(seed);
      const history = generateHistory(rng, randomOptions(rng));
      const read = history.find((e) => e.outcome === "ok" && e.op.kind === "read");
      if (read === undefined) continue;
      read.output = "never written";
      expect({ seed, ok: checkLinearizable(history).ok }).toEqual({ seed, ok: false });
    }
  });
});

/**
 * The definition, executed directly: try every order of the operations that respects real
 * time, with each indeterminate operation placed somewhere or nowhere. Exponential, so only
 * for small histories, but it shares no code with the checker.
 */
function linearizableByBruteForce(history: readonly HistoryOp[]): boolean {
  const ops = history.filter(
    (e) => e.outcome !== "fail" && !(e.outcome === "info" && e.op.kind === "read"),
  );
  const mustPrecede = (p: HistoryOp, o: HistoryOp): boolean =>
    p.outcome === "ok" && (p.completedAt ?? Infinity) < o.invokedAt;
  const failed = new Set<string>();
  const search = (remaining: HistoryOp[], value: string | null): boolean => {
    if (remaining.every((e) => e.outcome !== "ok")) return true;
    const memoKey = `${remaining.map((e) => e.id).join(",")}|${value}`;
    if (failed.has(memoKey)) return false;
    for (const o of remaining) {
      if (remaining.some((p) => p !== o && mustPrecede(p, o))) continue;
      const next = runOnRegister(o, value);
      if (next === undefined) continue;
      if (
        search(
          remaining.filter((e) => e !== o),
          next,
        )
      )
        return true;
    }
    failed.add(memoKey);
    return false;
  };
  return search(ops, null);
}

/** The value after `e` runs on `value`, or undefined when `e`'s output contradicts it. */
function runOnRegister(e: HistoryOp, value: string | null): string | null | undefined {
  const known = e.outcome === "ok";
  switch (e.op.kind) {
    case "read":
      return e.output === value ? value : undefined;
    case "write":
      return e.op.value;
    case "delete":
      if (known && typeof e.output === "boolean" && e.output !== (value !== null)) return undefined;
      return null;
    case "cas": {
      const matches = value === e.op.expected;
      if (!known) return matches ? e.op.value : value;
      if (e.output === true) return matches ? e.op.value : undefined;
      return matches ? undefined : value;
    }
  }
}

/**
 * A small history over one key and three values, so that values repeat and indeterminate
 * operations are interchangeable. Outputs come from a random execution (each operation at a
 * random instant within its interval, indeterminate ones taking effect or not), and most of
 * the time one output is then corrupted, which may or may not make the history invalid.
 */
function smallHistory(rng: Rng): HistoryOp[] {
  const values = ["a", "b", "c"];
  const pick = (): string => values[rng.int(values.length)] ?? "a";
  const history: HistoryOp[] = [];
  const opCount = 2 + rng.int(10);
  for (let id = 1; id <= opCount; id++) {
    const invokedAt = rng.int(16);
    const roll = rng.next();
    const op: KvOp =
      roll < 0.35
        ? { kind: "read" }
        : roll < 0.6
          ? { kind: "write", value: pick() }
          : roll < 0.75
            ? { kind: "delete" }
            : { kind: "cas", expected: rng.chance(0.3) ? null : pick(), value: pick() };
    const fate = rng.next();
    const outcome = fate < 0.6 ? "ok" : fate < 0.9 ? "info" : "fail";
    const completedAt = outcome === "info" ? null : invokedAt + rng.int(8);
    history.push({ id, client: id, key: "k", op, invokedAt, completedAt, outcome });
  }
  const instants = history.map((entry) => ({
    entry,
    at:
      entry.invokedAt +
      rng.next() * ((entry.completedAt ?? entry.invokedAt + 12) - entry.invokedAt),
    happens: entry.outcome === "ok" || (entry.outcome === "info" && rng.chance(0.5)),
  }));
  instants.sort((x, y) => x.at - y.at);
  const store = new Map<string, string>();
  for (const { entry, happens } of instants) {
    if (!happens) continue;
    applyToStore(store, { entry, applied: false });
    if (entry.outcome !== "ok") delete entry.output;
  }
  for (const entry of history) {
    if (entry.op.kind === "delete" && rng.chance(0.2)) delete entry.output;
  }
  const observers = history.filter((e) => e.outcome === "ok" && e.op.kind !== "write");
  const victim = observers[rng.int(observers.length)];
  if (victim !== undefined && rng.chance(0.6)) {
    if (victim.op.kind === "read") victim.output = rng.chance(0.25) ? null : pick();
    if (victim.op.kind === "cas") victim.output = !victim.output;
    if (victim.op.kind === "delete") victim.output = rng.chance(0.5);
  }
  return history;
}

describe("linearizability: agreement with brute force", () => {
  it("linearizability: agrees with exhaustive search (3000 small histories)", () => {
    const verdicts = { valid: 0, invalid: 0 };
    for (let seed = 1; seed <= 3000; seed++) {
      const history = smallHistory(new Rng(seed));
      const expected = linearizableByBruteForce(history);
      expect({ seed, ok: checkLinearizable(history).ok }).toEqual({ seed, ok: expected });
      verdicts[expected ? "valid" : "invalid"]++;
    }
    // Both verdicts must be well represented, or the comparison proves little.
    expect(verdicts.valid).toBeGreaterThan(500);
    expect(verdicts.invalid).toBeGreaterThan(500);
  });
});

describe("linearizability: performance", () => {
  const large: GeneratorOptions = {
    opCount: 5000,
    keyCount: 5,
    clientCount: 8,
    infoRate: 0.01,
    failRate: 0.01,
  };

  it("linearizability: checks 5000 ops over 5 keys (8 clients, indeterminate ops)", () => {
    const history = generateHistory(new Rng(42), large);
    expect(history.filter((e) => e.outcome === "info").length).toBeGreaterThan(20);
    const result = checkLinearizable(history);
    expect(result).toMatchObject({ ok: true, timedOut: false });
    expect(result.keys).toHaveLength(5);
  });

  it("linearizability: rejects 5000 ops with one stale read (8 clients, indeterminate ops)", () => {
    const rng = new Rng(43);
    const history = generateHistory(rng, large);
    expect(mutateOneRead(rng, history, "stale")).toBe(true);
    expect(checkLinearizable(history)).toMatchObject({ ok: false, timedOut: false });
  });
});
