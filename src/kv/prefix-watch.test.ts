import { describe, expect, it } from "vitest";
import { encodeCommand, type KvCommand } from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { defaultKvLimits } from "./limits.js";
import { openPrefixWatch, type PrefixWatchEvent, type WatchSource } from "./prefix-watch.js";

const text = (s: string) => new TextEncoder().encode(s);

function store(): { sm: KvStateMachine; source: WatchSource; apply(c: KvCommand): void } {
  const sm = new KvStateMachine(defaultKvLimits());
  let index = 0;
  return {
    sm,
    source: { revision: () => sm.revision, watch: (from, listener) => sm.watch(from, listener) },
    apply: (command) => {
      sm.apply(encodeCommand(command), { index: ++index, term: 1, time: 0 });
    },
  };
}

const ids = (events: readonly PrefixWatchEvent[]) =>
  events.map((e) => `${e.change.type} ${e.change.key}@${e.change.revision}.${e.n}`);

describe("prefix watch", () => {
  it("prefix watch: passes only keys under the prefix, numbered within their revision", () => {
    const kv = store();
    kv.apply({ type: "put", key: "a1", value: text("x") });
    kv.apply({ type: "put", key: "b1", value: text("x") });
    kv.apply({
      type: "txn",
      compare: [],
      success: [
        { type: "put", key: "a2", value: text("y") },
        { type: "put", key: "b2", value: text("y") },
        { type: "put", key: "a3", value: text("y") },
      ],
      failure: [],
    });
    const live: PrefixWatchEvent[] = [];
    const started = openPrefixWatch(
      kv.source,
      { prefix: "a", fromRevision: 1, skip: 0 },
      { events: (e) => live.push(...e), end: () => {} },
    );
    expect(started.ok).toBe(true);
    if (!started.ok) return;
    expect(ids(started.backlog)).toEqual(["put a1@1.1", "put a2@3.1", "put a3@3.2"]);
    kv.apply({ type: "delete_range", prefix: "a" });
    expect(ids(live)).toEqual(["delete a1@4.1", "delete a2@4.2", "delete a3@4.3"]);
  });

  it("prefix watch: a resume skips the changes of its revision the reader has (mid-revision)", () => {
    const kv = store();
    kv.apply({ type: "put", key: "a1", value: text("x") });
    kv.apply({ type: "delete_range", prefix: "a" });
    kv.apply({ type: "put", key: "a1", value: text("x") });
    kv.apply({ type: "put", key: "a2", value: text("x") });
    kv.apply({ type: "delete_range", prefix: "a" });
    const started = openPrefixWatch(
      kv.source,
      { prefix: "a", fromRevision: 5, skip: 1 },
      { events: () => {}, end: () => {} },
    );
    expect(started.ok && ids(started.backlog)).toEqual(["delete a2@5.2"]);
  });

  it("prefix watch: a node behind the revision a watch resumes from does not deliver older changes as it catches up", () => {
    const kv = store();
    kv.apply({ type: "put", key: "a1", value: text("x") });
    const live: PrefixWatchEvent[] = [];
    const started = openPrefixWatch(
      kv.source,
      { prefix: "a", fromRevision: 3, skip: 1 },
      { events: (e) => live.push(...e), end: () => {} },
    );
    expect(started.ok && started.backlog).toEqual([]);
    kv.apply({ type: "put", key: "a2", value: text("x") });
    kv.apply({
      type: "txn",
      compare: [],
      success: [
        { type: "put", key: "a3", value: text("y") },
        { type: "put", key: "a4", value: text("y") },
      ],
      failure: [],
    });
    kv.apply({ type: "put", key: "a5", value: text("z") });
    expect(ids(live)).toEqual(["put a4@3.2", "put a5@4.1"]);
  });

  it("prefix watch: without a revision it starts after the node's revision now", () => {
    const kv = store();
    kv.apply({ type: "put", key: "a1", value: text("x") });
    const live: PrefixWatchEvent[] = [];
    const started = openPrefixWatch(
      kv.source,
      { prefix: "", fromRevision: null, skip: 0 },
      { events: (e) => live.push(...e), end: () => {} },
    );
    expect(started).toMatchObject({ ok: true, fromRevision: 2, backlog: [] });
    kv.apply({ type: "put", key: "a1", value: text("y") });
    expect(ids(live)).toEqual(["put a1@2.1"]);
  });

  it("prefix watch: a compacted revision fails with the oldest revision held; a restore ends it", async () => {
    const kv = store();
    kv.apply({ type: "put", key: "a1", value: text("x") });
    const chunks = kv.sm.snapshotChunks();
    const other = store();
    other.sm.restoreChunks(chunks);
    expect(
      openPrefixWatch(
        other.source,
        { prefix: "a", fromRevision: 1, skip: 0 },
        {
          events: () => {},
          end: () => {},
        },
      ),
    ).toEqual({ ok: false, fromRevision: 1, startRevision: 2 });
    let ended = 0;
    const started = openPrefixWatch(
      kv.source,
      { prefix: "a", fromRevision: 1, skip: 0 },
      { events: () => {}, end: () => ended++ },
    );
    expect(started.ok).toBe(true);
    await kv.sm.restore(
      (async function* () {
        yield* chunks;
      })(),
    );
    expect(ended).toBe(1);
  });
});
