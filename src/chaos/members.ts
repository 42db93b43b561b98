/**
 * The operator's side of a fault campaign: membership changes and switchovers made the way
 * an operator makes them, through the client library against the HTTP API of the live
 * members (what `baton member replace|promote` and `baton switchover` do). It owns the
 * retries an operator would make (a change answered by no master yet, a promote refused
 * while the learner catches up) and nothing else: it never touches a process or a disk.
 */

import { type BatonClient, createClient, type Member } from "../client/index.js";
import { ErrorTally, type Verdict } from "./checks.js";
import type { FaultWindow } from "./nemesis.js";
import { sleep } from "./wait.js";

/** Longest a replace (remove, then add back as a learner) may take, retries included. */
const REPLACE_MS_MAX = 30_000;
/** Pause between attempts of a change that no master answered or that was refused. */
const RETRY_MS = 200;

export interface PromoteOutcome {
  readonly ok: boolean;
  /** Promote requests sent, the last one included. */
  readonly attempts: number;
  /** Milliseconds from the first request to the answer that ended the wait. */
  readonly ms: number;
  /** The last refusal, when not promoted. */
  readonly error: string | null;
}

export class CampaignMembers {
  /**
   * Every error the operator's requests met: refusals to retry (ERR_CONFLICT among them: a
   * learner not caught up yet, a switchover under way, a target that cannot take over), and
   * any answer that says a request was wrong or the node broken.
   */
  readonly errors = new ErrorTally({ refusals: ["ERR_CONFLICT"] });
  private readonly client: BatonClient;

  constructor(urls: readonly string[]) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 10_000 });
  }

  /**
   * `baton member replace <id>`: removes member `id` and adds it back as a learner at the
   * same addresses, so that its next data directory (a new incarnation) is a new member.
   * Each step is re-read from the members before it is retried: a change whose answer was
   * lost may have been committed all the same. `httpUrl` is its HTTP API (`--http-url`:
   * members started with `--peers` are listed without one). Throws when it cannot finish
   * in time.
   */
  async replace(id: number, httpUrl: string): Promise<void> {
    const deadline = performance.now() + REPLACE_MS_MAX;
    let removed = false;
    let addTried = false;
    let addresses: { peerAddress: string; httpUrl: string } | null = null;
    for (;;) {
      try {
        const listed = (await this.client.members()).find((m) => m.id === id);
        if (!removed && listed !== undefined) {
          addresses ??= { peerAddress: listed.peerAddress, httpUrl };
          await this.client.removeMember(id);
          removed = true;
          continue;
        }
        removed = true;
        if (listed !== undefined) {
          // Back in the list after an add whose answer was lost: added. Before any add, the
          // node that answered has not applied the removal yet: ask again.
          if (addTried) return;
          if (performance.now() > deadline) {
            throw new Error("still listed after its removal");
          }
          await sleep(RETRY_MS);
          continue;
        }
        if (addresses === null) throw new Error(`node ${id} is not a member`);
        addTried = true;
        await this.client.addMember({ id, ...addresses });
        return;
      } catch (error) {
        this.errors.note(error);
        if (performance.now() > deadline) {
          throw new Error(`member replace ${id}: ${(error as Error).message}`);
        }
        await sleep(RETRY_MS);
      }
    }
  }

  /**
   * `baton member promote <id>`, repeated while the master answers that the learner has not
   * caught up (409), for up to `timeoutMs`. A promote whose answer was lost is found in the
   * members before the next attempt.
   */
  async promoteWhenCaughtUp(id: number, timeoutMs: number): Promise<PromoteOutcome> {
    const started = performance.now();
    let attempts = 0;
    let error: string | null = null;
    while (performance.now() - started < timeoutMs) {
      try {
        if (attempts > 0 && (await this.client.members()).some((m) => m.id === id && m.voter)) {
          return { ok: true, attempts, ms: Math.round(performance.now() - started), error: null };
        }
        attempts++;
        await this.client.promoteMember(id);
        return { ok: true, attempts, ms: Math.round(performance.now() - started), error: null };
      } catch (e) {
        this.errors.note(e);
        error = `${(e as { code?: string }).code ?? "error"}: ${(e as Error).message}`;
        await sleep(RETRY_MS);
      }
    }
    return { ok: false, attempts, ms: Math.round(performance.now() - started), error };
  }

  /**
   * `POST /v1/switchover` (`{"to": to}`, or `{}` for the backup that holds the most of the
   * log): the new master and term, or the refusal.
   */
  async switchover(
    to: number | null,
  ): Promise<{ ok: true; master: number; term: number } | { ok: false; error: string }> {
    try {
      const answer = await this.client.switchover(to ?? undefined);
      return { ok: true, ...answer };
    } catch (e) {
      this.errors.note(e);
      return {
        ok: false,
        error: `${(e as { code?: string }).code ?? "error"}: ${(e as Error).message}`,
      };
    }
  }

  /** Members and voters as the master lists them, or null without an answer. */
  async members(): Promise<Member[] | null> {
    return this.client.members().catch(() => null);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/**
 * (i): every replace finished and every replaced node was promoted in time (the
 * `operatorProblems` say which did not), and no request of the operator's met an error no
 * fault explains (`errors`, the operator's tally): neither an internal error nor an answer
 * that says the request was wrong (ERR_INVALID_INPUT and the like: a switchover to a node
 * that is no member, a change the API cannot parse), which no retry would mend.
 */
export function checkMembership(
  windows: readonly FaultWindow[],
  operatorProblems: readonly string[],
  errors: ErrorTally,
): Verdict {
  const replaced = windows.filter((w) => w.kind === "wipe-restart" || w.kind === "replace");
  const switchovers = windows.filter((w) => w.kind === "switchover");
  const done = switchovers.filter((w) => w.detail.includes(" master of term ")).length;
  const detail = `${replaced.length} replaced and promoted, ${done} of ${switchovers.length} switchovers done`;
  // A refused change is the operator's to retry; a wrong request, or an internal error, is
  // a bug however it ends.
  const wrong = errors.wrongProblems();
  const internal = errors.internalProblems();
  if (operatorProblems.length === 0 && wrong.length === 0 && internal.length === 0) {
    return { ok: true, detail };
  }
  const failures = [
    ...(operatorProblems.length > 0
      ? [`${operatorProblems.length} of ${replaced.length} replacements did not finish`]
      : []),
    ...(wrong.length > 0
      ? [`the operator's requests were answered as wrong ${errors.wrongCount()} times`]
      : []),
    ...(internal.length > 0 ? ["the operator's requests met internal errors"] : []),
  ];
  return {
    ok: false,
    detail: `${failures.join("; ")}; ${detail}`,
    problems: [...operatorProblems, ...wrong, ...internal],
  };
}
