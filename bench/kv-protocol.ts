/**
 * The requests each system's HTTP API takes for one key-value operation, so that the one
 * load generator and the one fail-over writer can drive Baton and etcd alike:
 *
 * - Baton: `PUT /v1/kv/{key}` with the value as the body; `GET /v1/kv/{key}`
 *   (linearizable, ReadIndex); a create-only write is `If-Match: "0"`.
 * - etcd v3.4's JSON gateway: `POST /v3/kv/put {"key","value"}` (base64);
 *   `POST /v3/kv/range {"key"}` (linearizable by default); a create-only write is a
 *   transaction comparing the key's create_revision with 0.
 *
 * Nothing here opens a connection; the callers own their undici pools.
 */

import type { SystemName } from "./bench-cluster.js";

export interface KvRequest {
  readonly method: "GET" | "PUT" | "POST";
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | Buffer | null;
}

const JSON_HEADERS = Object.freeze({ "content-type": "application/json" });
const OCTET_HEADERS = Object.freeze({ "content-type": "application/octet-stream" });
const NO_HEADERS = Object.freeze({});

function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

/**
 * Builds one system's requests for a fixed value: the value's bytes (and base64 for
 * etcd) are made once, so the generator's own cost per request stays small and equal.
 */
export class KvRequests {
  private readonly valueB64: string;

  constructor(
    readonly system: SystemName,
    private readonly value: Buffer,
  ) {
    this.valueB64 = value.toString("base64");
  }

  put(key: string): KvRequest {
    if (this.system === "baton") {
      return {
        method: "PUT",
        path: `/v1/kv/${encodeURIComponent(key)}`,
        headers: OCTET_HEADERS,
        body: this.value,
      };
    }
    return {
      method: "POST",
      path: "/v3/kv/put",
      headers: JSON_HEADERS,
      body: `{"key":"${b64(key)}","value":"${this.valueB64}"}`,
    };
  }

  get(key: string): KvRequest {
    if (this.system === "baton") {
      return {
        method: "GET",
        path: `/v1/kv/${encodeURIComponent(key)}`,
        headers: NO_HEADERS,
        body: null,
      };
    }
    return {
      method: "POST",
      path: "/v3/kv/range",
      headers: JSON_HEADERS,
      body: `{"key":"${b64(key)}"}`,
    };
  }

  /**
   * A write that succeeds only when `key` does not exist yet; `idempotencyKey` makes a
   * retried Baton write answer from its first application. etcd has no such header: a
   * retried create whose first attempt was applied finds the key and reports it.
   */
  create(key: string, value: string, idempotencyKey: string): KvRequest {
    if (this.system === "baton") {
      return {
        method: "PUT",
        path: `/v1/kv/${encodeURIComponent(key)}`,
        headers: { "if-match": '"0"', "idempotency-key": idempotencyKey },
        body: Buffer.from(value, "utf8"),
      };
    }
    const k = b64(key);
    const txn = {
      compare: [{ key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }],
      success: [{ request_put: { key: k, value: b64(value) } }],
      failure: [],
    };
    return { method: "POST", path: "/v3/kv/txn", headers: JSON_HEADERS, body: JSON.stringify(txn) };
  }
}

/** What a create-only write's answer said. */
export type CreateOutcome = "created" | "existed" | "retry";

/** Reads a create answer: created, refused because the key existed, or worth a retry. */
export function createOutcome(system: SystemName, status: number, body: string): CreateOutcome {
  if (system === "baton") {
    if (status === 200) return "created";
    if (status === 412) return "existed";
    return "retry";
  }
  if (status !== 200) return "retry";
  const parsed = JSON.parse(body) as { succeeded?: boolean };
  return parsed.succeeded === true ? "created" : "existed";
}

/** The value of `key` in a read answer, or null when absent; throws on a bad answer. */
export function readValue(system: SystemName, status: number, body: string): string | null {
  if (status === 404 && system === "baton") return null;
  if (status !== 200) throw new Error(`read answered ${status}: ${body.slice(0, 200)}`);
  if (system === "baton") return (JSON.parse(body) as { value: string }).value;
  const kvs = (JSON.parse(body) as { kvs?: { value?: string }[] }).kvs;
  const first = kvs?.[0];
  if (first === undefined) return null;
  return Buffer.from(first.value ?? "", "base64").toString("utf8");
}
