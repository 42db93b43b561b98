/**
 * The client's store operations beyond single keys: ranges, prefix deletes, transactions,
 * leases and watches. Each write gets one Idempotency-Key before its first attempt and keeps
 * it on every retry, like `put`, so a retried transaction or lease grant is applied once.
 *
 * A watch is a stream, not a request: `watchChanges` keeps one open on the master (or any
 * node when the master is unknown), and when the stream breaks (the node died, a fail-over)
 * it opens another on the next node from the last revision it delivered, skipping the
 * changes of that revision it already delivered, so the caller sees every change once and
 * in revision order. Only a compacted revision or bad input ends it with an error.
 */

import { setTimeout as delay } from "node:timers/promises";
import {
  CompactedError,
  ForbiddenError,
  InvalidInputError,
  LeaseNotFoundError,
  UnauthenticatedError,
} from "../shared/errors.js";
import { UnexpectedResponseError, UnreachableError } from "./errors.js";
import { DEFAULT_RETRY_POLICY, parseRetryAfterMs } from "./retry.js";
import type { PoolRequest, PoolResponse, ServerPool } from "./server-pool.js";

/** What a store operation needs of the client that runs it. */
export interface ClientCore {
  /** Runs one request through the client's retry loop (see client.ts `send`). */
  send(operation: StoreOperation): Promise<StoreResponse>;
  nextIdempotencyKey(): string;
  readonly pool: ServerPool;
  /** Aborts when the client closes. */
  readonly closing: AbortSignal;
  /**
   * Longest wait a node's Retry-After (or `retryAfterMs`) can impose on a watch's reconnect:
   * the client's retry policy's. @default DEFAULT_RETRY_POLICY.retryAfterMsMax
   */
  readonly retryAfterMsMax?: number;
}

export interface StoreOperation {
  readonly name: string;
  readonly request: Omit<PoolRequest, "timeoutMs">;
  readonly idempotencyKey: string | null;
  readonly discover: boolean;
}

export type StoreResponse = Extract<PoolResponse, { ok: true }>;

/** For a write other than a put or delete (which take WriteOptions). */
export interface IdempotentOptions {
  /**
   * The key that makes retries of this write apply once: the one a give-up's error names
   * (`details.idempotencyKey`), to resend it, or one of your own. @default one per call
   */
  readonly idempotencyKey?: string;
}

/**
 * The Idempotency-Key of a write: the caller's (checked: printable ASCII, as the header
 * takes), or a new one from `next`.
 */
export function idempotencyKeyOf(
  options: IdempotentOptions | undefined,
  next: () => string,
): string {
  const given: unknown = options?.idempotencyKey;
  if (given === undefined) return next();
  if (typeof given !== "string" || !/^[\x21-\x7e]+$/.test(given)) {
    throw new InvalidInputError("idempotencyKey", "use printable ASCII characters");
  }
  return given;
}

export interface RangeOptions {
  /** Most keys in the page, 1 to 10,000. @default 1000 */
  readonly limit?: number;
  /** The `next` of the previous page, to read the following one. */
  readonly after?: string | null;
  /** List keys and revisions only, without values. @default false */
  readonly keysOnly?: boolean;
  /** Read the answering node's local copy instead of a linearizable read. @default false */
  readonly stale?: boolean;
}

export interface RangeItem {
  readonly key: string;
  /** The value as UTF-8 text; null when listed with `keysOnly`. */
  readonly value: string | null;
  readonly revision: number;
}

export interface RangePage {
  /** The store's revision the page was read at. */
  readonly revision: number;
  readonly items: readonly RangeItem[];
  /** Pass as `after` for the next page; null after the last one. */
  readonly next: string | null;
}

export type TxnCompare =
  | { readonly key: string; readonly revision: number }
  | { readonly key: string; readonly value: string }
  | { readonly key: string; readonly exists: boolean };

export type TxnOp =
  | { readonly put: { readonly key: string; readonly value: string; readonly lease?: number } }
  | { readonly delete: { readonly key: string } };

export interface TxnRequest {
  readonly compare?: readonly TxnCompare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface Lease {
  readonly id: number;
  readonly ttlSeconds: number;
}

export interface WatchChange {
  readonly type: "put" | "delete";
  readonly key: string;
  /** The new value as UTF-8 text; null for a delete. */
  readonly value: string | null;
  readonly revision: number;
}

export interface WatchOptions {
  /**
   * The first revision to deliver changes of (the `revision` of a range read plus 1 gives
   * every change after that read). @default the changes after the watch starts
   */
  readonly fromRevision?: number;
  /** Ends the watch (the loop then ends normally). */
  readonly signal?: AbortSignal;
  /**
   * Gives up with UnreachableError when no node has opened the watch for this long, from
   * the start or since its stream last broke. @default keep trying for as long as it runs
   */
  readonly openTimeoutMs?: number;
}

const encoder = new TextEncoder();
/**
 * Decodes whole answers only. A stream gets a decoder of its own: one in streaming mode
 * keeps the bytes of a character cut at a chunk's end for its next call, which would put
 * them in front of whatever it decoded next, another stream's chunk or an answer.
 */
const decoder = new TextDecoder();

/** `GET /v1/kv?prefix=…`: one page of keys in order. */
export async function range(
  core: ClientCore,
  prefix: string,
  given: RangeOptions = {},
): Promise<RangePage> {
  checkPrefix(prefix);
  const options = optionsObject(given);
  const query = new URLSearchParams({ prefix });
  if (options.limit !== undefined) query.set("limit", String(options.limit));
  if (options.after !== undefined && options.after !== null) query.set("after", options.after);
  if (options.keysOnly === true) query.set("keysOnly", "true");
  if (options.stale === true) query.set("stale", "true");
  const response = await core.send({
    name: `range ${JSON.stringify(prefix)}`,
    request: { method: "GET", path: `/v1/kv?${query}`, headers: { accept: "application/json" } },
    idempotencyKey: null,
    discover: options.stale !== true,
  });
  const json = answer(response, 200) as Partial<RangePage>;
  if (typeof json.revision !== "number" || !Array.isArray(json.items)) {
    throw new UnexpectedResponseError(response.endpoint, response.status, "not a range page");
  }
  const items = json.items.map((item) => ({
    key: item.key,
    value: item.value ?? null,
    revision: item.revision,
  }));
  return { revision: json.revision, items, next: json.next ?? null };
}

/** Every key under `prefix`, page after page (each page consistent at its own revision). */
export async function* rangeAll(
  core: ClientCore,
  prefix: string,
  options: Omit<RangeOptions, "after"> = {},
): AsyncGenerator<RangeItem> {
  let after: string | null = null;
  do {
    const page: RangePage = await range(core, prefix, { ...optionsObject(options), after });
    yield* page.items;
    after = page.next;
  } while (after !== null);
}

/** `DELETE /v1/kv?prefix=…`: every key under a non-empty prefix, at one revision. */
export async function deleteRange(
  core: ClientCore,
  prefix: string,
  options?: IdempotentOptions,
): Promise<{ revision: number; deleted: number }> {
  if (typeof prefix !== "string" || prefix === "") {
    throw new InvalidInputError("prefix", "must be a non-empty string");
  }
  checkPrefix(prefix);
  const json = await write(
    core,
    `delete prefix ${JSON.stringify(prefix)}`,
    "DELETE",
    `/v1/kv?${new URLSearchParams({ prefix })}`,
    undefined,
    options,
  );
  return { revision: json.revision as number, deleted: json.deleted as number };
}

/** `POST /v1/txn`: compares, then applies `success` or `failure`, at one revision. */
export async function txn(
  core: ClientCore,
  request: TxnRequest,
  options?: IdempotentOptions,
): Promise<{ succeeded: boolean; revision: number }> {
  const json = await write(core, "txn", "POST", "/v1/txn", request, options);
  return { succeeded: json.succeeded === true, revision: json.revision as number };
}

/** `POST /v1/leases`: a lease of `ttlSeconds` (whole seconds). */
export async function grantLease(
  core: ClientCore,
  ttlSeconds: number,
  options?: IdempotentOptions,
): Promise<Lease> {
  const json = await write(core, "grant lease", "POST", "/v1/leases", { ttlSeconds }, options);
  return { id: json.id as number, ttlSeconds: json.ttlSeconds as number };
}

/** `POST /v1/leases/{id}/keepalive`; throws LeaseNotFoundError when it has ended. */
export async function keepAliveLease(core: ClientCore, id: number): Promise<Lease> {
  checkLeaseId(id);
  const json = await write(core, `keep lease ${id} alive`, "POST", `/v1/leases/${id}/keepalive`);
  return { id: json.id as number, ttlSeconds: json.ttlSeconds as number };
}

/** `DELETE /v1/leases/{id}`: ends it and deletes its keys; null when it had ended already. */
export async function revokeLease(
  core: ClientCore,
  id: number,
): Promise<{ revision: number } | null> {
  checkLeaseId(id);
  try {
    const json = await write(core, `revoke lease ${id}`, "DELETE", `/v1/leases/${id}`);
    return { revision: json.revision as number };
  } catch (error) {
    if (error instanceof LeaseNotFoundError) return null;
    throw error;
  }
}

function checkLeaseId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new InvalidInputError("lease", "must be a lease id (an integer >= 1)");
  }
}

async function write(
  core: ClientCore,
  name: string,
  method: "POST" | "DELETE",
  path: string,
  body?: unknown,
  options?: IdempotentOptions,
): Promise<Record<string, unknown>> {
  const idempotencyKey = idempotencyKeyOf(options, () => core.nextIdempotencyKey());
  const headers: Record<string, string> = {
    accept: "application/json",
    "idempotency-key": idempotencyKey,
  };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await core.send({
    name,
    request: {
      method,
      path,
      headers,
      ...(body === undefined ? {} : { body: encoder.encode(JSON.stringify(body)) }),
    },
    idempotencyKey,
    discover: true,
  });
  return answer(response, 200);
}

/**
 * A prefix to list or watch: any string, "" for every key. From JavaScript a missing one
 * would otherwise be sent as the text "undefined".
 */
function checkPrefix(prefix: unknown): void {
  if (typeof prefix !== "string") {
    throw new InvalidInputError("prefix", 'must be a string ("" for every key)');
  }
  if (LONE_SURROGATE.test(prefix)) throw new InvalidInputError("prefix", LONE_SURROGATE_PROBLEM);
}

/**
 * A signal that aborts when any of `signals` does, and `dispose` to let go of them.
 * `AbortSignal.any` keeps a reference in each source for as long as that source lives
 * (Node.js 20 never prunes them), so a watch per call on the client's or a caller's
 * long-lived signal grew it by one entry each, for good.
 */
export function linkedSignal(signals: readonly (AbortSignal | undefined)[]): {
  readonly signal: AbortSignal;
  dispose(): void;
} {
  const controller = new AbortController();
  const listening: [AbortSignal, () => void][] = [];
  const dispose = (): void => {
    for (const [source, onAbort] of listening.splice(0)) {
      source.removeEventListener("abort", onAbort);
    }
  };
  for (const source of signals) {
    if (source === undefined) continue;
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    const onAbort = (): void => {
      controller.abort(source.reason);
      dispose();
    };
    source.addEventListener("abort", onAbort, { once: true });
    listening.push([source, onAbort]);
  }
  if (controller.signal.aborted) dispose();
  return { signal: controller.signal, dispose };
}

/**
 * Half of a UTF-16 surrogate pair without the other half: no UTF-8 holds it, so a key or
 * prefix with one would reach the node as another (U+FFFD in its place) or fail to encode.
 */
export const LONE_SURROGATE = /\p{Cs}/u;
export const LONE_SURROGATE_PROBLEM =
  "holds half of a UTF-16 surrogate pair, which no UTF-8 key can hold";

/**
 * An operation's options argument: an object, or nothing (`undefined` or `null` from
 * JavaScript, which a default parameter does not cover).
 */
export function optionsObject<T extends object>(options: T | null | undefined): Partial<T> {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object") throw new InvalidInputError("options", "must be an object");
  return options;
}

/**
 * The JSON object of an answer with status `expected`. A 404 naming a lease throws
 * LeaseNotFoundError; anything else unexpected throws UnexpectedResponseError.
 */
export function answer(response: StoreResponse, expected: number): Record<string, unknown> {
  let json: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(decoder.decode(response.body));
    if (typeof parsed === "object" && parsed !== null) json = parsed as Record<string, unknown>;
  } catch {
    // Not JSON: answered below.
  }
  if (response.status === 404 && json?.code === "ERR_LEASE_NOT_FOUND") {
    throw new LeaseNotFoundError(typeof json.lease === "number" ? json.lease : 0);
  }
  if (response.status !== expected || json === null) {
    const detail = typeof json?.error === "string" ? json.error : "unexpected answer";
    const code = typeof json?.code === "string" ? json.code : null;
    throw new UnexpectedResponseError(response.endpoint, response.status, detail, code);
  }
  return json;
}

/**
 * Reconnecting after a broken watch waits this long at first, doubling up to the max, or
 * what the refusing node asked for (capped at the core's `retryAfterMsMax`) when longer.
 */
const RECONNECT_DELAY_MS_MIN = 50;
const RECONNECT_DELAY_MS_MAX = 1000;
/** A watch stream that sends nothing (not even its 15 s keep-alive) this long is dead. */
const WATCH_IDLE_TIMEOUT_MS = 40_000;
const WATCH_HEADERS_TIMEOUT_MS = 5000;

/**
 * Every change of the keys under `prefix` from `options.fromRevision` on, across
 * fail-overs, until `options.signal` aborts or the client closes. Throws CompactedError
 * (ERR_COMPACTED) when the node no longer holds the changes of the revision to resume
 * from, and InvalidInputError for bad arguments.
 */
export async function* watchChanges(
  core: ClientCore,
  prefix: string,
  given: WatchOptions = {},
): AsyncGenerator<WatchChange> {
  checkPrefix(prefix);
  const options = optionsObject(given);
  const from = options.fromRevision;
  if (from !== undefined && (!Number.isSafeInteger(from) || from < 1)) {
    throw new InvalidInputError("fromRevision", "must be an integer >= 1");
  }
  const linked = linkedSignal([core.closing, options.signal]);
  try {
    yield* follow(core, prefix, options, linked.signal);
  } finally {
    linked.dispose();
  }
}

/** watchChanges' loop, until `stop` aborts. */
async function* follow(
  core: ClientCore,
  prefix: string,
  options: WatchOptions,
  stop: AbortSignal,
): AsyncGenerator<WatchChange> {
  const from = options.fromRevision;
  /** Where to resume: the revision, and how many of its changes were delivered already. */
  let resume: { revision: number; delivered: number } | null =
    from === undefined ? null : { revision: from, delivered: 0 };
  let delayMs = RECONNECT_DELAY_MS_MIN;
  /** The nodes that answered ERR_COMPACTED since a watch last opened. */
  const compactedBy = new Set<string>();
  /** The nodes that could not open a watch since then (down, unreachable, refusing). */
  const failedBy = new Set<string>();
  /** The oldest revision the last ERR_COMPACTED said its node holds. */
  let startRevision = 0;
  // Every node has said ERR_COMPACTED, or could not be asked: the revision is gone for
  // every node that can answer. A node that is down may still hold it, but waiting for it
  // would hold the watch (and a lock waiter behind it) for as long as it stays down.
  const compactedEverywhere = (): boolean =>
    compactedBy.size > 0 && core.pool.endpoints.every((e) => compactedBy.has(e) || failedBy.has(e));
  /** Since when no stream has been open, and why the last attempt failed. */
  let closedSince = performance.now();
  let lastFailure = "no node was asked yet";
  while (!stop.aborted) {
    const endpoint = watchEndpoint(core.pool, compactedBy, failedBy);
    const query = new URLSearchParams({ prefix });
    if (resume !== null) query.set("fromRevision", String(resume.revision));
    const moved = movesWithTheMaster(core.pool, endpoint, stop);
    const opened = await core.pool.openStream(endpoint, `/v1/watch?${query}`, {
      headersTimeoutMs: WATCH_HEADERS_TIMEOUT_MS,
      idleTimeoutMs: WATCH_IDLE_TIMEOUT_MS,
      signal: moved.signal,
    });
    /** The wait the node asked for before the next attempt, in ms; null when it did not. */
    let retryAfterMs: number | null = null;
    if (opened.ok && opened.status === 200) {
      delayMs = RECONNECT_DELAY_MS_MIN;
      compactedBy.clear();
      failedBy.clear();
      lastFailure = "the stream broke";
      let skip = resume?.delivered ?? 0;
      try {
        for await (const item of readEvents(opened.body)) {
          if (item.kind === "start") {
            // A watch from "now" learns where now is, to resume from there.
            resume ??= { revision: item.revision, delivered: 0 };
            continue;
          }
          if (item.kind === "progress") {
            // Every change up to that revision has been delivered: resume after it.
            if (resume === null || resume.revision <= item.revision) {
              resume = { revision: item.revision + 1, delivered: 0 };
              skip = 0;
            }
            continue;
          }
          const change = item.change;
          if (resume !== null && change.revision === resume.revision && skip > 0) {
            skip--;
            continue;
          }
          resume =
            resume !== null && change.revision === resume.revision
              ? { revision: change.revision, delivered: resume.delivered + 1 }
              : { revision: change.revision, delivered: 1 };
          yield change;
          if (stop.aborted) break;
        }
      } catch {
        // The stream broke: the node died, hung up, or went silent. Resume elsewhere.
      } finally {
        opened.close();
        moved.dispose();
        closedSince = performance.now();
      }
      // A watch its caller ended says nothing about the node: the master stays known.
      if (!stop.aborted) core.pool.noteFailure(endpoint);
    } else if (opened.ok) {
      // The refusal's body comes after its status, over the same connection: it may break
      // or stall as a stream does, and `stop` must still cut it short.
      const read = await readRefusal(opened.body).finally(() => {
        opened.close();
        moved.dispose();
      });
      const headers = opened.headers;
      if (!read.ok) {
        // Not knowing why the node refused, count it as a node that could not open it.
        failedBy.add(endpoint);
        lastFailure = `${endpoint} answered ${opened.status}, then: ${read.message}`;
        retryAfterMs = retryAfterOf(null, headers);
        if (!stop.aborted) core.pool.noteFailure(endpoint);
      } else {
        const { json } = read;
        if (opened.status === 410) {
          // This node's history may be shorter than another's (it restarted, or received a
          // snapshot): give up only when every node has said so, each one of them (or
          // could not be asked).
          compactedBy.add(endpoint);
          failedBy.delete(endpoint);
          if (typeof json?.startRevision === "number") startRevision = json.startRevision;
          if (compactedEverywhere()) {
            throw new CompactedError(resume?.revision ?? 0, startRevision);
          }
          core.pool.noteFailure(endpoint);
          continue;
        }
        const detail = typeof json?.error === "string" ? json.error : "the watch was refused";
        // A token that is not known, or may not read: no retry changes that.
        if (opened.status === 401) throw new UnauthenticatedError(detail);
        if (opened.status === 403) throw new ForbiddenError(detail);
        // A node without watches: likewise.
        if (opened.status === 404) throw new UnexpectedResponseError(endpoint, 404, detail);
        if (opened.status === 400) {
          const field = typeof json?.field === "string" ? json.field : "request";
          throw new InvalidInputError(field, typeof json?.error === "string" ? json.error : "");
        }
        failedBy.add(endpoint);
        lastFailure = `${endpoint} answered ${opened.status}: ${detail}`;
        // A full node (503 ERR_BUSY) says when to come back: many watchers reconnecting
        // sooner would only keep it full.
        retryAfterMs = retryAfterOf(json, headers);
        core.pool.noteFailure(endpoint);
      }
    } else {
      moved.dispose();
      failedBy.add(endpoint);
      lastFailure = `${endpoint}: ${opened.message}`;
      // A watch its caller stopped while it opened says nothing of the node.
      if (!stop.aborted) core.pool.noteFailure(endpoint);
    }
    // A watch its caller stopped ends normally, whatever the nodes said before.
    if (stop.aborted) break;
    if (!compactedBy.has(endpoint) && compactedEverywhere()) {
      throw new CompactedError(resume?.revision ?? 0, startRevision);
    }
    const { openTimeoutMs } = options;
    if (openTimeoutMs !== undefined && performance.now() - closedSince >= openTimeoutMs) {
      throw new UnreachableError(
        core.pool.endpoints.join(", "),
        `no node opened the watch in ${openTimeoutMs} ms (last: ${lastFailure})`,
      );
    }
    // As the client's retry loop waits (retry.ts delayAfterFailureMs): the back-off, or the
    // node's wait capped, whichever is longer.
    const retryAfterMsMax = core.retryAfterMsMax ?? DEFAULT_RETRY_POLICY.retryAfterMsMax;
    const waitMs =
      retryAfterMs === null ? delayMs : Math.max(delayMs, Math.min(retryAfterMs, retryAfterMsMax));
    await delay(waitMs, undefined, { signal: stop }).catch(() => {});
    delayMs = Math.min(delayMs * 2, RECONNECT_DELAY_MS_MAX);
  }
}

/**
 * The signal for a watch's stream on `endpoint`: `stop`'s, and when `endpoint` is the
 * master as the pool knows it, one that aborts once a node's status names another master
 * in a newer term. A master that hangs keeps its connections open and sends nothing; the
 * stream would wait out its idle timeout (40 s) while the client's other requests (a
 * lock's keep-alives, say) have found the new master already. A stream on a backup stays.
 */
function movesWithTheMaster(
  pool: ServerPool,
  endpoint: string,
  stop: AbortSignal,
): { readonly signal: AbortSignal; dispose(): void } {
  const moved = new AbortController();
  const linked = linkedSignal([stop, moved.signal]);
  if (pool.masterEndpoint() !== endpoint) return linked;
  const term = pool.masterTerm();
  const stopListening = pool.onMasterLearned(() => {
    if (pool.masterEndpoint() !== endpoint && pool.masterTerm() > term) moved.abort();
  });
  return {
    signal: linked.signal,
    dispose: () => {
      stopListening();
      linked.dispose();
    },
  };
}

/**
 * The node to watch on: the master when known, else the pool's next; when that one failed
 * or said ERR_COMPACTED since a watch last opened, a node not tried since, else one that
 * has not said ERR_COMPACTED (it may still hold the revision).
 */
function watchEndpoint(
  pool: ServerPool,
  compactedBy: ReadonlySet<string>,
  failedBy: ReadonlySet<string>,
): string {
  const preferred = pool.masterEndpoint() ?? pool.next();
  if (!compactedBy.has(preferred) && !failedBy.has(preferred)) return preferred;
  const untried = pool.endpoints.find((e) => !compactedBy.has(e) && !failedBy.has(e));
  if (untried !== undefined) return untried;
  // Every node failed or said so: the pool's own rotation, among those that did not say so.
  if (!compactedBy.has(preferred)) return preferred;
  return pool.endpoints.find((e) => !compactedBy.has(e)) ?? preferred;
}

/**
 * The JSON body of a refusal (null when it is not JSON), or why it could not be read: the
 * connection broke, stalled past the idle timeout, or the watch was stopped meanwhile.
 */
async function readRefusal(
  body: AsyncIterable<Uint8Array>,
): Promise<
  | { readonly ok: true; readonly json: Record<string, unknown> | null }
  | { readonly ok: false; readonly message: string }
> {
  const streamDecoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of body) text += streamDecoder.decode(chunk, { stream: true });
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
  text += streamDecoder.decode();
  try {
    const parsed: unknown = JSON.parse(text);
    const json = typeof parsed === "object" && parsed !== null ? parsed : null;
    return { ok: true, json: json as Record<string, unknown> | null };
  } catch {
    return { ok: true, json: null };
  }
}

/**
 * The wait a refusal asks for, in ms: its body's `retryAfterMs`, else its Retry-After
 * header (read as client.ts reads them), else null.
 */
function retryAfterOf(json: Record<string, unknown> | null, headers: unknown): number | null {
  const stated = json?.retryAfterMs;
  if (typeof stated === "number" && Number.isFinite(stated) && stated >= 0) return stated;
  if (typeof headers !== "object" || headers === null) return null;
  const header: unknown = (headers as Record<string, unknown>)["retry-after"];
  const value: unknown = Array.isArray(header) ? header[0] : header;
  return typeof value === "string" ? parseRetryAfterMs(value) : null;
}

type StreamItem =
  | { readonly kind: "start"; readonly revision: number }
  | { readonly kind: "progress"; readonly revision: number }
  | { readonly kind: "change"; readonly change: WatchChange };

/**
 * Parses server-sent events: changes from `data:` lines, the start from the first comment,
 * progress from `: revision R` comments.
 */
async function* readEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<StreamItem> {
  const streamDecoder = new TextDecoder();
  let text = "";
  for await (const chunk of body) {
    text += streamDecoder.decode(chunk, { stream: true });
    let end = text.indexOf("\n\n");
    while (end >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      end = text.indexOf("\n\n");
      // The `s` flag: the prefix, as JSON, may hold U+2028 or U+2029, which `.` skips without it.
      const start = /^: watching .* from revision (\d+)$/s.exec(block);
      if (start !== null) {
        yield { kind: "start", revision: Number(start[1]) };
        continue;
      }
      const progress = /^: revision (\d+)$/.exec(block);
      if (progress !== null) {
        yield { kind: "progress", revision: Number(progress[1]) };
        continue;
      }
      const data = block.split("\n").find((line) => line.startsWith("data: "));
      if (data === undefined) continue;
      yield { kind: "change", change: JSON.parse(data.slice(6)) as WatchChange };
    }
  }
  throw new Error("the watch stream ended");
}
