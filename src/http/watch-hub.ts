/**
 * The HTTP watches of one node, indexed by prefix: one subscription to the store's change
 * history for all of them, and each applied change handed only to the watches whose prefix
 * it falls under. Without it every change went to every open watch, which then looked at
 * the key itself: with a thousand watches of a thousand different keys, a write cost the
 * node a thousand calls and a thousand small arrays, though it concerned one watch.
 *
 * A watch finds its changes by a hash of the key's first L characters for every length L
 * that some open watch's prefix has: as many map lookups per change as there are distinct
 * prefix lengths, whatever the number of watches, and the key's characters read once (the
 * hash rolls on from one length to the next). Looking up each prefix as a string hashed
 * it anew at every length: with watches of a thousand prefix lengths, a change of a long
 * key cost half a million character reads on the event loop (0.8 ms, and a prefix delete
 * of 10,000 such keys stalled the node for seconds). `sourceFor(prefix)` is a WatchSource for
 * `openPrefixWatch`, which still numbers, skips and filters the changes it is given exactly
 * as it does for the simulator's watchers, so the hub only decides who is told, never what.
 */

import { randomInt } from "node:crypto";
import type { ChangeListener, KvChange, KvWatchStart, WatchSource } from "../kv/index.js";

const IGNORE: ChangeListener = { changes: () => {}, reset: () => {} };

/**
 * The prefix hash's modulus, a prime below 2^31, and its base, drawn per process so that a
 * client cannot choose prefixes that collide (a modulus that is a power of two can be
 * defeated whatever the base). Products stay below 2^52, exact in a double.
 */
const HASH_MODULUS = 2_147_483_647;
const HASH_BASE = randomInt(1 << 16, 1 << 20);

/** The hash of `text`'s first `to` characters, rolled on from that of its first `from`. */
function rollHash(hash: number, text: string, from: number, to: number): number {
  let h = hash;
  for (let i = from; i < to; i++) h = (h * HASH_BASE + text.charCodeAt(i) + 1) % HASH_MODULUS;
  return h;
}

/** One prefix watched, and its listeners. */
interface Watched {
  readonly prefix: string;
  readonly listeners: Set<ChangeListener>;
}

export class WatchHub {
  /** The listeners of each prefix watched. */
  private readonly byPrefix = new Map<string, Watched>();
  /** The prefixes watched, by their hash (see rollHash). */
  private readonly byHash = new Map<number, Watched[]>();
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
    for (const watched of this.byPrefix.values()) count += watched.listeners.size;
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
    let watched = this.byPrefix.get(prefix);
    if (watched === undefined) {
      watched = { prefix, listeners: new Set() };
      this.byPrefix.set(prefix, watched);
      const hash = rollHash(0, prefix, 0, prefix.length);
      const bucket = this.byHash.get(hash);
      if (bucket === undefined) this.byHash.set(hash, [watched]);
      else bucket.push(watched);
      this.lengthCounts.set(prefix.length, (this.lengthCounts.get(prefix.length) ?? 0) + 1);
      this.lengths = [...this.lengthCounts.keys()].sort((a, b) => a - b);
    }
    watched.listeners.add(listener);
  }

  private remove(prefix: string, listener: ChangeListener): void {
    const watched = this.byPrefix.get(prefix);
    if (watched === undefined || !watched.listeners.delete(listener)) return;
    if (watched.listeners.size > 0) return;
    this.byPrefix.delete(prefix);
    const hash = rollHash(0, prefix, 0, prefix.length);
    const rest = (this.byHash.get(hash) ?? []).filter((w) => w !== watched);
    if (rest.length === 0) this.byHash.delete(hash);
    else this.byHash.set(hash, rest);
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
   * prefix length, shortest first. A Set visits what is left of it when a listener cancels
   * during the loop.
   */
  private forEachWatching(key: string, visit: (listener: ChangeListener) => void): void {
    let hash = 0;
    let hashed = 0;
    for (const length of this.lengths) {
      if (length > key.length) break;
      hash = rollHash(hash, key, hashed, length);
      hashed = length;
      const bucket = this.byHash.get(hash);
      if (bucket === undefined) continue;
      for (const watched of bucket) {
        if (watched.prefix.length !== length || !key.startsWith(watched.prefix)) continue;
        for (const listener of watched.listeners) visit(listener);
      }
    }
  }

  /** The history started over: every watch has ended, and so has the hub's subscription. */
  private reset(): void {
    const listeners = [...this.byPrefix.values()].flatMap((watched) => [...watched.listeners]);
    this.unsubscribe = null;
    this.byPrefix.clear();
    this.byHash.clear();
    this.lengthCounts.clear();
    this.lengths = [];
    for (const listener of listeners) listener.reset();
  }

  private stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
