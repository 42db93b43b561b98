/**
 * The measuring tools of `npm run bench:capacity` (bench/capacity.ts), each on its own:
 *
 * - KeyWriter: writes keys `k000000000000001`… (16 bytes) with one value, through many
 *   concurrent HTTP requests (one undici Pool, one connection per client; Baton has no
 *   batched write), retrying what a node refused for a while (an election) and failing
 *   with the key and the answer when one never succeeds.
 * - sampleMemory: a node process's RSS and peak RSS from /proc/<pid>/status and its V8
 *   heap from the node's own /metrics (prom-client's default process metrics).
 * - NodeLog: the JSON lines (pino) a node wrote to its log file after a given offset, so
 *   that the benchmark can time a restart from the node's own `start` and `serving`
 *   lines and find its state-transfer lines.
 * - diskWriteRate: the disk's own sequential write rate, a file of a given size written
 *   in 1 MiB blocks and fsynced once at the end, in the folder of the data directories.
 *
 * It starts no process: bench/baton-cluster.ts and the harness (harness/cluster.ts) do.
 */

import { randomBytes } from "node:crypto";
import {
  closeSync,
  type Dirent,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from "node:fs";
import { open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Pool, request } from "undici";
import { sleep, waitFor } from "../harness/processes.js";
import { fetchJson } from "./bench-cluster.js";

// ---------------------------------------------------------------- writing keys

/** Key `i` (from 1): "k" and 15 digits, 16 bytes. */
export function keyName(i: number): string {
  return `k${String(i).padStart(15, "0")}`;
}

/** How long one key may keep failing (503 during an election, a timeout) before giving up. */
const WRITE_ATTEMPTS_MAX = 50;
const WRITE_RETRY_DELAY_MS = 100;

export interface WriteProgress {
  readonly written: number;
  readonly total: number;
  readonly seconds: number;
}

export interface WriteResult {
  readonly keys: number;
  readonly seconds: number;
  readonly keysPerSecond: number;
  /** Attempts that were answered other than 200 (or not at all) and retried. */
  readonly retries: number;
}

/**
 * Writes keys through one node's HTTP API (the master's, so nothing is forwarded), up to
 * `clients` requests at once.
 */
export class KeyWriter {
  private readonly pool: Pool;

  constructor(
    readonly target: string,
    private readonly clients: number,
  ) {
    this.pool = new Pool(target, {
      connections: clients,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
  }

  /** PUT `key` = `value`, retried until answered 200; throws naming the key otherwise. */
  async put(key: string, value: Uint8Array): Promise<{ revision: number; retries: number }> {
    let last = "";
    for (let attempt = 1; attempt <= WRITE_ATTEMPTS_MAX; attempt++) {
      try {
        const response = await this.pool.request({
          method: "PUT",
          path: `/v1/kv/${encodeURIComponent(key)}`,
          headers: { "content-type": "application/octet-stream" },
          body: value,
        });
        const text = await response.body.text();
        if (response.statusCode === 200) {
          return {
            revision: (JSON.parse(text) as { revision: number }).revision,
            retries: attempt - 1,
          };
        }
        last = `${response.statusCode} ${text.slice(0, 200)}`;
      } catch (error) {
        last = String(error);
      }
      await sleep(WRITE_RETRY_DELAY_MS);
    }
    throw new Error(
      `PUT ${key} to ${this.target} failed ${WRITE_ATTEMPTS_MAX} times; last answer: ${last}`,
    );
  }

  /**
   * Writes keys `from`..`to` (inclusive, keyName(i)) with `value`; calls `onProgress`
   * about every `progressMs`. With `keySpace`, write i goes to keyName((i - 1) % keySpace
   * + 1): a long history over a fixed set of keys.
   */
  async writeRange(
    from: number,
    to: number,
    value: Uint8Array,
    onProgress: (p: WriteProgress) => void = () => {},
    progressMs = 5000,
    keySpace = Number.POSITIVE_INFINITY,
  ): Promise<WriteResult> {
    const total = Math.max(0, to - from + 1);
    const startedAt = performance.now();
    let next = from;
    let written = 0;
    let retries = 0;
    const progress = setInterval(() => {
      onProgress({ written, total, seconds: (performance.now() - startedAt) / 1000 });
    }, progressMs);
    try {
      const worker = async (): Promise<void> => {
        for (let i = next++; i <= to; i = next++) {
          const key = keyName(Number.isFinite(keySpace) ? ((i - 1) % keySpace) + 1 : i);
          retries += (await this.put(key, value)).retries;
          written++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.clients, total) }, worker));
    } finally {
      clearInterval(progress);
    }
    const seconds = (performance.now() - startedAt) / 1000;
    return { keys: total, seconds, keysPerSecond: seconds > 0 ? total / seconds : 0, retries };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** A value of `bytes` bytes (letters and digits: readable in a dump, nothing to compress away). */
export function makeValue(bytes: number): Buffer {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const value = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) value[i] = alphabet.charCodeAt(i % alphabet.length);
  return value;
}

// ---------------------------------------------------------------- memory

export interface MemorySample {
  readonly node: number;
  readonly pid: number;
  /** VmRSS and VmHWM (the peak) from /proc/<pid>/status, bytes. */
  readonly rssBytes: number;
  readonly peakRssBytes: number;
  /** From the node's /metrics: nodejs_heap_size_used_bytes and _total_bytes, bytes. */
  readonly heapUsedBytes: number | null;
  readonly heapTotalBytes: number | null;
  /** nodejs_external_memory_bytes: Buffers and typed arrays outside the V8 heap. */
  readonly externalBytes: number | null;
}

/** One field of /proc/<pid>/status in bytes (the file says kB). */
function procStatusBytes(status: string, field: string, pid: number): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (match === null) throw new Error(`/proc/${pid}/status has no ${field} line`);
  return Number(match[1]) * 1024;
}

/** The value of an unlabelled Prometheus metric in `text`, or null. */
export function metricValue(text: string, name: string): number | null {
  const match = new RegExp(`^${name}(?:\\{\\})? ([0-9.e+-]+)$`, "m").exec(text);
  return match === null ? null : Number(match[1]);
}

/** Samples the memory of the node process `pid` serving at `url`. */
export async function sampleMemory(node: number, pid: number, url: string): Promise<MemorySample> {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch (error) {
    throw new Error(`node ${node}: cannot read /proc/${pid}/status: ${(error as Error).message}`);
  }
  // A node too busy to answer /metrics still has an RSS: the heap figures are then null.
  const metrics = await fetchText(`${url}/metrics`).catch(() => "");
  return {
    node,
    pid,
    rssBytes: procStatusBytes(status, "VmRSS", pid),
    peakRssBytes: procStatusBytes(status, "VmHWM", pid),
    heapUsedBytes: metricValue(metrics, "nodejs_heap_size_used_bytes"),
    heapTotalBytes: metricValue(metrics, "nodejs_heap_size_total_bytes"),
    externalBytes: metricValue(metrics, "nodejs_external_memory_bytes"),
  };
}

async function fetchText(url: string): Promise<string> {
  const response = await request(url, { signal: AbortSignal.timeout(5000) });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`${url} answered ${response.statusCode}`);
  return text;
}

// ---------------------------------------------------------------- node logs

/** One JSON line of a node's log (pino): `time` in ms since the epoch, `event`, the rest. */
export interface NodeLogLine {
  readonly time: number;
  readonly event?: string;
  readonly msg?: string;
  readonly [field: string]: unknown;
}

/**
 * A node's log file read from `offset` on (the size it had before a restart), keeping
 * only complete JSON lines. Cheap enough to poll: it reads only what was appended.
 */
export class NodeLog {
  private position: number;
  private partial = "";
  readonly lines: NodeLogLine[] = [];

  constructor(
    readonly file: string,
    offset = NodeLog.size(file),
  ) {
    this.position = offset;
  }

  static size(file: string): number {
    try {
      return statSync(file).size;
    } catch {
      return 0;
    }
  }

  /** Reads what was appended since the last call; returns every line so far. */
  refresh(): readonly NodeLogLine[] {
    const size = NodeLog.size(this.file);
    if (size <= this.position) return this.lines;
    const buffer = Buffer.alloc(size - this.position);
    const fd = openSync(this.file, "r");
    try {
      readSync(fd, buffer, 0, buffer.length, this.position);
    } finally {
      closeSync(fd);
    }
    this.position = size;
    const text = this.partial + buffer.toString("utf8");
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    for (const part of parts) {
      if (!part.startsWith("{")) continue;
      try {
        const line = JSON.parse(part) as NodeLogLine;
        if (typeof line.time === "number") this.lines.push(line);
      } catch {
        // Not a log line (a stack trace printed by node itself).
      }
    }
    return this.lines;
  }

  /** The first line at or after `sinceMs` (epoch) that `match` accepts, if any yet. */
  find(match: (line: NodeLogLine) => boolean, sinceMs = 0): NodeLogLine | undefined {
    return this.refresh().find((l) => l.time >= sinceMs && match(l));
  }

  /** Waits (polling every 50 ms) for a line that `match` accepts; throws after `timeoutMs`. */
  waitFor(
    what: string,
    match: (line: NodeLogLine) => boolean,
    timeoutMs: number,
    sinceMs = 0,
  ): Promise<NodeLogLine> {
    return waitFor(`${what} in ${this.file}`, async () => this.find(match, sinceMs), timeoutMs, 50);
  }
}

// ---------------------------------------------------------------- disk

/** Total size of the files under `dir` (0 when it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += dirBytes(path);
    else if (entry.isFile()) total += statSync(path).size;
  }
  return total;
}

/** Size of the largest file directly in `dir` (0 when there is none). */
export function largestFileBytes(dir: string): number {
  let largest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile()) largest = Math.max(largest, statSync(join(dir, entry.name)).size);
  }
  return largest;
}

export interface DiskWriteRate {
  readonly bytes: number;
  /** Open to the fsync's return, s. */
  readonly seconds: number;
  /** The fsync at the end alone, s (what the page cache had not written yet). */
  readonly fsyncSeconds: number;
  /** bytes / seconds / 1e6. */
  readonly mbPerSecond: number;
}

/**
 * The disk's sequential write rate: `bytes` of random data written to a new file in `dir`
 * in 1 MiB blocks, then one fsync; the file is removed afterwards.
 */
export async function diskWriteRate(dir: string, bytes: number): Promise<DiskWriteRate> {
  const blockBytes = 1024 * 1024;
  const block = randomBytes(blockBytes);
  const file = join(dir, "disk-write-rate.tmp");
  const startedAt = performance.now();
  const handle = await open(file, "w");
  let fsyncAt = startedAt;
  try {
    for (let written = 0; written < bytes; written += blockBytes) {
      const length = Math.min(blockBytes, bytes - written);
      await handle.write(block, 0, length);
    }
    fsyncAt = performance.now();
    await handle.sync();
  } catch (error) {
    throw new Error(`writing ${bytes} bytes to ${file} failed: ${(error as Error).message}`);
  } finally {
    await handle.close();
  }
  const endedAt = performance.now();
  await unlink(file);
  const seconds = (endedAt - startedAt) / 1000;
  return {
    bytes,
    seconds,
    fsyncSeconds: (endedAt - fsyncAt) / 1000,
    mbPerSecond: bytes / 1e6 / seconds,
  };
}

/** A node's /v1/status through a longer timeout than the cluster's (a busy node answers late). */
export async function statusOf(url: string, timeoutMs = 2000): Promise<unknown> {
  const answer = await fetchJson(`${url}/v1/status`, { timeoutMs });
  if (answer.status !== 200) throw new Error(`${url}/v1/status answered ${answer.status}`);
  return answer.json;
}
