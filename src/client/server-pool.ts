/**
 * The client's view of the cluster's nodes: their base URLs, which one is the master as far
 * as the client knows (and in which term it learned that), which node to try next, and the
 * keep-alive HTTP connections to all of them. It sends one request at a time as asked and
 * reports what happened; it never retries (src/client/retry.ts decides that) and never
 * interprets a status beyond learning who the master is.
 *
 * What it learns is a hint, never a truth: any node forwards to the master, so a wrong
 * guess costs a hop or one failed attempt, and a failure at the presumed master forgets it.
 */

import type { IncomingHttpHeaders } from "node:http";
import { Agent } from "undici";
import { InvalidInputError } from "../shared/errors.js";
import type { NodeStatus } from "./node-status.js";

/**
 * Turns "127.0.0.1:8101", "http://127.0.0.1:8101/" or "https://host" into a base URL
 * without a trailing slash. Throws InvalidInputError (field "endpoints") for anything else.
 */
export function normalizeEndpoint(input: string): string {
  const text = input.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new InvalidInputError("endpoints", `${JSON.stringify(input)} is not host:port or a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidInputError("endpoints", `${JSON.stringify(input)} is not an http(s) URL`);
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.hash !== "") {
    throw new InvalidInputError("endpoints", `${JSON.stringify(input)} must not have a path`);
  }
  return url.origin;
}

export interface PoolRequest {
  readonly method: "GET" | "PUT" | "DELETE" | "POST";
  /** Path and query, starting with "/". */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Uint8Array;
  /** The whole exchange, connection to last body byte, must fit in this many ms. */
  readonly timeoutMs: number;
  /** Gives up early when this aborts; the answer is then `lost`, not timed out. */
  readonly signal?: AbortSignal;
}

export type PoolResponse =
  | {
      readonly ok: true;
      readonly endpoint: string;
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      readonly body: Uint8Array;
    }
  | {
      readonly ok: false;
      readonly endpoint: string;
      /** `refused`: the request was never delivered; `lost`: it may have been. */
      readonly kind: "refused" | "lost";
      /** Whether the attempt ran out of time (rather than the connection failing). */
      readonly timedOut: boolean;
      readonly message: string;
    };

export interface ServerPoolOptions {
  /** Idle keep-alive connections are closed after this many ms. @default 30000 */
  readonly keepAliveTimeoutMs?: number;
  /** Least time between two master look-ups while the master is unknown. @default 250 */
  readonly discoveryIntervalMs?: number;
  /** CA certificate(s), PEM, for HTTPS endpoints. @default the system's trusted CAs */
  readonly ca?: string | Uint8Array;
  /** Sent as `Authorization: Bearer <token>` with every request. @default none */
  readonly token?: string;
}

/** Error codes that mean no connection was made, so the request cannot have arrived. */
const NOT_DELIVERED_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  // The node's certificate was refused before any request byte was sent.
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

export class ServerPool {
  /** The configured endpoints, normalized, in the order given. */
  readonly endpoints: readonly string[];
  /**
   * Every configured endpoint is https: a URL a node advertises (a member's, a hint's) is
   * used only if it is https too, or the token and the values would cross the network in
   * clear to whatever address a node (or whoever answers as one) names.
   */
  private readonly httpsOnly: boolean;
  private readonly agent: Agent;
  private readonly discoveryIntervalMs: number;
  /** The master as last learned, with the term it was learned in; null when unknown. */
  private master: { readonly endpoint: string; readonly term: number } | null = null;
  /** Called whenever a status names a master (see onMasterLearned). */
  private readonly masterListeners = new Set<() => void>();
  /**
   * The newest term any node's status has shown. It outlives `master` (which a failed
   * attempt forgets), so that a master cut off in an older term is never believed again.
   */
  private highestTerm = 0;
  /** The HTTP base URL of every member some node has told us about. */
  private readonly memberUrls = new Map<number, string>();
  /** Index in `endpoints` of the node to try when the master is unknown. */
  private cursor = 0;
  private lastDiscoveryAt = Number.NEGATIVE_INFINITY;
  /** The Authorization header for every request, or null. */
  private readonly authorization: string | null;

  constructor(endpoints: readonly string[], options: ServerPoolOptions = {}) {
    const normalized = [...new Set(endpoints.map(normalizeEndpoint))];
    if (normalized.length === 0) {
      throw new InvalidInputError("endpoints", "give at least one node's HTTP address");
    }
    this.endpoints = normalized;
    this.httpsOnly = normalized.every((e) => e.startsWith("https://"));
    this.discoveryIntervalMs = options.discoveryIntervalMs ?? 250;
    const keepAliveTimeout = options.keepAliveTimeoutMs ?? 30_000;
    const ca = options.ca === undefined ? {} : { connect: { ca: Buffer.from(options.ca) } };
    this.agent = new Agent({ keepAliveTimeout, keepAliveMaxTimeout: keepAliveTimeout, ...ca });
    this.authorization = options.token === undefined ? null : `Bearer ${options.token}`;
  }

  /**
   * Calls `listener` each time a node's status names a master, in its term or a newer one
   * (masterEndpoint and masterTerm then say which); returns what stops it. A watch open on
   * a master that hangs learns so from the client's other requests.
   */
  onMasterLearned(listener: () => void): () => void {
    this.masterListeners.add(listener);
    return () => this.masterListeners.delete(listener);
  }

  private notifyMasterLearned(): void {
    for (const listener of [...this.masterListeners]) listener();
  }

  /** The master's base URL as last learned, or null. */
  masterEndpoint(): string | null {
    return this.master?.endpoint ?? null;
  }

  /** The term in which the master was learned (0 when unknown or learned from a hint). */
  masterTerm(): number {
    return this.master?.term ?? 0;
  }

  /** Where the next attempt should go: the known master, else the current rotation slot. */
  next(): string {
    return this.master?.endpoint ?? this.endpoints[this.cursor % this.endpoints.length]!;
  }

  /**
   * Whether an attempt should first ask its node who the master is: only while the master
   * is unknown, and at most once per `discoveryIntervalMs`, so a cluster whose nodes do not
   * advertise their URLs does not cost a status request per operation. Marks the look-up
   * as done when it answers true.
   */
  claimDiscovery(): boolean {
    const now = performance.now();
    if (this.master !== null || now - this.lastDiscoveryAt < this.discoveryIntervalMs) {
      return false;
    }
    this.lastDiscoveryAt = now;
    return true;
  }

  /** An attempt at `endpoint` failed: stop presuming it is the master and move on. */
  noteFailure(endpoint: string): void {
    if (this.master?.endpoint === endpoint) this.master = null;
    if (this.endpoints[this.cursor % this.endpoints.length] === endpoint) {
      this.cursor = (this.cursor + 1) % this.endpoints.length;
    }
  }

  /** `endpoint` served a request: keep using it while the master is unknown. */
  noteAnswered(endpoint: string): void {
    const index = this.endpoints.indexOf(endpoint);
    if (index >= 0) this.cursor = index;
  }

  /**
   * Learns from one node's status: the members' URLs, and the master the node knows of.
   * Information from an older term than what is known is ignored, since a stale master
   * (one cut off from the majority) may still believe it leads.
   */
  learnFromStatus(endpoint: string, status: NodeStatus): void {
    for (const member of status.members) {
      if (member.httpUrl === null) continue;
      try {
        const url = normalizeEndpoint(member.httpUrl);
        if (this.usable(url)) this.memberUrls.set(member.id, url);
      } catch {
        // A member advertising an unusable URL is simply not used as a shortcut.
      }
    }
    if (status.term < this.highestTerm) return;
    this.highestTerm = status.term;
    if (status.role === "master") {
      this.master = { endpoint, term: status.term };
      this.notifyMasterLearned();
      return;
    }
    const masterUrl = status.master === null ? undefined : this.memberUrls.get(status.master);
    if (masterUrl !== undefined && masterUrl !== endpoint) {
      this.master = { endpoint: masterUrl, term: status.term };
      this.notifyMasterLearned();
    } else if (this.master?.endpoint === endpoint || (this.master?.term ?? 0) < status.term) {
      // The node we took for the master says it is not, or a newer term began whose
      // master this node cannot name: the old guess is worthless.
      this.master = null;
    }
  }

  /**
   * Learns from an error answer that names the master (`masterHint` id or `masterUrl`), as
   * a node that cannot forward may do. The hint's term is unknown, so it is held as term 0:
   * what a status shows in any term replaces it, and an attempt at the hinted node is still
   * abandoned when a status names another master (see BatonClient's master watch). Giving
   * the hint the current guess's term let a stale node's hint pass for as new as the guess.
   */
  learnFromHint(hint: { readonly masterId?: number; readonly masterUrl?: string }): void {
    let endpoint = hint.masterId === undefined ? undefined : this.memberUrls.get(hint.masterId);
    if (hint.masterUrl !== undefined) {
      try {
        const url = normalizeEndpoint(hint.masterUrl);
        if (this.usable(url)) endpoint = url;
      } catch {
        // An unusable hint is ignored; the rotation finds the master anyway.
      }
    }
    if (endpoint !== undefined) this.master = { endpoint, term: 0 };
  }

  /** Whether a URL a node advertised may be sent to (see httpsOnly). */
  private usable(url: string): boolean {
    return !this.httpsOnly || url.startsWith("https://");
  }

  /** Sends one request to `endpoint` and reads the whole answer, within `timeoutMs`. */
  async request(endpoint: string, request: PoolRequest): Promise<PoolResponse> {
    if (this.closing !== null) {
      // Never handed to undici, which would refuse it with an error that does not say
      // whether it was sent: a write in it cannot have been applied.
      return {
        ok: false,
        endpoint,
        kind: "refused",
        timedOut: false,
        message: "the client is closed",
      };
    }
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, request.timeoutMs);
    const onAbort = (): void => controller.abort();
    request.signal?.addEventListener("abort", onAbort, { once: true });
    if (request.signal?.aborted === true) controller.abort();
    try {
      const response = await this.agent.request({
        origin: endpoint,
        path: request.path,
        method: request.method,
        headers:
          this.authorization === null
            ? request.headers
            : { ...request.headers, authorization: this.authorization },
        body: request.body ?? null,
        signal: controller.signal,
      });
      const body = new Uint8Array(await response.body.arrayBuffer());
      return { ok: true, endpoint, status: response.statusCode, headers: response.headers, body };
    } catch (error) {
      if (timedOut) {
        const message = `no answer within ${Math.round(request.timeoutMs)} ms`;
        return { ok: false, endpoint, kind: "lost", timedOut: true, message };
      }
      if (controller.signal.aborted) {
        const message = "abandoned: another node was elected master meanwhile";
        return { ok: false, endpoint, kind: "lost", timedOut: false, message };
      }
      const code = errorCode(error);
      const kind = code !== undefined && NOT_DELIVERED_CODES.has(code) ? "refused" : "lost";
      return { ok: false, endpoint, kind, timedOut: false, message: describeError(error) };
    } finally {
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Opens a long-lived GET (a watch's event stream) on `endpoint`: resolves once the status
   * and headers arrived, within `headersTimeoutMs`, with the body as a stream of chunks. The
   * stream fails when no byte arrives for `idleTimeoutMs` (the server sends a keep-alive
   * comment every 15 s) and ends when `signal` aborts.
   */
  async openStream(
    endpoint: string,
    path: string,
    options: { headersTimeoutMs: number; idleTimeoutMs: number; signal: AbortSignal },
  ): Promise<
    | {
        readonly ok: true;
        readonly status: number;
        /** The answer's headers (a refusal's Retry-After); absent from test doubles. */
        readonly headers?: Readonly<Record<string, string | string[] | undefined>>;
        readonly body: AsyncIterable<Uint8Array>;
        readonly close: () => void;
      }
    | { readonly ok: false; readonly message: string }
  > {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.authorization !== null) headers.authorization = this.authorization;
    try {
      const response = await this.agent.request({
        origin: endpoint,
        path,
        method: "GET",
        headers,
        signal: options.signal,
        headersTimeout: options.headersTimeoutMs,
        bodyTimeout: options.idleTimeoutMs,
      });
      return {
        ok: true,
        status: response.statusCode,
        headers: response.headers,
        body: response.body,
        close: () => response.body.destroy(),
      };
    } catch (error) {
      return { ok: false, message: describeError(error) };
    }
  }

  /**
   * Waits for requests in flight (each bounded by its timeout), then closes connections.
   * Every call waits for the same closing: a second one used to return at once.
   */
  close(): Promise<void> {
    this.closing ??= this.agent.close();
    return this.closing;
  }

  private closing: Promise<void> | null = null;
}

function errorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 4; depth++) {
    if (typeof e !== "object" || e === null) return undefined;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code !== "") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** One line for an undici or socket error: its code and message, or the cause's. */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = errorCode(error);
  const cause = error.cause instanceof Error ? error.cause.message : "";
  const message = error.message !== "" ? error.message : cause;
  if (code === undefined || message.includes(code)) return message;
  return `${code}: ${message}`;
}
