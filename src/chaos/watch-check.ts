/**
 * The campaign's watch: one client-library watch of every key from revision 1, open for
 * the whole campaign while nodes are killed, paused, cut off and wiped, and the verdict on
 * what it delivered. The watch resumes on another node whenever its node goes (that is the
 * client library's job); the verdict asks whether it nevertheless saw every change once
 * and in revision order, judged from the clients' record alone:
 *
 * - revisions never go back, and no change is delivered twice;
 * - every acknowledged write, compare-and-set that took effect and delete, at the revision
 *   its answer named, is among the changes (up to the last revision the watch reached);
 * - every change of a workload key is accounted for by a distinct operation that could have
 *   made it, so that one operation never accounts for two changes: nothing invented, and
 *   nothing applied twice (a retried write applied again shows up as its value at a second
 *   revision, a retried delete as a delete nobody else issued).
 *
 * When every node's history has moved past where the watch must resume (ERR_COMPACTED, as
 * after wipes and state transfers), the watch reopens from the oldest revision the cluster
 * still holds and notes the gap: the changes inside it cannot be checked, but everything
 * after it still is, which a watch that simply ended would give up. The verdict names the
 * gaps and how many acknowledged changes it checked, and fails when it checked none. Any
 * other end, or a watch that had not reached the last acknowledged change's revision when
 * the campaign stopped it, is a problem: the watch must survive every fault, and a stalled
 * watch delivers nothing wrong.
 */

import type { WatchChange } from "../client/index.js";
import { type BatonClient, CompactedError, createClient } from "../client/index.js";
import type { Verdict } from "./checks.js";
import type { OpRecord } from "./workload.js";

const PROBLEMS_SHOWN = 20;
/** Gaps listed in the verdict's detail; the count says how many there were in all. */
const GAPS_SHOWN = 5;
/** Times the watch reopens after ERR_COMPACTED before it gives up and says so. */
const REOPENS_MAX = 100;

/** Revisions `from` to `to` (inclusive) that the watch could not see: compacted everywhere. */
export interface WatchGap {
  readonly from: number;
  readonly to: number;
}

export class CampaignWatch {
  readonly changes: WatchChange[] = [];
  /** Revisions skipped by reopening after ERR_COMPACTED, in order. */
  readonly gaps: WatchGap[] = [];
  /** Why the watch ended early, if it did. */
  endedBy: string | null = null;
  private readonly client: BatonClient;
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;

  constructor(urls: readonly string[]) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 20_000 });
  }

  start(): void {
    this.running = this.follow();
  }

  /** The last revision delivered, 0 before any. */
  get revision(): number {
    return this.changes.at(-1)?.revision ?? 0;
  }

  /** Waits (up to `timeoutMs`) until the watch has reached `revision`, then stops it. */
  async stop(revision: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.revision < revision && this.endedBy === null && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.controller.abort();
    await this.running;
    await this.client.close();
  }

  /**
   * Watches from revision 1 until stopped. When every node has compacted the revision to
   * resume from, it reopens from the oldest revision held and notes the gap (the client
   * says which that is), up to REOPENS_MAX times.
   */
  private async follow(): Promise<void> {
    let from = 1;
    for (let reopens = 0; ; reopens++) {
      try {
        const options = { fromRevision: from, signal: this.controller.signal };
        for await (const change of this.client.watch("", options)) this.changes.push(change);
        return;
      } catch (error) {
        if (error instanceof CompactedError) {
          const { fromRevision, startRevision } = error;
          if (startRevision > fromRevision && reopens < REOPENS_MAX) {
            this.gaps.push({ from: fromRevision, to: startRevision - 1 });
            from = startRevision;
            continue;
          }
          this.endedBy = `ERR_COMPACTED: ${error.message}`;
          return;
        }
        this.endedBy = `${(error as Error).name}: ${(error as Error).message}`;
        return;
      }
    }
  }
}

/**
 * The verdict on what `changes` delivered, against the clients' `history`: `endedBy` is
 * why the watch ended early (null if it did not), `target` the revision it had to reach,
 * and `gaps` the revisions it skipped by reopening after ERR_COMPACTED.
 */
export function checkWatch(
  history: readonly OpRecord[],
  changes: readonly WatchChange[],
  endedBy: string | null,
  target = 0,
  gaps: readonly WatchGap[] = [],
): Verdict {
  const problems: string[] = [];
  if (endedBy !== null && !endedBy.startsWith("ERR_COMPACTED")) {
    problems.push(`the watch ended: ${endedBy}`);
  }
  const reached = changes.at(-1)?.revision ?? 0;
  if (endedBy === null && reached < target) {
    problems.push(
      `the watch stopped at revision ${reached}, short of ${target}, the last acknowledged change's`,
    );
  }
  const first = checkOrder(changes, problems);
  const coverage = checkDelivered(history, first.seen, reached, gaps, problems);
  checkAccounted(history, changes, first.fresh, problems);
  if (coverage.acknowledged > 0 && coverage.checked === 0) {
    problems.push(
      `the watch checked none of the ${coverage.acknowledged} acknowledged changes (it reached revision ${reached})`,
    );
  }
  const ended = endedBy === null ? "" : `; the watch ended early (${endedBy})`;
  const detail =
    `${changes.length} changes up to revision ${reached}, ` +
    `${coverage.checked} of ${coverage.acknowledged} acknowledged changes checked` +
    `${describeGaps(gaps)}${ended}`;
  if (problems.length === 0) {
    return { ok: true, detail: `every change once, in revision order: ${detail}` };
  }
  return {
    ok: false,
    detail: `${problems.length} problems in ${detail}`,
    problems: problems.slice(0, PROBLEMS_SHOWN),
  };
}

/** Revisions never go back and no change comes twice; which changes came first, by index. */
function checkOrder(
  changes: readonly WatchChange[],
  problems: string[],
): { seen: Set<string>; fresh: boolean[] } {
  const seen = new Set<string>();
  const fresh: boolean[] = [];
  let previous = 0;
  for (const change of changes) {
    if (change.revision < previous) {
      problems.push(`revision went back: ${change.key} at ${change.revision} after ${previous}`);
    }
    previous = change.revision;
    const id = changeId(change.type, change.key, change.revision);
    if (seen.has(id)) problems.push(`delivered twice: ${id}`);
    fresh.push(!seen.has(id));
    seen.add(id);
  }
  return { seen, fresh };
}

/**
 * Every acknowledged change up to `reached`, outside the gaps, must have been delivered.
 * Returns how many acknowledged changes there were, and how many of them could be checked.
 */
function checkDelivered(
  history: readonly OpRecord[],
  seen: ReadonlySet<string>,
  reached: number,
  gaps: readonly WatchGap[],
  problems: string[],
): { acknowledged: number; checked: number } {
  let acknowledged = 0;
  let checked = 0;
  for (const op of history) {
    if (op.kind === "read" || !applied(op) || op.revision === undefined) continue;
    acknowledged++;
    const { revision } = op;
    if (revision > reached || gaps.some((g) => g.from <= revision && revision <= g.to)) continue;
    checked++;
    const id = changeId(op.kind === "delete" ? "delete" : "put", op.key, revision);
    if (!seen.has(id)) problems.push(`missed: ${id} (operation ${op.id})`);
  }
  return { acknowledged, checked };
}

/**
 * Matches every change of a workload key to a distinct operation that could have made it:
 * a put to the one operation that wrote its value (no two write the same value), a delete
 * to an acknowledged delete of that key at exactly that revision, or else to a delete of
 * that key whose outcome is unknown. An acknowledged operation makes its change at the
 * revision its answer named; one of unknown outcome at most once, anywhere; one that
 * definitely failed, or a compare-and-set whose comparison failed, never. Keys the
 * workload never used (the bank's, the leases', the liveness probe's) are not its to judge.
 */
function checkAccounted(
  history: readonly OpRecord[],
  changes: readonly WatchChange[],
  fresh: readonly boolean[],
  problems: string[],
): void {
  const keys = new Set<string>();
  const writers = new Map<string, OpRecord>();
  const deletes = new Map<string, OpRecord>();
  const unknownDeletes = new Map<string, OpRecord[]>();
  for (const op of history) {
    keys.add(op.key);
    if (op.kind === "write" || op.kind === "cas") writers.set(`${op.key}\u0000${op.value}`, op);
    if (op.kind !== "delete") continue;
    if (applied(op) && op.revision !== undefined) {
      deletes.set(changeId("delete", op.key, op.revision), op);
    } else if (op.outcome === "indeterminate") {
      unknownDeletes.set(op.key, [...(unknownDeletes.get(op.key) ?? []), op]);
    }
  }
  /** Each operation matched so far, with the change it made. */
  const used = new Map<number, string>();
  for (const [i, change] of changes.entries()) {
    // A change delivered twice is reported as such, not as a second application.
    if (fresh[i] !== true || !keys.has(change.key)) continue;
    const problem =
      change.type === "put"
        ? accountPut(change, writers.get(`${change.key}\u0000${change.value}`), used)
        : accountDelete(change, deletes, unknownDeletes.get(change.key) ?? [], used);
    if (problem !== null) problems.push(problem);
  }
}

/** Matches a put to `op`, the operation that wrote its value; a problem when it cannot. */
function accountPut(
  change: WatchChange,
  op: OpRecord | undefined,
  used: Map<number, string>,
): string | null {
  if (op === undefined) return `invented: ${change.key} = ${change.value} at ${change.revision}`;
  const id = `${changeId("put", change.key, change.revision)} (${change.value})`;
  if (op.outcome === "failed") {
    return `a failed operation took effect: ${id} by operation ${op.id} (${op.error ?? "failed"})`;
  }
  if (op.outcome === "ok" && op.output === false) {
    return `a failed operation took effect: ${id} by operation ${op.id}, whose comparison failed`;
  }
  const before = used.get(op.id);
  if (before !== undefined)
    return `applied twice: ${id}, operation ${op.id} already made ${before}`;
  if (op.outcome === "ok" && op.revision !== change.revision) {
    return `applied at another revision: ${id}, operation ${op.id} was acknowledged at ${op.revision}`;
  }
  used.set(op.id, id);
  return null;
}

/**
 * Matches a delete to the acknowledged delete of its key at its revision, or else to one of
 * `unknown`, the deletes of its key whose outcome is unknown; a problem when none is left.
 */
function accountDelete(
  change: WatchChange,
  deletes: ReadonlyMap<string, OpRecord>,
  unknown: readonly OpRecord[],
  used: Map<number, string>,
): string | null {
  const id = changeId("delete", change.key, change.revision);
  const acknowledged = deletes.get(id);
  const op =
    acknowledged !== undefined && !used.has(acknowledged.id)
      ? acknowledged
      : unknown.find((candidate) => !used.has(candidate.id));
  if (op === undefined) {
    return `a delete nobody issued, or one applied twice: ${id} (no acknowledged delete at that revision, nor one of unknown outcome left)`;
  }
  used.set(op.id, id);
  return null;
}

/** Whether `op` is acknowledged as having changed its key (a write, or a cas or delete that took effect). */
function applied(op: OpRecord): boolean {
  return op.outcome === "ok" && (op.kind === "write" || op.output === true);
}

function changeId(type: "put" | "delete", key: string, revision: number): string {
  return `${type} ${key}@${revision}`;
}

function describeGaps(gaps: readonly WatchGap[]): string {
  if (gaps.length === 0) return "";
  const shown = gaps
    .slice(0, GAPS_SHOWN)
    .map((g) => `${g.from}-${g.to}`)
    .join(", ");
  const more = gaps.length > GAPS_SHOWN ? ` and ${gaps.length - GAPS_SHOWN} more` : "";
  return `; revisions ${shown}${more} compacted everywhere before the watch got there (it reopened after them)`;
}
