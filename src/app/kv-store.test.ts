import { afterEach, describe, expect, it, vi } from "vitest";
import { decodeCommand, defaultKvLimits, encodeCommand, KvStateMachine } from "../kv/index.js";
import { InvalidInputError, QuotaExceededError, TooLargeError } from "../shared/errors.js";
import { KvStore, LEASE_TICK_MS } from "./kv-store.js";

afterEach(() => {
  vi.useRealTimers();
});

/** A node that records what it was asked to propose and answers when told to. */
function fakeNode(role = "master") {
  const proposed: string[] = [];
  const pending: ((value: unknown) => void)[] = [];
  const node = {
    role,
    propose: (command: Uint8Array) => {
      const decoded = decodeCommand(command);
      proposed.push(decoded.ok ? decoded.command.type : "bad");
      return new Promise<unknown>((resolve) => pending.push(resolve));
    },
    readBarrier: async () => {},
  };
  return { node, proposed, pending };
}

/** A lease granted at index 1, so that the ticker has a reason to tick. */
function withLease(sm: KvStateMachine): void {
  const grant = encodeCommand({ type: "lease_grant", ttlMs: 5000 });
  sm.apply(grant, { index: 1, term: 1, time: 0 });
}

describe("kv store", () => {
  it("lease ticker: the master ticks one at a time while leases are held; a backup never", () => {
    vi.useFakeTimers();
    const sm = new KvStateMachine();
    const master = fakeNode();
    // The store's quota is the one configured (none), so only leases make it tick.
    const store = new KvStore(master.node, sm, { keyCountMax: 0, bytesMax: 0 });
    store.startLeaseTicker();
    vi.advanceTimersByTime(LEASE_TICK_MS * 3);
    expect(master.proposed).toEqual([]); // no leases, no ticks
    withLease(sm);
    vi.advanceTimersByTime(LEASE_TICK_MS * 3);
    // The first tick is still unanswered, so no second one piles up behind it.
    expect(master.proposed).toEqual(["tick"]);
    master.node.role = "backup";
    master.pending[0]!(null);
    vi.advanceTimersByTime(LEASE_TICK_MS * 3);
    expect(master.proposed).toEqual(["tick"]);
    store.stopLeaseTicker();
  });

  it("quota: the master proposes its configured quota while the replicated one differs; a backup never", () => {
    vi.useFakeTimers();
    const sm = new KvStateMachine();
    const backup = fakeNode("backup");
    const quota = { keyCountMax: 10, bytesMax: 1000 };
    new KvStore(backup.node, sm, quota).startLeaseTicker();
    const master = fakeNode();
    const store = new KvStore(master.node, sm, quota);
    store.startLeaseTicker();
    vi.advanceTimersByTime(LEASE_TICK_MS * 3);
    expect(master.proposed).toEqual(["set_quota"]);
    sm.apply(encodeCommand({ type: "set_quota", ...quota }), { index: 1, term: 1, time: 0 });
    master.pending[0]!(null);
    vi.advanceTimersByTime(LEASE_TICK_MS * 3);
    expect(master.proposed).toEqual(["set_quota"]);
    expect(backup.proposed).toEqual([]);
    vi.clearAllTimers();
  });

  it("quota: a refused set_quota is a bug that stops the node, never proposed again and again", async () => {
    vi.useFakeTimers();
    const sm = new KvStateMachine();
    const master = fakeNode();
    new KvStore(master.node, sm, { keyCountMax: 10, bytesMax: 1000 }).startLeaseTicker();
    const unhandled = new Promise<unknown>((resolve) =>
      process.once("unhandledRejection", resolve),
    );
    vi.advanceTimersByTime(LEASE_TICK_MS);
    expect(master.proposed).toEqual(["set_quota"]);
    master.pending[0]!({ ok: false, code: "invalid_command", reason: "type", message: "no" });
    vi.useRealTimers();
    const error = await unhandled;
    expect(String(error)).toMatch(/refused this master's own set_quota/);
    vi.useFakeTimers();
    vi.clearAllTimers();
  });

  it("propose: bad input is refused naming the field, before anything is proposed", async () => {
    const sm = new KvStateMachine({ ...defaultKvLimits(), valueBytesMax: 4 });
    const { node, proposed } = fakeNode();
    const store = new KvStore(node, sm);
    const txn = {
      type: "txn",
      compare: [],
      success: [{ type: "put", key: "k", value: new Uint8Array(9) }],
      failure: [],
    } as const;
    await expect(store.propose(txn)).rejects.toMatchObject({
      constructor: TooLargeError,
      field: "success[0].put.value",
    });
    await expect(store.propose({ type: "lease_grant", ttlMs: 1 })).rejects.toMatchObject({
      constructor: InvalidInputError,
      field: "ttlSeconds",
    });
    expect(proposed).toEqual([]);
  });

  it("propose: a JavaScript caller's key that is no string or value that is no bytes is refused naming the field, never proposed", async () => {
    const sm = new KvStateMachine();
    const { node, proposed } = fakeNode();
    const store = new KvStore(node, sm);
    const bad = (command: unknown) => store.propose(command as Parameters<KvStore["propose"]>[0]);
    const bytes = new Uint8Array(1);
    for (const [command, field] of [
      [{ type: "put", key: "k", value: "text" }, "value"],
      [{ type: "put", key: "k", value: null }, "value"],
      [{ type: "put", key: undefined, value: bytes }, "key"],
      [{ type: "delete", key: 7 }, "key"],
      [
        { type: "txn", compare: [{ key: 1, exists: true }], success: [], failure: [] },
        "compare[0].key",
      ],
      [
        { type: "txn", compare: [], success: [{ type: "put", key: "k", value: "v" }], failure: [] },
        "success[0].put.value",
      ],
      [
        { type: "txn", compare: [], success: [], failure: [{ type: "delete", key: null }] },
        "failure[0].delete.key",
      ],
    ] as const) {
      await expect(bad(command), JSON.stringify(command)).rejects.toMatchObject({
        constructor: InvalidInputError,
        field,
      });
    }
    expect(proposed).toEqual([]);
  });

  it("quota: a backup whose copy is at the quota forwards a put rather than refusing it", async () => {
    // The backup has not applied the master's delete of "a" yet: its copy is at the quota
    // of one key, but the log the put joins has room.
    const sm = new KvStateMachine();
    sm.apply(encodeCommand({ type: "set_quota", keyCountMax: 1, bytesMax: 0 }), at(1));
    sm.apply(encodeCommand({ type: "put", key: "a", value: new Uint8Array(1) }), at(2));
    const backup = fakeNode("backup");
    const store = new KvStore(backup.node, sm, { keyCountMax: 1, bytesMax: 0 });
    const put = store.propose({ type: "put", key: "b", value: new Uint8Array(1) });
    await Promise.resolve();
    expect(backup.proposed).toEqual(["put"]);
    backup.pending[0]!({ ok: true, revision: 4 });
    await expect(put).resolves.toEqual({ ok: true, revision: 4 });
  });

  it("quota: a master refuses on its copy, except while its own quota is still on its way through the log", async () => {
    const sm = new KvStateMachine();
    sm.apply(encodeCommand({ type: "set_quota", keyCountMax: 1, bytesMax: 0 }), at(1));
    sm.apply(encodeCommand({ type: "put", key: "a", value: new Uint8Array(1) }), at(2));
    const master = fakeNode();
    const put = { type: "put", key: "b", value: new Uint8Array(1) } as const;
    await expect(
      new KvStore(master.node, sm, { keyCountMax: 1, bytesMax: 0 }).propose(put),
    ).rejects.toMatchObject({ constructor: QuotaExceededError, quota: "keys", usage: 1 });
    expect(master.proposed).toEqual([]);
    // A precondition or a lease is judged before the quota by the state machine: the
    // master leaves such a put to it, so a full store answers 412 or 404 on every node.
    const full = new KvStore(master.node, sm, { keyCountMax: 1, bytesMax: 0 });
    void full.propose({ ...put, ifRevision: 5 });
    void full.propose({ ...put, lease: 77 });
    await Promise.resolve();
    expect(master.proposed).toEqual(["put", "put"]);
    master.proposed.length = 0;
    // Started with a raised quota: its set_quota goes ahead of the put in the log.
    void new KvStore(master.node, sm, { keyCountMax: 2, bytesMax: 0 }).propose(put);
    await Promise.resolve();
    expect(master.proposed).toEqual(["put"]);
  });

  it("quota: a refusal from the log is answered as the edge check's: 413 past the whole bytes quota, else 507 with usage", async () => {
    const sm = new KvStateMachine();
    sm.apply(encodeCommand({ type: "put", key: "a", value: new Uint8Array(3) }), at(1));
    const node = {
      role: "backup",
      propose: async () => ({ ok: false, code: "quota_exceeded", quota: "bytes", limit: 10 }),
      readBarrier: async () => {},
    };
    const store = new KvStore(node, sm);
    await expect(
      store.propose({ type: "put", key: "big", value: new Uint8Array(8) }),
    ).rejects.toMatchObject({ constructor: TooLargeError, field: "value", limit: 7 });
    await expect(
      store.propose({ type: "put", key: "b", value: new Uint8Array(5) }),
    ).rejects.toMatchObject({
      constructor: QuotaExceededError,
      quota: "bytes",
      limit: 10,
      usage: 4,
    });
  });
});

/** Where a command is applied: at `index`, in term 1, at log time 0. */
function at(index: number) {
  return { index, term: 1, time: 0 };
}
