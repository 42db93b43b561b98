/**
 * The HTTP API every node serves (docs/api.md): the
 * key-value routes, the status and health routes, the metrics, the live event stream, the
 * dashboard and (only when the node allows it) fault injection, on one fastify instance.
 * This file owns the server-wide behaviour: bodies are raw bytes of any content type, every
 * error answer is the same JSON shape with a code from error-status.ts, unknown routes get
 * 404 and wrong methods 405, and nothing unexpected ever escapes as a hang or a crash (it
 * is answered 500 and logged).
 *
 * It must not log per request: the request path is benchmarked, so fastify's request
 * logging is off and only unexpected errors are logged.
 */

import type { Socket } from "node:net";
import { createSecureContext, type Server as TlsServer } from "node:tls";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  type onRequestHookHandler,
  type preParsingHookHandler,
} from "fastify";
import { type Logger, pino } from "pino";
import { Gauge, Registry } from "prom-client";
import { defaultKvLimits, type KvLimits } from "../kv/index.js";
import { assert } from "../shared/assert.js";
import { ClusterError, InvalidInputError, TooLargeError } from "../shared/errors.js";
import { requireTokens } from "./auth.js";
import { guardBrowsers, originAllowed } from "./browser-guard.js";
import { describeError, errorAnswer, InputLimitError, sendErrorAnswer } from "./error-status.js";
import { EventFeed } from "./event-feed.js";
import type { HttpContext } from "./http-context.js";
import { HttpMetrics } from "./http-metrics.js";
import type { KvNodeApi } from "./node-api.js";
import { processMetrics } from "./process-metrics.js";
import { KV_ROUTE, validationError } from "./request-input.js";
import { registerDashboardRoutes } from "./routes/dashboard-routes.js";
import { StreamBuffers } from "./routes/event-stream.js";
import { EVENT_STREAMS_MAX, registerEventsRoute } from "./routes/events-route.js";
import { type FaultInjector, registerFaultRoutes } from "./routes/fault-routes.js";
import { registerKvRoutes } from "./routes/kv-routes.js";
import { registerMemberRoutes } from "./routes/member-routes.js";
import { registerMetricsRoute } from "./routes/metrics-route.js";
import { recordArrivals } from "./routes/resource.js";
import { registerSnapshotRoute, type SnapshotSource } from "./routes/snapshot-route.js";
import { registerStatusRoutes } from "./routes/status-routes.js";
import { registerStoreRoutes } from "./routes/store-routes.js";
import {
  registerWatchRoute,
  WATCH_MASTERLESS_MS,
  WATCH_PROGRESS_MS,
  WATCHES_MAX,
  type WatchStreams,
} from "./routes/watch-route.js";
import type { TokenStore } from "./tokens.js";

/** The certificate (chain) and key HTTPS serves, PEM text; `ca` completes the chain. */
export interface HttpTlsConfig {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string | undefined;
}

export interface HttpServerOptions {
  /** The node the API serves. */
  readonly api: KvNodeApi;
  /**
   * Where unexpected errors (answered 500) are logged. Requests themselves are not logged.
   * @default a pino logger at level "warn" writing to stderr
   */
  readonly logger?: Logger | undefined;
  /**
   * The limits keys, values and idempotency keys are checked against; they must be the
   * limits the node's state machine runs with. The body limit is `valueBytesMax`.
   * @default defaultKvLimits()
   */
  readonly limits?: KvLimits | undefined;
  /**
   * Milliseconds a request may wait for the node (which forwards it to the master when it
   * is a backup) before it is answered 503 ERR_TIMEOUT with Retry-After.
   * @default 5000
   */
  readonly requestTimeoutMs?: number | undefined;
  /**
   * The registry `/metrics` serves; the HTTP layer registers its own metrics there. Without
   * one, the server makes its own registry holding the process metrics of prom-client.
   */
  readonly metrics?: Registry | undefined;
  /**
   * Adds routes of the caller's own: called once with the fastify instance, before it
   * starts (the routes must not clash with the API's or the built-in dashboard's).
   */
  readonly dashboard?: ((app: FastifyInstance) => void) | undefined;
  /** The folder the built-in dashboard's files are read from. @default the build's own */
  readonly dashboardDir?: string | undefined;
  /**
   * The node's event feed, served at `/v1/events`; the server adds a request sample to it
   * every second while listening.
   * @default a new feed for `api.id`
   */
  readonly events?: EventFeed | undefined;
  /**
   * What `/v1/faults/*` does. Null or absent: fault injection is off and those routes answer
   * 403 ERR_FAULTS_DISABLED (a node allows it only with --allow-fault-injection).
   * @default null
   */
  readonly faults?: FaultInjector | null | undefined;
  /**
   * The token every fault POST must carry in `X-Baton-Fault`; give one to know it (tests).
   * @default 128 random bits, drawn anew for every server (every run of the node)
   */
  readonly faultToken?: string | undefined;
  /**
   * Serve HTTPS with this certificate and key instead of plain HTTP. The certificate must
   * name every host clients use (`baton certs node --host`).
   * @default plain HTTP
   */
  readonly tls?: HttpTlsConfig | undefined;
  /**
   * The bearer tokens requests must carry (see auth.ts for which role each route needs).
   * Null or absent: no authentication, as on a loopback demo.
   * @default null
   */
  readonly tokens?: TokenStore | null | undefined;
  /**
   * Where `POST /v1/snapshot` (a backup of the store) gets its snapshot. Null or absent:
   * the route is not served.
   * @default null
   */
  readonly snapshots?: SnapshotSource | null | undefined;
  /** Time and connection bounds; see HttpConnectionLimits. @default defaultHttpConnectionLimits() */
  readonly connections?: Partial<HttpConnectionLimits> | undefined;
  /**
   * How often a watch stream says how far it has sent (`: revision R`), when that moved on,
   * in ms (see routes/watch-route.ts).
   * @default 5000
   */
  readonly watchProgressMs?: number | undefined;
  /**
   * How long this node may know no master before it ends its watch streams (their readers
   * resume on another node), in ms.
   * @default 3000
   */
  readonly watchMasterlessMs?: number | undefined;
}

/**
 * What one client may hold of the server: how long it may take to send a request and how
 * long a connection may sit idle, and how many connections all clients may have open. A
 * client that trickles its headers or body, or holds connections without using them,
 * is disconnected instead of tying the node up.
 */
export interface HttpConnectionLimits {
  /** Longest time to receive a request's headers, in ms. @default 10000 */
  readonly headersTimeoutMs: number;
  /**
   * Longest time to receive a whole request, headers and body, in ms (answered 408). It
   * bounds receiving only: waiting for the master is bounded by `requestTimeoutMs`.
   * @default 30000
   */
  readonly receiveTimeoutMs: number;
  /**
   * A connection with no traffic in either direction for this long is closed, in ms. It
   * must exceed `requestTimeoutMs`, and the event stream's 15 s keep-alive comment.
   * @default 120000
   */
  readonly idleTimeoutMs: number;
  /** A kept-alive connection that sends no next request for this long is closed, ms. @default 10000 */
  readonly keepAliveTimeoutMs: number;
  /**
   * Most connections open at once; further ones are closed as they arrive. Watches may take
   * all but EVENT_STREAMS_MAX + 128 of them. @default 4096
   */
  readonly connectionsMax: number;
}

export function defaultHttpConnectionLimits(): HttpConnectionLimits {
  return {
    headersTimeoutMs: 10_000,
    receiveTimeoutMs: 30_000,
    idleTimeoutMs: 120_000,
    keepAliveTimeoutMs: 10_000,
    connectionsMax: 4096,
  };
}

/**
 * Connections the streams (watches and event streams) always leave to ordinary requests,
 * so that a node whose watches reached their cap still answers health checks and writes.
 */
const CONNECTIONS_KEPT_FOR_REQUESTS = 128;

/** How often Node checks the header and receive timeouts, in ms (its default is 30 s). */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** While the server closes, how often connections that finished their request are ended. */
const IDLE_SWEEP_MS = 20;
/** How long past the request deadline a stop waits for busy connections before cutting them. */
const CLOSE_GRACE_MS = 1000;

/** Where a server listens. */
export interface HttpAddress {
  readonly host: string;
  readonly port: number;
  /** The base URL, such as "http://127.0.0.1:8101". */
  readonly url: string;
}

export interface HttpServer {
  /** The fastify instance, for `inject` in tests and for adding routes before `listen`. */
  readonly app: FastifyInstance;
  /** The registry `/metrics` serves. */
  readonly registry: Registry;
  /** The feed `/v1/events` serves; the node publishes its events there. */
  readonly events: EventFeed;
  /** Starts listening; port 0 picks a free port. Resolves with the address taken. */
  listen(host: string, port: number): Promise<HttpAddress>;
  /**
   * Stops accepting connections, lets requests in flight finish (each is bounded by the
   * request deadline), closes idle keep-alive connections.
   */
  close(): Promise<void>;
  /** The address listened on, or null before `listen` and after `close`. */
  address(): HttpAddress | null;
  /**
   * Replaces the HTTPS certificate and key for new connections (a rotation); throws,
   * changing nothing, when they are not usable. Only a server started with `tls` has one.
   */
  setTls(tls: HttpTlsConfig): void;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
/** Interval of the request samples in the event feed, milliseconds. */
const SAMPLE_INTERVAL_MS = 1000;
/**
 * Read-only routes any page may read across origins: a dashboard served by one member
 * reads the others' status and events. An event stream writes its own headers (it is
 * taken over from fastify), so this covers the answers that are not a stream: a 503
 * ERR_BUSY must reach the other member's page as an answer, not as a network error.
 */
const CROSS_ORIGIN_PREFIXES = ["/v1/status", "/v1/events", "/health"];

/**
 * The reads a page of another member's origin may make (the dashboard's key browser goes
 * on reading from another member when the page's own node stops answering); a page of any
 * other origin cannot read them, even from a node without tokens.
 */
const MEMBER_ORIGIN_ROUTES = ["/v1/kv", KV_ROUTE, "/v1/watch"];

/** Builds the HTTP API for `options.api`. It serves nothing until `listen` (or `inject`). */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const limits = options.limits ?? defaultKvLimits();
  const logger = options.logger ?? pino({ name: "baton-http", level: "warn" }, pino.destination(2));
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  assert(Number.isSafeInteger(requestTimeoutMs) && requestTimeoutMs > 0, "requestTimeoutMs");
  const registry = options.metrics ?? defaultRegistry();
  const metrics = new HttpMetrics(registry);
  const connections = { ...defaultHttpConnectionLimits(), ...options.connections };
  assertConnectionLimits(connections);
  let address: HttpAddress | null = null;
  let listenHost: string | null = null;
  const scheme = options.tls === undefined ? "http" : "https";
  const context: HttpContext = {
    api: options.api,
    limits,
    requestTimeoutMs,
    metrics,
    streams: new StreamBuffers(),
    watchesMax: watchesMaxUnder(connections.connectionsMax),
    listening: () =>
      address === null || listenHost === null
        ? null
        : { scheme, host: listenHost, port: address.port },
  };

  const events = options.events ?? new EventFeed(options.api.id);

  const app = buildApp(limits, logger, options.tls, connections);
  // First, so that a request's time waiting behind the one before it is timed too.
  recordArrivals(app);
  oneRequestAtATime(app);
  requireHost(app);
  allowCrossOriginReads(app, context);
  if (options.tokens !== null && options.tokens !== undefined) requireTokens(app, options.tokens);
  else guardBrowsers(app, context);
  registerKvRoutes(app, context);
  const store = options.api.store;
  if (store !== undefined) registerStoreRoutes(app, context, store);
  const watches =
    store === undefined
      ? null
      : registerWatchRoute(app, context, store, {
          progressMs: options.watchProgressMs ?? WATCH_PROGRESS_MS,
          masterlessMs: options.watchMasterlessMs ?? WATCH_MASTERLESS_MS,
        });
  if (watches !== null) registerWatchGauge(registry, watches);
  registerStatusRoutes(app, context);
  registerMemberRoutes(app, context);
  registerMetricsRoute(app, context, registry);
  const streams = registerEventsRoute(app, metrics, events, context.streams);
  registerFaultRoutes(app, context, options.faults ?? null, options.faultToken);
  registerSnapshotRoute(app, context, options.snapshots ?? null);
  registerDashboardRoutes(app, context, options.dashboardDir);
  options.dashboard?.(app);

  let sampler: NodeJS.Timeout | null = null;
  return {
    app,
    registry,
    events,
    async listen(host, port) {
      await app.listen({ host, port });
      listenHost = host;
      metrics.takeSample();
      sampler = setInterval(() => events.publishSample(metrics.takeSample()), SAMPLE_INTERVAL_MS);
      sampler.unref();
      const bound = app.server.address();
      assert(bound !== null && typeof bound === "object", "a TCP server has a TCP address");
      const urlHost = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
      const url = `${scheme}://${urlHost}:${bound.port}`;
      address = { host: bound.address, port: bound.port, url };
      return address;
    },
    async close() {
      address = null;
      if (sampler !== null) clearInterval(sampler);
      // Event streams never end by themselves and would hold the server open.
      streams.closeAll();
      watches?.closeAll();
      // server.close() ends the connections idle at that moment; one in the middle of a
      // request becomes idle afterwards and would hold the stop until its keep-alive
      // timeout ran out (seconds, after a master's hand-over on SIGTERM): sweep them too.
      const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
      // Every request has a deadline; a connection still busy well past it holds something
      // that would never end (a stream nobody tracked), and a stop must end: cut them all.
      const cut = setTimeout(() => {
        logger.warn(
          { event: "http_close", reason: "busy_connections" },
          `HTTP connections still busy ${requestTimeoutMs + CLOSE_GRACE_MS} ms into the stop: closing them`,
        );
        app.server.closeAllConnections();
      }, requestTimeoutMs + CLOSE_GRACE_MS);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
        clearTimeout(cut);
      }
    },
    address: () => address,
    setTls(tls) {
      assert(options.tls !== undefined, "setTls on a server without TLS");
      // Built first, so that unusable PEM text throws before anything changes.
      const context = {
        cert: tls.cert,
        key: tls.key,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      };
      createSecureContext(context);
      (app.server as unknown as TlsServer).setSecureContext(context);
    },
  };
}

/** The fastify instance with the server-wide behaviour and no routes yet. */
function buildApp(
  limits: KvLimits,
  logger: Logger,
  tls: HttpTlsConfig | undefined,
  connections: HttpConnectionLimits,
): FastifyInstance {
  const serverOptions = {
    headersTimeout: connections.headersTimeoutMs,
    requestTimeout: connections.receiveTimeoutMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    // Node.js answers an HTTP/1.1 request without Host with a bare 400 and no body;
    // requireHost answers it in the API's JSON shape instead.
    requireHostHeader: false,
  };
  const transport =
    tls === undefined
      ? { http: serverOptions }
      : {
          https: {
            ...serverOptions,
            // The headers timeout starts once the TLS handshake is done: without this, a
            // connection that never finishes it held a place for Node's default 120 s.
            handshakeTimeout: connections.headersTimeoutMs,
            cert: tls.cert,
            key: tls.key,
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
          },
        };
  const app = Fastify({
    ...transport,
    requestTimeout: connections.receiveTimeoutMs,
    connectionTimeout: connections.idleTimeoutMs,
    keepAliveTimeout: connections.keepAliveTimeoutMs,
    logger: false,
    bodyLimit: limits.valueBytesMax,
    // Requests that arrive on a kept-alive connection while the server closes are served
    // (fastify marks them Connection: close), so they get the node's own answer, such as
    // 503 ERR_SHUTTING_DOWN with Retry-After, rather than fastify's bare 503.
    return503OnClosing: false,
    // Fastify 5 reads router settings here; at the top level it warns (FSTDEP022) on start.
    routerOptions: { maxParamLength: PATH_PARAM_CHARS_MAX },
    // Bytes that are not HTTP never reach a route: answer them in the API's own JSON
    // shape (with a code) and close the connection.
    clientErrorHandler: (error, socket) => {
      const code = (error as { code?: string }).code;
      // A TLS handshake that failed or timed out: no HTTP answer can reach the client, and
      // one written into the unfinished session would hold the connection open for good.
      if (code?.startsWith("ERR_TLS_") === true || code?.startsWith("ERR_SSL_") === true) {
        socket.destroy();
        return;
      }
      const { status, reason, body } = clientErrorAnswer(code);
      const text = JSON.stringify(body);
      // Not into an answer already under way (a watch's stream, say), which the bytes
      // would corrupt: as Node.js's own handler, which reads the same private field.
      const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (socket.writable && inFlight?.headersSent !== true) {
        socket.end(
          `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
        );
      } else {
        socket.destroy();
      }
    },
    frameworkErrors: (error, _request, reply) => {
      let known: unknown = error;
      if (error.code === "FST_ERR_BAD_URL") {
        known = new InvalidInputError("path", "is not valid percent-encoded UTF-8");
      } else if (error.code === "FST_ERR_MAX_PARAM_LENGTH") {
        // Only the ids in a path (a member's, a lease's) are parameters; keys are not.
        known = new InputLimitError(
          "id",
          `is longer than ${PATH_PARAM_CHARS_MAX} characters`,
          PATH_PARAM_CHARS_MAX,
        );
      }
      sendErrorAnswer(reply, describeError(known));
    },
  });
  app.server.maxConnections = connections.connectionsMax;
  app.server.headersTimeout = connections.headersTimeoutMs;
  // Every body is the value as raw bytes, whatever its content type (or none), so a value
  // is stored exactly as sent: JSON is not parsed and text is not decoded.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
    done(null, body);
  });
  ignoreContentTypes(app);
  app.setErrorHandler((error, request, reply) => {
    // The one request whose Content-Type is still read (see ignoreContentTypes): a body
    // sent to a path the API does not serve. The path is what is wrong with it.
    const mediaType = (error as Partial<FastifyError>).code === "FST_ERR_CTP_INVALID_MEDIA_TYPE";
    if (mediaType && request.is404) return sendErrorAnswer(reply, noRouteAnswer(request));
    const answer = describeError(toCatalogued(error, limits, request));
    if (answer.unexpected) {
      logger.error(
        { err: error, method: request.method, url: request.url },
        "unexpected error answering an HTTP request",
      );
    }
    return sendErrorAnswer(reply, answer);
  });
  app.setNotFoundHandler((request, reply) => {
    sendErrorAnswer(reply, noRouteAnswer(request));
  });
  return app;
}

/** 404 ERR_NO_ROUTE for a path the API does not serve (with this method or any). */
function noRouteAnswer(request: FastifyRequest) {
  const path = request.url.length > 200 ? `${request.url.slice(0, 200)}…` : request.url;
  return errorAnswer("ERR_NO_ROUTE", `no route for ${request.method} ${path}`);
}

/** Methods whose bodies fastify never reads. */
const BODYLESS_METHODS = new Set(["GET", "HEAD"]);

/**
 * Sets the Content-Type header aside before fastify looks at it, on the routes whose
 * methods carry a body: a body is read the same whatever the header says (docs/api.md),
 * but fastify refuses a malformed one (`foo`, an empty one, a list) with 415 before any
 * parser runs, the catch-all included. It runs after the token check, so a refused
 * request costs nothing more. Must run before any route is added.
 */
function ignoreContentTypes(app: FastifyInstance): void {
  const ignore: preParsingHookHandler = (request, _reply, payload, done) => {
    if (request.raw.headers["content-type"] !== undefined) {
      delete request.raw.headers["content-type"];
    }
    done(null, payload);
  };
  app.addHook("onRoute", (route) => {
    if ([route.method].flat().every((method) => BODYLESS_METHODS.has(method))) return;
    const existing = route.preParsing;
    route.preParsing = existing === undefined ? [ignore] : [ignore, ...[existing].flat()];
  });
}

/**
 * Fastify's bound on a path parameter (`routerOptions.maxParamLength`, its default): the
 * ids in paths.
 */
const PATH_PARAM_CHARS_MAX = 100;

/**
 * Turns the errors fastify raises (schema validation, body too large, other client errors)
 * into the catalogue's, so that they are answered like any other. Everything else is
 * returned unchanged.
 */
function toCatalogued(error: unknown, limits: KvLimits, request: FastifyRequest): unknown {
  if (error instanceof ClusterError) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation !== undefined) {
    const path = fastifyError.validation[0]?.instancePath ?? "";
    return validationError(path, fastifyError.validationContext ?? "request", limits);
  }
  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    // A key's body is its value; every other route's body is a JSON request.
    if (request.url.startsWith("/v1/kv/")) return new TooLargeError("value", limits.valueBytesMax);
    return new TooLargeError("body", request.routeOptions.bodyLimit ?? limits.valueBytesMax);
  }
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new InvalidInputError("request", fastifyError.message ?? "is not valid");
  }
  return error;
}

/** Refuses, as HTTP/1.1 requires, a request of that version that names no Host. */
function requireHost(app: FastifyInstance): void {
  app.addHook("onRequest", async (request, reply) => {
    if (request.raw.httpVersion !== "1.1" || request.headers.host !== undefined) return undefined;
    return sendErrorAnswer(
      reply,
      describeError(
        new InvalidInputError(
          "Host",
          "an HTTP/1.1 request must name the host it is for in a Host header",
        ),
      ),
    );
  });
}

/**
 * Handles the requests a client pipelines on one HTTP/1.1 connection one at a time, each
 * once the answer before it is out. Node.js starts every request of a read at once and
 * queues their answers, with no socket, behind the one being sent: one write of a thousand
 * `GET /v1/kv?limit=10000` made a node build a thousand pages at once (a gigabyte held
 * until the connection closed), and a stream opened on a queued answer never saw its
 * connection close (a thousand pipelined watches held their places for good). A request
 * whose connection closes before its turn is dropped unhandled.
 */
function oneRequestAtATime(app: FastifyInstance): void {
  // The requests waiting for their turn, by connection, under one close listener each (a
  // listener per request set off Node.js's leak warning at the eleventh pipelined one).
  const waiting = new WeakMap<Socket, Set<() => void>>();
  app.addHook("onRequest", (request, reply, done) => {
    const response = reply.raw;
    if (response.socket !== null) {
      done();
      return;
    }
    const connection = request.raw.socket;
    let turns = waiting.get(connection);
    if (turns === undefined) {
      const gone = new Set<() => void>();
      turns = gone;
      waiting.set(connection, gone);
      connection.once("close", () => {
        for (const onGone of gone) onGone();
        gone.clear();
        waiting.delete(connection);
      });
    }
    const queued = turns;
    const onTurn = (): void => {
      queued.delete(onGone);
      done();
    };
    const onGone = (): void => {
      response.off("socket", onTurn);
    };
    response.once("socket", onTurn);
    queued.add(onGone);
  });
}

/**
 * Adds `Access-Control-Allow-Origin: *` to the routes under CROSS_ORIGIN_PREFIXES, and the
 * caller's own origin, when it is one of the cluster's (a member's dashboard), to the reads
 * of MEMBER_ORIGIN_ROUTES, as they are registered (so no other route pays for a check).
 * Must run before any route is added.
 */
function allowCrossOriginReads(app: FastifyInstance, context: HttpContext): void {
  const allow: onRequestHookHandler = (_request, reply, done) => {
    reply.header("access-control-allow-origin", "*");
    done();
  };
  const allowMembers: onRequestHookHandler = (request, reply, done) => {
    const origin = request.headers.origin;
    if (origin !== undefined && originAllowed(request, context)) {
      reply.header("access-control-allow-origin", origin);
    }
    reply.header("vary", "Origin");
    done();
  };
  app.addHook("onRoute", (route) => {
    const hook = CROSS_ORIGIN_PREFIXES.some((prefix) => route.url.startsWith(prefix))
      ? allow
      : MEMBER_ORIGIN_ROUTES.includes(route.url) && isRead(route.method)
        ? allowMembers
        : null;
    if (hook === null) return;
    const existing = route.onRequest;
    route.onRequest = existing === undefined ? [hook] : [...[existing].flat(), hook];
  });
}

function isRead(method: string | readonly string[]): boolean {
  return [method].flat().every((m) => m === "GET" || m === "HEAD");
}

/**
 * The answer to bytes that never became a request: too slow (the headers or receive
 * timeout), headers too large, or not HTTP at all.
 */
function clientErrorAnswer(code: string | undefined): {
  status: number;
  reason: string;
  body: Readonly<Record<string, unknown>>;
} {
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") {
    const answer = errorAnswer("ERR_REQUEST_TIMEOUT", "the request was not received in time");
    return { status: 408, reason: "Request Timeout", body: { ...answer.body } };
  }
  if (code === "HPE_HEADER_OVERFLOW") {
    const body = {
      error: "the request headers are too large; send smaller headers",
      code: "ERR_INVALID_INPUT",
      field: "headers",
    };
    return { status: 431, reason: "Request Header Fields Too Large", body };
  }
  const body = {
    error: "the request is not valid HTTP/1.1; check the request line and headers",
    code: "ERR_INVALID_INPUT",
    field: "request",
  };
  return { status: 400, reason: "Bad Request", body };
}

function assertConnectionLimits(limits: HttpConnectionLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    assert(Number.isSafeInteger(value) && value > 0, `${name} must be a positive integer`);
  }
  assert(
    limits.headersTimeoutMs <= limits.receiveTimeoutMs,
    "headersTimeoutMs <= receiveTimeoutMs",
  );
}

/**
 * Most watches open at once under a connection cap: all but the event streams and
 * CONNECTIONS_KEPT_FOR_REQUESTS, or half of a cap too small for those, and at most
 * WATCHES_MAX.
 */
export function watchesMaxUnder(connectionsMax: number): number {
  const kept = Math.min(
    EVENT_STREAMS_MAX + CONNECTIONS_KEPT_FOR_REQUESTS,
    Math.floor(connectionsMax / 2),
  );
  return Math.min(WATCHES_MAX, connectionsMax - kept);
}

/**
 * `baton_kv_watches`: the watch streams open on this node, read at scrape time. (The state
 * machine's count of its history's listeners is not it: the route's hub listens once for
 * all of them.)
 */
function registerWatchGauge(registry: Registry, watches: WatchStreams): void {
  registry.removeSingleMetric("baton_kv_watches");
  new Gauge({
    name: "baton_kv_watches",
    help: "watch streams (GET /v1/watch) open on this node",
    registers: [registry],
    collect() {
      this.set(watches.openCount);
    },
  });
}

/** A registry of its own holding prom-client's process metrics, for a server given none. */
function defaultRegistry(): Registry {
  return Registry.merge([processMetrics(), new Registry()]);
}
