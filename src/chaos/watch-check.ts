/**
 * The campaign's watch: one client-library watch of every key from revision 1, open for
 * the whole campaign while nodes are killed, paused, cut off and wiped, and the verdict on
 * what it delivered. The watch resumes on another node whenever its node goes (that is the
 * client library's job); the verdict asks whether it nevertheless saw every change once
 * and in revision order, judged from the clients' record alone:
 *
 * - revisions never go back, and no change is delivered twice;
 * - every acknowledged write, compare-and-set that took effect and delete, at the revision
 *   its answer named and with the value it wrote, is among the changes (up to the last
 *   revision the watch reached);
 * - a revision an acknowledged operation was answered with holds that operation's change
 *   and no other but the deletes of ended leases' keys: one command per revision;
 * - every change of a workload key is accounted for by a distinct operation that could have
 *   made it, so that one operation never accounts for two changes: nothing invented, and
 *   nothing applied twice (a retried write applied again shows up as its value at a second
 *   revision, a retried delete as a delete nobody else issued). An operation of unknown
 *   outcome takes effect after it was invoked, so it cannot explain a revision that some
 *   answer had already shown committed when it was invoked.
 *
 * - every read that found a value names the revision of the change that wrote it: that
 *   change, with that value, is among the changes too (so the change of a write of unknown
 *   outcome that a read saw cannot go missing).
 *
 * The bank's and the leases' keys are checked against the stream itself: every bank
 * transaction after the opening one moves money without making or losing any, and no key
 * (of theirs or the workload's) is deleted while the stream says it is gone. And against
 * what their loops recorded (bank.ts BankRecord, leases.ts LeaseRecord), as the workload's
 * operations are: each revision's bank changes are the puts of one distinct transaction the
 * bank sent, acknowledged at that revision or of unknown outcome and sent before the revision
 * was shown committed (never one refused by its comparison), and every acknowledged one is
 * delivered; the one that made them compared what the stream shows just before that
 * revision, and a refused one compared something the stream shows otherwise at the revision
 * its refusal named (transactions are serializable at their revisions); every lease key's
 * attach put is delivered at the revision it was acknowledged at, and once a read found
 * every lease ended, the key's delete after it.
 *
 * When every node's history has moved past where the watch must resume (ERR_COMPACTED, as
 * after wipes and state transfers), the watch reopens from the oldest revision the cluster
 * still holds and notes the gap: the changes inside it cannot be checked, but everything
 * after it still is, which a watch that simply ended would give up. It ends by
 * ERR_COMPACTED only after REOPENS_MAX reopenings, and then every revision after the last it
 * reached went unseen too. The verdict names the revisions it could not see and how many
 * acknowledged changes they held, and fails when it checked fewer than CHECKED_SHARE_MIN of
 * the acknowledged changes in the revisions it had to watch: a verdict on a few changes
 * says nothing about the rest; and when the workload attempted writes and none was
 * confirmed, it checked nothing at all and fails too. Any other end, or a watch that had not reached the last
 * acknowledged change's revision when the campaign stopped it, is a problem: the watch must
 * survive every fault, and a stalled watch delivers nothing wrong.
 */

import type { TxnCompare, WatchChange } from "../client/index.js";
import { type BatonClient, CompactedError, createClient } from "../client/index.js";
import type { BankRecord } from "./bank.js";
import { noWriteConfirmed, type Verdict } from "./checks.js";
import type { LeaseRecord } from "./leases.js";
import { sleep } from "./wait.js";
import type { OpRecord } from "./workload.js";

const PROBLEMS_SHOWN = 20;
/** Gaps listed in the verdict's detail; the count says how many there were in all. */
const GAPS_SHOWN = 5;
/** Times the watch reopens after ERR_COMPACTED before it gives up and says so. */
const REOPENS_MAX = 100;
/**
 * Wait before asking again when the cluster said ERR_COMPACTED without naming a later
 * revision to reopen from, in ms: a node that was down may be back by then.
 */
const REOPEN_PAUSE_MS = 250;
/**
 * Least share of the acknowledged changes in the revisions the watch had to see that it
 * must have checked; the rest fell in revisions compacted everywhere before it got there.
 * Gaps come from a watch that fell behind while every node that held its next revision
 * restarted from a snapshot or received one, a small part of any campaign.
 */
const CHECKED_SHARE_MIN = 0.5;
/** The prefixes of the bank's accounts (bank.ts) and the leases' keys (leases.ts). */
const BANK_PREFIX = "bank/";
const LEASE_PREFIX = "lease/";

/** What the bank's and the leases' loops recorded of their operations. */
export interface WatchRecords {
  readonly bank: readonly BankRecord[];
  readonly leases: readonly LeaseRecord[];
  /** The revision by which every lease had ended (CampaignLeases.endedBy), or null. */
  readonly leasesEndedBy: number | null;
}

/**
 * The last revision the records show committed with a change: the watch must reach it, as
 * it must the workload's last acknowledged change.
 */
export function recordsTarget(records: WatchRecords): number {
  return Math.max(
    0,
    ...records.bank.map((r) => (r.outcome === "ok" ? (r.revision ?? 0) : 0)),
    ...records.leases.map((r) => r.revision ?? 0),
    records.leasesEndedBy ?? 0,
  );
}

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
   * says which that is), or, when no node named one, asks again from where it got to; up
   * to REOPENS_MAX times in all.
   */
  private async follow(): Promise<void> {
    let from = 1;
    for (let reopens = 0; ; reopens++) {
      // A revision's changes cut short by the stream's end come again from its first.
      let skip = this.deliveredOf(from);
      try {
        const options = { fromRevision: from, signal: this.controller.signal };
        for await (const change of this.client.watch("", options)) {
          if (skip > 0 && change.revision === from) {
            skip--;
            continue;
          }
          this.changes.push(change);
        }
        return;
      } catch (error) {
        if (!(error instanceof CompactedError)) {
          this.endedBy = `${(error as Error).name}: ${(error as Error).message}`;
          return;
        }
        if (reopens >= REOPENS_MAX) {
          this.endedBy = `ERR_COMPACTED: ${error.message}`;
          return;
        }
        const { fromRevision, startRevision } = error;
        if (startRevision > fromRevision) {
          this.gaps.push({ from: fromRevision, to: startRevision - 1 });
          from = startRevision;
        } else {
          from = Math.max(from, fromRevision);
          await sleep(REOPEN_PAUSE_MS);
        }
      }
    }
  }

  /** How many changes of `revision` were delivered already (they come last). */
  private deliveredOf(revision: number): number {
    let count = 0;
    for (let i = this.changes.length - 1; i >= 0 && this.changes[i]!.revision === revision; i--) {
      count++;
    }
    return count;
  }
}

/** The acknowledged changes the watch could check, and those it could not, by why. */
interface Coverage {
  readonly acknowledged: number;
  readonly checked: number;
  /** In the revisions the watch skipped after ERR_COMPACTED, each gap's count. */
  readonly inGaps: readonly number[];
  /** After the revision where the watch ended early by ERR_COMPACTED. */
  readonly afterEnd: number;
}

/**
 * The verdict on what `changes` delivered, against the clients' `history`: `endedBy` is
 * why the watch ended early (null if it did not), `target` the revision it had to reach
 * (the records' last, if later), `gaps` the revisions it skipped by reopening after
 * ERR_COMPACTED, and `records` what the bank and the leases recorded (null: their keys are
 * checked against the stream alone).
 */
export function checkWatch(
  history: readonly OpRecord[],
  changes: readonly WatchChange[],
  endedBy: string | null,
  target = 0,
  gaps: readonly WatchGap[] = [],
  records: WatchRecords | null = null,
): Verdict {
  const problems: string[] = [];
  const last = Math.max(target, records === null ? 0 : recordsTarget(records));
  const compacted = endedBy?.startsWith("ERR_COMPACTED") === true;
  if (endedBy !== null && !compacted) problems.push(`the watch ended: ${endedBy}`);
  const reached = changes.at(-1)?.revision ?? 0;
  if (endedBy === null && reached < last) {
    problems.push(
      `the watch stopped at revision ${reached}, short of ${last}, the last acknowledged change's`,
    );
  }
  const first = checkOrder(changes, problems);
  const acknowledged = history.filter(changedAt);
  const checked = checkDelivered(acknowledged, first.delivered, reached, gaps, problems);
  const seen = { delivered: first.delivered, reached, gaps };
  const read = checkReads(history, acknowledged, seen, problems);
  const committedBy = committedBefore(answersOf(history, records?.bank ?? []));
  checkAccounted(history, changes, first.fresh, committedBy, problems);
  const others = checkOtherKeys(changes, first.fresh, gaps, problems);
  const recorded =
    records === null
      ? null
      : {
          transactions: checkBankRecords(
            records.bank,
            changes,
            first.fresh,
            seen,
            committedBy,
            problems,
          ),
          leaseKeys: checkLeaseRecords(records, changes, first.fresh, seen, problems),
        };
  const coverage = coverageOf(acknowledged, checked, reached, gaps, compacted);
  checkCoverage(coverage, reached, gaps, problems);
  // No write confirmed: nothing the watch delivered can be held against an answer.
  const nothing = noWriteConfirmed(history);
  if (nothing !== null) problems.push(`${nothing}: the watch checked nothing`);
  const ended = endedBy === null ? "" : `; the watch ended early (${endedBy})`;
  const detail =
    `${changes.length} changes up to revision ${reached}, ` +
    `${coverage.checked} of ${coverage.acknowledged} acknowledged changes checked` +
    (read > 0 ? `, ${read} more that only a read showed` : "") +
    `${describeGaps(gaps, coverage.inGaps)}${ended}${describeEnd(coverage, reached)}` +
    describeOthers(others, recorded);
  if (problems.length === 0) {
    return { ok: true, detail: `every change once, in revision order: ${detail}` };
  }
  return {
    ok: false,
    detail: `${problems.length} problems in ${detail}`,
    problems: problems.slice(0, PROBLEMS_SHOWN),
  };
}

/**
 * What the watch checked of `acknowledged`, and what it could not: the changes in each gap,
 * and after an end by ERR_COMPACTED (`compacted`), those after `reached` too.
 */
function coverageOf(
  acknowledged: readonly Acknowledged[],
  checked: number,
  reached: number,
  gaps: readonly WatchGap[],
  compacted: boolean,
): Coverage {
  const inGaps = gaps.map((g) => acknowledged.filter((op) => within(op.revision, g)).length);
  const unseen = (op: Acknowledged): boolean =>
    op.revision > reached && !gaps.some((g) => within(op.revision, g));
  const afterEnd = compacted ? acknowledged.filter(unseen).length : 0;
  return { acknowledged: acknowledged.length, checked, inGaps, afterEnd };
}

/**
 * Revisions never go back and no change comes twice; which changes came first, by index,
 * and the value each change delivered (null for a delete), by `changeId`.
 */
function checkOrder(
  changes: readonly WatchChange[],
  problems: string[],
): { delivered: Map<string, string | null>; fresh: boolean[] } {
  const delivered = new Map<string, string | null>();
  const fresh: boolean[] = [];
  let previous = 0;
  for (const change of changes) {
    if (change.revision < previous) {
      problems.push(`revision went back: ${change.key} at ${change.revision} after ${previous}`);
    }
    previous = change.revision;
    const id = changeId(change.type, change.key, change.revision);
    if (delivered.has(id)) problems.push(`delivered twice: ${id}`);
    fresh.push(!delivered.has(id));
    if (!delivered.has(id)) delivered.set(id, change.value);
  }
  return { delivered, fresh };
}

/**
 * Every acknowledged change up to `reached`, outside the gaps, must have been delivered,
 * with the value its operation wrote. Returns how many of them could be checked.
 */
function checkDelivered(
  acknowledged: readonly Acknowledged[],
  delivered: ReadonlyMap<string, string | null>,
  reached: number,
  gaps: readonly WatchGap[],
  problems: string[],
): number {
  let checked = 0;
  for (const op of acknowledged) {
    const { revision } = op;
    if (revision > reached || gaps.some((g) => within(revision, g))) continue;
    checked++;
    const id = changeId(typeOf(op), op.key, revision);
    const value = delivered.get(id);
    if (value === undefined) {
      problems.push(`missed: ${id} (operation ${op.id})`);
    } else if (op.kind !== "delete" && value !== op.value) {
      problems.push(`wrong value: ${id} came as ${value}, operation ${op.id} wrote ${op.value}`);
    }
  }
  return checked;
}

/**
 * What the watch delivered, by `changeId`, and which revisions it had to: those up to
 * `reached`, outside the gaps.
 */
interface Seen {
  readonly delivered: ReadonlyMap<string, string | null>;
  readonly reached: number;
  readonly gaps: readonly WatchGap[];
}

function visible(seen: Seen, revision: number): boolean {
  return revision <= seen.reached && !seen.gaps.some((g) => within(revision, g));
}

/**
 * A read that found a value named the revision of the change that wrote it, so the watch
 * must have delivered that change, with that value, whoever made it: checkDelivered checks
 * the acknowledged operations' changes, this the rest (a write of unknown outcome that a
 * read saw). A read of a node's own copy (stale) is not the cluster's answer; the
 * linearizability verdict judges those. Returns how many changes it checked.
 */
function checkReads(
  history: readonly OpRecord[],
  acknowledged: readonly Acknowledged[],
  seen: Seen,
  problems: string[],
): number {
  const made = new Set(acknowledged.map((op) => changeId(typeOf(op), op.key, op.revision)));
  const checked = new Set<string>();
  for (const op of history) {
    if (op.kind !== "read" || op.outcome !== "ok" || typeof op.output !== "string") continue;
    if (op.stale === true || op.revision === undefined || !visible(seen, op.revision)) continue;
    const id = changeId("put", op.key, op.revision);
    // Many reads find the same change: one check, and one problem, each.
    if (made.has(id) || checked.has(`${id}\u0000${op.output}`)) continue;
    checked.add(`${id}\u0000${op.output}`);
    const value = seen.delivered.get(id);
    if (value === undefined) {
      problems.push(`missed: ${id} (${op.output}), which read ${op.id} found`);
    } else if (value !== op.output) {
      problems.push(`wrong value: ${id} came as ${value}, read ${op.id} found ${op.output}`);
    }
  }
  return checked.size;
}

/**
 * A watch that checked none of the acknowledged changes, or fewer than CHECKED_SHARE_MIN
 * of those in the revisions it had to see (all it reached, and after an end by
 * ERR_COMPACTED the rest too), checked too little to mean anything. A watch that stalled
 * or ended otherwise has failed already.
 */
function checkCoverage(
  coverage: Coverage,
  reached: number,
  gaps: readonly WatchGap[],
  problems: string[],
): void {
  const { acknowledged, checked, inGaps, afterEnd } = coverage;
  if (acknowledged > 0 && checked === 0) {
    problems.push(
      `the watch checked none of the ${acknowledged} acknowledged changes (it reached revision ${reached})`,
    );
    return;
  }
  const unseen = inGaps.reduce((sum, count) => sum + count, 0) + afterEnd;
  if (checked >= (checked + unseen) * CHECKED_SHARE_MIN) return;
  const ranges = gaps.map((g) => `${g.from}-${g.to}`);
  if (afterEnd > 0) ranges.push(`after ${reached}`);
  problems.push(
    `the watch checked only ${checked} of the ${checked + unseen} acknowledged changes in the revisions it had to see, less than ${CHECKED_SHARE_MIN * 100}%: ${unseen} were in revisions it could not see (${ranges.join(", ")})`,
  );
}

/**
 * Matches every change of a workload key to a distinct operation that could have made it
 * (accountPut, accountDelete), and checks that a revision an acknowledged operation was
 * answered with holds that operation's change and no other, whatever the key. The changes
 * of other keys (the bank's, the leases', the liveness probe's) are checkOtherKeys' to
 * judge otherwise.
 */
function checkAccounted(
  history: readonly OpRecord[],
  changes: readonly WatchChange[],
  fresh: readonly boolean[],
  committedBy: (time: number) => Witness | null,
  problems: string[],
): void {
  const keys = new Set<string>();
  const writers = new Map<string, OpRecord>();
  const owners = new Map<number, Acknowledged>();
  const unknownDeletes = new Map<string, OpRecord[]>();
  for (const op of history) {
    keys.add(op.key);
    if (op.kind === "write" || op.kind === "cas") writers.set(`${op.key}\u0000${op.value}`, op);
    if (changedAt(op)) owners.set(op.revision, op);
    if (op.kind === "delete" && op.outcome === "indeterminate") {
      unknownDeletes.set(op.key, [...(unknownDeletes.get(op.key) ?? []), op]);
    }
  }
  const match: Matching = { owners, committedBy, used: new Map() };
  for (const [i, change] of changes.entries()) {
    // A change delivered twice is reported as such, not as a second application.
    if (fresh[i] !== true) continue;
    let problem: string | null;
    if (!keys.has(change.key)) {
      // A lease ends at the revision of whichever command moves log time past its deadline,
      // and its keys' deletes share that revision: only a put has a command of its own.
      problem = change.type === "put" ? checkOwner(change, match) : null;
    } else if (change.type === "put") {
      problem = accountPut(change, writers.get(`${change.key}\u0000${change.value}`), match);
    } else {
      problem = accountDelete(change, unknownDeletes.get(change.key) ?? [], match);
    }
    if (problem !== null) problems.push(problem);
  }
}

/** What matching changes to operations needs, and what it has matched so far. */
interface Matching {
  /** The acknowledged operation that made each revision's change. */
  readonly owners: ReadonlyMap<number, Acknowledged>;
  /** The highest revision an answer received before `time` named, and whose answer. */
  readonly committedBy: (time: number) => Witness | null;
  /** Each operation matched so far, with the change it made. */
  readonly used: Map<number, string>;
}

/**
 * An answer that showed `revision` committed: `by`'s ("operation 7", "bank transaction 3"),
 * received at `at` ms.
 */
interface Witness {
  readonly revision: number;
  readonly by: string;
  readonly at: number;
}

/**
 * Matches a put to `op`, the one operation that wrote its value (no two write the same
 * value); a problem when it cannot: `op` definitely failed or its comparison did, it was
 * acknowledged at another revision, another operation was acknowledged at this one, or
 * `op`'s outcome is unknown and it made a change already or began after this revision was
 * committed.
 */
function accountPut(change: WatchChange, op: OpRecord | undefined, match: Matching): string | null {
  if (op === undefined) return `invented: ${change.key} = ${change.value} at ${change.revision}`;
  const id = `${changeId("put", change.key, change.revision)} (${change.value})`;
  if (op.outcome === "failed") {
    return `a failed operation took effect: ${id} by operation ${op.id} (${op.error ?? "failed"})`;
  }
  if (op.outcome === "ok" && op.output === false) {
    return `a failed operation took effect: ${id} by operation ${op.id}, whose comparison failed`;
  }
  const owner = match.owners.get(change.revision);
  if (owner !== undefined && owner !== op) return checkOwner(change, match);
  const before = match.used.get(op.id);
  if (before !== undefined)
    return `applied twice: ${id}, operation ${op.id} already made ${before}`;
  if (op.outcome === "ok" && op.revision !== change.revision) {
    return `applied at another revision: ${id}, operation ${op.id} was acknowledged at ${op.revision}`;
  }
  if (op.outcome === "indeterminate" && !inTime(op, change.revision, match)) {
    return `operation ${op.id}, of unknown outcome, cannot have made ${id}: ${tooLate(op, match)}`;
  }
  match.used.set(op.id, id);
  return null;
}

/**
 * Matches a delete to the acknowledged delete of its key at its revision, or else to one of
 * `unknown`, the deletes of its key whose outcome is unknown, invoked before its revision
 * was committed; a problem when none is left.
 */
function accountDelete(
  change: WatchChange,
  unknown: readonly OpRecord[],
  match: Matching,
): string | null {
  if (match.owners.has(change.revision)) return checkOwner(change, match);
  const id = changeId("delete", change.key, change.revision);
  const left = unknown.filter((candidate) => !match.used.has(candidate.id));
  // A delete in time for one revision is in time for every later one, and changes come in
  // revision order: whichever a change takes, the ones left suit later changes as well.
  const op = left.find((candidate) => inTime(candidate, change.revision, match));
  if (op !== undefined) {
    match.used.set(op.id, id);
    return null;
  }
  const why =
    left.length === 0
      ? "nor one of unknown outcome left"
      : `and of the deletes of unknown outcome left, ${tooLate(left[0]!, match)}`;
  return `a delete nobody issued, or one applied twice: ${id} (no acknowledged delete at that revision, ${why})`;
}

/**
 * A revision an acknowledged operation was answered with holds its change and no other
 * (one command per revision, and no workload command makes two changes), but for the
 * deletes of ended leases' keys, which no workload key is. Its own change with another
 * value is left to checkDelivered, which reports the wrong value.
 */
function checkOwner(change: WatchChange, match: Matching): string | null {
  const owner = match.owners.get(change.revision);
  if (owner === undefined) return null;
  if (owner.key === change.key && typeOf(owner) === change.type) {
    const id = changeId(change.type, change.key, change.revision);
    if (change.type === "delete" || change.value === owner.value) match.used.set(owner.id, id);
    return null;
  }
  const made = describeChange(change.type, change.key, change.revision, change.value);
  const theirs = describeChange(typeOf(owner), owner.key, owner.revision, owner.value ?? null);
  return `a change at a revision another operation made: ${made}, where operation ${owner.id} was acknowledged with ${theirs}`;
}

/**
 * Whether `op`, of unknown outcome, could have made a change at `revision`: not when an
 * answer received before `op` was invoked had shown that revision, or a later one,
 * committed, since an operation takes effect only after it is invoked.
 */
function inTime(op: OpRecord, revision: number, match: Matching): boolean {
  return (match.committedBy(op.invokedAt)?.revision ?? 0) < revision;
}

function tooLate(op: OpRecord, match: Matching): string {
  return sentTooLate(`operation ${op.id}`, op.invokedAt, match.committedBy);
}

/** Why what `what` sent at `invokedAt` ms cannot have taken effect where it was found. */
function sentTooLate(
  what: string,
  invokedAt: number,
  committedBy: (time: number) => Witness | null,
): string {
  const witness = committedBy(invokedAt);
  const shown =
    witness === null
      ? ""
      : `, after ${witness.by}'s answer (at ${witness.at} ms) had shown revision ${witness.revision} committed`;
  return `${what} was invoked at ${invokedAt} ms${shown}`;
}

/**
 * The answers that named a revision, each committed when its answer came: the workload's
 * (a write's, compare-and-set's or delete's own, or the revision of the value a read found)
 * and the bank's acknowledged transactions'.
 */
function answersOf(history: readonly OpRecord[], bank: readonly BankRecord[]): Witness[] {
  const answers: Witness[] = [];
  for (const op of history) {
    if (op.outcome !== "ok" || op.revision === undefined || op.completedAt === null) continue;
    answers.push({ revision: op.revision, by: `operation ${op.id}`, at: op.completedAt });
  }
  for (const record of bank) {
    if (record.outcome !== "ok" || record.revision === undefined) continue;
    if (record.completedAt === null) continue;
    const by = `bank transaction ${record.id}`;
    answers.push({ revision: record.revision, by, at: record.completedAt });
  }
  return answers;
}

/**
 * For any time, the highest revision that `answers` received before it named: each one was
 * committed when its answer came, and every revision below it with it.
 */
function committedBefore(all: readonly Witness[]): (time: number) => Witness | null {
  const answers = [...all].sort((a, b) => a.at - b.at);
  /** highest[i]: the answer with the highest revision among the first i + 1. */
  const highest: Witness[] = [];
  for (const answer of answers) {
    const best = highest.at(-1);
    highest.push(best === undefined || answer.revision > best.revision ? answer : best);
  }
  return (time) => {
    // The number of answers received strictly before `time`, by binary search.
    let low = 0;
    let high = answers.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (answers[middle]!.at < time) low = middle + 1;
      else high = middle;
    }
    return low === 0 ? null : highest[low - 1]!;
  };
}

/** The bank's accounts as the stream has shown them, and what it found checking them. */
interface OtherKeys {
  /** Changes of the bank's and the leases' keys. */
  changes: number;
  /** Bank transactions whose every account's balance before was known, so checked. */
  transfers: number;
}

/**
 * Checks the stream against itself, for the keys whose clients keep no record: no key is
 * deleted while the stream says it is gone, and every bank transaction but the opening one
 * moves money without making or losing any. Only what the stream showed since its last gap
 * counts (a key's state from before a gap is unknown after it), and only revisions it
 * showed whole: not one cut by a gap, nor the last (the watch may have stopped in it).
 */
function checkOtherKeys(
  changes: readonly WatchChange[],
  fresh: readonly boolean[],
  gaps: readonly WatchGap[],
  problems: string[],
): OtherKeys {
  const found: OtherKeys = { changes: 0, transfers: 0 };
  /** Whether each key exists, as the stream has shown since its last gap. */
  const exists = new Map<string, boolean>();
  /** Whether the stream has shown every change so far (else a key not seen is unknown). */
  let whole = true;
  let group: WatchChange[] = [];
  const books = new Map<string, number>();
  for (const [i, change] of changes.entries()) {
    if (fresh[i] !== true) continue;
    const previous = group[0]?.revision ?? 0;
    if (change.revision !== previous) {
      if (!gaps.some((g) => within(previous, g))) {
        found.transfers += checkBank(group, books, whole, problems);
      }
      group = [];
      if (gaps.some((g) => g.from >= previous && g.to < change.revision)) {
        exists.clear();
        books.clear();
        whole = false;
      }
    }
    group.push(change);
    if (change.key.startsWith(BANK_PREFIX) || change.key.startsWith(LEASE_PREFIX)) {
      found.changes++;
    }
    const known = exists.get(change.key) ?? (whole ? false : undefined);
    if (change.type === "delete" && known === false) {
      problems.push(
        `deleted while gone: ${changeId("delete", change.key, change.revision)}, the key did not exist`,
      );
    }
    exists.set(change.key, change.type === "put");
  }
  return found;
}

/**
 * Checks one revision's changes of bank accounts against `books`, the balances the stream
 * has shown, and applies them: the opening transaction makes every account at once, while
 * none exists, and every one after it moves money between accounts that exist, deleting
 * none. `whole`: whether the stream has shown every change so far, so that an account not
 * in `books` does not exist. Returns 1 when it checked a transfer, else 0.
 */
function checkBank(
  group: readonly WatchChange[],
  books: Map<string, number>,
  whole: boolean,
  problems: string[],
): number {
  const accounts = group.filter((change) => change.key.startsWith(BANK_PREFIX));
  if (accounts.length === 0) return 0;
  const revision = accounts[0]!.revision;
  const opened = books.size > 0;
  const before = accounts.map((change) => books.get(change.key));
  const after = accounts.map((change) => Number(change.value));
  for (const change of accounts) books.delete(change.key);
  if (accounts.some((change) => change.type === "delete")) {
    problems.push(`a bank account was deleted at ${revision}: ${describeAccounts(accounts)}`);
    return 0;
  }
  if (after.some((amount) => !Number.isSafeInteger(amount) || amount < 0)) {
    problems.push(`a bank account holds no amount at ${revision}: ${describeAccounts(accounts)}`);
    return 0;
  }
  for (const [i, change] of accounts.entries()) books.set(change.key, after[i]!);
  if (before.every((amount) => amount !== undefined)) {
    const sum = (amounts: readonly (number | undefined)[]): number =>
      amounts.reduce<number>((total, amount) => total + (amount ?? 0), 0);
    if (sum(before) !== sum(after)) {
      problems.push(
        `a bank transaction made or lost money at ${revision}: ${sum(before)} before, ${sum(after)} after (${describeAccounts(accounts)})`,
      );
    }
    return 1;
  }
  // An account the stream has not shown: new, which only the opening may make, or one whose
  // balance a gap hid.
  if (whole && (opened || before.some((amount) => amount !== undefined))) {
    const made = accounts.filter((_, i) => before[i] === undefined).map((change) => change.key);
    problems.push(
      `bank accounts made after the books were opened, at ${revision}: ${made.join(", ")}`,
    );
  }
  return 0;
}

/**
 * Matches each revision's bank puts to the puts of one distinct transaction the bank sent
 * (`records`): the one acknowledged at that revision, else one of unknown outcome sent
 * before any answer had shown that revision committed (it takes effect after it is sent);
 * one refused by its comparison never took effect. The one matched must have compared what
 * the stream shows just before the revision. Then every acknowledged one the watch had to
 * see must have been matched, and every refused one must have compared something the
 * stream shows otherwise at the revision its refusal named. Revisions in a gap are skipped, and the last one
 * reached is matched as far as it came (the watch may have stopped inside it). Deletes are
 * checkBank's. Returns how many revisions it matched.
 */
function checkBankRecords(
  records: readonly BankRecord[],
  changes: readonly WatchChange[],
  fresh: readonly boolean[],
  seen: Seen,
  committedBy: (time: number) => Witness | null,
  problems: string[],
): number {
  const confirmed = new Map<number, BankRecord>();
  for (const record of records) {
    if (record.outcome === "ok" && record.revision !== undefined) {
      confirmed.set(record.revision, record);
    }
  }
  const used = new Set<number>();
  const states = new KeyStates(changes, fresh, seen);
  let matched = 0;
  for (const group of bankPuts(changes, fresh)) {
    const revision = group[0]!.revision;
    if (seen.gaps.some((g) => within(revision, g))) continue;
    const made = group.map((change) => `${change.key}=${change.value}`);
    const cut = revision === seen.reached;
    const fits = (record: BankRecord): boolean => {
      const sent = new Set(record.puts.map(([key, value]) => `${key}=${value}`));
      return made.every((put) => sent.has(put)) && (cut || made.length === sent.size);
    };
    // What each comparison found: the store just before this revision.
    const failed = (record: BankRecord) => states.failedCompare(record.compare, revision - 1);
    const owner = confirmed.get(revision);
    if (owner !== undefined) {
      used.add(owner.id);
      const wrong = failed(owner);
      if (!fits(owner)) {
        problems.push(
          `wrong bank changes at ${revision}: ${made.join(" ")}, but transaction ${owner.id} acknowledged at that revision put ${describePuts(owner.puts)}`,
        );
      } else if (wrong !== null) {
        problems.push(
          `bank transaction ${owner.id} was applied at ${revision} though its comparison failed there: ${wrong}`,
        );
      } else matched++;
      continue;
    }
    const same = records.filter((record) => !used.has(record.id) && fits(record));
    const unknown = same.filter((record) => record.outcome === "unknown");
    const inTime = (r: BankRecord) => (committedBy(r.invokedAt)?.revision ?? 0) < revision;
    const record = unknown.find((r) => inTime(r) && failed(r) === null);
    if (record !== undefined) {
      used.add(record.id);
      matched++;
      continue;
    }
    const what = `${made.join(" ")} at ${revision}`;
    const compared = unknown.find(inTime);
    problems.push(
      compared === undefined
        ? unexplainedBank(what, same, committedBy)
        : `bank transaction ${compared.id}, of unknown outcome, cannot have made ${what}: its comparison failed there: ${failed(compared)}`,
    );
  }
  for (const record of records) {
    if (record.outcome !== "refused" || record.refusedAt === undefined) continue;
    if (states.failedCompare(record.compare, record.refusedAt) !== null) continue;
    if (!states.known(record.compare, record.refusedAt)) continue;
    problems.push(
      `bank transaction ${record.id} was refused at revision ${record.refusedAt}, but its comparison held there (${describeCompare(record.compare)})`,
    );
  }
  for (const record of confirmed.values()) {
    if (used.has(record.id) || !visible(seen, record.revision!)) continue;
    problems.push(
      `missed: bank transaction ${record.id}, acknowledged at ${record.revision} (${describePuts(record.puts)})`,
    );
  }
  return matched;
}

/**
 * Why no transaction explains bank changes `what`, given `same`, those not matched yet that
 * put the same: one of unknown outcome sent too late, refused ones, or one acknowledged at
 * another revision.
 */
function unexplainedBank(
  what: string,
  same: readonly BankRecord[],
  committedBy: (time: number) => Witness | null,
): string {
  const unknown = same.find((record) => record.outcome === "unknown");
  if (unknown !== undefined) {
    const why = sentTooLate(`transaction ${unknown.id}`, unknown.invokedAt, committedBy);
    return `bank transaction ${unknown.id}, of unknown outcome, cannot have made ${what}: ${why}`;
  }
  const refused = same.filter((record) => record.outcome === "refused").map((r) => r.id);
  if (refused.length === 1) {
    return `a refused bank transaction took effect: ${what}, which only transaction ${refused[0]} sent, and its comparison failed`;
  }
  if (refused.length > 1) {
    return `a refused bank transaction took effect: ${what}, which only transactions ${refused.join(", ")} sent, and their comparisons failed`;
  }
  const other = same.find((record) => record.outcome === "ok");
  const elsewhere =
    other === undefined
      ? ""
      : ` (transaction ${other.id} put the same, acknowledged at ${other.revision})`;
  return `a bank change no transaction the bank sent explains: ${what}${elsewhere}`;
}

/** The fresh puts of bank accounts, one array per revision, in order. */
function bankPuts(changes: readonly WatchChange[], fresh: readonly boolean[]): WatchChange[][] {
  const groups: WatchChange[][] = [];
  for (const [i, change] of changes.entries()) {
    if (fresh[i] !== true || change.type !== "put" || !change.key.startsWith(BANK_PREFIX)) {
      continue;
    }
    const last = groups.at(-1);
    if (last?.[0]?.revision === change.revision) last.push(change);
    else groups.push([change]);
  }
  return groups;
}

/** One key as the stream showed it at some revision: its last change then, if any. */
interface KeyState {
  /** The revision of the key's last change up to then (0: none). */
  readonly revision: number;
  /** The value that change put; null for a delete or none. */
  readonly value: string | null;
}

/**
 * Each key as the stream showed it at any revision, from its fresh changes: what a
 * transaction's comparison found there. A revision the watch has not passed, or with a gap
 * between the key's last change and it, is unknown.
 */
class KeyStates {
  private readonly byKey = new Map<string, { revision: number; value: string | null }[]>();

  constructor(
    changes: readonly WatchChange[],
    fresh: readonly boolean[],
    private readonly seen: Seen,
  ) {
    for (const [i, change] of changes.entries()) {
      if (fresh[i] !== true) continue;
      const value = change.type === "put" ? change.value : null;
      const list = this.byKey.get(change.key);
      if (list === undefined) this.byKey.set(change.key, [{ revision: change.revision, value }]);
      else list.push({ revision: change.revision, value });
    }
  }

  /** `key` after every change up to `revision`, or null when the stream cannot tell. */
  at(key: string, revision: number): KeyState | null {
    // The last revision reached may have come only in part.
    if (revision >= this.seen.reached) return null;
    const list = this.byKey.get(key) ?? [];
    let low = 0;
    let high = list.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (list[middle]!.revision <= revision) low = middle + 1;
      else high = middle;
    }
    const last = low === 0 ? { revision: 0, value: null } : list[low - 1]!;
    const hidden = this.seen.gaps.some((g) => g.to > last.revision && g.from <= revision);
    return hidden ? null : last;
  }

  /** Whether the stream shows every key of `compare` at `revision`. */
  known(compare: readonly TxnCompare[], revision: number): boolean {
    return compare.every(({ key }) => this.at(key, revision) !== null);
  }

  /**
   * The first part of `compare` the store as of `revision` fails, said with what the key
   * was, or null when every part holds or the stream cannot tell.
   */
  failedCompare(compare: readonly TxnCompare[], revision: number): string | null {
    for (const part of compare) {
      const state = this.at(part.key, revision);
      if (state === null) continue;
      const exists = state.value !== null;
      const holds =
        "revision" in part
          ? (exists ? state.revision : 0) === part.revision
          : "exists" in part
            ? exists === part.exists
            : exists && state.value === part.value;
      if (holds) continue;
      const was = exists ? `at revision ${state.revision} (${state.value})` : "absent";
      return `${describeCompare([part])}, but ${part.key} was ${was} as of revision ${revision}`;
    }
    return null;
  }
}

/** A transaction's comparison as "bank/a0@5, bank/a1 absent". */
function describeCompare(compare: readonly TxnCompare[]): string {
  return compare
    .map((part) =>
      "revision" in part
        ? `${part.key}@${part.revision}`
        : "exists" in part
          ? `${part.key} ${part.exists ? "present" : "absent"}`
          : `${part.key}=${part.value}`,
    )
    .join(", ");
}

function describePuts(puts: readonly (readonly [string, string])[]): string {
  return puts.map(([key, value]) => `${key}=${value}`).join(" ");
}

/**
 * Checks each lease's key against the stream: its put at the revision its attach was
 * acknowledged at, no put when the attach was refused, and, once a read found every lease
 * ended (at `leasesEndedBy`) and the watch saw that far with no gap after the put, a delete
 * after whatever put there was. A put of a lease key no lease was granted for is invented.
 * Returns how many leases' attach puts it checked.
 */
function checkLeaseRecords(
  records: WatchRecords,
  changes: readonly WatchChange[],
  fresh: readonly boolean[],
  seen: Seen,
  problems: string[],
): number {
  const granted = new Set(records.leases.map((lease) => lease.key));
  /** Per lease key, the revision of its first put and of its last delete. */
  const puts = new Map<string, number>();
  const deletes = new Map<string, number>();
  for (const [i, change] of changes.entries()) {
    if (fresh[i] !== true || !change.key.startsWith(LEASE_PREFIX)) continue;
    if (change.type === "delete") {
      deletes.set(change.key, change.revision);
      continue;
    }
    if (!granted.has(change.key)) {
      const made = describeChange("put", change.key, change.revision, change.value);
      problems.push(`a lease key no lease was granted for: ${made}`);
    }
    if (!puts.has(change.key)) puts.set(change.key, change.revision);
  }
  const ended = records.leasesEndedBy;
  let checked = 0;
  for (const lease of records.leases) {
    const put = puts.get(lease.key);
    if (lease.refused && put !== undefined) {
      problems.push(
        `a refused attach took effect: put ${lease.key}@${put}, though attaching it to lease ${lease.id} was refused (ERR_LEASE_NOT_FOUND)`,
      );
    }
    if (lease.revision !== null && visible(seen, lease.revision)) {
      checked++;
      if (!seen.delivered.has(changeId("put", lease.key, lease.revision))) {
        problems.push(
          `missed: put ${lease.key}@${lease.revision}, the key of lease ${lease.id}, attached at that revision`,
        );
      }
    }
    const from = lease.revision ?? put;
    if (from === undefined || ended === null || ended > seen.reached) continue;
    // A gap after the put may have held its delete.
    if (seen.gaps.some((g) => g.to > from && g.from <= ended)) continue;
    if ((deletes.get(lease.key) ?? 0) >= from) continue;
    problems.push(
      `${lease.key} (lease ${lease.id}) was never deleted after its put at ${from}, though every lease had ended by revision ${ended}`,
    );
  }
  return checked;
}

function describeAccounts(accounts: readonly WatchChange[]): string {
  return accounts.map((c) => `${c.key}=${c.value ?? "(deleted)"}`).join(" ");
}

/** An operation acknowledged as having changed its key, at `revision`. */
type Acknowledged = OpRecord & { readonly revision: number };

/**
 * Whether `op` is acknowledged as having changed its key (a write, or a compare-and-set or
 * delete that took effect), at the revision its answer named.
 */
function changedAt(op: OpRecord): op is Acknowledged {
  const applied = op.outcome === "ok" && (op.kind === "write" || op.output === true);
  return applied && op.kind !== "read" && op.revision !== undefined;
}

function typeOf(op: OpRecord): "put" | "delete" {
  return op.kind === "delete" ? "delete" : "put";
}

function within(revision: number, gap: WatchGap): boolean {
  return gap.from <= revision && revision <= gap.to;
}

function changeId(type: "put" | "delete", key: string, revision: number): string {
  return `${type} ${key}@${revision}`;
}

function describeChange(
  type: "put" | "delete",
  key: string,
  revision: number,
  value: string | null,
): string {
  const id = changeId(type, key, revision);
  return type === "put" ? `${id} (${value})` : id;
}

function describeGaps(gaps: readonly WatchGap[], inGaps: readonly number[]): string {
  if (gaps.length === 0) return "";
  const shown = gaps
    .slice(0, GAPS_SHOWN)
    .map((g) => `${g.from}-${g.to}`)
    .join(", ");
  const more = gaps.length > GAPS_SHOWN ? ` and ${gaps.length - GAPS_SHOWN} more` : "";
  const unchecked = inGaps.reduce((sum, count) => sum + count, 0);
  return `; revisions ${shown}${more} compacted everywhere before the watch got there (it reopened after them; ${unchecked} acknowledged changes in them unchecked)`;
}

function describeEnd(coverage: Coverage, reached: number): string {
  if (coverage.afterEnd === 0) return "";
  return `, leaving the ${coverage.afterEnd} acknowledged changes after revision ${reached} unchecked`;
}

function describeOthers(
  others: OtherKeys,
  recorded: { transactions: number; leaseKeys: number } | null,
): string {
  if (recorded === null) {
    return (
      `; bank and lease keys (their clients keep no record): ${others.changes} changes checked ` +
      `against the stream alone, ${others.transfers} bank transactions balanced`
    );
  }
  return (
    `; bank and lease keys: ${others.changes} changes checked, ${others.transfers} bank ` +
    `transactions balanced, ${recorded.transactions} bank transactions matched to their ` +
    `records, ${recorded.leaseKeys} lease keys checked`
  );
}
