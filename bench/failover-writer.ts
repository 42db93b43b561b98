/**
 * How the fail-over benchmark's writes travel (the schedule, the records and the final
 * check are the harness's steady-rate writer, harness/steady-writer.ts). Two ways:
 *
 * - neutral, the same for Baton and etcd: each write goes first to the node that answered
 *   the last success; when an attempt fails (connection refused or reset, no answer within
 *   `attemptTimeoutMs`, 5xx) it tries the next node, until `deadlineMs`. A Baton retry
 *   carries the same Idempotency-Key, so it is answered from the first application; etcd's
 *   gateway has no such header, so the write is a create-only transaction and a retry that
 *   finds its own earlier attempt applied says so ("existed" with our value) instead of
 *   applying it twice.
 * - client (Baton only): through Baton's client library, which finds the master and
 *   retries across fail-overs itself; it does not say which node answered.
 *
 * It signals no process.
 */

import { Pool } from "undici";
import {
  readThroughClient,
  type WriteFn,
  type WriteOutcome,
  type WriteRecord,
  writeThroughClient,
} from "../harness/steady-writer.js";
import { createClient } from "../src/client/index.js";
import type { BenchCluster, SystemName } from "./bench-cluster.js";
import { createOutcome, KvRequests, readValue } from "./kv-protocol.js";

export type WriterKind = "neutral" | "client";

export interface WritePathOptions {
  readonly attemptTimeoutMs: number;
  /** Longest a write is retried, ms. */
  readonly deadlineMs: number;
}

/** The way writes go, and how their keys are read back at the end. */
export interface WritePath {
  readonly write: WriteFn;
  /** Reads a key linearizably (through the master `masterUrl` where that matters). */
  reader(masterUrl: string): { read(key: string): Promise<string | null>; close(): Promise<void> };
  close(): Promise<void>;
}

export function openWritePath(
  kind: WriterKind,
  cluster: BenchCluster,
  options: WritePathOptions,
): WritePath {
  if (kind === "neutral") return new NeutralWrites(cluster, options);
  if (cluster.system !== "baton") throw new Error("only Baton has a client library");
  const client = createClient({
    endpoints: cluster.nodes.map((n) => n.url),
    deadlineMs: options.deadlineMs,
    attemptTimeoutMs: options.attemptTimeoutMs,
  });
  const read = readThroughClient(client);
  return {
    write: writeThroughClient(client),
    reader: () => ({ read, close: async () => {} }),
    close: () => client.close(),
  };
}

class NeutralWrites implements WritePath {
  private readonly pools: Pool[];
  private readonly requests: KvRequests;
  private preferred = 0;

  constructor(
    private readonly cluster: BenchCluster,
    private readonly options: WritePathOptions,
  ) {
    // A connection to a silent host (no reset, no answer) gives up as soon as an attempt
    // would: undici's own connect timeout, 10 s, would hold the pool's slots that long.
    this.pools = cluster.nodes.map(
      (n) =>
        new Pool(n.url, {
          connections: 64,
          keepAliveTimeout: 30_000,
          connect: { timeout: options.attemptTimeoutMs },
        }),
    );
    this.requests = new KvRequests(cluster.system, Buffer.alloc(0));
  }

  private get system(): SystemName {
    return this.cluster.system;
  }

  readonly write: WriteFn = async (record: WriteRecord): Promise<WriteOutcome> => {
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
    return { kind: "error", code: "deadline", message: lastError };
  };

  reader(masterUrl: string): {
    read(key: string): Promise<string | null>;
    close(): Promise<void>;
  } {
    const pool = new Pool(masterUrl, { connections: 16 });
    const requests = new KvRequests(this.system, Buffer.alloc(0));
    return {
      read: async (key) => {
        const request = requests.get(key);
        const response = await pool.request({
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body,
        });
        return readValue(this.system, response.statusCode, await response.body.text());
      },
      close: () => pool.close(),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.destroy()));
  }
}
