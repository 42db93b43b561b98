/**
 * The load generator: a process of its own (so its CPU is not the measured node's), run
 * by bench/main.ts once per case, the same code for every system. It opens one undici
 * Pool per target (the master, a backup, or every node) with the clients spread over them
 * round-robin, one connection each, as a plain load balancer would; runs `clients` closed loops (each
 * sends a request, waits for the answer, sends the next) for the duration, and records
 * every latency after the warm-up.
 *
 * Input: one JSON argument (LoadSpec). Output: progress lines on stderr once a second,
 * and one JSON line (LoadResult) on stdout at the end. It writes nothing else and talks
 * to nothing but its targets.
 *
 *   node --import tsx bench/load-generator.ts '{"system":"baton","target":...}'
 */

import { Pool } from "undici";
import { LatencyRecorder, type LatencySummary } from "../harness/stats.js";
import type { SystemName } from "./bench-cluster.js";
import { type KvRequest, KvRequests } from "./kv-protocol.js";
import { runWrkLoad } from "./wrk-load.js";

export type Mix = "write" | "read" | "90/10";

export interface LoadSpec {
  readonly system: SystemName;
  /** Client URLs: client i sends every request to `targets[i % targets.length]`. */
  readonly targets: readonly string[];
  readonly clients: number;
  readonly valueBytes: number;
  readonly mix: Mix;
  readonly durationMs: number;
  /** Requests in the first warmupMs are not counted. */
  readonly warmupMs: number;
  /** Keys written and read, `${keyPrefix}-${i}` for i < keyCount. */
  readonly keyCount: number;
  readonly keyPrefix: string;
  /** A label for the progress lines. */
  readonly label: string;
  /**
   * Who sends the load: this process through undici (the default), or wrk, a C load
   * generator that takes far less of the machine's CPU per request (bench/wrk-load.ts).
   */
  readonly generator?: Generator;
  /** With wrk: count the measured run's answers per second (LoadResult.perSecond). */
  readonly perSecond?: boolean;
}

export type Generator = "undici" | "wrk";

export interface LoadResult {
  readonly ops: number;
  readonly errors: number;
  readonly errorSamples: readonly string[];
  readonly seconds: number;
  readonly opsPerSecond: number;
  readonly latencyMs: LatencySummary;
  /** Requests answered from the first one on (warm-up and preload included). */
  readonly completedTotal: number;
  /** This process's own CPU time (user + system) over the same span, in milliseconds. */
  readonly cpuMs: number;
  /** Answers in each second of the measured run, when the spec asked for them. */
  readonly perSecond?: readonly number[];
}

const ERROR_SAMPLES_MAX = 5;

function makeValue(bytes: number): Buffer {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const value = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) value[i] = alphabet.charCodeAt(i % alphabet.length);
  return value;
}

class Run {
  readonly latencies = new LatencyRecorder();
  errors = 0;
  completed = 0;
  /** Requests of the preload, which the nodes' CPU time includes. */
  preloaded = 0;
  readonly errorSamples: string[] = [];
  private readonly pools: Pool[];
  private readonly requests: KvRequests;
  private readonly keys: string[];

  constructor(private readonly spec: LoadSpec) {
    if (spec.targets.length === 0) throw new Error("a load spec needs at least one target");
    this.pools = spec.targets.map(
      (target, i) =>
        new Pool(target, {
          // The clients this pool's target gets: i, i + n, i + 2n, ...
          connections: Math.max(1, Math.ceil((spec.clients - i) / spec.targets.length)),
          pipelining: 1,
          keepAliveTimeout: 60_000,
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        }),
    );
    this.requests = new KvRequests(spec.system, makeValue(spec.valueBytes));
    this.keys = Array.from({ length: spec.keyCount }, (_, i) => `${spec.keyPrefix}-${i}`);
  }

  /** One request of `client`; resolves true when it was answered 200. */
  async send(request: KvRequest, client = 0): Promise<boolean> {
    try {
      const pool = this.pools[client % this.pools.length]!;
      const response = await pool.request({
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
      });
      const body = await response.body.arrayBuffer();
      if (response.statusCode === 200) return true;
      this.noteError(`${response.statusCode} ${Buffer.from(body).toString("utf8", 0, 200)}`);
    } catch (error) {
      this.noteError(String(error));
    }
    this.errors++;
    return false;
  }

  private noteError(text: string): void {
    if (this.errorSamples.length < ERROR_SAMPLES_MAX) this.errorSamples.push(text);
  }

  /** Writes every key once, so that reads find them (not measured). */
  async preload(): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.keys.length) {
        const key = this.keys[next++]!;
        if (!(await this.send(this.requests.put(key)))) {
          throw new Error(`preload of ${key} failed: ${this.errorSamples.at(-1) ?? "no answer"}`);
        }
        this.preloaded++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(32, this.spec.clients * 4) }, worker));
    this.errors = 0;
  }

  private pick(client: number, i: number): KvRequest {
    const key = this.keys[(client * 7919 + i * 104_729) % this.keys.length]!;
    const mix = this.spec.mix;
    const write = mix === "write" || (mix === "90/10" && Math.random() < 0.1);
    return write ? this.requests.put(key) : this.requests.get(key);
  }

  async loop(client: number, countFrom: number, endAt: number): Promise<void> {
    for (let i = 0; ; i++) {
      const startedAt = performance.now();
      if (startedAt >= endAt) return;
      const ok = await this.send(this.pick(client, i), client);
      const endedAt = performance.now();
      if (ok && startedAt >= countFrom && endedAt <= endAt) {
        this.latencies.record(endedAt - startedAt);
      }
      if (endedAt <= endAt) this.completed++;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close()));
  }
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const run = new Run(spec);
  const cpuAtStart = process.cpuUsage();
  if (spec.generator === "wrk") {
    try {
      if (spec.mix !== "write") await run.preload();
    } finally {
      await run.close();
    }
    return runWrkLoad(spec, makeValue(spec.valueBytes), run.preloaded);
  }
  try {
    if (spec.mix !== "write") await run.preload();
    const startAt = performance.now();
    const countFrom = startAt + spec.warmupMs;
    const endAt = countFrom + spec.durationMs;
    let lastCompleted = 0;
    const progress = setInterval(() => {
      const elapsed = (performance.now() - startAt) / 1000;
      const rate = run.completed - lastCompleted;
      lastCompleted = run.completed;
      process.stderr.write(
        `  ${spec.label}: ${elapsed.toFixed(0)} s, ${rate} ops in the last second${run.errors > 0 ? `, ${run.errors} errors` : ""}\n`,
      );
    }, 1000);
    try {
      await Promise.all(
        Array.from({ length: spec.clients }, (_, c) => run.loop(c, countFrom, endAt)),
      );
    } finally {
      clearInterval(progress);
    }
    const seconds = spec.durationMs / 1000;
    const cpu = process.cpuUsage(cpuAtStart);
    return {
      ops: run.latencies.count,
      errors: run.errors,
      errorSamples: run.errorSamples,
      seconds,
      opsPerSecond: run.latencies.count / seconds,
      latencyMs: run.latencies.summary(),
      completedTotal: run.completed + run.preloaded,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
  } finally {
    await run.close();
  }
}

const isMain = process.argv[1]?.endsWith("load-generator.ts") === true;
if (isMain) {
  const spec = JSON.parse(process.argv[2] ?? "{}") as LoadSpec;
  runLoad(spec).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`load generator: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
