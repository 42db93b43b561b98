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
 * - every value a change carries was written by some operation (nothing invented).
 *
 * A watch ended by ERR_COMPACTED (every node's history had moved past where it was, as after
 * wipes) is judged up to where it got, and says so. Any other end, or a watch that had not
 * reached the last acknowledged change's revision when the campaign stopped it, is a
 * problem: the watch must survive every fault, and a stalled watch delivers nothing wrong.
 */

import type { WatchChange } from "../client/index.js";
import { type BatonClient, CompactedError, createClient } from "../client/index.js";
import type { Verdict } from "./checks.js";
import type { OpRecord } from "./workload.js";

const PROBLEMS_SHOWN = 20;

export class CampaignWatch {
  readonly changes: WatchChange[] = [];
  /** Why the watch ended early, if it did. */
  endedBy: string | null = null;
  private readonly client: BatonClient;
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;

  constructor(urls: readonly string[]) {
    this.client = createClient({ endpoints: [...urls], deadlineMs: 20_000 });
  }

  start(): void {
    this.running = (async () => {
      try {
        const options = { fromRevision: 1, signal: this.controller.signal };
        for await (const change of this.client.watch("", options)) this.changes.push(change);
      } catch (error) {
        this.endedBy =
          error instanceof CompactedError
            ? `ERR_COMPACTED: ${error.message}`
            : `${(error as Error).name}: ${(error as Error).message}`;
      }
    })();
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
}

/** The verdict on what `changes` delivered, against the clients' `history`. */
export function checkWatch(
  history: readonly OpRecord[],
  changes: readonly WatchChange[],
  endedBy: string | null,
  target = 0,
): Verdict {
  const problems: string[] = [];
  if (endedBy !== null && !endedBy.startsWith("ERR_COMPACTED")) {
    problems.push(`the watch ended: ${endedBy}`);
  }
  const last = changes.at(-1)?.revision ?? 0;
  if (endedBy === null && last < target) {
    problems.push(
      `the watch stopped at revision ${last}, short of ${target}, the last acknowledged change's`,
    );
  }
  const seen = new Set<string>();
  let previous = 0;
  for (const change of changes) {
    if (change.revision < previous) {
      problems.push(`revision went back: ${change.key} at ${change.revision} after ${previous}`);
    }
    previous = change.revision;
    const id = `${change.type} ${change.key}@${change.revision}`;
    if (seen.has(id)) problems.push(`delivered twice: ${id}`);
    seen.add(id);
  }
  const reached = previous;
  const written = new Set<string>();
  const keys = new Set<string>();
  for (const op of history) {
    keys.add(op.key);
    if (op.value !== undefined) written.add(`${op.key}\u0000${op.value}`);
    const applied = op.outcome === "ok" && (op.kind === "write" || op.output === true);
    if (!applied || op.kind === "read" || op.revision === undefined || op.revision > reached) {
      continue;
    }
    const id = `${op.kind === "delete" ? "delete" : "put"} ${op.key}@${op.revision}`;
    if (!seen.has(id)) problems.push(`missed: ${id} (operation ${op.id})`);
  }
  for (const change of changes) {
    if (change.type !== "put" || !keys.has(change.key)) continue;
    if (!written.has(`${change.key}\u0000${change.value}`)) {
      problems.push(`invented: ${change.key} = ${change.value} at ${change.revision}`);
    }
  }
  const ended = endedBy === null ? "" : `; the watch ended early (${endedBy})`;
  const detail = `${changes.length} changes up to revision ${reached}${ended}`;
  if (problems.length === 0) {
    return { ok: true, detail: `every change once, in revision order: ${detail}` };
  }
  return {
    ok: false,
    detail: `${problems.length} problems in ${detail}`,
    problems: problems.slice(0, PROBLEMS_SHOWN),
  };
}
