/**
 * The clients of a fault campaign: a few concurrent loops that read, write, compare-and-set
 * and delete a small set of keys through the HTTP API of random nodes, each request with a
 * timeout, and record every operation as they saw it. It owns the history and the
 * classification of each answer as ok, failed (definitely not applied) or indeterminate
 * (may or may not have been applied), and nothing else: it never signals a process.
 *
 * Every write stores a value no other write stores (`c<client>-<n>`), so a value names the
 * one write that made it, a write applied twice shows up as one value at two revisions, and
 * compare-and-set on a revision (`If-Match`) is the same as compare-and-set on that value.
 * A write whose answer is lost is retried on another node with the same Idempotency-Key,
 * as a careful client would, so exactly-once across retries is exercised too.
 *
 * Keys rotate every `keyEpochMs` (`e<epoch>-k<i>`), which keeps each key's history short
 * enough to check quickly however long the campaign runs.
 */

import { Agent, request } from "undici";
import { Prng } from "../core/prng.js";
import { ErrorTally, isInternalError } from "./checks.js";
import { sleep } from "./wait.js";

export type OpKind = "read" | "write" | "cas" | "delete";
export type OpOutcome = "ok" | "failed" | "indeterminate";

/** One client operation as the client saw it; times are campaign milliseconds. */
export interface OpRecord {
  readonly id: number;
  readonly client: number;
  readonly key: string;
  readonly kind: OpKind;
  /** The value a write or compare-and-set stores. */
  readonly value?: string;
  /** Compare-and-set: the value it expects (null: the key must be absent). */
  readonly expected?: string | null;
  /** Compare-and-set: the revision sent as If-Match (0: absent). */
  readonly ifRevision?: number;
  /** A read of the local copy (`?stale=true`). */
  readonly stale?: boolean;
  /** A read made after healing, to learn the final state. */
  readonly final?: boolean;
  /** The node of each attempt, in order. */
  readonly nodes: number[];
  readonly invokedAt: number;
  completedAt: number | null;
  outcome: OpOutcome;
  /** Read: the value (null when absent). Cas and delete: whether it took effect. */
  output?: string | null | boolean;
  /** The revision the answer named: written, read, or deleted. */
  revision?: number;
  /** The last error code or exception, when not ok. */
  error?: string;
}

/**
 * Answers that prove a write was never applied: it never reached a master's log. Those that
 * say the request itself was wrong (ERR_INVALID_INPUT, ERR_TOO_LARGE) prove it too, and are
 * counted as problems besides (Workload.errors): no fault explains them.
 */
const DEFINITE_FAILURES: ReadonlySet<string> = new Set([
  "ERR_NOT_MASTER",
  "ERR_NO_MASTER",
  "ERR_BUSY",
  "ERR_TABLE_FULL",
  "ERR_INVALID_INPUT",
  "ERR_TOO_LARGE",
  "ECONNREFUSED",
  "UND_ERR_CONNECT_TIMEOUT",
]);

export interface WorkloadOptions {
  readonly seed: number;
  readonly clients: number;
  /** Keys in use at any time. */
  readonly keys: number;
  readonly keyEpochMs: number;
  /** Per-attempt timeout, in milliseconds. */
  readonly requestTimeoutMs: number;
  /** Attempts of one write (the first plus retries with the same Idempotency-Key). */
  readonly attemptsMax: number;
  /** Pause between a client's operations, in milliseconds. */
  readonly thinkMs: number;
  /** Reads go to the local copy of whichever node is asked (`?stale=true`). */
  readonly staleReads: boolean;
  /** The HTTP base URL of each node, by id. */
  readonly urls: ReadonlyMap<number, string>;
  readonly now: () => number;
  /** Dial from 127.0.0.1 (the default), or null to let the route choose (hosts of their own). */
  readonly localAddress?: null;
}

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown> | null;
  readonly etag: string | null;
}

type AttemptResult = { readonly answer: Answer } | { readonly error: string };

export class Workload {
  readonly history: OpRecord[] = [];
  readonly keysUsed = new Set<string>();
  /** Answers that were internal errors (checks.ts isInternalError): "n2 PUT k: 500 ERR_INTERNAL". */
  readonly internalErrors: string[] = [];
  /**
   * Every answer no operation could take (a refusal, a request said to be wrong) and every
   * request that got no answer, by code: the wrong ones are problems (checkNoErrors).
   */
  readonly errors = new ErrorTally();
  private nextId = 1;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly agent: Agent;
  private readonly ids: number[];

  constructor(private readonly options: WorkloadOptions) {
    this.ids = [...options.urls.keys()];
    this.agent = new Agent({
      // From 127.0.0.1, which no partition rule names; hosts of their own are reached over
      // their bridge, from its address.
      ...(options.localAddress === null ? {} : { connect: { localAddress: "127.0.0.1" } }),
      keepAliveTimeout: 4000,
      connections: 32,
    });
  }

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.options.clients }, (_, i) =>
      this.clientLoop(i + 1, new Prng(this.options.seed * 7919 + i + 1)),
    );
  }

  /** Stops issuing operations and waits for those in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }

  counts(): Record<OpOutcome, number> {
    const out: Record<OpOutcome, number> = { ok: 0, failed: 0, indeterminate: 0 };
    for (const op of this.history) if (op.completedAt !== null) out[op.outcome]++;
    return out;
  }

  /** Reads `key` linearizably through node `via`, marked final; records the read. */
  finalRead(key: string, via: number): Promise<OpRecord> {
    return this.read(0, key, via, false, true);
  }

  /** One write through node `via`, for the liveness probe; true when acknowledged. */
  /**
   * Node `node`'s own copy of `key` (`?stale=true`, never forwarded): `value@revision`,
   * `absent`, or null when the node gave neither answer.
   */
  async localCopy(node: number, key: string): Promise<string | null> {
    const result = await this.attempt(node, "GET", key, null, {}, true);
    if (!("answer" in result)) return null;
    const { status, body } = result.answer;
    if (status === 404) return "absent";
    if (status !== 200) return null;
    return `${String(body?.value)}@${String(body?.revision)}`;
  }

  async probe(via: number, key: string, value: string): Promise<boolean> {
    const result = await this.attempt(via, "PUT", key, value, {});
    return "answer" in result && result.answer.status === 200;
  }

  private async clientLoop(client: number, prng: Prng): Promise<void> {
    const known = new Map<string, { value: string | null; revision: number }>();
    let seq = 0;
    while (this.running) {
      const epoch = Math.floor(this.options.now() / this.options.keyEpochMs);
      const key = `e${epoch}-k${prng.int(1, this.options.keys)}`;
      this.keysUsed.add(key);
      const node = prng.pick(this.ids);
      const roll = prng.next();
      let op: OpRecord;
      if (roll < 0.45) {
        op = await this.read(client, key, node, this.options.staleReads, false);
        if (op.outcome === "ok") {
          known.set(key, { value: op.output as string | null, revision: op.revision ?? 0 });
        }
      } else if (roll < 0.95) {
        const value = `c${client}-${++seq}`;
        const last = roll < 0.7 ? undefined : (known.get(key) ?? { value: null, revision: 0 });
        op = await this.write(client, key, value, last, prng);
        if (op.outcome === "ok" && op.output !== false) {
          known.set(key, { value, revision: op.revision ?? 0 });
        }
      } else {
        op = await this.remove(client, key, prng);
      }
      if (this.options.thinkMs > 0) await sleep(this.options.thinkMs);
    }
  }

  private begin(fields: Omit<OpRecord, "id" | "completedAt" | "outcome">): OpRecord {
    const op: OpRecord = {
      id: this.nextId++,
      completedAt: null,
      outcome: "indeterminate",
      ...fields,
    };
    this.history.push(op);
    return op;
  }

  private async read(
    client: number,
    key: string,
    node: number,
    stale: boolean,
    final: boolean,
  ): Promise<OpRecord> {
    const op = this.begin({
      client,
      key,
      kind: "read",
      nodes: [node],
      invokedAt: this.options.now(),
      ...(stale ? { stale } : {}),
      ...(final ? { final } : {}),
    });
    const result = await this.attempt(node, "GET", key, null, {}, stale);
    op.completedAt = this.options.now();
    if ("error" in result) {
      op.outcome = DEFINITE_FAILURES.has(result.error) ? "failed" : "indeterminate";
      op.error = result.error;
      this.errors.note({ code: result.error });
    } else if (result.answer.status === 200) {
      op.outcome = "ok";
      op.output = String(result.answer.body?.value ?? "");
      op.revision = Number(result.answer.body?.revision ?? 0);
    } else if (result.answer.status === 404) {
      op.outcome = "ok";
      op.output = null;
    } else {
      op.outcome = "failed";
      op.error = codeOf(result.answer);
      this.noteAnswer(result.answer);
    }
    return op;
  }

  /** A put, or a compare-and-set against `last` when given. */
  private async write(
    client: number,
    key: string,
    value: string,
    last: { value: string | null; revision: number } | undefined,
    prng: Prng,
  ): Promise<OpRecord> {
    const cas = last !== undefined;
    const op = this.begin({
      client,
      key,
      kind: cas ? "cas" : "write",
      value,
      ...(cas ? { expected: last.value, ifRevision: last.revision } : {}),
      nodes: [],
      invokedAt: this.options.now(),
    });
    const headers: Record<string, string> = {
      "idempotency-key": `op-${this.options.seed}-${op.id}`,
    };
    if (cas) headers["if-match"] = `"${last.revision}"`;
    await this.withRetries(op, prng, (node) => this.attempt(node, "PUT", key, value, headers));
    return op;
  }

  private async remove(client: number, key: string, prng: Prng): Promise<OpRecord> {
    const op = this.begin({
      client,
      key,
      kind: "delete",
      nodes: [],
      invokedAt: this.options.now(),
    });
    const headers = { "idempotency-key": `op-${this.options.seed}-${op.id}` };
    await this.withRetries(op, prng, (node) => this.attempt(node, "DELETE", key, null, headers));
    return op;
  }

  /**
   * Runs a write's attempts on random nodes until one gives a definite answer. The outcome
   * is ok when an attempt was answered, failed only when every attempt definitely failed,
   * and indeterminate otherwise: one lost answer means it may have been applied.
   */
  private async withRetries(
    op: OpRecord,
    prng: Prng,
    attempt: (node: number) => Promise<AttemptResult>,
  ): Promise<void> {
    let uncertain = false;
    for (let i = 0; i < this.options.attemptsMax; i++) {
      const node = prng.pick(this.ids);
      op.nodes.push(node);
      const result = await attempt(node);
      if ("answer" in result && settleWrite(op, result.answer)) {
        op.completedAt = this.options.now();
        return;
      }
      const code = "error" in result ? result.error : codeOf(result.answer);
      if ("error" in result) this.errors.note({ code });
      else this.noteAnswer(result.answer);
      op.error = code;
      if (!DEFINITE_FAILURES.has(code)) uncertain = true;
      if (!this.running && i > 0) break;
      await sleep(prng.int(20, 120));
    }
    op.completedAt = this.options.now();
    op.outcome = uncertain ? "indeterminate" : "failed";
  }

  /** Counts an answer no operation took, by its code (by its status when it has none). */
  private noteAnswer(answer: Answer): void {
    const code = answer.body?.code;
    const message = answer.body?.error;
    this.errors.noteAnswer(
      answer.status,
      typeof code === "string" ? code : null,
      typeof message === "string" ? message : "",
    );
  }

  private async attempt(
    node: number,
    method: "GET" | "PUT" | "DELETE",
    key: string,
    body: string | null,
    headers: Record<string, string>,
    stale = false,
  ): Promise<AttemptResult> {
    const url = `${this.options.urls.get(node)}/v1/kv/${encodeURIComponent(key)}${stale ? "?stale=true" : ""}`;
    try {
      const response = await request(url, {
        method,
        headers,
        body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
      const text = await response.body.text();
      let parsed: Record<string, unknown> | null = null;
      try {
        parsed = text === "" ? null : (JSON.parse(text) as Record<string, unknown>);
      } catch {
        parsed = null;
      }
      const etag = response.headers.etag;
      if (isInternalError(response.statusCode, parsed?.code)) {
        const code = typeof parsed?.code === "string" ? ` ${parsed.code}` : "";
        this.internalErrors.push(`n${node} ${method} ${key}: ${response.statusCode}${code}`);
      }
      return {
        answer: {
          status: response.statusCode,
          body: parsed,
          etag: typeof etag === "string" ? etag : null,
        },
      };
    } catch (error) {
      return { error: requestErrorCode(error) };
    }
  }
}

/**
 * What a request that got no answer failed with: the socket's code (ECONNREFUSED,
 * UND_ERR_CONNECT_TIMEOUT, ...), else the error's name (TimeoutError for an abort by the
 * timeout, a DOMException whose numeric code means nothing here).
 */
export function requestErrorCode(error: unknown): string {
  const e = error as { code?: unknown; name?: string; cause?: { code?: unknown } };
  const code = [e.cause?.code, e.code].find((c): c is string => typeof c === "string");
  return code ?? e.name ?? String(error);
}

/** Records a definite answer to a write on `op`; false when the answer is not definite. */
function settleWrite(op: OpRecord, answer: Answer): boolean {
  if (answer.status === 200) {
    op.outcome = "ok";
    op.revision = Number(answer.body?.revision ?? 0);
    if (op.kind === "cas" || op.kind === "delete") op.output = true;
    delete op.error;
    return true;
  }
  if (answer.status === 412 && op.kind === "cas") {
    op.outcome = "ok";
    op.output = false;
    op.error = "ERR_PRECONDITION_FAILED";
    return true;
  }
  if (answer.status === 404 && op.kind === "delete") {
    op.outcome = "ok";
    op.output = false;
    return true;
  }
  return false;
}

function codeOf(answer: Answer): string {
  const code = answer.body?.code;
  return typeof code === "string" ? code : `HTTP_${answer.status}`;
}
