/**
 * A test double (in harness/, never published): a fake Baton cluster of fastify servers on
 * 127.0.0.1 that speaks the node's HTTP contract well enough to drive the client and the
 * CLI. The nodes share one key-value map and one idempotency table, as replicas would after
 * replication, so a write survives a fail-over and a retried write with the same
 * Idempotency-Key is answered from the first result.
 *
 * Tests steer it directly: who the master is, whether backups forward or answer 503,
 * killing a node (its server closes and the port refuses connections), and per-node
 * interceptors that answer a request their own way. Every request is recorded.
 */

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";

export interface RecordedRequest {
  readonly nodeId: number;
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** performance.now() when the request arrived. */
  readonly at: number;
}

/** Answers a request instead of the fake's logic when it returns true. */
export type Interceptor = (
  request: FastifyRequest,
  reply: FastifyReply,
  node: FakeNode,
) => boolean | Promise<boolean>;

/** Answers every request as a node with tokens answers an unknown one: 401 ERR_UNAUTHENTICATED. */
export const refuseToken: Interceptor = (_request, reply) => {
  reply.code(401).send({
    error: "the token is not one this node knows: pass a token from the tokens file",
    code: "ERR_UNAUTHENTICATED",
  });
  return true;
};

export interface FakeNode {
  readonly id: number;
  readonly url: string;
  alive: boolean;
  intercept: Interceptor | null;
}

interface Stored {
  readonly value: Uint8Array;
  readonly revision: number;
}

export interface Answer {
  readonly status: number;
  readonly body: unknown;
}

export interface FakeClusterOptions {
  /** "forward": backups serve as if they forwarded; "unavailable": they answer 503. */
  readonly backupMode?: "forward" | "unavailable";
  /** Retry-After sent with 503, or null for none. @default "1" */
  readonly retryAfter?: string | null;
  /** Whether status lists members' HTTP URLs. @default true */
  readonly advertiseUrls?: boolean;
  /** Whether a 412 answer carries `currentRevision`. @default true */
  readonly preconditionRevision?: boolean;
}

export class FakeCluster {
  readonly nodes: FakeNode[] = [];
  readonly requests: RecordedRequest[] = [];
  readonly data = new Map<string, Stored>();
  /** The results of writes by idempotency key. */
  readonly results = new Map<string, Answer>();
  masterId: number | null = null;
  term = 1;
  revision = 0;
  /** How many writes were applied (not answered from the idempotency table). */
  appliedCount = 0;
  backupMode: "forward" | "unavailable";
  retryAfter: string | null;
  advertiseUrls: boolean;
  preconditionRevision: boolean;
  private readonly servers = new Map<number, FastifyInstance>();

  private constructor(options: FakeClusterOptions) {
    this.backupMode = options.backupMode ?? "forward";
    this.retryAfter = options.retryAfter === undefined ? "1" : options.retryAfter;
    this.advertiseUrls = options.advertiseUrls ?? true;
    this.preconditionRevision = options.preconditionRevision ?? true;
  }

  /** Starts `count` nodes with ids 1..count; node `masterId` is the master. */
  static async start(
    count: number,
    masterId: number | null,
    options: FakeClusterOptions = {},
  ): Promise<FakeCluster> {
    const cluster = new FakeCluster(options);
    for (let id = 1; id <= count; id++) {
      const app = cluster.buildServer(id);
      const address = await app.listen({ host: "127.0.0.1", port: 0 });
      cluster.servers.set(id, app);
      cluster.nodes.push({ id, url: address, alive: true, intercept: null });
    }
    cluster.masterId = masterId;
    return cluster;
  }

  node(id: number): FakeNode {
    const node = this.nodes.find((n) => n.id === id);
    if (node === undefined) throw new Error(`no fake node ${id}`);
    return node;
  }

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Requests matching the method and path prefix, in arrival order. */
  requestsTo(method: string, pathPrefix: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.url.startsWith(pathPrefix));
  }

  /** A new term with `id` as master (null: an election under way). */
  elect(id: number | null): void {
    this.term++;
    this.masterId = id;
  }

  /** Closes node `id`'s server, dropping its connections: it refuses from now on. */
  async kill(id: number): Promise<void> {
    const node = this.node(id);
    node.alive = false;
    if (this.masterId === id) this.masterId = null;
    await this.servers.get(id)?.close();
  }

  async close(): Promise<void> {
    await Promise.all([...this.servers.values()].map((app) => app.close()));
  }

  private buildServer(id: number): FastifyInstance {
    const app = Fastify({ logger: false, forceCloseConnections: true });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
      done(null, body);
    });
    app.addHook("onRequest", async (request) => {
      this.requests.push({
        nodeId: id,
        method: request.method,
        url: request.url,
        headers: { ...request.headers },
        at: performance.now(),
      });
    });
    // The handler returns the reply so that fastify waits for an interceptor that answers
    // later, or never (a node that hangs).
    const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const node = this.node(id);
      if (node.intercept !== null && (await node.intercept(request, reply, node))) return reply;
      if (request.url.startsWith("/v1/status")) reply.send(this.statusOf(id));
      else if (request.url.startsWith("/v1/switchover") && id === this.masterId) {
        // A stand-in that hands over to no one: it answers with itself, as a master would
        // after a switchover whose target it is.
        reply.send({ master: this.masterId, term: this.term });
      } else if (
        id !== this.masterId &&
        (this.backupMode === "unavailable" || this.masterId === null)
      ) {
        this.unavailable(reply);
      } else this.serveKv(request, reply);
      return reply;
    };
    app.get("/v1/status", handle);
    app.post("/v1/switchover", handle);
    app.route({ method: ["GET", "PUT", "DELETE"], url: "/v1/kv/:key", handler: handle });
    // Any other path: an interceptor may serve it (a test's stand-in for a route the fake
    // does not model), else fastify's own 404.
    app.setNotFoundHandler(async (request, reply) => {
      const node = this.node(id);
      if (node.intercept !== null && (await node.intercept(request, reply, node))) return reply;
      const message = `Route ${request.method}:${request.url} not found`;
      return reply.code(404).send({ message, error: "Not Found", statusCode: 404 });
    });
    return app;
  }

  private unavailable(reply: FastifyReply): void {
    if (this.retryAfter !== null) reply.header("retry-after", this.retryAfter);
    reply.code(503).send({ error: "no master is reachable", code: "ERR_NO_MASTER" });
  }

  private statusOf(id: number): unknown {
    const role = id === this.masterId ? "master" : this.masterId === null ? "candidate" : "backup";
    return {
      id,
      role,
      term: this.term,
      master: this.masterId,
      commitIndex: this.revision,
      appliedIndex: this.revision,
      lastIndex: this.revision,
      members: this.nodes.map((n) => ({
        id: n.id,
        address: `127.0.0.1:${7100 + n.id}`,
        httpUrl: this.advertiseUrls ? n.url : null,
        role: n.id === this.masterId ? "master" : "backup",
        connected: n.alive,
        matchIndex: this.revision,
        lag: 0,
        lastContactMs: 5,
      })),
    };
  }

  private serveKv(request: FastifyRequest, reply: FastifyReply): void {
    const key = (request.params as { key: string }).key;
    if (request.method === "GET") return this.serveGet(key, request, reply);
    const answer = this.write(request);
    const stored = this.data.get(key);
    if (answer.status === 412 && stored !== undefined) reply.header("etag", `"${stored.revision}"`);
    reply.code(answer.status).send(answer.body);
  }

  /**
   * Applies a PUT or DELETE once per idempotency key, as the replicated state would, and
   * returns its answer without sending it (a test can then "lose" the answer).
   */
  write(request: FastifyRequest): Answer {
    const key = (request.params as { key: string }).key;
    const idempotencyKey = request.headers["idempotency-key"];
    const previous = typeof idempotencyKey === "string" ? this.results.get(idempotencyKey) : null;
    const answer = previous ?? this.applyWrite(key, request);
    if (typeof idempotencyKey === "string") this.results.set(idempotencyKey, answer);
    return answer;
  }

  private applyWrite(key: string, request: FastifyRequest): Answer {
    const current = this.data.get(key)?.revision ?? 0;
    const ifMatch = request.headers["if-match"];
    if (typeof ifMatch === "string" && Number(ifMatch.replaceAll('"', "")) !== current) {
      const body: Record<string, unknown> = {
        error: "revision mismatch",
        code: "ERR_PRECONDITION_FAILED",
      };
      if (this.preconditionRevision) body.currentRevision = current;
      return { status: 412, body };
    }
    if (request.method === "DELETE" && !this.data.has(key)) {
      return { status: 404, body: { error: "not found", code: "ERR_NOT_FOUND" } };
    }
    this.appliedCount++;
    this.revision++;
    if (request.method === "DELETE") this.data.delete(key);
    else {
      const body = request.body;
      const value = body instanceof Uint8Array ? new Uint8Array(body) : new Uint8Array();
      this.data.set(key, { value, revision: this.revision });
    }
    return { status: 200, body: { revision: this.revision } };
  }

  private serveGet(key: string, request: FastifyRequest, reply: FastifyReply): void {
    const stored = this.data.get(key);
    if (stored === undefined) {
      return void reply.code(404).send({ error: "not found", code: "ERR_NOT_FOUND" });
    }
    reply.header("etag", `"${stored.revision}"`);
    if (String(request.headers.accept ?? "").includes("application/octet-stream")) {
      reply.type("application/octet-stream").send(Buffer.from(stored.value));
      return;
    }
    const value = new TextDecoder().decode(stored.value);
    reply.send({ key, value, revision: stored.revision });
  }
}
