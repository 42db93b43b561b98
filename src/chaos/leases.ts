/**
 * The campaign's leases: one loop grants a lease of TTL_SECONDS, attaches a new key to
 * it, never keeps it alive, and reads the key back just before the lease may end. Under
 * the same faults as the other clients, two things must hold:
 *
 * - never early: a read that completed before the grant was sent plus the TTL found the
 *   key (log time, which leases end by, never runs ahead of the real time the grant took,
 *   and a fail-over only gives leases more time);
 * - eventually: once the cluster has healed and a TTL has passed, no key of any of these
 *   leases is left (a final range read of the prefix is empty).
 *
 * A loop that never gets through checks nothing: a run of `exerciseMsMin` or more in which
 * no lease was read back in time fails the verdict, and so does any answer that says the
 * requests themselves are wrong (ErrorTally); refusals the faults explain are only counted.
 *
 * It goes through the client library, like a program holding leases would.
 */

import { type BatonClient, createClient } from "../client/index.js";
import { ErrorTally, type Verdict } from "./checks.js";

const TTL_SECONDS = 3;
const PREFIX = "lease/";
const PROBLEMS_SHOWN = 20;
/**
 * The default shortest run, in ms, that must have read a lease back in time once: every
 * campaign ends with seconds of a healed cluster, and a lease is checked within a TTL.
 */
const EXERCISE_MS_MIN = 30_000;

export interface CampaignLeasesOptions {
  /** A run at least this long, in ms, that checked no lease fails the verdict. @default 30000 */
  readonly exerciseMsMin?: number;
}

export class CampaignLeases {
  readonly problems: string[] = [];
  granted = 0;
  /** Reads that completed in time and found the key, as they must. */
  checked = 0;
  /** Keys left after the final wait, which must be none. */
  left: string[] = [];
  /** What the loop caught and carried on after. */
  readonly errors = new ErrorTally();
  private readonly client: BatonClient;
  private readonly exerciseMsMin: number;
  private startedAt: number | null = null;
  private stoppedAt: number | null = null;
  private stopping = false;
  private running: Promise<void> | null = null;

  constructor(urls: readonly string[], options: CampaignLeasesOptions = {}) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 5000 });
    this.exerciseMsMin = options.exerciseMsMin ?? EXERCISE_MS_MIN;
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
    await new Promise((resolve) => setTimeout(resolve, TTL_SECONDS * 1000 + 2000));
    try {
      this.left = (await this.client.range(PREFIX, { keysOnly: true })).items.map((i) => i.key);
    } catch (error) {
      this.problems.push(`final read failed: ${(error as Error).message}`);
    }
    await this.client.close();
  }

  /** Stops at once, without the final check (the campaign ended early). */
  async abandon(): Promise<void> {
    this.stopping = true;
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
        this.errors.note(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  private async grantAndCheck(key: string): Promise<void> {
    const sentAt = performance.now();
    const lease = await this.client.grantLease(TTL_SECONDS);
    this.granted++;
    const deadline = sentAt + TTL_SECONDS * 1000;
    try {
      await this.client.put(key, "held", { lease: lease.id });
    } catch (error) {
      // The lease already gone when its key is attached: that is an early end too, the
      // plainest one, as long as the refusal came before the lease could have ended.
      if ((error as { code?: string }).code === "ERR_LEASE_NOT_FOUND") {
        if (performance.now() < deadline) {
          const early = Math.round(deadline - performance.now());
          this.problems.push(
            `lease ${lease.id} was gone at least ${early} ms early: attaching ${key} was refused (ERR_LEASE_NOT_FOUND)`,
          );
        }
        return;
      }
      throw error;
    }
    const readAt = deadline - 700;
    const wait = readAt - performance.now();
    if (wait < 0) return; // the writes themselves took most of the TTL: nothing to check
    await new Promise((resolve) => setTimeout(resolve, wait));
    const entry = await this.client.get(key);
    // Only a read that completed before the deadline says anything.
    if (performance.now() >= deadline) return;
    this.checked++;
    if (entry === null) {
      const early = Math.round(deadline - performance.now());
      this.problems.push(`${key} (lease ${lease.id}) was gone at least ${early} ms early`);
    }
  }

  verdict(): Verdict {
    const ranMs = (this.stoppedAt ?? performance.now()) - (this.startedAt ?? performance.now());
    const detail =
      `${this.granted} leases of ${TTL_SECONDS} s, ${this.checked} read back in time in ` +
      `${(ranMs / 1000).toFixed(0)} s${this.errors.detail()}`;
    const problems = [...this.problems, ...this.errors.problems()];
    if (this.left.length > 0) {
      problems.push(`${this.left.length} keys outlived their leases: ${this.left.join(", ")}`);
    }
    if (this.checked === 0 && ranMs >= this.exerciseMsMin) {
      problems.push(
        `no lease was read back in time in ${(ranMs / 1000).toFixed(0)} s: nothing was checked`,
      );
    }
    if (problems.length === 0) {
      return { ok: true, detail: `no lease ended early, every one ended: ${detail}` };
    }
    return {
      ok: false,
      detail: `${problems.length} problems; ${detail}`,
      problems: problems.slice(0, PROBLEMS_SHOWN),
    };
  }
}
