/**
 * One watch of the keys under a prefix, over a node's change history: where it starts,
 * which changes it passes on, how each is numbered within its revision, and how a watch
 * that resumes in the middle of a revision skips what it already delivered. The HTTP watch
 * route (`src/http/routes/watch-route.ts`) turns its events into server-sent events and the
 * whole-node simulator hands them to its simulated watchers, so both follow one rule.
 *
 * It owns no stream and no transport: the caller delivers the events and ends the watch
 * when the history ends it (`end`, after a restore) or when its reader goes away
 * (`cancel`). Like every change listener, `events` must not call back into the store.
 */

import type { ChangeListener, KvChange } from "./change-history.js";
import type { KvWatchStart } from "./kv-state-machine.js";

/** What a prefix watch needs of a node's store: its revision and its change history. */
export interface WatchSource {
  /** The revision of this node's applied state: a watch from now starts after it. */
  revision(): number;
  watch(fromRevision: number, listener: ChangeListener): KvWatchStart;
}

export interface PrefixWatchRequest {
  readonly prefix: string;
  /** The first revision to deliver; null: the changes after the node's revision now. */
  readonly fromRevision: number | null;
  /** Changes of `fromRevision` under the prefix the reader already has (it resumes). */
  readonly skip: number;
}

/** One change under the prefix, with its number within its revision (from 1). */
export interface PrefixWatchEvent {
  readonly change: KvChange;
  readonly n: number;
}

export interface PrefixWatchListener {
  /** The events of one applied command (never empty). */
  events(events: readonly PrefixWatchEvent[]): void;
  /** The node's history started over (a restore): the reader resumes, here or elsewhere. */
  end(): void;
}

export type PrefixWatchStart =
  | {
      readonly ok: true;
      /** Where the watch starts: `fromRevision`, or the node's revision + 1. */
      readonly fromRevision: number;
      /** The events the history already holds, in order. */
      readonly backlog: readonly PrefixWatchEvent[];
      readonly cancel: () => void;
    }
  | {
      readonly ok: false;
      readonly fromRevision: number;
      /** The oldest revision this node's history still holds (ERR_COMPACTED). */
      readonly startRevision: number;
    };

/**
 * Turns changes into the events of one watch: only keys under its prefix, from revision
 * `fromRevision` on (a node that is behind applies older ones after the watch starts),
 * numbered within their revision, and the first `skip` of revision `fromRevision` left out.
 */
class PrefixFilter {
  private revision = 0;
  private count = 0;

  constructor(
    private readonly prefix: string,
    private readonly fromRevision: number,
    private skip: number,
  ) {}

  events(changes: readonly KvChange[]): PrefixWatchEvent[] {
    const events: PrefixWatchEvent[] = [];
    for (const change of changes) {
      // A node behind the revision a watch resumes from applies older commands after the
      // watch started: their changes were delivered already (by the node the reader left).
      if (change.revision < this.fromRevision) continue;
      if (!change.key.startsWith(this.prefix)) continue;
      this.count = change.revision === this.revision ? this.count + 1 : 1;
      this.revision = change.revision;
      if (change.revision === this.fromRevision && this.skip > 0) {
        this.skip--;
        continue;
      }
      events.push({ change, n: this.count });
    }
    return events;
  }
}

/**
 * Starts a watch of the keys under `request.prefix` on `source`. Fails, changing nothing,
 * when the node no longer holds the changes of `fromRevision` (compacted).
 */
export function openPrefixWatch(
  source: WatchSource,
  request: PrefixWatchRequest,
  listener: PrefixWatchListener,
): PrefixWatchStart {
  const fromRevision = request.fromRevision ?? source.revision() + 1;
  const filter = new PrefixFilter(request.prefix, fromRevision, request.skip);
  const started = source.watch(fromRevision, {
    changes: (changes) => {
      const events = filter.events(changes);
      if (events.length > 0) listener.events(events);
    },
    reset: () => listener.end(),
  });
  if (!started.ok) return { ok: false, fromRevision, startRevision: started.startRevision };
  return {
    ok: true,
    fromRevision,
    backlog: filter.events(started.backlog),
    cancel: started.cancel,
  };
}
