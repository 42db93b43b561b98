/**
 * The HTTP watches of one node, indexed by prefix: one subscription to the store's change
 * history for all of them, and each applied change handed only to the watches whose prefix
 * it falls under. Without it every change went to every open watch, which then looked at
 * the key itself: with a thousand watches of a thousand different keys, a write cost the
 * node a thousand calls and a thousand small arrays, though it concerned one watch.
 *
 * A watch finds its changes by looking up the key's first L characters for every length L
 * that some open watch's prefix has: as many map lookups per change as there are distinct
 * prefix lengths, whatever the number of watches. `sourceFor(prefix)` is a WatchSource for
 * `openPrefixWatch`, which still numbers, skips and filters the changes it is given exactly
 * as it does for the simulator's watchers, so the hub only decides who is told, never what.
 */

import type { ChangeListener, KvChange, KvWatchStart, WatchSource } from "../kv/index.js";

const IGNORE: ChangeListener = { changes: () => {}, reset: () => {} };

export class WatchHub {
  /** The listeners of each prefix watched. */
  private readonly byPrefix = new Map<string, Set<ChangeListener>>();
  /** How many prefixes in `byPrefix` have each length. */
  private readonly lengthCounts = new Map<number, number>();
  /** The lengths of `lengthCounts`, ascending; rebuilt when one comes or goes. */
  private lengths: number[] = [];
  /** Ends the hub's subscription to the source's history; null while it has none. */
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly source: WatchSource) {}

  /** Open listeners, over every prefix. */
  get size(): number {
    let count = 0;
    for (const listeners of this.byPrefix.values()) count += listeners.size;
    return count;
  }

  /** The source for one watch of `prefix`: its changes come through this hub. */
  sourceFor(prefix: string): WatchSource {
    return {
      revision: () => this.source.revision(),
      watch: (fromRevision, listener) => this.watch(prefix, fromRevision, listener),
    };
  }

  private watch(prefix: string, fromRevision: number, listener: ChangeListener): KvWatchStart {
    // The backlog (or the compaction) comes from the history itself; the changes after it
    // come through the hub's own subscription, which is in place before this returns: the
    // first watch's call makes it, the others' calls only read their backlog.
    const subscribed = this.unsubscribe !== null;
    const started = this.source.watch(
      fromRevision,
      subscribed
        ? IGNORE
        : { changes: (changes) => this.dispatch(changes), reset: () => this.reset() },
    );
    if (!started.ok) return started;
    if (subscribed) started.cancel();
    else this.unsubscribe = started.cancel;
    this.add(prefix, listener);
    return { ok: true, backlog: started.backlog, cancel: () => this.remove(prefix, listener) };
  }

  private add(prefix: string, listener: ChangeListener): void {
    let listeners = this.byPrefix.get(prefix);
    if (listeners === undefined) {
      listeners = new Set();
      this.byPrefix.set(prefix, listeners);
      this.lengthCounts.set(prefix.length, (this.lengthCounts.get(prefix.length) ?? 0) + 1);
      this.lengths = [...this.lengthCounts.keys()].sort((a, b) => a - b);
    }
    listeners.add(listener);
  }

  private remove(prefix: string, listener: ChangeListener): void {
    const listeners = this.byPrefix.get(prefix);
    if (listeners === undefined || !listeners.delete(listener)) return;
    if (listeners.size > 0) return;
    this.byPrefix.delete(prefix);
    const left = (this.lengthCounts.get(prefix.length) ?? 1) - 1;
    if (left === 0) this.lengthCounts.delete(prefix.length);
    else this.lengthCounts.set(prefix.length, left);
    this.lengths = [...this.lengthCounts.keys()].sort((a, b) => a - b);
    if (this.byPrefix.size === 0) this.stop();
  }

  /** The changes of one applied command, to each listener whose prefix holds some of them. */
  private dispatch(changes: readonly KvChange[]): void {
    if (changes.length === 1) {
      // The common case (a put or a delete): no per-listener lists to build.
      this.forEachWatching(changes[0]!.key, (listener) => listener.changes(changes));
      return;
    }
    const perListener = new Map<ChangeListener, KvChange[]>();
    for (const change of changes) {
      this.forEachWatching(change.key, (listener) => {
        const list = perListener.get(listener);
        if (list === undefined) perListener.set(listener, [change]);
        else list.push(change);
      });
    }
    for (const [listener, list] of perListener) listener.changes(list);
  }

  /**
   * Calls `visit` for each listener whose prefix `key` starts with: one lookup per distinct
   * prefix length. A Set visits what is left of it when a listener cancels during the loop.
   */
  private forEachWatching(key: string, visit: (listener: ChangeListener) => void): void {
    for (const length of this.lengths) {
      if (length > key.length) break;
      const listeners = this.byPrefix.get(key.slice(0, length));
      if (listeners !== undefined) for (const listener of listeners) visit(listener);
    }
  }

  /** The history started over: every watch has ended, and so has the hub's subscription. */
  private reset(): void {
    const listeners = [...this.byPrefix.values()].flatMap((set) => [...set]);
    this.unsubscribe = null;
    this.byPrefix.clear();
    this.lengthCounts.clear();
    this.lengths = [];
    for (const listener of listeners) listener.reset();
  }

  private stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
