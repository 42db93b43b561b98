/**
 * The campaign's leases: one loop grants a lease of TTL_SECONDS, attaches a new key to
 * it, never keeps it alive, and reads the key back as close to the lease's end as the
 * reads' own latency allows. Under the same faults as the other clients, two things must
 * hold:
 *
 * - never early: a read that completed before the grant was sent plus the TTL found the
 *   key (its linearization point lies before its completion; log time, which leases end
 *   by, never runs ahead of the real time the grant took, and a fail-over only gives
 *   leases more time);
 * - eventually: once the cluster has healed and a TTL has passed, no key of any of these
 *   leases is left (a final range read of the prefix is empty).
 *
 * A read can only see a lease that ended early if it reaches the master after the lease
 * ended, so a single read well before the end would miss a lease that ends a little early.
 * Each key is therefore read several times: once well before the end, then by overlapping
 * reads started as long before the end as quantiles of the latest reads' latency, so that
 * some complete in time having started as late as the machine's latency allows. Reads
 * that complete after the end are discarded. The verdict says how close to the end the
 * last read in time of each lease started (the lease was alive at some point after that:
 * the read's linearization point lies between its start and its completion, so the time
 * from its completion to the end would overstate how late the lease was seen), and how
 * many leases no read checked.
 *
 * A loop that never gets through checks nothing: a run that ended one round or more (a
 * lease granted, attached and read back, or a failure on the way) with no lease read back
 * in time fails the verdict, however short it was. Only a run stopped before its first
 * round ended is too short to check anything, and its verdict says so; stop() lets the
 * round in progress end, so a campaign always has one. Any answer that says the requests
 * themselves are wrong (ErrorTally) fails it too; refusals the faults explain are only
 * counted.
 *
 * It goes through the client library, like a program holding leases would.
 */

import { type BatonClient, createClient } from "../client/index.js";
import { percentile } from "../shared/percentile.js";
import { ErrorTally, type Verdict } from "./checks.js";
import { sleep } from "./wait.js";

const TTL_SECONDS = 3;
const PREFIX = "lease/";
const PROBLEMS_SHOWN = 20;
/** The first read of a lease's key starts at least this long before the lease may end, in ms. */
const FIRST_READ_MS_BEFORE = 700;
/**
 * The later reads of a key start as long before the end as these quantiles of the latest
 * reads' latency: a read started a quantile q before the end completes in time about q of
 * the time, so most leases get a read in time that started close to the end, on a loaded
 * machine too, where latencies vary tenfold.
 */
const LATE_READ_QUANTILES = [0.9, 0.75, 0.6, 0.45, 0.3, 0.2, 0.1] as const;
/**
 * And as long before the end as these multiples of the 90th percentile: where reads are
 * fast and alike, the quantiles start within a few ms of each other and one pause of the
 * machine would make them all late.
 */
const LATE_READ_P90_MULTIPLES = [3, 2, 1.5] as const;
/** Read latencies the quantiles are taken from: the latest ones, about eight leases' worth. */
const LATENCY_COUNT_MAX = 64;
/** The read latency assumed before any read was timed, in ms. */
const LATENCY_MS_DEFAULT = 100;
/**
 * Log time counts whole milliseconds (each entry is stamped with the master's Date.now()),
 * so a lease may end up to this long, in ms, before the real time its grant was stamped
 * plus the TTL. A read must complete this much before the deadline to say anything.
 */
const STAMP_GUARD_MS = 1;

/** One read of a lease's key: when it started and completed (performance.now()), what it found. */
interface ReadBack {
  readonly startedAt: number;
  readonly completedAt: number;
  readonly found: boolean;
}

/**
 * One lease granted, as the watch verdict needs it (watch-check.ts): the key attached to it,
 * and the revision the attach put was acknowledged at (null until it is, and for good when
 * its answer was lost or it was refused). `refused`: the attach was answered
 * ERR_LEASE_NOT_FOUND, so the key was never put.
 */
export interface LeaseRecord {
  readonly key: string;
  readonly id: number;
  revision: number | null;
  refused: boolean;
}

export class CampaignLeases {
  readonly problems: string[] = [];
  granted = 0;
  /** Leases whose key a read that completed in time looked for (and found, as it must). */
  checked = 0;
  /** Per checked lease, how long before its deadline the last read in time started, in ms. */
  readonly margins: number[] = [];
  /** Rounds (grant, attach, read back) that ended, checked or not. */
  rounds = 0;
  /** Keys left after the final wait, which must be none. */
  left: string[] = [];
  /** Every lease granted, in order. */
  readonly records: LeaseRecord[] = [];
  /**
   * The revision of the final read that found no key left: every lease had ended, and its
   * key's delete was committed, by then. Null until such a read.
   */
  endedBy: number | null = null;
  /** What the loop caught and carried on after. */
  readonly errors = new ErrorTally();
  private readonly client: BatonClient;
  /** The latencies of the latest reads, in ms, oldest first. */
  private readonly latencies: number[] = [];
  private startedAt: number | null = null;
  private stoppedAt: number | null = null;
  private stopping = false;
  /** Set by abandon(): the failures that closing the client causes are not the cluster's. */
  private abandoned = false;
  private running: Promise<void> | null = null;

  constructor(urls: readonly string[]) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 5000 });
  }

  start(): void {
    this.startedAt = performance.now();
    this.running = this.run();
  }

  /** Stops granting, waits a TTL and a margin for the last leases to end, and checks. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    this.stoppedAt = performance.now();
    await sleep(TTL_SECONDS * 1000 + 2000);
    try {
      const page = await this.client.range(PREFIX, { keysOnly: true });
      this.left = page.items.map((i) => i.key);
      if (this.left.length === 0) this.endedBy = page.revision;
    } catch (error) {
      this.problems.push(`final read failed: ${(error as Error).message}`);
    }
    await this.client.close();
  }

  /** Stops at once, without the final check (the campaign ended early). */
  async abandon(): Promise<void> {
    this.stopping = true;
    this.abandoned = true;
    await this.client.close();
    await this.running;
    this.stoppedAt = performance.now();
  }

  private async run(): Promise<void> {
    for (let n = 1; !this.stopping; n++) {
      try {
        await this.grantAndCheck(`${PREFIX}${n}`);
      } catch (error) {
        // No master, or a deadline passed: the next round tries again.
        if (!this.abandoned) this.errors.note(error);
      }
      // Our own close may have cut the round short: it is not a round, nor the cluster's
      // failure.
      if (this.abandoned) break;
      this.rounds++;
      await sleep(200);
    }
  }

  private async grantAndCheck(key: string): Promise<void> {
    const sentAt = performance.now();
    const lease = await this.client.grantLease(TTL_SECONDS);
    this.granted++;
    const deadline = sentAt + TTL_SECONDS * 1000;
    const record: LeaseRecord = { key, id: lease.id, revision: null, refused: false };
    this.records.push(record);
    if (!(await this.attach(record, deadline))) return;
    const margin = await this.readBack(key, lease.id, deadline);
    if (margin === null) return;
    this.checked++;
    this.margins.push(margin);
  }

  /** Attaches the record's key to its lease; false when the lease was gone already. */
  private async attach(record: LeaseRecord, deadline: number): Promise<boolean> {
    const { key, id: leaseId } = record;
    try {
      record.revision = (await this.client.put(key, "held", { lease: leaseId })).revision;
      return true;
    } catch (error) {
      if ((error as { code?: string }).code !== "ERR_LEASE_NOT_FOUND") throw error;
      record.refused = true;
      // The lease already gone when its key is attached: that is an early end too, the
      // plainest one, as long as the refusal came before the lease could have ended.
      const early = Math.round(deadline - performance.now());
      if (early > 0) {
        this.problems.push(
          `lease ${leaseId} was gone at least ${early} ms early: attaching ${key} was refused (ERR_LEASE_NOT_FOUND)`,
        );
      }
      return false;
    }
  }

  /**
   * Reads `key` back: one read well before `deadline`, then, if that one found the key in
   * time, overlapping reads that start as long before the end as quantiles and multiples of
   * the latest reads' latency (LATE_READ_QUANTILES, LATE_READ_P90_MULTIPLES), so that some
   * are likely to complete in time having started as late as that allows. Returns how long
   * before `deadline` the last read in time started, in ms, or null when none completed in
   * time.
   */
  private async readBack(key: string, leaseId: number, deadline: number): Promise<number | null> {
    const end = deadline - STAMP_GUARD_MS;
    const firstAt = end - Math.max(FIRST_READ_MS_BEFORE, 2 * this.latencyMs(0.9));
    const first = await this.readAt(key, firstAt, end);
    const reads = first === null ? [] : [first];
    if (first?.found === true && first.completedAt <= end) {
      const now = performance.now();
      const starts = new Set([
        ...LATE_READ_P90_MULTIPLES.map((k) => end - k * this.latencyMs(0.9)),
        ...LATE_READ_QUANTILES.map((q) => end - this.latencyMs(q)),
      ]);
      const late = [...starts].filter((at) => at > now).map((at) => this.readAt(key, at, end));
      for (const read of await Promise.all(late)) if (read !== null) reads.push(read);
    }
    const inTime = reads.filter((read) => read.completedAt <= end);
    if (inTime.length === 0) return null;
    const gone = inTime.filter((read) => !read.found);
    if (gone.length > 0) {
      const early = Math.round(deadline - Math.min(...gone.map((read) => read.completedAt)));
      this.problems.push(`${key} (lease ${leaseId}) was gone at least ${early} ms early`);
    }
    return deadline - Math.max(...inTime.map((read) => read.startedAt));
  }

  /**
   * Reads `key` at `startAt` (at once if that has passed, unless it is past `end`): when the
   * read completed and whether it found the key, or null when it failed or was not sent.
   */
  private async readAt(key: string, startAt: number, end: number): Promise<ReadBack | null> {
    const wait = startAt - performance.now();
    if (wait > 0) await sleep(wait);
    const startedAt = performance.now();
    if (startedAt >= end) return null;
    try {
      const found = (await this.client.get(key)) !== null;
      const completedAt = performance.now();
      this.noteLatency(completedAt - startedAt);
      return { startedAt, completedAt, found };
    } catch (error) {
      // The reads in time still count; the cluster's refusal is counted.
      if (!this.abandoned) this.errors.note(error);
      return null;
    }
  }

  private noteLatency(ms: number): void {
    this.latencies.push(ms);
    if (this.latencies.length > LATENCY_COUNT_MAX) this.latencies.shift();
  }

  /** The quantile `q` of the latest reads' latency, in ms. */
  private latencyMs(q: number): number {
    if (this.latencies.length === 0) return LATENCY_MS_DEFAULT;
    return percentile(sorted(this.latencies), q)!;
  }

  verdict(): Verdict {
    const ranMs = (this.stoppedAt ?? performance.now()) - (this.startedAt ?? performance.now());
    const ran = `${(ranMs / 1000).toFixed(0)} s`;
    const detail = `${this.summary()}, in ${ran}${this.errors.detail()}`;
    const problems = [...this.problems, ...this.errors.problems()];
    if (this.left.length > 0) {
      problems.push(`${this.left.length} keys outlived their leases: ${this.left.join(", ")}`);
    }
    if (this.checked === 0 && this.rounds > 0) {
      problems.push(
        `no lease was read back in time in ${ran} (${this.rounds} ${this.rounds === 1 ? "round" : "rounds"} ended): nothing was checked`,
      );
    }
    if (problems.length === 0) {
      const what =
        this.rounds === 0
          ? "too short to check a lease: it stopped before its first round (grant, attach, read back) ended"
          : "no lease ended early, every one ended";
      return { ok: true, detail: `${what}: ${detail}` };
    }
    return {
      ok: false,
      detail: `${problems.length} problems; ${detail}`,
      problems: problems.slice(0, PROBLEMS_SHOWN),
    };
  }

  /** `12 leases of 3 s: 11 read back in time, 1 unchecked; last read in time started …`. */
  private summary(): string {
    const counts =
      `${this.granted} leases of ${TTL_SECONDS} s: ${this.checked} read back in time, ` +
      `${this.granted - this.checked} unchecked`;
    if (this.margins.length === 0) return counts;
    const margins = sorted(this.margins);
    const ms = (q: number): string => `${Math.round(percentile(margins, q)!)} ms`;
    return `${counts}; last read in time started before the deadline: median ${ms(0.5)}, closest ${ms(0)}, widest ${ms(1)}`;
  }
}

function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}
