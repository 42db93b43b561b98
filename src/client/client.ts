/**
 * The Baton client: the key-value operations of the HTTP API as promises that survive a
 * fail-over. It owns the meaning of each answer (which statuses are results, which are
 * retried, which are thrown) and exactly-once for writes: every logical write gets one
 * Idempotency-Key, generated before its first attempt and sent unchanged on every retry,
 * so a write whose answer was lost is applied once however often it is re-sent.
 *
 * Finding the master and the HTTP connections belong to ServerPool; when to retry and when
 * to give up belong to retry(). This file must never retry without the idempotency key, and
 * never retry an answer that retrying cannot change (400, 412, 413, 422).
 */

import { randomBytes, randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import {
  ClusterError,
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  QuotaExceededError,
  SwitchoverFailedError,
  TooLargeError,
  UnauthenticatedError,
} from "../shared/errors.js";
import {
  ClientClosedError,
  DeadlineExceededError,
  type GiveUpDetails,
  IdempotencyKeyReusedError,
  MasterBusyError,
  MasterTableFullError,
  NoMasterReachableError,
  OutcomeUnknownError,
  PreconditionFailedError,
  UnexpectedResponseError,
  UnreachableError,
} from "./errors.js";
import { type NodeStatus, parseNodeStatus } from "./node-status.js";
import {
  type AttemptFailure,
  type AttemptResult,
  DEFAULT_RETRY_POLICY,
  parseRetryAfterMs,
  type RetryOutcome,
  type RetryPolicy,
  retry,
} from "./retry.js";
import {
  normalizeEndpoint,
  type PoolRequest,
  type PoolResponse,
  ServerPool,
} from "./server-pool.js";
import {
  answer,
  type ClientCore,
  deleteRange,
  grantLease,
  type IdempotentOptions,
  idempotencyKeyOf,
  keepAliveLease,
  type Lease,
  LONE_SURROGATE,
  LONE_SURROGATE_PROBLEM,
  optionsObject,
  type RangeItem,
  type RangeOptions,
  type RangePage,
  range,
  rangeAll,
  revokeLease,
  type TxnRequest,
  txn,
  type WatchChange,
  type WatchOptions,
  watchChanges,
} from "./store-client.js";

export interface ClientOptions {
  /** The nodes' HTTP addresses: "http://127.0.0.1:8101" or "127.0.0.1:8101". */
  readonly endpoints: readonly string[];
  /** Time one operation may take, retries included, in ms. @default 10000 */
  readonly deadlineMs?: number;
  /** Time one attempt (one HTTP exchange) may take, in ms. @default 1000 */
  readonly attemptTimeoutMs?: number;
  /** Shortest back-off between rounds of attempts, in ms. @default 20 */
  readonly retryDelayMsMin?: number;
  /** Longest back-off between rounds of attempts, in ms. @default 1000 */
  readonly retryDelayMsMax?: number;
  /** Longest wait a server's Retry-After can impose, in ms. @default 1000 */
  readonly retryAfterMsMax?: number;
  /** Most attempts one operation makes, whatever its deadline. @default 1000 */
  readonly attemptCountMax?: number;
  /**
   * While an attempt has had no answer for this long, the client asks the other nodes who
   * the master is (again every as long, one look-up at a time for the whole client), and
   * abandons the attempt when they name a newer master: a hung master holds its
   * connections open, and waiting out the attempt timeout would stretch a fail-over. 0
   * turns this off. @default 150
   */
  readonly masterCheckAfterMs?: number;
  /**
   * Names this client in idempotency keys (printable ASCII, at most 100 characters). Keys
   * are `<clientId>-<random>-<counter>`, so two clients, or two runs, with the same id
   * never share a key. @default a random UUID
   */
  readonly clientId?: string;
  /**
   * The CA certificate(s), PEM, that HTTPS endpoints' certificates must chain to (the
   * cluster's `ca.crt`). @default the system's trusted CAs
   */
  readonly ca?: string | Uint8Array;
  /**
   * The bearer token sent with every request (`Authorization: Bearer <token>`), for nodes
   * that require one; see `baton certs token`. @default none
   */
  readonly token?: string;
}

export interface WriteOptions {
  /** Apply only if the key is at this revision (0: the key must not exist). */
  readonly ifRevision?: number;
  /** The key that makes retries of this write apply once. @default one generated per call */
  readonly idempotencyKey?: string;
  /**
   * A put only: attach the key to this lease (from `grantLease`), so that it is deleted
   * when the lease ends. Throws LeaseNotFoundError (ERR_LEASE_NOT_FOUND) when it has ended.
   */
  readonly lease?: number;
}

export interface KvValue {
  readonly key: string;
  /** The stored bytes, exactly. */
  readonly value: Uint8Array;
  readonly revision: number;
  /** The value decoded as UTF-8 (invalid sequences become U+FFFD). */
  text(): string;
}

export type CasResult =
  | { readonly ok: true; readonly revision: number }
  | { readonly ok: false; readonly currentRevision: number };

export interface EndpointStatus {
  readonly endpoint: string;
  readonly status?: NodeStatus;
  /** Why this node gave no status (unreachable, timed out, bad answer). */
  readonly error?: string;
  /** The error's catalogue code (ERR_UNAUTHENTICATED for a refused token, …), if it has one. */
  readonly code?: string;
}

/** A member as `GET /v1/members` lists it. */
export interface Member {
  readonly id: number;
  /** False for a learner, which catches up without a vote. */
  readonly voter: boolean;
  readonly peerAddress: string;
  readonly httpUrl: string | null;
}

export interface BatonClient {
  /**
   * Stores `value` under `key`; resolves to the new revision. Throws
   * PreconditionFailedError (ERR_PRECONDITION_FAILED) when `ifRevision` does not match,
   * InvalidInputError / TooLargeError at once for bad input, IdempotencyKeyReusedError
   * (ERR_IDEMPOTENCY_KEY_REUSED) at once when `idempotencyKey` was used for another write,
   * and after the deadline NoMasterReachableError (ERR_NO_MASTER), MasterBusyError
   * (ERR_BUSY), MasterTableFullError (ERR_TABLE_FULL) or DeadlineExceededError
   * (ERR_TIMEOUT).
   */
  put(
    key: string,
    value: string | Uint8Array,
    options?: WriteOptions,
  ): Promise<{ revision: number }>;
  /** Reads `key` (linearizable unless `stale`); null when it does not exist. */
  get(key: string, options?: { readonly stale?: boolean }): Promise<KvValue | null>;
  /** Deletes `key`; null when it did not exist. Throws like `put`. */
  delete(key: string, options?: WriteOptions): Promise<{ revision: number } | null>;
  /** Compare-and-set: stores `value` only if `key` is at `expectedRevision` (0: absent). */
  cas(
    key: string,
    expectedRevision: number,
    value: string | Uint8Array,
    options?: IdempotentOptions,
  ): Promise<CasResult>;
  /**
   * One node's status: `endpoint`'s (one attempt; UnreachableError when it does not
   * answer), or with no endpoint the first node that answers, the master preferred.
   */
  status(endpoint?: string): Promise<NodeStatus>;
  /** Every configured node's status, asked in parallel with one attempt timeout each. */
  clusterStatus(): Promise<EndpointStatus[]>;
  /** The members a node knows (`GET /v1/members`), the master's view preferred. */
  members(): Promise<Member[]>;
  /** What node `id`, added as a learner, starts with (`GET /v1/members/{id}/join`). */
  joinInfo(id: number): Promise<JoinInfo>;
  /**
   * Hands the master role to member `to`, or to the best-placed backup (switchover);
   * resolves with the new master and its term once it serves. Throws the node's error:
   * InvalidInputError (`to` is not a member), or a ClusterError with code ERR_CONFLICT
   * (the target cannot take over; nothing changed) or, after the deadline,
   * ERR_SWITCHOVER_FAILED; DeadlineExceededError (`mayHaveApplied`) when an answer was
   * lost, since it is then not sent again.
   */
  switchover(to?: number): Promise<{ master: number; term: number }>;
  /**
   * One page of the keys under `prefix`, in order, consistent at the page's `revision`
   * (linearizable unless `stale`). Throws InvalidInputError for a limit outside 1..10,000.
   */
  range(prefix: string, options?: RangeOptions): Promise<RangePage>;
  /** Every key under `prefix`, reading page after page. */
  rangeAll(prefix: string, options?: Omit<RangeOptions, "after">): AsyncIterable<RangeItem>;
  /** Deletes every key under a non-empty `prefix` at one revision, exactly once. */
  deleteRange(
    prefix: string,
    options?: IdempotentOptions,
  ): Promise<{ revision: number; deleted: number }>;
  /**
   * If every comparison holds, applies `success`, else `failure`, atomically at one
   * revision, exactly once. Throws InvalidInputError naming the field of a bad request.
   */
  txn(
    request: TxnRequest,
    options?: IdempotentOptions,
  ): Promise<{ succeeded: boolean; revision: number }>;
  /** Grants a lease of `ttlSeconds` (whole seconds); attach keys with `put(…, { lease })`. */
  grantLease(ttlSeconds: number, options?: IdempotentOptions): Promise<Lease>;
  /** Gives a lease its full time to live again; LeaseNotFoundError when it has ended. */
  keepAliveLease(id: number): Promise<Lease>;
  /** Ends a lease and deletes its keys; null when it had ended already. */
  revokeLease(id: number): Promise<{ revision: number } | null>;
  /**
   * Every change under `prefix` from `options.fromRevision` on, once each and in revision
   * order, following the master across fail-overs:
   * `for await (const change of client.watch(prefix, { fromRevision }))`. Ends when
   * `options.signal` aborts or the client closes; throws CompactedError (ERR_COMPACTED)
   * when the revision to resume from is no longer held.
   */
  watch(prefix: string, options?: WatchOptions): AsyncIterable<WatchChange>;
  /**
   * Adds a member as a learner; resolves with the members once committed. Start the new
   * node with `baton start … --join <url>`, then `promoteMember` once it caught up.
   */
  addMember(member: {
    readonly id: number;
    readonly peerAddress: string;
    readonly httpUrl: string;
  }): Promise<Member[]>;
  /** Makes a caught-up learner a voter; resolves with the members once committed. */
  promoteMember(id: number): Promise<Member[]>;
  /** Removes a member; resolves with the members once committed. */
  removeMember(id: number): Promise<Member[]>;
  /** Stops retries in progress (they reject with ClientClosedError) and closes connections. */
  close(): Promise<void>;
}

/** Creates a client. Throws InvalidInputError when an option is invalid. */
export function createClient(options: ClientOptions): BatonClient {
  return new HttpBatonClient(options);
}

/** What a request turned out to be after retries: an answer that retrying cannot change. */
type FinalResponse = Extract<PoolResponse, { ok: true }>;

interface Operation {
  /** Describes the operation in give-up messages, e.g. `put "k"`. */
  readonly name: string;
  readonly request: Omit<PoolRequest, "timeoutMs">;
  readonly idempotencyKey: string | null;
  /** Whether an attempt may first ask its node who the master is. */
  readonly discover: boolean;
  /**
   * For a change that carries no idempotency key (a switchover, a membership change): it is
   * never sent again once an attempt may have reached the master (the answer was lost), nor
   * is such an attempt abandoned when a newer master appears (which a switchover makes
   * itself); its attempts get at least this long, for the node waits for the change.
   */
  readonly once?: {
    readonly attemptTimeoutMs: number;
    /**
     * Codes that, for this change, leave open whether it was carried out although they
     * mean "not applied" for a write: a membership change proposed but not committed in
     * time is answered ERR_NO_MASTER (docs/api.md), and may still commit.
     */
    readonly unsureOn?: ReadonlySet<string>;
  };
  /** What is left of a larger operation's deadline, when this one is part of it. */
  readonly deadlineMs?: number;
}

/** How long a switchover or membership change may take to be answered, at least. */
const CHANGE_ATTEMPT_MS = 5000;

/** A membership change answered ERR_NO_MASTER may still commit (see Operation.once). */
const MEMBER_CHANGE_UNSURE_ON: ReadonlySet<string> = new Set(["ERR_NO_MASTER"]);

const CLIENT_ID_PATTERN = /^[\x21-\x7e]{1,100}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** A value's text keeps a leading byte-order mark, as the node's JSON answers do. */
const valueDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

class HttpBatonClient implements BatonClient {
  private readonly pool: ServerPool;
  private readonly policy: RetryPolicy;
  private readonly keyPrefix: string;
  private keyCounter = 0;
  private readonly closing = (() => {
    // Every operation backing off listens to this one signal; many at once are normal.
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    return controller;
  })();

  /** See ClientOptions.masterCheckAfterMs. */
  private readonly masterCheckAfterMs: number;
  /** The master look-up under way for slow attempts, shared by all of them. */
  private masterCheck: Promise<void> | null = null;
  /**
   * Attempts at the presumed master in flight, with when each started (performance.now()),
   * each told when a look-up learned something.
   */
  private readonly masterWatchers = new Map<() => void, number>();
  /** One timer for the whole client while attempts are watched (not one per attempt). */
  private masterWatchTimer: NodeJS.Timeout | null = null;

  constructor(options: ClientOptions) {
    // From JavaScript, or a config file read at run time, anything may come: name the field.
    if (typeof options !== "object" || options === null) {
      throw new InvalidInputError(
        "options",
        'pass an object with endpoints, e.g. { endpoints: ["http://127.0.0.1:8101"] }',
      );
    }
    const endpoints: unknown = options.endpoints;
    if (!Array.isArray(endpoints) || !endpoints.every((e) => typeof e === "string")) {
      throw new InvalidInputError(
        "endpoints",
        'must be an array of the nodes\' base URLs, e.g. ["http://127.0.0.1:8101"]',
      );
    }
    for (const name of ["token", "clientId"] as const) {
      const value: unknown = options[name];
      if (value !== undefined && typeof value !== "string") {
        throw new InvalidInputError(name, "must be a string");
      }
    }
    const ca: unknown = options.ca;
    if (ca !== undefined && typeof ca !== "string" && !(ca instanceof Uint8Array)) {
      throw new InvalidInputError(
        "ca",
        "must be the CA certificate's PEM text (a string or a Uint8Array), e.g. readFileSync('ca.crt')",
      );
    }
    this.policy = parsePolicy(options);
    const checkAfter = options.masterCheckAfterMs ?? 150;
    if (typeof checkAfter !== "number" || !(checkAfter >= 0 && checkAfter <= TIMER_MS_MAX)) {
      throw new InvalidInputError(
        "options",
        `masterCheckAfterMs must be a number from 0 to ${TIMER_MS_MAX}`,
      );
    }
    this.masterCheckAfterMs = checkAfter;
    const token = options.token;
    if (token !== undefined && !/^[\x21-\x7e]{1,4096}$/.test(token)) {
      throw new InvalidInputError(
        "token",
        "use the printable ASCII token `baton certs token` printed",
      );
    }
    this.pool = new ServerPool(options.endpoints, {
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(token === undefined ? {} : { token }),
    });
    const clientId = options.clientId;
    if (clientId !== undefined && !CLIENT_ID_PATTERN.test(clientId)) {
      throw new InvalidInputError("clientId", "use 1 to 100 printable ASCII characters");
    }
    // A random part per client instance keeps keys unique across runs that reuse a clientId;
    // a key repeated by a new run would be answered with an old run's result.
    this.keyPrefix =
      clientId === undefined ? randomUUID() : `${clientId}-${randomBytes(6).toString("hex")}`;
  }

  async put(
    key: string,
    value: string | Uint8Array,
    options: WriteOptions = {},
  ): Promise<{ revision: number }> {
    const startedAt = performance.now();
    const response = await this.write("PUT", key, toBytes(value), optionsObject(options));
    if (response.status === 412) {
      const current = await this.currentRevision(key, response, startedAt);
      throw new PreconditionFailedError(key, options.ifRevision ?? -1, current);
    }
    if (response.status === 404) answer(response, 200); // throws LeaseNotFoundError
    return { revision: revisionFromJson(response) };
  }

  async get(key: string, options: { readonly stale?: boolean } = {}): Promise<KvValue | null> {
    checkKey(key);
    const stale = optionsObject(options).stale === true;
    const response = await this.send(this.getOperation(key, stale));
    if (response.status === 404) return null;
    if (response.status !== 200) throw unexpected(response, "GET answered this status");
    return kvValueFrom(key, response);
  }

  private getOperation(key: string, stale: boolean): Operation {
    return {
      name: `get ${JSON.stringify(key)}`,
      request: {
        method: "GET",
        path: `/v1/kv/${keyPath(key)}${stale ? "?stale=true" : ""}`,
        headers: { accept: "application/octet-stream, application/json;q=0.5" },
      },
      idempotencyKey: null,
      discover: !stale,
    };
  }

  async delete(key: string, options: WriteOptions = {}): Promise<{ revision: number } | null> {
    const startedAt = performance.now();
    const response = await this.write("DELETE", key, undefined, optionsObject(options));
    if (response.status === 404) return null;
    if (response.status === 412) {
      const current = await this.currentRevision(key, response, startedAt);
      throw new PreconditionFailedError(key, options.ifRevision ?? -1, current);
    }
    return { revision: revisionFromJson(response) };
  }

  async cas(
    key: string,
    expectedRevision: number,
    value: string | Uint8Array,
    options: IdempotentOptions = {},
  ): Promise<CasResult> {
    // Without this check a missing revision (`entry?.revision` of an absent key, from
    // JavaScript) would send a write with no condition at all.
    if (!Number.isSafeInteger(expectedRevision) || expectedRevision < 0) {
      throw new InvalidInputError(
        "expectedRevision",
        "must be a non-negative integer (0: the key must not exist)",
      );
    }
    const startedAt = performance.now();
    const response = await this.write("PUT", key, toBytes(value), {
      ...optionsObject(options),
      ifRevision: expectedRevision,
    });
    if (response.status === 412) {
      const currentRevision = await this.currentRevision(key, response, startedAt);
      return { ok: false, currentRevision };
    }
    if (response.status === 404) throw unexpected(response, "PUT answered 404");
    return { ok: true, revision: revisionFromJson(response) };
  }

  async status(endpoint?: string): Promise<NodeStatus> {
    if (endpoint === undefined) {
      const response = await this.send({
        name: "status",
        request: { method: "GET", path: "/v1/status", headers: { accept: "application/json" } },
        idempotencyKey: null,
        discover: false,
      });
      return this.statusFrom(response);
    }
    this.assertOpen();
    if (typeof endpoint !== "string") {
      throw new InvalidInputError("endpoint", "must be a node's URL, like http://127.0.0.1:8101");
    }
    const response = await this.pool.request(normalizeEndpoint(endpoint), {
      method: "GET",
      path: "/v1/status",
      headers: { accept: "application/json" },
      timeoutMs: this.policy.attemptTimeoutMs,
    });
    if (!response.ok) throw new UnreachableError(response.endpoint, response.message);
    return this.statusFrom(response);
  }

  async members(): Promise<Member[]> {
    const response = await this.send({
      name: "members",
      request: { method: "GET", path: "/v1/members", headers: { accept: "application/json" } },
      idempotencyKey: null,
      discover: true,
    });
    const members = (parseJson(response.body) as { members?: unknown } | null)?.members;
    if (!Array.isArray(members) || !members.every(isMember)) {
      throw unexpected(response, "the answer is not a member list");
    }
    return members;
  }

  /**
   * What node `id`, added as a learner, needs to start with `baton start --join`
   * (`GET /v1/members/{id}/join`, admin role): the cluster id (null while the cluster has
   * none yet), its member incarnation and the members with their addresses and
   * incarnations. 409 ERR_CONFLICT while the asked node has not seen the addition yet, or
   * when `id` is a voter (replace it first).
   */
  async joinInfo(id: number): Promise<JoinInfo> {
    const response = await this.send({
      name: `join answer for node ${id}`,
      request: {
        method: "GET",
        path: `/v1/members/${memberId(id)}/join`,
        headers: { accept: "application/json" },
      },
      idempotencyKey: null,
      discover: true,
    });
    const json = parseJson(response.body) as Partial<JoinInfo> | null;
    const clusterId = json?.clusterId;
    if (
      typeof json?.incarnation !== "number" ||
      !Array.isArray(json.members) ||
      !(clusterId === null || clusterId === undefined || typeof clusterId === "string")
    ) {
      throw unexpected(response, "the answer is not a join answer");
    }
    const clusterName = typeof json.clusterName === "string" ? json.clusterName : null;
    return {
      clusterId: clusterId ?? null,
      clusterName,
      incarnation: json.incarnation,
      members: json.members,
    };
  }

  async switchover(to?: number): Promise<{ master: number; term: number }> {
    if (to !== undefined && (!Number.isSafeInteger(to) || to < 1)) {
      throw new InvalidInputError("to", "must be a member id (a positive integer)");
    }
    const response = await this.send({
      name: to === undefined ? "switchover" : `switchover to node ${to}`,
      request: {
        method: "POST",
        path: "/v1/switchover",
        headers: { accept: "application/json", "content-type": "application/json" },
        body: encoder.encode(JSON.stringify(to === undefined ? {} : { to })),
      },
      idempotencyKey: null,
      discover: true,
      once: { attemptTimeoutMs: CHANGE_ATTEMPT_MS },
    });
    const json = parseJson(response.body) as { master?: unknown; term?: unknown } | null;
    if (typeof json?.master !== "number" || typeof json.term !== "number") {
      throw unexpected(response, 'the answer has no "master" and "term"');
    }
    return { master: json.master, term: json.term };
  }

  /**
   * Adds a member as a learner (`POST /v1/members`); resolves with the members once the
   * change is committed. Start the new node with `baton start … --join <url>`, then
   * promote it once it has caught up.
   */
  async addMember(member: {
    readonly id: number;
    readonly peerAddress: string;
    readonly httpUrl: string;
  }): Promise<Member[]> {
    return this.changeMembers(`add member ${member.id}`, "POST", "/v1/members", member);
  }

  /** Makes a caught-up learner a voter (`POST /v1/members/{id}/promote`). */
  async promoteMember(id: number): Promise<Member[]> {
    return this.changeMembers(
      `promote member ${id}`,
      "POST",
      `/v1/members/${memberId(id)}/promote`,
    );
  }

  /** Removes a member (`DELETE /v1/members/{id}`); the removed node stops by itself. */
  async removeMember(id: number): Promise<Member[]> {
    return this.changeMembers(`remove member ${id}`, "DELETE", `/v1/members/${memberId(id)}`);
  }

  private async changeMembers(
    name: string,
    method: "POST" | "DELETE",
    path: string,
    body?: unknown,
  ): Promise<Member[]> {
    const response = await this.send({
      name,
      request: {
        method,
        path,
        headers: { accept: "application/json", "content-type": "application/json" },
        ...(body === undefined ? {} : { body: encoder.encode(JSON.stringify(body)) }),
      },
      idempotencyKey: null,
      discover: true,
      once: { attemptTimeoutMs: CHANGE_ATTEMPT_MS, unsureOn: MEMBER_CHANGE_UNSURE_ON },
    });
    const members = (parseJson(response.body) as { members?: unknown } | null)?.members;
    if (!Array.isArray(members) || !members.every(isMember)) {
      throw unexpected(response, "the answer is not a member list");
    }
    return members;
  }

  async clusterStatus(): Promise<EndpointStatus[]> {
    this.assertOpen();
    return Promise.all(
      this.pool.endpoints.map(async (endpoint): Promise<EndpointStatus> => {
        try {
          return { endpoint, status: await this.status(endpoint) };
        } catch (error) {
          return endpointError(endpoint, error);
        }
      }),
    );
  }

  range(prefix: string, options?: RangeOptions): Promise<RangePage> {
    return range(this.core, prefix, options);
  }

  rangeAll(prefix: string, options?: Omit<RangeOptions, "after">): AsyncIterable<RangeItem> {
    return rangeAll(this.core, prefix, options);
  }

  deleteRange(
    prefix: string,
    options?: IdempotentOptions,
  ): Promise<{ revision: number; deleted: number }> {
    return deleteRange(this.core, prefix, options);
  }

  txn(
    request: TxnRequest,
    options?: IdempotentOptions,
  ): Promise<{ succeeded: boolean; revision: number }> {
    return txn(this.core, request, options);
  }

  grantLease(ttlSeconds: number, options?: IdempotentOptions): Promise<Lease> {
    return grantLease(this.core, ttlSeconds, options);
  }

  keepAliveLease(id: number): Promise<Lease> {
    return keepAliveLease(this.core, id);
  }

  revokeLease(id: number): Promise<{ revision: number } | null> {
    return revokeLease(this.core, id);
  }

  watch(prefix: string, options?: WatchOptions): AsyncIterable<WatchChange> {
    return watchChanges(this.core, prefix, options);
  }

  /** What the store operations (store-client.ts) use of this client. */
  private get core(): ClientCore {
    return {
      send: (operation) => this.send(operation),
      nextIdempotencyKey: () => this.nextIdempotencyKey(),
      pool: this.pool,
      closing: this.closing.signal,
      retryAfterMsMax: this.policy.retryAfterMsMax,
    };
  }

  async close(): Promise<void> {
    this.closing.abort();
    if (this.masterWatchTimer !== null) clearInterval(this.masterWatchTimer);
    this.masterWatchTimer = null;
    await this.pool.close();
  }

  /** Sends a write with its idempotency key (and If-Match), retrying until an answer. */
  private write(
    method: "PUT" | "DELETE",
    key: string,
    body: Uint8Array | undefined,
    options: WriteOptions,
  ): Promise<FinalResponse> {
    checkKey(key);
    const idempotencyKey = idempotencyKeyOf(options, () => this.nextIdempotencyKey());
    const headers: Record<string, string> = { "idempotency-key": idempotencyKey };
    if (options.ifRevision !== undefined) {
      if (!Number.isSafeInteger(options.ifRevision) || options.ifRevision < 0) {
        throw new InvalidInputError("ifRevision", "must be a non-negative integer");
      }
      headers["if-match"] = `"${options.ifRevision}"`;
    }
    if (body !== undefined) headers["content-type"] = "application/octet-stream";
    headers.accept = "application/json";
    let query = "";
    if (options.lease !== undefined && method === "PUT") {
      if (!Number.isSafeInteger(options.lease) || options.lease < 1) {
        throw new InvalidInputError("lease", "must be a lease id (an integer >= 1)");
      }
      query = `?lease=${options.lease}`;
    }
    const request = { method, path: `/v1/kv/${keyPath(key)}${query}`, headers };
    return this.send({
      name: `${method === "PUT" ? "put" : "delete"} ${JSON.stringify(key)}`,
      request: body === undefined ? request : { ...request, body },
      idempotencyKey,
      discover: true,
    });
  }

  /** Runs one operation through the retry loop; throws the catalogued error on giving up. */
  private async send(operation: Operation): Promise<FinalResponse> {
    this.assertOpen();
    let policy = this.policy;
    if (operation.once !== undefined) {
      policy = { ...policy, attemptTimeoutMs: this.attemptTimeoutMsOf(operation) };
    }
    if (operation.deadlineMs !== undefined)
      policy = { ...policy, deadlineMs: operation.deadlineMs };
    const failures: AttemptFailure[] = [];
    const startedAt = performance.now();
    const outcome = await retry(
      async (context) => {
        try {
          const result = await this.attempt(operation, context.timeoutMs);
          if (!result.ok) failures.push(result.failure);
          return result;
        } catch (error) {
          throw refusedInDoubt(error, operation, failures, startedAt);
        }
      },
      policy,
      { endpointCount: this.pool.endpoints.length, signal: this.closing.signal },
    );
    if (outcome.ok) return outcome.value;
    throw giveUpError(outcome, operation, policy);
  }

  /** A whole attempt's time for `operation`: a change sent once gets longer attempts. */
  private attemptTimeoutMsOf(operation: Operation): number {
    const { attemptTimeoutMs } = this.policy;
    return operation.once === undefined
      ? attemptTimeoutMs
      : Math.max(attemptTimeoutMs, operation.once.attemptTimeoutMs);
  }

  /**
   * One attempt: maybe ask a node who the master is, then send the request to the master
   * (or, when it is unknown, to the next node, which forwards). Throws for answers that no
   * retry can change; returns a failure for those another attempt may fix.
   */
  private async attempt(
    operation: Operation,
    timeoutMs: number,
  ): Promise<AttemptResult<FinalResponse>> {
    const started = performance.now();
    if (operation.discover && this.pool.claimDiscovery()) {
      // At most half the attempt: a slow status answer must not leave the request itself
      // a millisecond, which would time out at once (and a change sent once could not be
      // sent again).
      const cut = timeoutMs < this.attemptTimeoutMsOf(operation);
      const failure = await this.discover(Math.max(1, Math.floor(timeoutMs / 2)), cut);
      if (failure !== null) return { ok: false, failure };
    }
    const remainingMs = timeoutMs - (performance.now() - started);
    const endpoint = this.pool.next();
    const watch = operation.once === undefined ? this.watchMaster(endpoint) : null;
    const response = await this.pool.request(endpoint, {
      ...operation.request,
      timeoutMs: Math.max(1, remainingMs),
      ...(watch === null ? {} : { signal: watch.signal }),
    });
    watch?.stop();
    const cut = timeoutMs < this.attemptTimeoutMsOf(operation);
    const failure = response.ok
      ? this.failureOf(response, operation)
      : connectionFailure(response, cut);
    if (failure !== null) {
      this.pool.noteFailure(endpoint);
      if (operation.once !== undefined && doneOrUnknown(failure)) {
        throw new DeadlineExceededError(
          {
            endpointsTried: [endpoint],
            attemptCount: 1,
            elapsedMs: Math.round(performance.now() - started),
            lastError: `${endpoint}: ${failure.message}`,
            anyNodeAnswered: false,
            idempotencyKey: null,
            mayHaveApplied: true,
          },
          `${operation.name}: ${failure.kind === "lost" ? `the request reached ${endpoint} but its answer was lost` : `${endpoint} could not say whether it was done`} (${failure.message}); it may have been carried out, so it is not sent again: check the cluster (baton status, baton member list) before asking again`,
        );
      }
      return { ok: false, failure };
    }
    this.pool.noteAnswered(endpoint);
    return { ok: true, value: response as FinalResponse };
  }

  /**
   * While an attempt at the presumed master goes unanswered, looks for a newer master every
   * `masterCheckAfterMs` and aborts the attempt when one is found: a hung master keeps its
   * connections open, so without this the attempt would wait out its whole timeout. An
   * abandoned write may still have been applied; the retry carries the same idempotency key.
   * Returns null when there is nothing to watch.
   */
  private watchMaster(endpoint: string): { signal: AbortSignal; stop: () => void } | null {
    if (this.masterCheckAfterMs === 0 || this.pool.masterEndpoint() !== endpoint) return null;
    const termAtStart = this.pool.masterTerm();
    const controller = new AbortController();
    const check = (): void => {
      const master = this.pool.masterEndpoint();
      if (master !== null && master !== endpoint && this.pool.masterTerm() > termAtStart) {
        controller.abort();
      }
    };
    this.masterWatchers.set(check, performance.now());
    if (this.masterWatchTimer === null) {
      // Twice per period, so that no attempt waits much more than the period for its look-up.
      const period = Math.max(1, this.masterCheckAfterMs / 2);
      this.masterWatchTimer = setInterval(() => this.onMasterWatchTick(), period);
      this.masterWatchTimer.unref();
    }
    return {
      signal: controller.signal,
      stop: () => {
        this.masterWatchers.delete(check);
        if (this.masterWatchers.size === 0 && this.masterWatchTimer !== null) {
          clearInterval(this.masterWatchTimer);
          this.masterWatchTimer = null;
        }
      },
    };
  }

  /** Looks for a newer master once the oldest watched attempt has waited long enough. */
  private onMasterWatchTick(): void {
    // A Map iterates in insertion order: the first watcher is the oldest attempt.
    const oldest = this.masterWatchers.values().next();
    if (oldest.done === true) return;
    if (performance.now() - oldest.value >= this.masterCheckAfterMs) this.lookForMaster();
  }

  /** Asks every node for its status, one look-up at a time for the whole client. */
  private lookForMaster(): void {
    if (this.masterCheck !== null || this.closing.signal.aborted) return;
    const timeoutMs = Math.max(100, 2 * this.masterCheckAfterMs);
    const asks = this.pool.endpoints.map(async (endpoint) => {
      const response = await this.pool.request(endpoint, {
        method: "GET",
        path: "/v1/status",
        headers: { accept: "application/json" },
        timeoutMs,
      });
      if (!response.ok || response.status !== 200) return;
      const status = parseNodeStatus(parseJson(response.body));
      if (typeof status === "string") return;
      this.pool.learnFromStatus(endpoint, status);
      for (const watcher of this.masterWatchers.keys()) watcher();
    });
    this.masterCheck = Promise.allSettled(asks).then(() => {
      this.masterCheck = null;
    });
  }

  /** Asks the next node for its status to learn the master; a failure ends the attempt. */
  private async discover(timeoutMs: number, cut: boolean): Promise<AttemptFailure | null> {
    const endpoint = this.pool.next();
    const response = await this.pool.request(endpoint, {
      method: "GET",
      path: "/v1/status",
      headers: { accept: "application/json" },
      timeoutMs,
    });
    if (!response.ok) {
      this.pool.noteFailure(endpoint);
      // Only the status request was sent: the operation itself never left this client, so
      // nothing was applied whatever became of that request.
      const failure = connectionFailure(response, cut);
      return {
        ...failure,
        kind: "refused",
        message: `asking it for the master: ${failure.message}`,
        mayHaveApplied: false,
      };
    }
    // A node that cannot give its status may still serve the request (it forwards), so
    // only a broken connection counts as a failed attempt here.
    if (response.status === 200) {
      const status = parseNodeStatus(parseJson(response.body));
      if (typeof status !== "string") this.pool.learnFromStatus(endpoint, status);
    }
    return null;
  }

  /**
   * Sorts an answer: null for a final one (2xx, 404, 412), a failure for one worth
   * retrying (408, 429, 5xx), and a thrown catalogued error for the rest.
   */
  private failureOf(response: FinalResponse, operation: Operation): AttemptFailure | null {
    const { status } = response;
    if ((status >= 200 && status < 300) || status === 412) return null;
    const body = errorBody(response);
    // A 404 is "no such key" unless the node says the route itself does not exist.
    if (status === 404 && body.code !== "ERR_NO_ROUTE") return null;
    const denied = accessError(response.status, body);
    if (denied !== null) throw denied;
    if (status === 400 || body.code === "ERR_INVALID_INPUT") throw invalidInput(body);
    if (status === 413 || body.code === "ERR_TOO_LARGE") throw tooLarge(body);
    if (body.code === "ERR_CONFLICT") throw new ConflictError(body.message ?? "conflict");
    if (body.code === "ERR_QUOTA_EXCEEDED") throw quotaExceeded(body);
    if (body.code === "ERR_IDEMPOTENCY_KEY_REUSED") {
      throw new IdempotencyKeyReusedError(operation.idempotencyKey, response.endpoint);
    }
    if (!RETRIED_STATUSES.has(status)) {
      throw unexpected(response, body.message ?? "the request was refused");
    }
    this.pool.learnFromHint(body.hint);
    const retryAfterMs = body.retryAfterMs ?? parseRetryAfter(response);
    const code = body.code ?? "";
    const notTried =
      REJECTED_BEFORE_PROPOSING.has(code) && operation.once?.unsureOn?.has(code) !== true;
    return {
      kind: "unavailable",
      endpoint: response.endpoint,
      message: `HTTP ${status}${body.code === undefined ? "" : ` ${body.code}`}: ${body.message ?? "no detail"}`,
      ...(body.code === undefined ? {} : { code: body.code }),
      ...(body.table === undefined ? {} : { table: body.table }),
      retryAfterMs,
      tryNextAtOnce: NODE_LOCAL_CODES.has(body.code ?? ""),
      mayHaveApplied: !notTried,
      cutByDeadline: false,
    };
  }

  private statusFrom(response: FinalResponse): NodeStatus {
    const denied = accessError(response.status, errorBody(response));
    if (denied !== null) throw denied;
    if (response.status !== 200) throw unexpected(response, "GET /v1/status did not answer 200");
    const status = parseNodeStatus(parseJson(response.body));
    if (typeof status === "string") throw unexpected(response, status);
    this.pool.learnFromStatus(response.endpoint, status);
    return status;
  }

  /**
   * The key's revision after a 412: from the answer's `currentRevision` or ETag when the
   * node gives one, else by reading the key (0 when it does not exist).
   */
  private async currentRevision(
    key: string,
    response: FinalResponse,
    startedAt: number,
  ): Promise<number> {
    const json = parseJson(response.body) as { currentRevision?: unknown } | null;
    const fromBody = json?.currentRevision;
    if (typeof fromBody === "number" && Number.isSafeInteger(fromBody)) return fromBody;
    const fromEtag = revisionFromEtag(response.headers.etag);
    if (fromEtag !== null) return fromEtag;
    // The read is part of the write: it gets what is left of the write's deadline, not a
    // deadline of its own, but at least one attempt's time, so that a refusal that came
    // late is not reported as a timeout.
    const leftMs = this.policy.deadlineMs - (performance.now() - startedAt);
    const deadlineMs = Math.max(this.policy.attemptTimeoutMs, leftMs);
    const read = await this.send({ ...this.getOperation(key, false), deadlineMs });
    return read.status === 200 ? kvValueFrom(key, read).revision : 0;
  }

  private nextIdempotencyKey(): string {
    this.keyCounter++;
    return `${this.keyPrefix}-${this.keyCounter}`;
  }

  private assertOpen(): void {
    if (this.closing.signal.aborted) throw new ClientClosedError();
  }
}

/**
 * Statuses that another attempt may change: the cluster is between masters, busy, or a
 * proxy lost the node. A 500 is not among them: it is a bug that retrying will not fix.
 */
const RETRIED_STATUSES = new Set([408, 429, 502, 503, 504]);

/** Codes that speak only for the answering node, so another node may serve at once. */
const NODE_LOCAL_CODES = new Set(["ERR_SHUTTING_DOWN", "ERR_STORAGE_FAILED", "ERR_NOT_MASTER"]);

/**
 * Whether a failed switchover or membership change may have been carried out: its answer
 * was lost, or the node answered with a code that leaves it open (a change proposed but not
 * committed in time, say). ERR_SWITCHOVER_FAILED is not one: the hand-over did not happen
 * (or another node took over than the one asked for), and asking again is what to do.
 */
function doneOrUnknown(failure: AttemptFailure): boolean {
  if (failure.kind === "lost") return true;
  return failure.mayHaveApplied && failure.code !== "ERR_SWITCHOVER_FAILED";
}

/**
 * Codes a node answers with before it proposes a write, so that attempt applied nothing.
 * Not ERR_SHUTTING_DOWN: a stopping node of version 0.2 answered it also for the writes it
 * had already put in the log (or forwarded), which the next master may still commit (later
 * versions answer ERR_INDETERMINATE for those), and this client may talk to either.
 */
const REJECTED_BEFORE_PROPOSING = new Set([
  "ERR_NO_MASTER",
  "ERR_NOT_MASTER",
  "ERR_BUSY",
  "ERR_TABLE_FULL",
]);

function parsePolicy(options: ClientOptions): RetryPolicy {
  const problems: string[] = [];
  const field = (name: keyof RetryPolicy & keyof ClientOptions, min: number): number => {
    const value = options[name] ?? DEFAULT_RETRY_POLICY[name];
    if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
      problems.push(`${name} must be a number >= ${min}`);
    } else if (name !== "attemptCountMax" && value > TIMER_MS_MAX) {
      // Node runs a longer timer after 1 ms: every attempt would time out at once.
      problems.push(`${name} must be at most ${TIMER_MS_MAX} (about 24.8 days)`);
    }
    return value;
  };
  const policy: RetryPolicy = {
    deadlineMs: field("deadlineMs", 1),
    attemptTimeoutMs: field("attemptTimeoutMs", 1),
    retryDelayMsMin: field("retryDelayMsMin", 0),
    retryDelayMsMax: field("retryDelayMsMax", 0),
    retryAfterMsMax: field("retryAfterMsMax", 0),
    attemptCountMax: field("attemptCountMax", 1),
  };
  if (policy.retryDelayMsMax < policy.retryDelayMsMin) {
    problems.push("retryDelayMsMax must be >= retryDelayMsMin");
  }
  if (problems.length > 0) throw new InvalidInputError("options", problems.join("; "));
  return Object.freeze(policy);
}

/** The longest delay a Node.js timer keeps, in milliseconds (2^31 - 1). */
const TIMER_MS_MAX = 2_147_483_647;

function checkKey(key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new InvalidInputError("key", "must be a non-empty string");
  }
  if (LONE_SURROGATE.test(key)) throw new InvalidInputError("key", LONE_SURROGATE_PROBLEM);
}

/**
 * The key as one path segment. `encodeURIComponent` leaves dots alone, and a segment of
 * only "." or ".." would be rewritten by the URL rules on its way, so those dots are
 * percent-encoded too (the node decodes them back).
 */
function keyPath(key: string): string {
  const segment = encodeURIComponent(key);
  return segment === "." || segment === ".." ? segment.replaceAll(".", "%2E") : segment;
}

function toBytes(value: string | Uint8Array): Uint8Array {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  throw new InvalidInputError("value", "must be a string or a Uint8Array");
}

function connectionFailure(
  response: Extract<PoolResponse, { ok: false }>,
  shortened: boolean,
): AttemptFailure {
  return {
    kind: response.kind,
    endpoint: response.endpoint,
    message: response.message,
    retryAfterMs: null,
    tryNextAtOnce: true,
    mayHaveApplied: response.kind === "lost",
    cutByDeadline: shortened && response.timedOut,
  };
}

/** The answer of `GET /v1/members/{id}/join` (see `BatonClient.joinInfo`). */
export interface JoinInfo {
  readonly clusterId: string | null;
  /** The cluster's name (`--cluster-id`); null from a node that does not say it. */
  readonly clusterName: string | null;
  readonly incarnation: number;
  readonly members: readonly {
    readonly id: number;
    readonly incarnation: number;
    readonly voter: boolean;
    readonly peerAddress: string;
    readonly httpUrl: string;
  }[];
}

function isMember(value: unknown): value is Member {
  const m = value as Partial<Member> | null;
  return (
    typeof m === "object" &&
    m !== null &&
    typeof m.id === "number" &&
    typeof m.voter === "boolean" &&
    typeof m.peerAddress === "string" &&
    (typeof m.httpUrl === "string" || m.httpUrl === null)
  );
}

function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(body));
  } catch {
    return null;
  }
}

interface ErrorBody {
  readonly code?: string;
  readonly message?: string;
  readonly field?: string;
  readonly limit?: number;
  /** ERR_QUOTA_EXCEEDED: which quota, and how much the store held. */
  readonly quota?: "keys" | "bytes";
  readonly usage?: number;
  /** ERR_TABLE_FULL: which table was full. */
  readonly table?: "sessions" | "idempotency" | "leases";
  readonly retryAfterMs: number | null;
  readonly hint: { masterId?: number; masterUrl?: string };
}

/** The fields of a JSON error answer this client uses; absent ones stay undefined. */
function errorBody(response: FinalResponse): ErrorBody {
  const json = parseJson(response.body);
  const o = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
  const text = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const num = (v: unknown): number | undefined =>
    typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
  const hint: { masterId?: number; masterUrl?: string } = {};
  // The HTTP layer names the master as `master` (NotMasterError's hint); `masterHint` and
  // `masterUrl` are accepted too, for proxies that translate.
  const masterId = num(o.master) ?? num(o.masterHint);
  const masterUrl = text(o.masterUrl);
  if (masterId !== undefined) hint.masterId = masterId;
  if (masterUrl !== undefined) hint.masterUrl = masterUrl;
  const body: { -readonly [K in keyof ErrorBody]: ErrorBody[K] } = {
    retryAfterMs: num(o.retryAfterMs) ?? null,
    hint,
  };
  const code = text(o.code);
  const message = text(o.error) ?? text(o.message);
  const field = text(o.field);
  const limit = num(o.limit);
  if (code !== undefined) body.code = code;
  if (message !== undefined) body.message = message;
  if (field !== undefined) body.field = field;
  if (limit !== undefined) body.limit = limit;
  if (o.quota === "keys" || o.quota === "bytes") body.quota = o.quota;
  const usage = num(o.usage);
  if (usage !== undefined) body.usage = usage;
  if (o.table === "sessions" || o.table === "idempotency" || o.table === "leases") {
    body.table = o.table;
  }
  return body;
}

/**
 * The error for an answer that says the token is missing, unknown or not allowed, or null.
 * Retrying cannot change these, so they are thrown at once.
 */
function accessError(status: number, body: ErrorBody): Error | null {
  const message = body.message ?? "the request was refused";
  if (status === 401 || body.code === "ERR_UNAUTHENTICATED")
    return new UnauthenticatedError(message);
  if (body.code === "ERR_FORBIDDEN") return new ForbiddenError(message);
  return null;
}

function invalidInput(body: ErrorBody): InvalidInputError {
  const error = new InvalidInputError(body.field ?? "request", body.message ?? "rejected");
  // The node's message already says what is wrong, usually prefixed with the field.
  if (body.message !== undefined) error.message = body.message;
  return error;
}

function tooLarge(body: ErrorBody): TooLargeError {
  const error = new TooLargeError(body.field ?? "value", body.limit ?? 0);
  if (body.message !== undefined) error.message = body.message;
  return error;
}

/** The store's quota refused the write (507): nothing was applied, and retrying will not help. */
function quotaExceeded(body: ErrorBody): QuotaExceededError {
  return new QuotaExceededError(body.quota ?? "bytes", body.limit ?? 0, body.usage ?? null);
}

function unexpected(response: FinalResponse, detail: string): UnexpectedResponseError {
  const code = errorBody(response).code;
  return new UnexpectedResponseError(response.endpoint, response.status, detail, code ?? null);
}

function parseRetryAfter(response: FinalResponse): number | null {
  const header = response.headers["retry-after"];
  return header === undefined ? null : parseRetryAfterMs(header);
}

function revisionFromEtag(etag: string | string[] | undefined): number | null {
  const value = typeof etag === "string" ? etag : etag?.[0];
  const match = value === undefined ? null : /^(?:W\/)?"?(\d+)"?$/.exec(value.trim());
  if (match === null) return null;
  const revision = Number(match[1]);
  return Number.isSafeInteger(revision) ? revision : null;
}

function revisionFromJson(response: FinalResponse): number {
  const json = parseJson(response.body) as { revision?: unknown } | null;
  const revision = json?.revision;
  if (typeof revision === "number" && Number.isSafeInteger(revision) && revision >= 0) {
    return revision;
  }
  throw unexpected(response, 'the answer has no "revision"');
}

/** A 200 answer to GET: raw bytes with the revision in ETag, or the JSON form. */
function kvValueFrom(key: string, response: FinalResponse): KvValue {
  const type = String(response.headers["content-type"] ?? "");
  let value: Uint8Array;
  let revision: number | null;
  if (type.startsWith("application/json")) {
    const json = parseJson(response.body) as { value?: unknown; revision?: unknown } | null;
    if (typeof json?.value !== "string") throw unexpected(response, 'the answer has no "value"');
    value = encoder.encode(json.value);
    revision = typeof json.revision === "number" ? json.revision : null;
  } else {
    value = response.body;
    revision = revisionFromEtag(response.headers.etag);
  }
  if (revision === null) throw unexpected(response, "the answer carries no revision (ETag)");
  const rev = revision;
  return { key, value, revision: rev, text: () => valueDecoder.decode(value) };
}

function giveUpError(
  outcome: Extract<RetryOutcome<unknown>, { ok: false }>,
  operation: Operation,
  policy: RetryPolicy,
): Error {
  const failures = outcome.failures;
  // The attempt the deadline cut short usually timed out for want of time, not because of
  // the cluster; the failure before it tells the caller more.
  const last = [...failures].reverse().find((f) => !f.cutByDeadline) ?? failures.at(-1);
  const details = giveUpDetails(outcome, operation, last);
  const applied = details.mayHaveApplied
    ? `; the write may have been applied: retry it with idempotency key ${operation.idempotencyKey} to apply it at most once`
    : "";
  if (outcome.reason === "closed") {
    // A write whose attempt the closing cut off may still be applied, as after a deadline.
    return new ClientClosedError(failures.length === 0 ? null : details);
  }
  const within = gaveUpWhen(outcome, policy);
  const tried = `${details.attemptCount} attempts to ${details.endpointsTried.join(", ") || "no node"}`;
  const summary = `${tried}; last error: ${details.lastError}`;
  if (last?.kind === "lost") {
    const message = `${operation.name} did not complete ${within} (${summary})${applied}`;
    return new DeadlineExceededError(details, message);
  }
  const refusal = masterRefusal(failures);
  if (refusal !== null) {
    const retryAfterMs = refusal.retryAfterMs ?? policy.retryDelayMsMax;
    return refusalError(refusal, details, retryAfterMs, {
      name: operation.name,
      within,
      tail: ` (${summary})${applied}`,
    });
  }
  const message = details.anyNodeAnswered
    ? `${operation.name}: no master available ${within} (${summary})${applied}`
    : `${operation.name}: no node answered at ${details.endpointsTried.join(", ")} ${within} (last error: ${details.lastError})${applied}`;
  return new NoMasterReachableError(details, last?.retryAfterMs ?? policy.retryDelayMsMax, message);
}

/**
 * A refusal thrown by an attempt of a write after an earlier attempt may have applied it:
 * an OutcomeUnknownError with the key, since the refusal alone reads as "not applied".
 * Anything else as it is.
 */
function refusedInDoubt(
  error: unknown,
  operation: Operation,
  failures: readonly AttemptFailure[],
  startedAt: number,
): unknown {
  if (!(error instanceof ClusterError) || operation.idempotencyKey === null) return error;
  const doubt = [...failures].reverse().find((f) => f.mayHaveApplied);
  if (doubt === undefined) return error;
  return new OutcomeUnknownError(
    {
      endpointsTried: [...new Set(failures.map((f) => f.endpoint))],
      attemptCount: failures.length + 1,
      elapsedMs: Math.round(performance.now() - startedAt),
      lastError: `${doubt.endpoint}: ${doubt.message}`,
      anyNodeAnswered: true,
      idempotencyKey: operation.idempotencyKey,
      mayHaveApplied: true,
    },
    error,
  );
}

function giveUpDetails(
  outcome: Extract<RetryOutcome<unknown>, { ok: false }>,
  operation: Operation,
  last: AttemptFailure | undefined,
): GiveUpDetails {
  const failures = outcome.failures;
  return {
    endpointsTried: [...new Set(failures.map((f) => f.endpoint))],
    attemptCount: failures.length,
    elapsedMs: Math.round(outcome.elapsedMs),
    lastError: last === undefined ? "none" : `${last.endpoint}: ${last.message}`,
    anyNodeAnswered: failures.some((f) => f.kind === "unavailable"),
    idempotencyKey: operation.idempotencyKey,
    mayHaveApplied: operation.idempotencyKey !== null && failures.some((f) => f.mayHaveApplied),
  };
}

/**
 * When the operation gave up, for its message. The loop gives up before the deadline when
 * the next back-off and the shortest useful attempt would not end before it; naming the
 * deadline then would misstate how long the caller waited.
 */
function gaveUpWhen(
  outcome: Extract<RetryOutcome<unknown>, { ok: false }>,
  policy: RetryPolicy,
): string {
  if (outcome.reason === "attempts") return `after ${policy.attemptCountMax} attempts`;
  const waitedMs = Math.round(outcome.elapsedMs);
  if (waitedMs >= policy.deadlineMs) return `within ${policy.deadlineMs} ms`;
  return `in ${waitedMs} ms, giving up before the ${policy.deadlineMs} ms deadline, which the next attempt would pass`;
}

/**
 * Codes with which a node that serves refuses a request for now: the master (or a backup
 * passing on its answer) was reached and answered. Giving up after one of them throws its
 * code, not ERR_NO_MASTER, so that a caller can tell an overloaded master from none. The
 * codes about reaching the master (ERR_NO_MASTER, ERR_NOT_MASTER, ERR_SHUTTING_DOWN,
 * ERR_STORAGE_FAILED, and ERR_INDETERMINATE, said when the master lost its role) are not
 * among them.
 */
const MASTER_REFUSALS = new Set([
  "ERR_BUSY",
  "ERR_TABLE_FULL",
  "ERR_TIMEOUT",
  "ERR_SWITCHOVER_FAILED",
]);

/**
 * The last answer, when it was one of MASTER_REFUSALS and no attempt after it got further
 * than a refused connection (which reached no node, so says nothing about the master).
 */
function masterRefusal(failures: readonly AttemptFailure[]): AttemptFailure | null {
  for (let i = failures.length - 1; i >= 0; i--) {
    const failure = failures[i] as AttemptFailure;
    if (failure.cutByDeadline || failure.kind === "refused") continue;
    const refused = failure.kind === "unavailable" && MASTER_REFUSALS.has(failure.code ?? "");
    return refused ? failure : null;
  }
  return null;
}

/** The error for giving up after `refusal`, with its code and the message's parts. */
function refusalError(
  refusal: AttemptFailure,
  details: GiveUpDetails,
  retryAfterMs: number,
  text: { readonly name: string; readonly within: string; readonly tail: string },
): Error {
  const { name, within, tail } = text;
  switch (refusal.code) {
    case "ERR_BUSY":
      return new MasterBusyError(
        details,
        retryAfterMs,
        `${name}: the master was still too busy to take it ${within}${tail}`,
      );
    case "ERR_TABLE_FULL": {
      // A node that does not name the table: the idempotency keys', which every write needs.
      const table = refusal.table ?? "idempotency";
      return new MasterTableFullError(
        details,
        table,
        retryAfterMs,
        `${name}: the master's table of ${TABLE_NAMES[table]} was still full ${within}${tail}`,
      );
    }
    case "ERR_SWITCHOVER_FAILED":
      return new SwitchoverFailedError(`${name} did not take place ${within}${tail}`);
    default:
      // ERR_TIMEOUT: the master could not commit the write in time; it may have applied it.
      return new DeadlineExceededError(details, `${name} did not complete ${within}${tail}`);
  }
}

const TABLE_NAMES = {
  sessions: "client sessions",
  idempotency: "idempotency keys",
  leases: "leases",
} as const;

/** A node's status request failed: why, and the catalogue code when the error has one. */
export function endpointError(endpoint: string, error: unknown): EndpointStatus {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  return {
    endpoint,
    error: message.replace(`${endpoint} `, ""),
    ...(typeof code === "string" ? { code } : {}),
  };
}

function memberId(id: number): number {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new InvalidInputError("id", "must be a member id (a positive integer)");
  }
  return id;
}
