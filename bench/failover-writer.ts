/**
 * The fail-over benchmark's writer, the same for Baton and etcd: every `intervalMs` it
 * starts a create-only write of a new key, whatever happened to the earlier ones, so that
 * after a fault a fresh write is issued every interval and the first one acknowledged
 * marks when service came back.
 *
 * Each write goes first to the node that answered the last success; when an attempt fails
 * (connection refused or reset, no answer within `attemptTimeoutMs`, 5xx) it tries the
 * next node, until `deadlineMs`. A Baton retry carries the same Idempotency-Key, so it is
 * answered from the first application; etcd's gateway has no such header, so the write is
 * a create-only transaction and a retry that finds its own earlier attempt applied says
 * so ("existed" with our value) instead of applying it twice.
 *
 * It records each write and checks the end state. It signals no process.
 */

import { Pool } from "undici";
import type { BenchCluster, SystemName } from "./bench-cluster.js";
import { createOutcome, KvRequests, readValue } from "./kv-protocol.js";

export type WriteOutcome =
  /** `node`: the id of the node that acknowledged it. */
  | { readonly kind: "ok"; readonly attempts: number; readonly node: number }
  /** The key existed already: after an unanswered attempt, ours; else a duplicate. */
  | { readonly kind: "existed"; readonly attempts: number; readonly node: number }
  | { readonly kind: "error"; readonly message: string };

export interface WriteRecord {
  readonly seq: number;
  readonly key: string;
  readonly value: string;
  readonly startedAt: number;
  endedAt: number | null;
  outcome: WriteOutcome | null;
}

export interface WriterOptions {
  readonly intervalMs: number;
  readonly attemptTimeoutMs: number;
  readonly deadlineMs: number;
  readonly keyPrefix: string;
  readonly inflightMax: number;
}

export interface Verification {
  readonly acknowledged: number;
  /** Acknowledged, but the key is missing or holds another value. */
  readonly lost: readonly string[];
  /** Answered "the key exists" on the first attempt, or by Baton despite its idempotency key. */
  readonly duplicated: readonly string[];
  /** etcd: a retry found the write of an unanswered earlier attempt (applied once). */
  readonly retriedAfterApplied: number;
  /** Writes the writer gave up on that turned out applied. */
  readonly uncertainApplied: number;
}

export class FailoverWriter {
  readonly records: WriteRecord[] = [];
  skipped = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private readonly pools: Pool[];
  private readonly requests: KvRequests;
  private preferred = 0;
  private seq = 0;

  constructor(
    private readonly cluster: BenchCluster,
    private readonly options: WriterOptions,
  ) {
    this.pools = cluster.nodes.map(
      (n) => new Pool(n.url, { connections: 64, keepAliveTimeout: 30_000 }),
    );
    this.requests = new KvRequests(cluster.system, Buffer.alloc(0));
  }

  get system(): SystemName {
    return this.cluster.system;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.issue(), this.options.intervalMs);
    this.issue();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  async close(): Promise<void> {
    await this.stop();
    await Promise.all(this.pools.map((p) => p.destroy()));
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

  /** The earliest-acknowledged write issued at or after `at`, or null. */
  firstAckIssuedAfter(at: number): WriteRecord | null {
    let first: WriteRecord | null = null;
    for (const r of this.records) {
      if (r.startedAt < at || r.endedAt === null) continue;
      if (r.outcome?.kind !== "ok" && r.outcome?.kind !== "existed") continue;
      if (first === null || r.endedAt < (first.endedAt ?? Number.POSITIVE_INFINITY)) first = r;
    }
    return first;
  }

  async waitForAckIssuedAfter(at: number, timeoutMs: number): Promise<WriteRecord> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.firstAckIssuedAfter(at);
      if (found !== null) return found;
      if (performance.now() > deadline) {
        throw new Error(`${this.system}: no write issued after the fault acknowledged in time`);
      }
      await new Promise((done) => setTimeout(done, 5));
    }
  }

  counts(): { ok: number; existed: number; error: number } {
    const c = { ok: 0, existed: 0, error: 0 };
    for (const r of this.records) if (r.outcome !== null) c[r.outcome.kind]++;
    return c;
  }

  private issue(): void {
    if (this.inflight.size >= this.options.inflightMax) {
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

  private async write(record: WriteRecord): Promise<WriteOutcome> {
    const request = this.requests.create(record.key, record.value, `${record.key}-once`);
    const deadline = record.startedAt + this.options.deadlineMs;
    let node = this.preferred;
    let lastError = "";
    for (let attempts = 1; performance.now() < deadline; attempts++) {
      try {
        const response = await this.pools[node]!.request({
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body,
          signal: AbortSignal.timeout(this.options.attemptTimeoutMs),
        });
        const body = await response.body.text();
        const outcome = createOutcome(this.system, response.statusCode, body);
        const id = this.cluster.nodes[node]!.id;
        if (outcome === "created") {
          this.preferred = node;
          return { kind: "ok", attempts, node: id };
        }
        if (outcome === "existed") return { kind: "existed", attempts, node: id };
        lastError = `${response.statusCode} ${body.slice(0, 120)}`;
      } catch (error) {
        lastError = String(error);
      }
      node = (node + 1) % this.pools.length;
      await new Promise((done) => setTimeout(done, 5));
    }
    return { kind: "error", message: lastError };
  }

  /** Reads every key back linearizably from the master and counts what went wrong. */
  async verify(masterUrl: string): Promise<Verification> {
    const pool = new Pool(masterUrl, { connections: 16 });
    const read = new KvRequests(this.system, Buffer.alloc(0));
    const lost: string[] = [];
    const duplicated: string[] = [];
    let retriedAfterApplied = 0;
    let uncertainApplied = 0;
    let acknowledged = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.records.length) {
        const r = this.records[next++]!;
        const request = read.get(r.key);
        const response = await pool.request({
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body,
        });
        const stored = readValue(this.system, response.statusCode, await response.body.text());
        const kind = r.outcome?.kind;
        if (kind === "ok" || kind === "existed") acknowledged++;
        if (kind === "ok" && stored !== r.value) lost.push(r.key);
        if (kind === "existed") {
          const ours = stored === r.value;
          const firstAttempt = r.outcome?.kind === "existed" && r.outcome.attempts === 1;
          if (this.system === "baton" || firstAttempt || !ours) duplicated.push(r.key);
          else retriedAfterApplied++;
        }
        if (kind === "error" && stored === r.value) uncertainApplied++;
      }
    };
    try {
      await Promise.all(Array.from({ length: 16 }, worker));
    } finally {
      await pool.close();
    }
    return { acknowledged, lost, duplicated, retriedAfterApplied, uncertainApplied };
  }
}
