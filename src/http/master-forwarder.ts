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
 *
 * During a fail-over it holds the request instead of refusing it: when no master is known
 * (an election is under way), or the master it knew refused the connection (its process
 * died), it waits for the new master, briefly and never past the request deadline, then
 * forwards there, or runs the request itself when this node is the one elected. A client
 * then sees a slower answer rather than a 503 and a back-off of a whole Retry-After.
 */

import type { FastifyReply, FastifyRequest } from "fastify";
import { type Dispatcher, Pool } from "undici";
import {
  BusyError,
  IndeterminateError,
  NoMasterError,
  NotMasterError,
  TimeoutError,
} from "../shared/errors.js";
import { sourceAddressFor } from "../transport/outbound-link.js";
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
  /**
   * Longest a request waits for a new master during a fail-over, ms. Kept below the
   * client's attempt timeout (1 s), so that a held write ends in an answer rather than in
   * doubt. @default 500
   */
  readonly masterWaitMs?: number | undefined;
  /** This node's own host: forwards leave from it when it is a specific IP address. */
  readonly sourceHost?: string | undefined;
}

/** How often a held request looks for the new master, ms. */
const MASTER_POLL_MS = 5;
/** How often a forward in flight checks that this node still follows its master, ms. */
const MASTER_CHANGE_CHECK_MS = 20;
/** Most forwards of one request: each one after the first follows a refused connection. */
const FORWARD_ATTEMPT_COUNT_MAX = 3;

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
  /** Requests that were run on this node a second time after it was elected. */
  private readonly ranAgain = new WeakSet<FastifyRequest>();
  /** Requests abandoned at a master that was replaced: they may have been applied there. */
  private readonly reachedReplacedMaster = new WeakSet<FastifyRequest>();
  private readonly nodeId: string;

  constructor(private readonly options: MasterForwarderOptions) {
    this.nodeId = String(options.api.id);
  }

  /**
   * Answers a request whose call to the node failed with `error`. A `NotMasterError` is
   * forwarded to the master when its URL is known and the request was not forwarded
   * already; every other error is rethrown for the error handler. `deadlineAt` is the
   * request deadline on the `performance.now()` clock.
   * `again` runs the request on this node once more, for when this node is elected while
   * the request waits.
   * Throws NoMasterError (loop, or master unreachable), TimeoutError, IndeterminateError
   * (a write whose master was lost mid-request), or `error` itself.
   */
  async forwardOrThrow(
    error: unknown,
    request: FastifyRequest,
    reply: FastifyReply,
    deadlineAt: number,
    again?: () => Promise<FastifyReply>,
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
    try {
      return await this.forwardWhileMasterKnown(error, request, reply, deadlineAt, again);
    } catch (failure) {
      // A write abandoned at a replaced master may still be applied there: whatever
      // happens to it afterwards, no answer may say it was not.
      if (!this.reachedReplacedMaster.has(request) || !isWrite(request.method)) throw failure;
      const definite =
        failure instanceof NotMasterError ||
        failure instanceof NoMasterError ||
        failure instanceof BusyError;
      if (!definite) throw failure;
      throw new IndeterminateError(
        `the write reached a master that was replaced before it answered, then: ${failure.message}; it may or may not have been applied`,
      );
    }
  }

  private async forwardWhileMasterKnown(
    error: NotMasterError,
    request: FastifyRequest,
    reply: FastifyReply,
    deadlineAt: number,
    again?: () => Promise<FastifyReply>,
  ): Promise<FastifyReply> {
    const masterWaitMs = this.options.masterWaitMs ?? 500;
    let waitUntil = Math.min(deadlineAt, performance.now() + masterWaitMs);
    let refused: string | null = null;
    for (let attempt = 1; ; attempt++) {
      // A request runs locally again at most once, so that a node that keeps saying it
      // is not the master while it says it is cannot send a request round in circles.
      const selfAllowed = again !== undefined && !this.ranAgain.has(request);
      const master = await this.awaitMaster(refused, waitUntil, selfAllowed);
      if (master === "self") {
        this.ranAgain.add(request);
        return again!();
      }
      if (master === null) {
        this.options.onOutcome?.("no_master");
        if (refused !== null) {
          throw new NoMasterError(500, `the master at ${refused} could not be reached`);
        }
        throw error;
      }
      const remainingMs = Math.max(1, Math.floor(deadlineAt - performance.now()));
      const timeoutMs = Math.min(this.options.forwardTimeoutMs, remainingMs);
      try {
        return await this.forward(master, request, reply, timeoutMs);
      } catch (failure) {
        // Only a refused connection is retried, or a request left behind by a master
        // change that is safe to send again: the request never reached that master, or
        // it is a read, or a write whose idempotency key makes a second copy harmless.
        const retry =
          (failure instanceof MasterRefusedError || failure instanceof MasterChangedError) &&
          attempt < FORWARD_ATTEMPT_COUNT_MAX;
        if (!retry) throw failure;
        refused = master;
        // A master change starts an election here too: wait for its outcome afresh.
        if (failure instanceof MasterChangedError) {
          this.reachedReplacedMaster.add(request);
          waitUntil = Math.min(deadlineAt, performance.now() + masterWaitMs);
        }
      }
    }
  }

  /**
   * The master's URL once one other than `refused` is known, "self" when this node is the
   * master (and may run the request itself), or null when none appears by `waitUntil`.
   */
  private async awaitMaster(
    refused: string | null,
    waitUntil: number,
    selfAllowed: boolean,
  ): Promise<string | "self" | null> {
    for (;;) {
      const url = this.options.api.masterHttpUrl();
      if (url !== null && url !== refused) return url;
      if (selfAllowed && this.options.api.isMaster()) return "self";
      if (performance.now() + MASTER_POLL_MS > waitUntil) return null;
      await new Promise((resolve) => setTimeout(resolve, MASTER_POLL_MS));
    }
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
    let masterChanged = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    // A master cut off from this node never answers; once this node follows another
    // master (or an election), the forward is abandoned instead of waiting out its time.
    const watch = setInterval(() => {
      if (this.options.api.masterHttpUrl() === masterUrl) return;
      masterChanged = true;
      controller.abort();
    }, MASTER_CHANGE_CHECK_MS);
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
      if (
        response.statusCode >= 500 &&
        isWrite(request.method) &&
        this.reachedReplacedMaster.has(request)
      ) {
        // The new master's refusal says nothing of the copy the replaced one holds.
        throw new IndeterminateError(
          `the write reached a master that was replaced, and the next one answered ${response.statusCode}; it may or may not have been applied`,
        );
      }
      this.options.onOutcome?.("relayed");
      reply.code(response.statusCode);
      for (const name of RELAYED_HEADERS) {
        const value = response.headers[name];
        if (value !== undefined) reply.header(name, value);
      }
      return reply.send(body);
    } catch (error) {
      if (error instanceof IndeterminateError) throw error;
      if (masterChanged && !timedOut) throw this.abandoned(masterUrl, request);
      throw this.failure(error, masterUrl, request.method, timedOut, timeoutMs);
    } finally {
      clearTimeout(timer);
      clearInterval(watch);
    }
  }

  /**
   * The error for a forward abandoned because this node stopped following `masterUrl`:
   * sent again (MasterChangedError) when that cannot apply a write twice, else
   * indeterminate, for the client to retry with an idempotency key.
   */
  private abandoned(masterUrl: string, request: FastifyRequest): Error {
    this.options.onOutcome?.("unreachable");
    const key = request.headers["idempotency-key"];
    if (!isWrite(request.method) || (typeof key === "string" && key.length > 0)) {
      return new MasterChangedError(masterUrl);
    }
    return new IndeterminateError(
      `the master at ${masterUrl} was replaced while it held this write; it may or may not have been applied`,
    );
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
    if (isWrite(method) && !CONNECT_FAILURES.has(reason)) {
      return new IndeterminateError(
        `the connection to the master at ${masterUrl} failed during the write (${reason})`,
      );
    }
    return new MasterRefusedError(masterUrl, reason);
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
    const host = this.options.sourceHost;
    const localAddress =
      host === undefined ? null : sourceAddressFor(host, url.hostname.replace(/^\[|\]$/g, ""));
    const target: ForwardTarget = {
      pool: new Pool(url.origin, {
        connections: this.options.connectionsMax,
        ...(localAddress === null ? {} : { localAddress }),
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

/** The connection to the master failed before the request was sent: nothing was applied. */
function isWrite(method: string): boolean {
  return method === "PUT" || method === "DELETE";
}

/** The master changed while a forward waited for it, and the request may be sent again. */
class MasterChangedError extends NoMasterError {
  constructor(masterUrl: string) {
    super(500, `the master at ${masterUrl} was replaced while it held the request`);
  }
}

class MasterRefusedError extends NoMasterError {
  constructor(masterUrl: string, reason: string) {
    super(500, `the master at ${masterUrl} could not be reached (${reason})`);
  }
}
