/**
 * The campaign's bank: transactions over several keys and range reads, under the same
 * faults as the other clients. A few accounts (`bank/a0` …) start with 100 each; one loop
 * reads them all with one range read (consistent at one revision), picks two, and moves an
 * amount from one to the other with one transaction that holds only if neither account
 * changed since the read. Transactions are atomic and range reads see one revision, so
 * every read must find the same total and every account, and once the books have been
 * seen, a read that finds none is wrong too; a transfer applied half, or read half-done,
 * shows up as a different total. (A transfer applied twice would fail its comparison the
 * second time, the revisions it names having moved: exactly-once is the workload's check.)
 *
 * The loop is sequential, and range reads are linearizable, so each read must also be at
 * least as new as everything the loop saw or was told before it: a page's revision never
 * goes down, and never falls behind a transfer the bank was told succeeded, and no account
 * is older than the last acknowledged transfer that wrote it. An account still at that
 * transfer's revision holds what the transfer wrote, nothing else.
 *
 * The bank is the only writer of its accounts and makes one transfer at a time from the
 * read just before it, so a transfer refused by its comparison means an account changed
 * since that read: only an earlier transfer whose outcome stayed unknown (its call threw)
 * can have done that, applied late. A refusal is a problem unless such a transfer, sharing
 * an account with it, is still pending: no read since has shown either of its accounts
 * moved from the revisions it compared (once one has, it either applied or never can).
 *
 * A loop that never gets through checks nothing: a run that ended one round or more (an
 * attempt to open the books, or a read and a transfer, answered or failed) with no
 * transfer fails the verdict, however short it was. Only a run stopped before its first
 * round ended is too short to check anything, and its verdict says so; stop() lets the
 * round in progress end, and once the books are open, one transfer at least, so a campaign
 * always has one. Any answer that says the requests themselves are wrong (ErrorTally)
 * fails it too; refusals the faults explain are only counted.
 *
 * It goes through the client library, which retries a transaction with one idempotency key
 * across fail-overs; a transaction whose outcome stayed unknown is harmless to the
 * totals, since whatever it did, it did atomically, and explains the refusals above.
 */

import { type BatonClient, createClient, type TxnCompare } from "../client/index.js";
import type { Prng } from "../core/prng.js";
import { ErrorTally, type Verdict } from "./checks.js";

const ACCOUNTS = 5;
const OPENING_BALANCE = 100;
const PREFIX = "bank/";
const PROBLEMS_SHOWN = 20;
/** The client's deadline for one request, retries included, in ms. */
const DEADLINE_MS = 5000;

/** What a transaction the bank was told succeeded wrote to one account. */
interface Written {
  readonly revision: number;
  readonly value: string;
}

/** A transfer whose call threw: the revisions it compared, by account. */
type Unknown = ReadonlyMap<string, number>;

/**
 * One transaction the bank sent (the opening or a transfer), as the watch verdict needs it
 * (watch-check.ts): what it compared and put, when, and what came of it: applied at
 * `revision` (ok), refused by its comparison at `refusedAt`, so never applied, or unknown
 * (the call threw). Times are on the campaign's clock, the one the workload stamps its
 * operations with.
 */
export interface BankRecord {
  /** 1 for the first transaction sent, and so on. */
  readonly id: number;
  /** Key and value of each put, as sent. */
  readonly puts: readonly (readonly [string, string])[];
  /** The comparison it was sent with: the puts apply only where every one holds. */
  readonly compare: readonly TxnCompare[];
  readonly invokedAt: number;
  completedAt: number | null;
  outcome: "ok" | "refused" | "unknown";
  /** The revision an ok answer named. */
  revision?: number;
  /** The revision a refusal named: the store's, at which the comparison failed. */
  refusedAt?: number;
}

export class CampaignBank {
  /** Range reads that found the books wrong: what they saw. */
  readonly problems: string[] = [];
  reads = 0;
  transfers = 0;
  /**
   * Transfers refused because an account changed since the read: fine when a transfer of
   * unknown outcome may have changed it, a problem otherwise.
   */
  conflicts = 0;
  /** Attempts to open the books that ended, answered or failed. */
  openings = 0;
  /** Transfer rounds (a read, then a transaction) that ended, answered or failed. */
  tried = 0;
  /** What the loop caught and carried on after. */
  readonly errors = new ErrorTally();
  /** Every transaction sent, in order. */
  readonly records: BankRecord[] = [];
  /** Whether the books exist: a read found them, or the opening transaction was answered. */
  private booksOpen = false;
  /** The newest revision read or acknowledged so far: no later read may be older. */
  private newest = 0;
  /** Per account, the revision and value of the last acknowledged transaction that wrote it. */
  private readonly written = new Map<string, Written>();
  /** Accounts (`key@revision`) found holding another value than their transaction wrote. */
  private readonly mismatched = new Set<string>();
  /** Transfers whose outcome is unknown and whose effect no read has shown yet. */
  private unknown: Unknown[] = [];
  private readonly client: BatonClient;
  private readonly now: () => number;
  private startedAt: number | null = null;
  private stoppedAt: number | null = null;
  private stopping = false;
  private running: Promise<void> | null = null;

  /**
   * `deadlineMs`: the client's, retries included (shorter in tests); `now`: the campaign's
   * clock, which the records are stamped with.
   */
  constructor(
    urls: readonly string[],
    private readonly prng: Prng,
    options: { readonly deadlineMs?: number; readonly now?: () => number } = {},
  ) {
    this.now = options.now ?? (() => performance.now());
    this.client = createClient({
      endpoints: [...urls],
      deadlineMs: options.deadlineMs ?? DEADLINE_MS,
    });
  }

  start(): void {
    this.startedAt = performance.now();
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    this.stoppedAt = performance.now();
    // The final books, read after healing.
    await this.audit().catch((error: unknown) => {
      this.problems.push(`final read failed: ${(error as Error).message}`);
    });
    await this.client.close();
  }

  private async run(): Promise<void> {
    if (!(await this.open())) return;
    // One transfer even when asked to stop at once: books opened and never moved would
    // leave the verdict nothing to say.
    while (!this.stopping || this.tried === 0) {
      try {
        await this.transfer();
      } catch (error) {
        // The cluster is between masters: the next round tries again.
        this.errors.note(error);
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        this.tried++;
      }
    }
  }

  /** Opens the books, retrying until answered; false when asked to stop first. */
  private async open(): Promise<boolean> {
    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `${PREFIX}a${i}`);
    // Opening the books only once: the transaction holds only while no account exists.
    while (!this.stopping) {
      try {
        const values = accounts.map((key) => [key, String(OPENING_BALANCE)] as const);
        const opening = await this.send(
          accounts.map((key) => ({ key, exists: false })),
          values,
        );
        // Answered: it opened them, or they were open already (its comparison failed).
        if (opening.succeeded) this.acknowledged(values, opening.revision);
        this.booksOpen = true;
        return true;
      } catch (error) {
        // No master yet or a deadline passed: try again.
        this.errors.note(error);
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        this.openings++;
      }
    }
    return false;
  }

  /** Notes a transaction acknowledged at `revision` that wrote `values` (key, value). */
  private acknowledged(values: readonly (readonly [string, string])[], revision: number): void {
    for (const [key, value] of values) this.written.set(key, { revision, value });
    this.newest = Math.max(this.newest, revision);
  }

  /** Reads the books, checks them, and moves money between two accounts. */
  private async transfer(): Promise<void> {
    const books = await this.audit();
    const keys = [...books.keys()];
    if (keys.length < 2) return;
    const from = this.prng.pick(keys);
    const to = this.prng.pick(keys.filter((key) => key !== from));
    const source = books.get(from)!;
    const amount = Math.min(source.balance, this.prng.int(1, 20));
    const target = books.get(to)!;
    const values = [
      [from, String(source.balance - amount)],
      [to, String(target.balance + amount)],
    ] as const;
    const compared: Unknown = new Map([
      [from, source.revision],
      [to, target.revision],
    ]);
    let result: { succeeded: boolean; revision: number };
    try {
      const compare = [...compared].map(([key, revision]) => ({ key, revision }));
      result = await this.send(compare, values);
    } catch (error) {
      // Applied or not, it may still be applied later: until a read shows, it may explain
      // a refusal.
      this.unknown.push(compared);
      throw error;
    }
    if (result.succeeded) {
      this.transfers++;
      this.acknowledged(values, result.revision);
      return;
    }
    this.conflicts++;
    const explained = this.unknown.some((pending) => pending.has(from) || pending.has(to));
    if (!explained) {
      this.problems.push(
        `transfer of ${amount} from ${from}@${source.revision} to ${to}@${target.revision} refused by its comparison (at revision ${result.revision}), though no transfer of unknown outcome could have changed either account`,
      );
    }
  }

  /** Sends one transaction that puts `values` if `compare` holds, and records it. */
  private async send(
    compare: readonly TxnCompare[],
    values: readonly (readonly [string, string])[],
  ): Promise<{ succeeded: boolean; revision: number }> {
    const record: BankRecord = {
      id: this.records.length + 1,
      puts: values,
      compare,
      invokedAt: this.now(),
      completedAt: null,
      outcome: "unknown",
    };
    this.records.push(record);
    try {
      const result = await this.client.txn({
        compare,
        success: values.map(([key, value]) => ({ put: { key, value } })),
      });
      record.outcome = result.succeeded ? "ok" : "refused";
      if (result.succeeded) record.revision = result.revision;
      else record.refusedAt = result.revision;
      return result;
    } finally {
      record.completedAt = this.now();
    }
  }

  /**
   * One range read of the books; a wrong total, a missing account, or a read older than
   * one before it or than an acknowledged transfer is a problem.
   */
  private async audit(): Promise<Map<string, { balance: number; revision: number }>> {
    const page = await this.client.range(PREFIX);
    this.reads++;
    if (page.revision < this.newest) {
      this.problems.push(
        `a read at revision ${page.revision}, after revision ${this.newest} was read or acknowledged: the reads went back`,
      );
    }
    this.newest = Math.max(this.newest, page.revision);
    for (const item of page.items) {
      const written = this.written.get(item.key);
      if (written === undefined) continue;
      if (item.revision < written.revision) {
        this.problems.push(
          `at revision ${page.revision}: ${item.key}=${item.value}@${item.revision}, older than the transaction acknowledged at revision ${written.revision}`,
        );
      } else if (item.revision === written.revision && item.value !== written.value) {
        // Once per account and revision: every read until the next transfer finds it again.
        const id = `${item.key}@${item.revision}`;
        if (this.mismatched.has(id)) continue;
        this.mismatched.add(id);
        this.problems.push(
          `at revision ${page.revision}: ${item.key}=${item.value}@${item.revision}, but the transaction acknowledged at revision ${written.revision} wrote ${written.value}`,
        );
      }
    }
    const books = new Map<string, { balance: number; revision: number }>();
    for (const item of page.items) {
      books.set(item.key, { balance: Number(item.value), revision: item.revision });
    }
    // A transfer of unknown outcome whose accounts moved from what it compared has been
    // applied, or never can be: it explains nothing after this read.
    this.unknown = this.unknown.filter((pending) =>
      [...pending].every(([key, revision]) => books.get(key)?.revision === revision),
    );
    const total = [...books.values()].reduce((sum, account) => sum + account.balance, 0);
    if (books.size > 0) this.booksOpen = true;
    if (this.booksOpen && (books.size !== ACCOUNTS || total !== ACCOUNTS * OPENING_BALANCE)) {
      const seen = page.items.map((i) => `${i.key}=${i.value}@${i.revision}`).join(" ");
      this.problems.push(
        `at revision ${page.revision}: ${books.size} accounts, total ${total}: ${seen}`,
      );
    }
    return books;
  }

  verdict(): Verdict {
    const ranMs = (this.stoppedAt ?? performance.now()) - (this.startedAt ?? performance.now());
    const ran = `${(ranMs / 1000).toFixed(0)} s`;
    const detail =
      `${this.reads} range reads, ${this.transfers} transfers, ${this.conflicts} refused by ` +
      `their comparison in ${ran}${this.errors.detail()}`;
    const problems = [...this.problems, ...this.errors.problems()];
    const rounds = this.openings + this.tried;
    if (this.transfers === 0 && rounds > 0) {
      const tried = this.booksOpen
        ? `${this.tried} tried`
        : `the books never opened in ${this.openings} attempts`;
      problems.push(`no transfer succeeded in ${ran} (${tried}): nothing was checked`);
    }
    if (problems.length === 0) {
      const what =
        rounds === 0
          ? "too short to check the books: it stopped before its first round (an opening, or a read and a transfer) ended"
          : `every read found ${ACCOUNTS * OPENING_BALANCE} in ${ACCOUNTS} accounts`;
      return { ok: true, detail: `${what}: ${detail}` };
    }
    return {
      ok: false,
      detail: `${problems.length} problems; ${detail}`,
      problems: problems.slice(0, PROBLEMS_SHOWN),
    };
  }
}
