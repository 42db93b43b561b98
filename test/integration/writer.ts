/**
 * An open-loop writer for fail-over tests and the fail-over benchmark: it starts one
 * write every `intervalMs` through the client library, whatever happened to the earlier
 * ones, so that after a crash a fresh write is issued every interval and the first one to
 * be acknowledged marks when service came back. Every write stores a unique key, only if
 * it is absent (`ifRevision: 0`), so that a write applied twice would surface as a
 * precondition failure (412) instead of passing unnoticed.
 *
 * It records each write's key, value, start and end time and outcome, and checks the end
 * state: every acknowledged key holds the acknowledged revision and value (read
 * linearizably). Nothing here signals a process; the caller owns the cluster.
 */

import type { BatonClient } from "../../src/client/index.js";

export type WriteOutcome =
  | { readonly kind: "ok"; readonly revision: number }
  /** The write was refused because the key existed: with unique keys, a duplicate. */
  | { readonly kind: "precondition"; readonly currentRevision: number | null }
  /** The client gave up or failed: the write may or may not have been applied. */
  | { readonly kind: "error"; readonly code: string; readonly message: string };

export interface WriteRecord {
  readonly seq: number;
  readonly key: string;
  readonly value: string;
  /** performance.now() when the write was issued. */
  readonly startedAt: number;
  /** performance.now() when it settled, or null while in flight. */
  endedAt: number | null;
  outcome: WriteOutcome | null;
}

export interface OpenLoopWriterOptions {
  /** A new write starts every this many milliseconds. */
  readonly intervalMs: number;
  /** Most writes in flight; a tick with this many waiting skips its write. @default 500 */
  readonly inflightMax?: number;
  /** Prefix of every key, unique to the run. */
  readonly keyPrefix: string;
}

export class OpenLoopWriter {
  readonly records: WriteRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private seq = 0;
  /** Ticks skipped because `inflightMax` writes were in flight. */
  skipped = 0;

  constructor(
    private readonly client: BatonClient,
    private readonly options: OpenLoopWriterOptions,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.issue(), this.options.intervalMs);
    this.issue();
  }

  /** Stops issuing writes and waits until every write in flight has settled. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Acknowledged writes issued at or after `at` (performance.now() time), by ack time. */
  firstAckIssuedAfter(at: number): WriteRecord | null {
    let first: WriteRecord | null = null;
    for (const r of this.records) {
      if (r.startedAt < at || r.outcome?.kind !== "ok" || r.endedAt === null) continue;
      if (first === null || r.endedAt < first.endedAt!) first = r;
    }
    return first;
  }

  /** Waits until a write issued at or after `at` is acknowledged; returns it. */
  async waitForAckIssuedAfter(at: number, timeoutMs: number): Promise<WriteRecord> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // Any write still in flight will be acknowledged later than this one, if at all.
      const found = this.firstAckIssuedAfter(at);
      if (found !== null) return found;
      if (performance.now() > deadline) {
        throw new Error(`no write issued after the fault was acknowledged within ${timeoutMs} ms`);
      }
      await new Promise((done) => setTimeout(done, 10));
    }
  }

  counts(): { ok: number; precondition: number; error: number; inflight: number } {
    const c = { ok: 0, precondition: 0, error: 0, inflight: 0 };
    for (const r of this.records) {
      if (r.outcome === null) c.inflight++;
      else c[r.outcome.kind]++;
    }
    return c;
  }

  private issue(): void {
    if (this.inflight.size >= (this.options.inflightMax ?? 500)) {
      this.skipped++;
      return;
    }
    const seq = ++this.seq;
    const record: WriteRecord = {
      seq,
      key: `${this.options.keyPrefix}-${seq}`,
      value: `value-${seq}-${Math.random().toString(36).slice(2)}`,
      startedAt: performance.now(),
      endedAt: null,
      outcome: null,
    };
    this.records.push(record);
    const write = this.client
      .put(record.key, record.value, { ifRevision: 0 })
      .then(
        ({ revision }): WriteOutcome => ({ kind: "ok", revision }),
        (error: unknown): WriteOutcome => outcomeOf(error),
      )
      .then((outcome) => {
        record.outcome = outcome;
        record.endedAt = performance.now();
      });
    this.inflight.add(write);
    void write.finally(() => this.inflight.delete(write));
  }
}

function outcomeOf(error: unknown): WriteOutcome {
  const e = error as { code?: string; message?: string; currentRevision?: number };
  if (e.code === "ERR_PRECONDITION_FAILED") {
    return { kind: "precondition", currentRevision: e.currentRevision ?? null };
  }
  return { kind: "error", code: e.code ?? "unknown", message: e.message ?? String(error) };
}

export interface Verification {
  readonly acknowledged: number;
  /** Acknowledged writes whose key is missing or holds another revision or value. */
  readonly lost: { key: string; expected: number; found: string }[];
  /** Writes answered 412 although their key was unique: applied twice. */
  readonly duplicated: { key: string; currentRevision: number | null }[];
  /** Writes whose outcome was an error, and how many of them turned out applied. */
  readonly uncertain: number;
  readonly uncertainApplied: number;
}

/**
 * Reads every written key linearizably (through `client`, `concurrency` at a time) and
 * compares it with what the writer was told.
 */
export async function verifyWrites(
  client: BatonClient,
  records: readonly WriteRecord[],
  concurrency = 16,
): Promise<Verification> {
  const lost: Verification["lost"] = [];
  const duplicated: Verification["duplicated"] = [];
  let acknowledged = 0;
  let uncertain = 0;
  let uncertainApplied = 0;
  const queue = [...records];
  const worker = async (): Promise<void> => {
    for (let r = queue.shift(); r !== undefined; r = queue.shift()) {
      const outcome = r.outcome;
      if (outcome === null) throw new Error(`write ${r.key} still in flight`);
      if (outcome.kind === "precondition") {
        duplicated.push({ key: r.key, currentRevision: outcome.currentRevision });
        continue;
      }
      const entry = await client.get(r.key);
      if (outcome.kind === "error") {
        uncertain++;
        if (entry !== null) uncertainApplied++;
        continue;
      }
      acknowledged++;
      const found =
        entry === null
          ? "absent"
          : `revision ${entry.revision} value ${JSON.stringify(entry.text())}`;
      if (entry === null || entry.revision !== outcome.revision || entry.text() !== r.value) {
        lost.push({ key: r.key, expected: outcome.revision, found });
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { acknowledged, lost, duplicated, uncertain, uncertainApplied };
}

/** Median, p90 and max of `values` (nearest rank), or nulls for none. */
export function summarize(values: readonly number[]): {
  count: number;
  median: number | null;
  p90: number | null;
  max: number | null;
} {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number): number | null =>
    sorted.length === 0
      ? null
      : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
  return {
    count: sorted.length,
    median: rank(0.5),
    p90: rank(0.9),
    max: sorted.length === 0 ? null : sorted[sorted.length - 1]!,
  };
}
