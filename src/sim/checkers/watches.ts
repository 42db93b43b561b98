/**
 * The watch checker: what every simulated watcher was told, judged against the committed
 * history of the store. The committed history is what the nodes applied, index by index
 * (every node applies only committed entries, every node must apply the same changes at
 * the same index, and at the end the history folded key by key must give the converged
 * state); a watcher's record is the changes it was delivered, in the order it got them,
 * and the compactions it was told of.
 *
 * Rules, for each watcher of a prefix from its first revision up to the last revision the
 * cluster applied:
 *
 * - every committed change of a key under the prefix is delivered exactly once, in
 *   revision order (and within a revision in the order it was applied), with its kind
 *   (put or delete: a delete by prefix, a lease's expiry and a transaction's delete
 *   included) and its value;
 * - nothing else is delivered: no change that was never committed (an entry a fail-over
 *   discarded), no wrong value or kind;
 * - the one gap allowed is an announced one: after "compacted" the watcher restarts from a
 *   later revision, and the changes between the last it got and that revision may be
 *   missing (it said so; they are counted).
 *
 * It only records and judges; it never changes what nodes or watchers do. A broken rule
 * of the history itself throws SafetyViolation; a watcher's problems come back as text.
 */

import type { KvChange } from "../../kv/index.js";
import type { NodeId } from "../../protocol/messages.js";
import { SafetyViolation } from "./safety.js";

/** One change as a watcher or the history shows it; `value` as UTF-8 text, null: delete. */
export interface WatchedChange {
  readonly type: "put" | "delete";
  readonly key: string;
  readonly value: string | null;
  readonly revision: number;
}

/** What a watcher was told, in the order it was told. */
export type WatchRecord =
  | { readonly kind: "change"; readonly change: WatchedChange }
  | {
      /** Every node said its history no longer holds `resumeRevision`: restarted from `restartRevision`. */
      readonly kind: "compacted";
      readonly resumeRevision: number;
      readonly restartRevision: number;
    };

export interface WatcherLog {
  readonly id: number;
  readonly prefix: string;
  /** The first revision it asked for. */
  readonly fromRevision: number;
  readonly records: readonly WatchRecord[];
}

/** Problems of one watcher shown at most. */
const PROBLEMS_SHOWN = 5;

const decoder = new TextDecoder();

function describe(change: WatchedChange): string {
  const what = change.type === "put" ? `put ${change.key}=${change.value}` : `delete ${change.key}`;
  return `${what} at revision ${change.revision}`;
}

function identity(change: WatchedChange): string {
  return `${change.revision}\u0000${change.type}\u0000${change.key}\u0000${change.value}`;
}

/** The changes every node applied at each index: the committed history, as applied. */
export class CommittedChanges {
  private readonly at = new Map<number, { node: NodeId; changes: WatchedChange[]; text: string }>();
  private last = 0;

  /**
   * Call after `node` applied the command at `index`, with the changes it made there and
   * the puts the command made, if it changed the store itself (`putsOf`; none when it was
   * refused, failed or answered from a table): the puts among the changes must be those,
   * in order (a lease's expiry at that index only deletes).
   */
  applied(
    node: NodeId,
    index: number,
    changes: readonly KvChange[],
    puts: readonly { readonly key: string; readonly value: Uint8Array }[] = [],
  ): void {
    const list = changes.map((c) => ({
      type: c.type,
      key: c.key,
      value: c.value === null ? null : decoder.decode(c.value),
      revision: c.revision,
    }));
    const text = JSON.stringify(list);
    const reported = list.filter((c) => c.type === "put").map((c) => `${c.key}=${c.value}`);
    const made = puts.map((p) => `${p.key}=${decoder.decode(p.value)}`);
    if (reported.join("\u0000") !== made.join("\u0000")) {
      throw new SafetyViolation(
        `watch history: node ${node} reported the puts [${reported.join(", ")}] at index ${index}; the command there wrote [${made.join(", ")}]`,
      );
    }
    const first = this.at.get(index);
    if (first === undefined) {
      for (const change of list) {
        if (change.revision !== index) {
          throw new SafetyViolation(
            `node ${node} reported a change at index ${index} with revision ${change.revision}`,
          );
        }
      }
      this.at.set(index, { node, changes: list, text });
      this.last = Math.max(this.last, index);
    } else if (first.text !== text) {
      throw new SafetyViolation(
        `watch history: node ${node} made the changes ${text} at index ${index}; node ${first.node} made ${first.text}`,
      );
    }
  }

  /**
   * The value `key` held at `revision` by the committed changes (null: absent). Indexes
   * with no entry here changed no key (configuration and no-op entries).
   */
  valueAt(key: string, revision: number): string | null {
    for (let index = revision; index >= 1; index--) {
      const entry = this.at.get(index);
      if (entry === undefined) continue;
      for (let i = entry.changes.length - 1; i >= 0; i--) {
        const change = entry.changes[i]!;
        if (change.key === key) return change.type === "put" ? change.value : null;
      }
    }
    return null;
  }

  /**
   * The store's revision once the entries up to `index` were applied: the highest index at
   * or below it that changed a key (0 when none did).
   */
  revisionAt(index: number): number {
    for (let at = index; at >= 1; at--) {
      if ((this.at.get(at)?.changes.length ?? 0) > 0) return at;
    }
    return 0;
  }

  /** The highest index any node applied. */
  get lastIndex(): number {
    return this.last;
  }

  /** The committed changes of keys under `prefix` with revisions `from..to`, in order. */
  under(prefix: string, from: number, to: number): WatchedChange[] {
    const out: WatchedChange[] = [];
    for (let index = Math.max(1, from); index <= to; index++) {
      const entry = this.at.get(index);
      if (entry === undefined) continue;
      for (const change of entry.changes) if (change.key.startsWith(prefix)) out.push(change);
    }
    return out;
  }

  /**
   * Whether the history up to `to` folds into `state` (every key with its value and
   * revision, from the converged store): the history the watchers are judged against is
   * then the committed one. Null when it does.
   */
  mismatch(
    to: number,
    state: ReadonlyMap<string, { readonly value: string; readonly revision: number }>,
  ): string | null {
    const folded = new Map<string, { value: string; revision: number }>();
    for (let index = 1; index <= to; index++) {
      const entry = this.at.get(index);
      if (entry === undefined) continue; // not a command: a no-op or a configuration
      for (const c of entry.changes) {
        if (c.type === "put") folded.set(c.key, { value: c.value ?? "", revision: c.revision });
        else folded.delete(c.key);
      }
    }
    for (const [key, held] of state) {
      const f = folded.get(key);
      if (f === undefined || f.value !== held.value || f.revision !== held.revision) {
        return `the store holds ${key}=${held.value} at revision ${held.revision}; the applied changes give ${f === undefined ? "no such key" : `${f.value} at revision ${f.revision}`}`;
      }
    }
    for (const key of folded.keys()) {
      if (!state.has(key)) return `the applied changes leave ${key}, which the store does not hold`;
    }
    return null;
  }
}

export interface WatcherVerdict {
  readonly problems: readonly string[];
  readonly delivered: number;
  /** Changes legitimately missed after an announced compaction. */
  readonly missedAfterCompaction: number;
  readonly compactions: number;
}

/**
 * Judges one watcher against `committed` up to revision `to` (the last index the cluster
 * applied; the watcher was given time to reach it).
 */
export function checkWatcher(
  committed: CommittedChanges,
  watcher: WatcherLog,
  to: number,
): WatcherVerdict {
  const expected = committed.under(watcher.prefix, watcher.fromRevision, to);
  const positions = new Map<string, number[]>();
  expected.forEach((change, i) => {
    const id = identity(change);
    positions.set(id, [...(positions.get(id) ?? []), i]);
  });
  const problems: string[] = [];
  const consumed = new Set<number>();
  /** Changes before a compaction's restart that the watcher had not got: excused. */
  const excused = new Set<number>();
  let next = 0;
  let lastRevision = 0;
  let compactions = 0;
  let delivered = 0;
  for (const record of watcher.records) {
    if (record.kind === "compacted") {
      compactions++;
      for (; next < expected.length && expected[next]!.revision < record.restartRevision; next++) {
        if (!consumed.has(next)) excused.add(next);
      }
      lastRevision = Math.max(lastRevision, record.restartRevision - 1);
      continue;
    }
    delivered++;
    const change = record.change;
    if (change.revision < lastRevision) {
      problems.push(`revision went back: ${describe(change)} after revision ${lastRevision}`);
    }
    lastRevision = Math.max(lastRevision, change.revision);
    const at = positions.get(identity(change)) ?? [];
    const found = at.find((i) => i >= next && !consumed.has(i));
    const late = at.find((i) => i < next && !consumed.has(i) && !excused.has(i));
    if (found !== undefined) {
      consumed.add(found);
      next = found + 1;
    } else if (late !== undefined) {
      consumed.add(late);
      problems.push(`delivered out of order: ${describe(change)}, after later changes`);
    } else if (at.length > 0) {
      problems.push(`delivered twice: ${describe(change)}`);
    } else {
      problems.push(`delivered ${describe(change)}, ${unexpected(committed, watcher, change, to)}`);
    }
  }
  expected.forEach((change, i) => {
    if (!consumed.has(i) && !excused.has(i)) problems.push(`missed ${describe(change)}`);
  });
  const shown = problems.slice(0, PROBLEMS_SHOWN);
  if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
  return { problems: shown, delivered, missedAfterCompaction: excused.size, compactions };
}

/** Why a delivered change matches nothing the watcher should have got. */
function unexpected(
  committed: CommittedChanges,
  watcher: WatcherLog,
  change: WatchedChange,
  to: number,
): string {
  if (change.revision < watcher.fromRevision || change.revision > to) {
    return `outside revisions ${watcher.fromRevision}..${to}`;
  }
  if (!change.key.startsWith(watcher.prefix)) return `not under the prefix`;
  const there = committed
    .under(change.key, change.revision, change.revision)
    .filter((c) => c.key === change.key)
    .map(describe);
  const held = there.length === 0 ? "no change of that key" : there.join(", ");
  return `which was never committed (committed there: ${held})`;
}
