/**
 * The ready server: a BatonNode running the built-in key-value state machine, exposed by
 * the HTTP API. This file adapts the node to the API's `KvNodeApi`: it validates commands
 * before proposing them (so bad input never reaches the log), turns results into values
 * and errors into the catalogue's, and reads linearizably through ReadIndex.
 */

import { randomInt, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createSecureContext } from "node:tls";
import pino, { type Logger } from "pino";
import type { Registry } from "prom-client";
import { MEMBER_INCARNATION_MAX } from "../core/configuration.js";
import { EventFeed } from "../http/event-feed.js";
import type {
  KvNodeApi,
  KvWriteOptions,
  MemberChangeRequest,
  StatusOptions,
} from "../http/node-api.js";
import type { BackupSnapshot } from "../http/routes/snapshot-route.js";
import { createHttpServer, type HttpServer, type HttpTlsConfig } from "../http/server.js";
import { parseTokensFile, type TokenRecord, TokenStore } from "../http/tokens.js";
import {
  defaultKvLimits,
  type KvCommand,
  type KvEntry,
  type KvResult,
  KvStateMachine,
} from "../kv/index.js";
import type { Member } from "../protocol/messages.js";
import type { NodeStatus } from "../protocol/status.js";
import {
  createTransport,
  type JoinedIdentity,
  readPeerTls,
  readPem,
  startNode,
  tlsFiles,
} from "../server/create-node.js";
import type { BatonNode, SwitchoverOutcome } from "../server/node.js";
import {
  insecureExposure,
  insecurePeerLink,
  isWildcardAddress,
  type NodeConfig,
  NodeConfigError,
  type NodeConfigInput,
  parseNodeConfig,
} from "../server/node-config.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import { ConflictError, InvalidInputError, NotMasterError } from "../shared/errors.js";
import { listenError } from "../shared/listen-error.js";
import { certificateValidityMs } from "../shared/pem.js";
import { parseAddress } from "../transport/address.js";
import type { TcpTransport } from "../transport/tcp-transport.js";
import { createFaultInjector } from "./fault-injector.js";
import { KvStore } from "./kv-store.js";
import { connectNodeEvents } from "./node-events.js";
import { createNodeMetrics } from "./node-metrics.js";
import { logStalls } from "./stall-log.js";
import { registerStoreMetrics } from "./store-metrics.js";
import { defaultStoreQuota, type StoreQuota } from "./store-quota.js";

export interface KvNodeOptions {
  /**
   * Serve `/v1/faults/*`, which kill, pause or partition this node on request: demos and
   * teaching only (`baton start --allow-fault-injection`).
   * @default false
   */
  readonly allowFaultInjection?: boolean;
  /** What `--join <url>` learned, for a member added to a running cluster. */
  readonly joined?: JoinedIdentity | null;
  /**
   * The store's quota this node proposes when it is the master (`--quota-keys`,
   * `--quota-bytes`; 0 for none). Give every node the same.
   * @default defaultStoreQuota()
   */
  readonly quota?: StoreQuota;
}

/** What `KvNode.reload` did: the parts it replaced, and why it kept the others. */
export interface ReloadOutcome {
  readonly reloaded: readonly string[];
  readonly failed: readonly string[];
}

export class KvNode implements KvNodeApi {
  readonly id: number;
  /** Ranges, transactions, leases and watches (`KvStoreApi`). */
  readonly store: KvStore;
  private http: HttpServer | null = null;
  private stopEvents: () => void = () => {};
  /** The bearer tokens the HTTP API accepts, or null when it needs none. */
  private tokens: TokenStore | null = null;

  private constructor(
    readonly node: BatonNode,
    readonly stateMachine: KvStateMachine,
    private readonly config: NodeConfig,
    private readonly transport: TcpTransport,
    quota: StoreQuota,
  ) {
    this.id = node.id;
    this.store = new KvStore(node, stateMachine, quota);
  }

  /**
   * Starts the node and, when configured, its HTTP API (with the event feed and the
   * dashboard, and fault injection only when `options.allowFaultInjection`). `input` goes
   * through `parseNodeConfig` (a parsed one comes out the same), so fields left out take
   * their defaults. `logger` defaults to pino at "info" to stderr.
   *
   * Rejects with NodeConfigError (an InvalidInputError, field `config`) listing every
   * problem of the configuration; with InvalidInputError (field `listen`, or `http`) for an
   * address other machines can reach without mutual TLS between nodes, HTTPS and tokens,
   * as `baton start` refuses it, unless `insecure`; with an Error naming the file when a
   * certificate, key or tokens file cannot be used; and with the storage errors of
   * docs/storage.md.
   */
  static async start(
    input: NodeConfigInput,
    logger?: Logger,
    options: KvNodeOptions = {},
  ): Promise<KvNode> {
    const config = checkedConfig(input);
    const quota = checkedQuota(options.quota);
    const log =
      logger ??
      pino({ name: "baton", level: "info" }, pino.destination(2)).child({ node: config.id });
    const sm = new KvStateMachine(defaultKvLimits());
    // Read before anything starts, so that a bad file stops the node with its name.
    const httpTls = readHttpTls(config);
    const tokens = config.tokens === null ? null : new TokenStore(readTokens(config.tokens));
    const transport = createTransport(config, log);
    const node = await startNode(config, sm, log, transport, {}, options.joined ?? null);
    logStalls(node, { min: config.electionMsMin, max: config.electionMsMax }, log);
    const kv = new KvNode(node, sm, config, transport, quota);
    kv.tokens = tokens;
    kv.store.startLeaseTicker();
    if (config.http !== null) {
      // parseNodeConfig already validated the address.
      const parsed = parseAddress(config.http);
      assert(parsed.ok, `http address ${config.http}`);
      const { host, port } = parsed.address;
      const events = new EventFeed(node.id);
      kv.stopEvents = connectNodeEvents(node, events);
      kv.http = createHttpServer({
        api: kv,
        logger: log.child({ component: "http" }),
        requestTimeoutMs: config.requestTimeoutMs,
        metrics: withStoreMetrics(createNodeMetrics(node, events, transport), sm),
        events,
        faults:
          options.allowFaultInjection === true
            ? createFaultInjector(node, events, log.child({ component: "faults" }))
            : null,
        ...(httpTls === null ? {} : { tls: httpTls }),
        tokens,
        snapshots: { backupSnapshot: () => kv.backupSnapshot() },
      });
      try {
        await kv.http.listen(host, port);
      } catch (error) {
        // The listen's error is what the operator needs; a failure to clean up is logged.
        kv.store.stopLeaseTicker();
        kv.stopEvents();
        await kv.http.close().catch((closing: unknown) => {
          rethrowIfBug(closing);
          log.warn({ err: closing }, "closing the HTTP server after a failed listen");
        });
        await node.stop().catch((stopping: unknown) => {
          rethrowIfBug(stopping);
          log.warn({ err: stopping }, "stopping the node after a failed listen");
        });
        throw listenError(error, config.http, {
          flag: "--http",
          advertise: "--advertise-http is the name clients use",
        });
      }
    }
    return kv;
  }

  /**
   * Reads the certificate, key and tokens files again (SIGHUP) and uses them for new
   * connections and requests; established connections carry on. A file that cannot be
   * read or used leaves its part as it was, and is named in `failed`.
   */
  reload(): ReloadOutcome {
    const reloaded: string[] = [];
    const failed: string[] = [];
    const attempt = (part: string, action: () => void): void => {
      try {
        action();
        reloaded.push(part);
      } catch (error) {
        rethrowIfBug(error);
        failed.push(`${part}: ${(error as Error).message}`);
      }
    };
    const { config } = this;
    // Every certificate is read and checked before any is put in use: when the peers and
    // HTTPS share a certificate file (as docs/security.md sets them up), one that fails
    // either check is put in neither, so the two listeners never present different ones
    // (the old one on HTTPS, the one about to expire, while the peers had the new).
    const prepare = <T>(part: string, read: () => T): { ok: true; value: T } | { ok: false } => {
      try {
        return { ok: true, value: read() };
      } catch (error) {
        rethrowIfBug(error);
        failed.push(`${part}: ${(error as Error).message}`);
        return { ok: false };
      }
    };
    const peer =
      config.tlsCa === null
        ? null
        : prepare("peer TLS", () => {
            const tls = readPeerTls(config);
            assert(tls !== null, "peer TLS configured");
            try {
              createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
            } catch (error) {
              throw new Error(`${tlsFiles(config)}: ${(error as Error).message}`);
            }
            return tls;
          });
    const http = this.http;
    const https =
      http === null || config.httpTlsCert === null
        ? null
        : prepare("HTTP TLS", () => readHttpTls(config) as HttpTlsConfig);
    const shared =
      config.tlsCert !== null &&
      config.httpTlsCert !== null &&
      config.tlsCert === config.httpTlsCert;
    const held = shared && (peer?.ok === false || https?.ok === false);
    const kept = (part: string, other: string): void => {
      failed.push(
        `${part}: kept the old certificate: the same file serves ${other}, which was refused`,
      );
    };
    if (peer?.ok === true) {
      if (held) kept("peer TLS", "HTTPS");
      else attempt("peer TLS", () => this.transport.setTls(peer.value));
    }
    if (https?.ok === true && http !== null) {
      if (held) kept("HTTP TLS", "the peer links");
      else attempt("HTTP TLS", () => http.setTls(https.value));
    }
    const tokens = this.tokens;
    if (tokens !== null && config.tokens !== null) {
      const file = config.tokens;
      attempt("tokens", () => tokens.replace(readTokens(file)));
    }
    return { reloaded, failed };
  }

  get httpServer(): HttpServer | null {
    return this.http;
  }

  put(key: string, value: Uint8Array, options: KvWriteOptions = {}): Promise<KvResult> {
    return this.write({ type: "put", key, value, ...writeOptions(options) });
  }

  delete(key: string, options: KvWriteOptions = {}): Promise<KvResult> {
    const { lease: _, ...rest } = writeOptions(options);
    return this.write({ type: "delete", key, ...rest });
  }

  async get(
    key: string,
    options: { readonly stale: boolean } = { stale: false },
  ): Promise<KvEntry | null> {
    if (!options.stale) await this.node.readBarrier();
    return this.stateMachine.get(key);
  }

  stoppedReason(): string | null {
    return this.node.stoppedReason ?? this.stopping;
  }

  status(options: StatusOptions = {}): NodeStatus {
    const status = { ...this.node.status(), clusterName: this.config.clusterId };
    if (options.digest !== true) return status;
    // Both read in the same turn of the event loop, so the digest is of appliedIndex's state.
    return { ...status, stateDigest: this.stateMachine.stateHash() };
  }

  /**
   * On the master: a snapshot of the store holding every write acknowledged before the call
   * (a read barrier first), for `baton snapshot save`. Throws NotMasterError elsewhere.
   */
  async backupSnapshot(): Promise<BackupSnapshot> {
    if (!this.isMaster()) throw new NotMasterError(this.node.masterId);
    await this.node.readBarrier();
    return this.node.backupSnapshot();
  }

  isMaster(): boolean {
    return this.node.role === "master";
  }

  masterHttpUrl(): string | null {
    const master = this.node.masterId;
    if (master === null || master === this.id) return null;
    return this.node.httpUrlOf(master);
  }

  /**
   * Stops the node and its HTTP API. With `handOver`, a master first hands its role to a
   * backup (SIGTERM does this), while the API still serves: writes that arrive meanwhile
   * are forwarded to the new master.
   */
  async stop(options: { readonly handOver?: boolean } = {}): Promise<void> {
    if (options.handOver === true) await this.node.handOver();
    // From here every health check fails, /health included: no load balancer sends a new
    // request to a node that is going (the HTTP side may drain for seconds).
    this.stopping = "a stop was asked; it finishes the requests under way";
    this.store.stopLeaseTicker();
    this.stopEvents();
    if (options.handOver !== true) {
      // At once (Ctrl-C): the node stops while the HTTP side closes, so the writes it holds
      // are answered ERR_INDETERMINATE now rather than ERR_TIMEOUT at their deadline.
      const [closed, stopped] = await Promise.allSettled([this.http?.close(), this.node.stop()]);
      if (closed.status === "rejected") throw closed.reason;
      if (stopped.status === "rejected") throw stopped.reason;
      return;
    }
    try {
      // After a hand-over the requests in flight are let finish: their writes commit.
      await this.http?.close();
    } finally {
      // Whatever the HTTP side did, the node stops: its storage closes and its lock goes.
      await this.node.stop();
    }
  }

  /** Why the node counts as stopped for health checks before its node has stopped. */
  private stopping: string | null = null;

  switchover(to: number | null): Promise<SwitchoverOutcome> {
    return this.node.switchover(to);
  }

  async changeMembers(
    change: MemberChangeRequest,
  ): Promise<{ readonly members: readonly Member[] }> {
    const outcome = await this.node.changeMembers(
      change.type === "add"
        ? {
            type: "add",
            member: {
              id: change.id,
              // The new member's incarnation: it learns it with `--join`.
              incarnation: randomInt(1, MEMBER_INCARNATION_MAX),
              voter: false,
              peerAddress: change.peerAddress,
              httpUrl: change.httpUrl,
            },
          }
        : change,
    );
    return { members: outcome.members };
  }

  joinInfo(id: number): {
    readonly incarnation: number;
    readonly members: readonly Member[];
    readonly clusterId: string | null;
    readonly clusterName: string;
  } {
    // Only the master knows how far a learner has acknowledged (the check below): any
    // other member would hand the incarnation out unchecked. The client follows the hint.
    if (!this.isMaster()) throw new NotMasterError(this.node.masterId);
    const { members } = this.node.members();
    const member = members.find((m) => m.id === id);
    if (member === undefined) {
      throw new InvalidInputError(
        "id",
        `node ${id} is not a member: add it first (baton member add ${id} …)`,
      );
    }
    if (member.voter || member.incarnation === 0) {
      throw new ConflictError(
        `node ${id} is a voter of the cluster: a node that lost its data comes back as a new member (baton member replace ${id}), then starts with --join`,
      );
    }
    // Members given on the command line have no address in the configuration: this
    // node's own view fills them in, so that the new member can dial them.
    const status = this.node.status();
    const known = new Map(status.members.map((m) => [m.id, m]));
    // A learner that already acknowledged entries under this incarnation has a data
    // directory: a second, empty one started with it would be counted as holding them (the
    // master's record of them never goes back), and could even be promoted on it.
    const acknowledged = known.get(id)?.matchIndex ?? 0;
    if (acknowledged > 0) {
      throw new ConflictError(
        `node ${id} (member incarnation ${member.incarnation}) has already acknowledged entries up to ${acknowledged}: its data directory exists; restart it on that directory, or, if it was lost, replace the member again (baton member replace ${id}) and join with an empty one`,
      );
    }
    return {
      incarnation: member.incarnation,
      clusterId: this.node.clusterId,
      clusterName: this.config.clusterId,
      members: members.map((m) => ({
        ...m,
        peerAddress: m.peerAddress !== "" ? m.peerAddress : (known.get(m.id)?.address ?? ""),
        httpUrl: m.httpUrl !== "" ? m.httpUrl : (known.get(m.id)?.httpUrl ?? ""),
      })),
    };
  }

  /** Validates a command (bad input never reaches the log) and proposes it. */
  private write(command: KvCommand): Promise<KvResult> {
    return this.store.propose(command);
  }
}

/**
 * `input` parsed, or the error that stops the start before anything listens: a bad
 * configuration, or one that exposes the node (the rule of `baton start`).
 */
function checkedConfig(input: NodeConfigInput): NodeConfig {
  // parseNodeConfig reads the peers first: without a list of them (a JavaScript caller's
  // object), the caller would get a TypeError from inside it instead of the field's name.
  const peers = (input as Partial<NodeConfigInput> | null)?.peers;
  if (!Array.isArray(peers) || !peers.every((p) => typeof p === "object" && p !== null)) {
    throw new NodeConfigError(["peers must be a list of { id, address }, this node included"]);
  }
  const config = parseNodeConfig(input);
  const exposure = insecureExposure(config);
  if (exposure !== null) {
    // Name the peer link when it is open to others; otherwise the HTTP API is what lacks
    // its protection.
    const field = insecurePeerLink(config) === null ? "http" : "listen";
    throw new InvalidInputError(
      field,
      `${exposure}\nEmbedded, these are the NodeConfig fields tlsCa, tlsCert, tlsKey, httpTlsCert, httpTlsKey, tokens and insecure: true.`,
    );
  }
  return config;
}

function withStoreMetrics(registry: Registry, sm: KvStateMachine): Registry {
  registerStoreMetrics(registry, sm);
  return registry;
}

/** The HTTPS certificate and key of `config` as PEM text, or null for plain HTTP. */
/**
 * The host clients reach the HTTP API at: the advertised one, else the listen address's
 * unless it is a wildcard (then only the operator knows the names).
 */
function httpHostOf(config: NodeConfig): string | null {
  const address = config.advertiseHttp ?? config.http;
  if (address === null || isWildcardAddress(address)) return null;
  const parsed = parseAddress(address);
  return parsed.ok ? parsed.address.host : null;
}

/** The DNS names and IP addresses a certificate is for ("no host" when none). */
function hostNames(certificate: X509Certificate): string {
  const names = (certificate.subjectAltName ?? "")
    .split(", ")
    .filter((name) => name.startsWith("DNS:") || name.startsWith("IP Address:"));
  return names.length === 0 ? "no host" : names.join(", ");
}

/**
 * The HTTPS certificate and key of `config`, checked as clients would check them (a pair
 * that matches, naming the host clients reach, valid now), or null without HTTPS; throws
 * an Error naming the files. `baton config check` asks it too.
 */
export function readHttpTls(config: NodeConfig): HttpTlsConfig | null {
  if (config.httpTlsCert === null || config.httpTlsKey === null) return null;
  const tls = {
    cert: readPem(config.httpTlsCert, "--http-tls-cert"),
    key: readPem(config.httpTlsKey, "--http-tls-key"),
  };
  const files = `--http-tls-cert ${config.httpTlsCert} --http-tls-key ${config.httpTlsKey}`;
  try {
    createSecureContext(tls);
  } catch (error) {
    throw new Error(`${files}: ${(error as Error).message}`);
  }
  const certificate = new X509Certificate(tls.cert);
  // Every client checking the name would refuse a certificate for another host.
  const host = httpHostOf(config);
  if (host !== null) {
    const named = isIP(host) !== 0 ? certificate.checkIP(host) : certificate.checkHost(host);
    if (named === undefined) {
      throw new Error(
        `${files}: the certificate names ${hostNames(certificate)}, not ${host}, the host clients reach this node at (${config.advertiseHttp !== null ? "--advertise-http" : "--http"}): every client would refuse it; issue one naming ${host}`,
      );
    }
  }
  // Every client would refuse an expired certificate; a reload keeps the old one instead.
  const { fromMs, toMs } = certificateValidityMs(certificate);
  const now = Date.now();
  if (toMs < now)
    throw new Error(`${files}: the certificate expired on ${new Date(toMs).toUTCString()}`);
  if (fromMs > now) {
    throw new Error(
      `${files}: the certificate is not valid before ${new Date(fromMs).toUTCString()}: is this machine's clock right?`,
    );
  }
  return tls;
}

/** The records of the tokens file `file`; throws an Error naming the file. */
function readTokens(file: string): TokenRecord[] {
  try {
    return parseTokensFile(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`--tokens ${file}: ${(error as Error).message}`);
  }
}

function writeOptions(options: KvWriteOptions): {
  ifRevision?: number;
  idempotencyKey?: string;
  lease?: number;
} {
  const out: { ifRevision?: number; idempotencyKey?: string; lease?: number } = {};
  if (options.ifRevision !== undefined) out.ifRevision = options.ifRevision;
  if (options.idempotencyKey !== undefined) out.idempotencyKey = options.idempotencyKey;
  if (options.lease !== undefined) out.lease = options.lease;
  return out;
}

/**
 * The store quota an embedder gave, checked before anything starts: the state machine
 * refuses a `set_quota` that is not two whole numbers >= 0, and a master whose own quota is
 * refused stops (a bug: proposing it again would leave the store with no quota in force).
 */
function checkedQuota(quota: StoreQuota | undefined): StoreQuota {
  if (quota === undefined) return defaultStoreQuota();
  for (const field of ["keyCountMax", "bytesMax"] as const) {
    const value: unknown = (quota as unknown as Record<string, unknown>)?.[field];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new InvalidInputError(
        `quota.${field}`,
        `must be a whole number >= 0 (0: no limit), not ${String(value)}`,
      );
    }
  }
  return quota;
}
