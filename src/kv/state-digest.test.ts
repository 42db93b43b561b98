import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeCommand, type KvCommand } from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { defaultKvLimits } from "./limits.js";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** Small tables and windows, so that expiry, refusals and quotas all happen. */
function machine(): KvStateMachine {
  return new KvStateMachine({
    ...defaultKvLimits(),
    sessionCountMax: 4,
    sessionTtlMs: 5_000,
    idempotencyKeyCountMax: 4,
    idempotencyWindowMs: 3_000,
    leaseTtlMsMin: 1_000,
    leaseCountMax: 3,
  });
}

const key = fc.constantFrom("a", "b", "c", "d/1", "d/2", "é");
const value = fc.string({ maxLength: 6 }).map(text);
const writeOptions = fc.record(
  {
    idempotencyKey: fc.constantFrom("i1", "i2", "i3", "i4", "i5"),
    session: fc.record({ clientId: fc.constantFrom("s1", "s2", "s3"), seq: fc.nat(4) }),
  },
  { requiredKeys: [] },
);

const command: fc.Arbitrary<KvCommand> = fc.oneof(
  fc
    .tuple(key, value, writeOptions, fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }))
    .map(([k, v, options, lease]) => ({
      type: "put" as const,
      key: k,
      value: v,
      ...options,
      ...(lease === undefined ? {} : { lease }),
    })),
  fc
    .tuple(key, writeOptions)
    .map(([k, options]) => ({ type: "delete" as const, key: k, ...options })),
  fc.constant({ type: "delete_range" as const, prefix: "d/" }),
  fc.tuple(key, key, value).map(([k1, k2, v]) => ({
    type: "txn" as const,
    compare: [{ key: k1, target: "exists" as const, exists: true }],
    success: [{ type: "put" as const, key: k2, value: v }],
    failure: [{ type: "delete" as const, key: k1 }],
  })),
  fc.integer({ min: 1_000, max: 4_000 }).map((ttlMs) => ({ type: "lease_grant" as const, ttlMs })),
  fc.integer({ min: 1, max: 30 }).map((id) => ({ type: "lease_keepalive" as const, id })),
  fc.integer({ min: 1, max: 30 }).map((id) => ({ type: "lease_revoke" as const, id })),
  fc.constant({ type: "tick" as const }),
  fc
    .tuple(fc.nat(6), fc.nat(40))
    .map(([keyCountMax, bytesMax]) => ({ type: "set_quota" as const, keyCountMax, bytesMax })),
);

/** A step of the log: the command, how far the master's clock moved, and a new term or not. */
const step = fc.tuple(command, fc.nat(1_500), fc.boolean());

function applyAll(sm: KvStateMachine, steps: [KvCommand, number, boolean][], first = 1): void {
  let time = 0;
  let term = 1;
  for (const [index, [cmd, advanceMs, newTerm]] of steps.entries()) {
    time += advanceMs;
    if (newTerm && index % 7 === 0) term++;
    sm.apply(encodeCommand(cmd), { index: first + index, term, time });
    expect(sm.stateHash()).toBe(sm.stateHashRecomputed());
  }
}

describe("kv state digest", () => {
  it("digest: the incremental digest equals a full recomputation after every command (random logs)", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 120 }), (steps) => {
        applyAll(machine(), steps);
      }),
      { numRuns: 150 },
    );
  });

  it("digest: a restored replica digests like the one that applied the log, and keeps doing so", () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 80 }),
        fc.array(step, { maxLength: 40 }),
        (before, after) => {
          const source = machine();
          applyAll(source, before);
          const copy = machine();
          copy.restoreChunks(source.snapshotChunks());
          expect(copy.stateHash()).toBe(source.stateHash());
          expect(copy.stateHashRecomputed()).toBe(copy.stateHash());
          expect(copy.bytes).toBe(source.bytes);
          // Both go on with the same log; their digests stay equal and incremental.
          const time = 10_000_000;
          for (const [i, [cmd]] of after.entries()) {
            const context = { index: before.length + 1 + i, term: 50, time: time + i * 10 };
            source.apply(encodeCommand(cmd), context);
            copy.apply(encodeCommand(cmd), context);
            expect(copy.stateHash()).toBe(source.stateHash());
            expect(copy.stateHashRecomputed()).toBe(copy.stateHash());
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("digest: replicas that differ in one value, one revision or the quota digest differently", () => {
    const a = machine();
    const b = machine();
    const c = machine();
    const put = (sm: KvStateMachine, index: number, v: string): void => {
      sm.apply(encodeCommand({ type: "put", key: "k", value: text(v) }), {
        index,
        term: 1,
        time: 0,
      });
    };
    put(a, 1, "x");
    put(b, 1, "y");
    put(c, 2, "x");
    expect(new Set([a.stateHash(), b.stateHash(), c.stateHash()]).size).toBe(3);
    const quota = encodeCommand({ type: "set_quota", keyCountMax: 1, bytesMax: 0 });
    const before = a.stateHash();
    a.apply(quota, { index: 2, term: 1, time: 0 });
    expect(a.stateHash()).not.toBe(before);
  });
});
