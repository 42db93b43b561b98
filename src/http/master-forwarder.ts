/**
 * Forwarding a request that reached a backup to the master, so that a client may talk to
 * any node. The forwarder keeps one keep-alive connection pool per master URL, marks every
 * forwarded request with `X-Baton-Forwarded-By: <this node's id>`, and relays the master's
 * status, the headers that matter and the body.
 *
 * It must never forward a request twice: a request that already carries the mark is
 * answered 503 instead, because during an election two nodes can each believe the other is
 * the master and would pass a request back and forth until its deadline. It must also never
 * wait without bound: each forward has its own timeout, cut short by the request deadline.
 */

import type { FastifyReply, FastifyRequest } from "fastify";
import { type Dispatcher, Pool } from "undici";
import {
  IndeterminateError,
  NoMasterError,
  NotMasterError,
  TimeoutError,
} from "../shared/errors.js";
import type { KvNodeApi } from "./node-api.js";
import { FORWARDED_BY_HEADER } from "./request-input.js";

/** How a forward ended, for metrics. */
export type ForwardOutcome = "relayed" | "loop" | "no_master" | "unreachable" | "timeout";

export interface MasterForwarderOptions {
  readonly api: KvNodeApi;
  /** Longest a forward may take, in milliseconds, before it is answered 503 (ERR_TIMEOUT). */
  readonly forwardTimeoutMs: number;
  /** Most connections kept open to one master. */
  readonly connectionsMax: number;
  /** Called once per forward attempt with how it ended. */
  readonly onOutcome?: ((outcome: ForwardOutcome) => void) | undefined;
}

interface ForwardTarget {
  readonly pool: Pool;
  /** The path of the master's base URL, without a trailing slash ("" for most). */
  readonly prefix: string;
}

/** The request headers a forward carries; the rest (cookies, hop-by-hop) stay behind. */
const FORWARDED_HEADERS = [
  "if-match",
  "if-none-match",
  "idempotency-key",
  "accept",
  "content-type",
] as const;

/** The response headers relayed back to the client. */
const RELAYED_HEADERS = ["etag", "retry-after", "content-type", "allow"] as const;

/** Errors that mean the request never reached the master, so a write did not happen. */
const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_DESTROYED",
  "UND_ERR_CLOSED",
]);

/** Pools kept for past masters; a cluster has few nodes, so more means churn. */
const TARGET_COUNT_MAX = 8;

export class MasterForwarder {
  private readonly targets = new Map<string, ForwardTarget>();
  private readonly nodeId: string;

  constructor(private readonly options: MasterForwarderOptions) {
    this.nodeId = String(options.api.id);
  }

  /**
   * Answers a request whose call to the node failed with `error`. A `NotMasterError` is
   * forwarded to the master when its URL is known and the request was not forwarded
   * already; every other error is rethrown for the error handler. `deadlineAt` is the
   * request deadline on the `performance.now()` clock.
   * Throws NoMasterError (loop, or master unreachable), TimeoutError, IndeterminateError
   * (a write whose master was lost mid-request), or `error` itself.
   */
  async forwardOrThrow(
    error: unknown,
    request: FastifyRequest,
    reply: FastifyReply,
    deadlineAt: number,
  ): Promise<FastifyReply> {
    if (!(error instanceof NotMasterError)) throw error;
    const forwardedBy = request.headers[FORWARDED_BY_HEADER];
    if (forwardedBy !== undefined) {
      this.options.onOutcome?.("loop");
      throw new NoMasterError(
        500,
        `node ${String(forwardedBy)} forwarded this request here, but this node is not the ` +
          "master either (an election may be under way)",
      );
    }
    const masterUrl = this.options.api.masterHttpUrl();
    if (masterUrl === null) {
      this.options.onOutcome?.("no_master");
      throw error;
    }
    const remainingMs = Math.max(1, Math.floor(deadlineAt - performance.now()));
    const timeoutMs = Math.min(this.options.forwardTimeoutMs, remainingMs);
    return this.forward(masterUrl, request, reply, timeoutMs);
  }

  /** Closes every pool, waiting for requests in flight. */
  async close(): Promise<void> {
    const pools = [...this.targets.values()].map((target) => target.pool.close());
    this.targets.clear();
    await Promise.allSettled(pools);
  }

  private async forward(
    masterUrl: string,
    request: FastifyRequest,
    reply: FastifyReply,
    timeoutMs: number,
  ): Promise<FastifyReply> {
    const target = this.target(masterUrl);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    try {
      const response = await target.pool.request({
        path: target.prefix + request.url,
        // A HEAD is forwarded as GET so that fastify's own HEAD handling keeps the length.
        method: (request.method === "HEAD" ? "GET" : request.method) as Dispatcher.HttpMethod,
        headers: this.forwardedHeaders(request),
        body: request.method === "PUT" ? ((request.body as Buffer | undefined) ?? null) : null,
        signal: controller.signal,
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      this.options.onOutcome?.("relayed");
      reply.code(response.statusCode);
      for (const name of RELAYED_HEADERS) {
        const value = response.headers[name];
        if (value !== undefined) reply.header(name, value);
      }
      return reply.send(body);
    } catch (error) {
      throw this.failure(error, masterUrl, request.method, timedOut, timeoutMs);
    } finally {
      clearTimeout(timer);
    }
  }

  private forwardedHeaders(request: FastifyRequest): Record<string, string> {
    const headers: Record<string, string> = { [FORWARDED_BY_HEADER]: this.nodeId };
    for (const name of FORWARDED_HEADERS) {
      const value = request.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    return headers;
  }

  private failure(
    error: unknown,
    masterUrl: string,
    method: string,
    timedOut: boolean,
    timeoutMs: number,
  ): Error {
    const code = (error as { code?: unknown }).code;
    if (timedOut || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
      this.options.onOutcome?.("timeout");
      return new TimeoutError(
        `the master at ${masterUrl} did not answer the forwarded request within ${timeoutMs} ms`,
      );
    }
    this.options.onOutcome?.("unreachable");
    const reason = typeof code === "string" ? code : (error as Error).message;
    const isWrite = method === "PUT" || method === "DELETE";
    if (isWrite && !CONNECT_FAILURES.has(reason)) {
      return new IndeterminateError(
        `the connection to the master at ${masterUrl} failed during the write (${reason})`,
      );
    }
    return new NoMasterError(500, `the master at ${masterUrl} could not be reached (${reason})`);
  }

  private target(masterUrl: string): ForwardTarget {
    const known = this.targets.get(masterUrl);
    if (known !== undefined) return known;
    if (this.targets.size >= TARGET_COUNT_MAX) {
      const [oldestUrl, oldest] = this.targets.entries().next().value as [string, ForwardTarget];
      this.targets.delete(oldestUrl);
      void oldest.pool.close().catch(() => {});
    }
    const url = new URL(masterUrl);
    const target: ForwardTarget = {
      pool: new Pool(url.origin, {
        connections: this.options.connectionsMax,
        // Shorter than the master's own keep-alive (fastify: 72 s), so that this side closes
        // an idle connection first and a write is never sent on a socket being closed.
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 30_000,
        headersTimeout: this.options.forwardTimeoutMs,
        bodyTimeout: this.options.forwardTimeoutMs,
      }),
      prefix: url.pathname.replace(/\/+$/, ""),
    };
    this.targets.set(masterUrl, target);
    return target;
  }
}
