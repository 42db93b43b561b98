import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChangeHistory } from "../kv/change-history.js";
import {
  type ChangeListener,
  type KvWatchStart,
  openPrefixWatch,
  type WatchSource,
} from "../kv/index.js";
import { WatchHub } from "./watch-hub.js";

/** A store's watch side: a change history and the revision of the last command applied. */
class HistorySource implements WatchSource {
  private readonly history = new ChangeHistory(20, 1_000_000);
  private current = 0;

  revision(): number {
    return this.current;
  }

  watch(fromRevision: number, listener: ChangeListener): KvWatchStart {
    const backlog = this.history.since(fromRevision);
    if (backlog === null) return { ok: false, startRevision: this.history.startRevision };
    return { ok: true, backlog, cancel: this.history.subscribe(listener) };
  }

  apply(keys: readonly string[]): void {
    this.current++;
    for (const key of keys) {
      this.history.record({ type: "put", key, value: null, revision: this.current });
    }
    this.history.flush();
  }

  restore(): void {
    this.history.reset(this.current + 1);
  }
}

/** What one watch saw: its events as "revision.n key", and "end" when it ended. */
function watchLog(source: WatchSource, prefix: string, fromRevision: number | null) {
  const seen: string[] = [];
  const started = openPrefixWatch(
    source,
    { prefix, fromRevision, skip: 0 },
    {
      events: (events) => {
        for (const { change, n } of events) seen.push(`${change.revision}.${n} ${change.key}`);
      },
      end: () => seen.push("end"),
    },
  );
  if (!started.ok) return { seen: [`compacted ${started.startRevision}`], cancel: () => {} };
  for (const { change, n } of started.backlog) seen.push(`${change.revision}.${n} ${change.key}`);
  return { seen, cancel: started.cancel };
}

const KEYS = ["", "a", "ab", "abc", "abd", "b", "ba", "bab", "c"];
const PREFIXES = ["", "a", "ab", "abc", "b", "ba", "bab", "x"];

type Step =
  | { readonly type: "open"; readonly prefix: string; readonly back: number | null }
  | { readonly type: "cancel"; readonly which: number }
  | { readonly type: "apply"; readonly keys: readonly string[] }
  | { readonly type: "restore" };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    type: fc.constant("open" as const),
    prefix: fc.constantFrom(...PREFIXES),
    back: fc.option(fc.nat(25)),
  }),
  fc.record({ type: fc.constant("cancel" as const), which: fc.nat(40) }),
  fc.record({
    type: fc.constant("apply" as const),
    keys: fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 4 }),
  }),
  fc.constant({ type: "restore" as const }),
);

describe("WatchHub", () => {
  it("tells every watch exactly what a watch of the history itself is told", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
        const source = new HistorySource();
        const hub = new WatchHub(source);
        const pairs: {
          direct: ReturnType<typeof watchLog>;
          hubbed: ReturnType<typeof watchLog>;
        }[] = [];
        for (const s of steps) {
          if (s.type === "open") {
            const from = s.back === null ? null : Math.max(1, source.revision() + 1 - s.back);
            pairs.push({
              direct: watchLog(source, s.prefix, from),
              hubbed: watchLog(hub.sourceFor(s.prefix), s.prefix, from),
            });
          } else if (s.type === "cancel") {
            const pair = pairs[s.which % Math.max(1, pairs.length)];
            pair?.direct.cancel();
            pair?.hubbed.cancel();
          } else if (s.type === "apply") {
            source.apply(s.keys);
          } else {
            source.restore();
          }
        }
        for (const { direct, hubbed } of pairs) expect(hubbed.seen).toEqual(direct.seen);
      }),
      { numRuns: 500, seed: 7 },
    );
  });

  it("holds one subscription for all its watches, and none once they are all cancelled", () => {
    const source = new HistorySource();
    const subscriptions: number[] = [];
    let open = 0;
    const counting: WatchSource = {
      revision: () => source.revision(),
      watch(fromRevision, listener) {
        const started = source.watch(fromRevision, listener);
        if (!started.ok) return started;
        open++;
        subscriptions.push(open);
        let cancelled = false;
        return {
          ...started,
          cancel: () => {
            if (!cancelled) open--;
            cancelled = true;
            started.cancel();
          },
        };
      },
    };
    const hub = new WatchHub(counting);
    const watches = ["a", "b", "a", "ab"].map((p) => watchLog(hub.sourceFor(p), p, null));
    expect(open).toBe(1);
    expect(hub.size).toBe(4);
    source.apply(["ab"]);
    expect(watches.map((w) => w.seen.length)).toEqual([1, 0, 1, 1]);
    for (const w of watches) w.cancel();
    expect(hub.size).toBe(0);
    expect(open).toBe(0);
  });

  it("hands each change of a command to the one watch of its key among a thousand", () => {
    const source = new HistorySource();
    const hub = new WatchHub(source);
    const watches = Array.from({ length: 1000 }, (_, i) =>
      watchLog(hub.sourceFor(`k/${i}.`), `k/${i}.`, null),
    );
    source.apply(["k/7.", "k/700.", "k/70"]);
    expect(watches.filter((w) => w.seen.length > 0).map((w) => w.seen)).toEqual([
      [`1.1 k/7.`],
      // Numbered within its own watch: the first change of revision 1 under `k/700.`.
      [`1.1 k/700.`],
    ]);
  });

  it("finds the watches of a long key among a thousand prefix lengths, each once", () => {
    const source = new HistorySource();
    const hub = new WatchHub(source);
    const as = Array.from({ length: 1000 }, (_, i) => "a".repeat(i + 1));
    const watches = [...as, `${"a".repeat(499)}b`, "b"].map((p) =>
      watchLog(hub.sourceFor(p), p, null),
    );
    source.apply(["a".repeat(1000)]);
    source.apply([`${"a".repeat(499)}b${"a".repeat(500)}`]);
    const seen = watches.map((w) => w.seen.length);
    // Every a-prefix sees the first key; those of 499 a's or fewer, and the one ending in
    // b, see the second too.
    expect(seen.slice(0, 499)).toEqual(Array(499).fill(2));
    expect(seen.slice(499, 1000)).toEqual(Array(501).fill(1));
    expect(seen.slice(1000)).toEqual([1, 0]);
    for (const w of watches) w.cancel();
    expect(hub.size).toBe(0);
  });
});
