/**
 * The steady-rate (open-loop) writer of the fail-over tests and benchmarks: it starts one
 * write every `intervalMs`, whatever happened to the earlier ones, so that after a fault a
 * fresh write is issued every interval and the first one to be acknowledged marks when
 * service came back. Every write creates a unique key, only if it is absent, so that a
 * write applied twice surfaces as "the key existed" instead of passing unnoticed.
 *
 * How a write travels is the caller's: through Baton's client library
 * (`writeThroughClient`), or the benchmark's neutral HTTP writer that drives Baton and etcd
 * alike. This file owns the schedule, the records and the final check: every key is read
 * back and compared with what the writer was told. Nothing here signals a process.
 */

import type { BatonClient } from "../src/client/index.js";

export type WriteOutcome =
  /** `node`: the node that acknowledged it, when the way the write went can tell. */
  | { readonly kind: "ok"; readonly attempts: number; readonly node: number | null }
  /** The key existed already: after an unanswered attempt maybe ours, else a duplicate. */
  | { readonly kind: "existed"; readonly attempts: number; readonly node: number | null }
  /** The writer gave up: the write may or may not have been applied. */
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

/** Sends one create-only write; resolves with its outcome and never rejects. */
export type WriteFn = (record: WriteRecord) => Promise<WriteOutcome>;

export interface SteadyWriterOptions {
  /** A new write starts every this many milliseconds. */
  readonly intervalMs: number;
  /** Prefix of every key, unique to the run. */
  readonly keyPrefix: string;
  /** Most writes in flight; a tick with this many waiting skips its write. @default 500 */
  readonly inflightMax?: number;
}

/** Whether `outcome` tells that the write is in the store. */
function acknowledged(outcome: WriteOutcome | null): boolean {
  return outcome?.kind === "ok" || outcome?.kind === "existed";
}

export class SteadyRateWriter {
  readonly records: WriteRecord[] = [];
  /** Ticks skipped because `inflightMax` writes were in flight. */
  skipped = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private seq = 0;

  constructor(
    private readonly write: WriteFn,
    private readonly options: SteadyWriterOptions,
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

  /** The earliest-acknowledged write issued at or after `at` (performance.now()), or null. */
  firstAckIssuedAfter(at: number): WriteRecord | null {
    let first: WriteRecord | null = null;
    for (const r of this.records) {
      if (r.startedAt < at || r.endedAt === null || !acknowledged(r.outcome)) continue;
      if (first === null || r.endedAt < (first.endedAt ?? Number.POSITIVE_INFINITY)) first = r;
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
      await new Promise((done) => setTimeout(done, 5));
    }
  }

  /**
   * Writes issued at or after `from` that node `id` acknowledged before `to`: after a
   * partition cut `id` off at `from`, any is a write acknowledged by the minority side.
   */
  acknowledgedBy(id: number, from: number, to: number): number {
    let n = 0;
    for (const r of this.records) {
      if (r.startedAt < from || r.endedAt === null || r.endedAt >= to) continue;
      const o = r.outcome;
      if ((o?.kind === "ok" || o?.kind === "existed") && o.node === id) n++;
    }
    return n;
  }

  counts(): { ok: number; existed: number; error: number; inflight: number } {
    const c = { ok: 0, existed: 0, error: 0, inflight: 0 };
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
    const write = this.write(record).then((outcome) => {
      record.outcome = outcome;
      record.endedAt = performance.now();
    });
    this.inflight.add(write);
    void write.finally(() => this.inflight.delete(write));
  }
}

/**
 * Writes through Baton's client library, create-only (`ifRevision: 0`); the library
 * retries across fail-overs with one idempotency key, so "existed" is a duplicate.
 */
export function writeThroughClient(client: BatonClient): WriteFn {
  return (record) =>
    client.put(record.key, record.value, { ifRevision: 0 }).then(
      (): WriteOutcome => ({ kind: "ok", attempts: 1, node: null }),
      (error: unknown): WriteOutcome => {
        const e = error as { code?: string; message?: string };
        if (e.code === "ERR_PRECONDITION_FAILED")
          return { kind: "existed", attempts: 1, node: null };
        return { kind: "error", code: e.code ?? "unknown", message: e.message ?? String(error) };
      },
    );
}

/** Reads a key linearizably through Baton's client library: its value, or null. */
export function readThroughClient(client: BatonClient): (key: string) => Promise<string | null> {
  return async (key) => (await client.get(key))?.text() ?? null;
}

export interface Verification {
  /** Writes answered "ok" or "existed". */
  readonly acknowledged: number;
  /** Keys acknowledged as written whose key is missing or holds another value. */
  readonly lost: readonly string[];
  /** Keys answered "the key exists" where that cannot be an earlier attempt of the same write. */
  readonly duplicated: readonly string[];
  /** A retry found the value of its own unanswered earlier attempt (applied once). */
  readonly retriedAfterApplied: number;
  /** Writes the writer gave up on, and how many of them turned out applied. */
  readonly uncertain: number;
  readonly uncertainApplied: number;
}

/**
 * Reads every written key back (`read`: its value, or null when absent), `concurrency` at a
 * time, and compares it with what the writer was told. With `retriesMayFindOwn` (a store
 * without idempotency keys, etcd), an "existed" answer after an unanswered attempt that
 * finds our own value is that attempt, applied once; otherwise "existed" is a duplicate.
 */
export async function verifyWrites(
  records: readonly WriteRecord[],
  read: (key: string) => Promise<string | null>,
  options: { readonly retriesMayFindOwn?: boolean; readonly concurrency?: number } = {},
): Promise<Verification> {
  const lost: string[] = [];
  const duplicated: string[] = [];
  const v = { acknowledged: 0, retriedAfterApplied: 0, uncertain: 0, uncertainApplied: 0 };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < records.length) {
      const r = records[next++]!;
      const outcome = r.outcome;
      if (outcome === null) throw new Error(`write ${r.key} still in flight`);
      const ours = (await read(r.key)) === r.value;
      if (outcome.kind === "error") {
        v.uncertain++;
        if (ours) v.uncertainApplied++;
        continue;
      }
      v.acknowledged++;
      if (outcome.kind === "ok" && !ours) lost.push(r.key);
      if (outcome.kind !== "existed") continue;
      const ownRetry = options.retriesMayFindOwn === true && outcome.attempts > 1 && ours;
      if (ownRetry) v.retriedAfterApplied++;
      else duplicated.push(r.key);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  return { ...v, lost, duplicated };
}
