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
 * It goes through the client library, which retries a transaction with one idempotency key
 * across fail-overs; a transaction whose outcome stayed unknown is harmless to the
 * verdict, since whatever it did, it did atomically.
 */

import { type BatonClient, createClient } from "../client/index.js";
import type { Prng } from "../core/prng.js";
import type { Verdict } from "./checks.js";

const ACCOUNTS = 5;
const OPENING_BALANCE = 100;
const PREFIX = "bank/";
const PROBLEMS_SHOWN = 20;

export class CampaignBank {
  /** Range reads that found the books wrong: what they saw. */
  readonly problems: string[] = [];
  reads = 0;
  transfers = 0;
  /** Transfers refused because an account changed since the read (fine: compare failed). */
  conflicts = 0;
  /** Whether the books exist: a read found them, or the opening transaction was answered. */
  private booksOpen = false;
  private readonly client: BatonClient;
  private stopping = false;
  private running: Promise<void> | null = null;

  constructor(
    urls: readonly string[],
    private readonly prng: Prng,
  ) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 5000 });
  }

  start(): void {
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    // The final books, read after healing.
    await this.audit().catch((error: unknown) => {
      this.problems.push(`final read failed: ${(error as Error).message}`);
    });
    await this.client.close();
  }

  private async run(): Promise<void> {
    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `${PREFIX}a${i}`);
    // Opening the books only once: the transaction holds only while no account exists.
    while (!this.stopping) {
      try {
        await this.client.txn({
          compare: accounts.map((key) => ({ key, exists: false })),
          success: accounts.map((key) => ({ put: { key, value: String(OPENING_BALANCE) } })),
        });
        // Answered: it opened them, or they were open already (its comparison failed).
        this.booksOpen = true;
        break;
      } catch {
        // No master yet or a deadline passed: try again.
      }
    }
    while (!this.stopping) {
      try {
        await this.transfer();
      } catch {
        // The cluster is between masters: the next round tries again.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
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
    const result = await this.client.txn({
      compare: [
        { key: from, revision: source.revision },
        { key: to, revision: target.revision },
      ],
      success: [
        { put: { key: from, value: String(source.balance - amount) } },
        { put: { key: to, value: String(target.balance + amount) } },
      ],
    });
    if (result.succeeded) this.transfers++;
    else this.conflicts++;
  }

  /** One range read of the books; a wrong total or a missing account is a problem. */
  private async audit(): Promise<Map<string, { balance: number; revision: number }>> {
    const page = await this.client.range(PREFIX);
    this.reads++;
    const books = new Map<string, { balance: number; revision: number }>();
    for (const item of page.items) {
      books.set(item.key, { balance: Number(item.value), revision: item.revision });
    }
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
    const detail = `${this.reads} range reads, ${this.transfers} transfers, ${this.conflicts} refused by their comparison`;
    if (this.problems.length === 0) {
      return {
        ok: true,
        detail: `every read found ${ACCOUNTS * OPENING_BALANCE} in ${ACCOUNTS} accounts: ${detail}`,
      };
    }
    return {
      ok: false,
      detail: `${this.problems.length} reads found the books wrong; ${detail}`,
      problems: this.problems.slice(0, PROBLEMS_SHOWN),
    };
  }
}
