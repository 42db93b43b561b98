/**
 * The store routes beyond single keys: `GET` and `DELETE /v1/kv?prefix=…` (ranges and
 * prefix deletes), `POST /v1/txn`, and the leases (`POST /v1/leases`, `GET` and `DELETE
 * /v1/leases/{id}`, `POST /v1/leases/{id}/keepalive`). Each reads and checks its input,
 * calls the node's store under the request deadline, and answers from the result.
 *
 * Every write here carries the request's `Idempotency-Key` (when it has one) into the
 * command, so a retried request is applied once, like the single-key writes. Bodies arrive
 * as raw bytes (the server parses no JSON), so the JSON bodies are parsed in store-input.ts.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { KvCommand, KvResult } from "../../kv/index.js";
import { assert } from "../../shared/assert.js";
import { InvalidInputError } from "../../shared/errors.js";
import { describeKvFailure, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { withDeadline } from "../request-deadline.js";
import { kvSchemas, readWriteOptions } from "../request-input.js";
import type { KvStoreApi } from "../store-api.js";
import {
  encodeToken,
  RANGE_VALUE_BYTES_MAX,
  readDeletePrefix,
  readLeaseGrant,
  readLeaseId,
  readRangeQuery,
  readTxnBody,
} from "../store-input.js";
import { memberReadPreflight, registerResource } from "./resource.js";

/** Registers the store routes on `app`, for a node whose API has a store. */
export function registerStoreRoutes(
  app: FastifyInstance,
  context: HttpContext,
  store: KvStoreApi,
): void {
  const headers = kvSchemas(context.limits).delete;
  const route = (
    handler: (store: KvStoreApi, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  ) => {
    return (request: FastifyRequest, reply: FastifyReply) => handler(store, request, reply);
  };
  registerResource(app, context.metrics, "/v1/kv", [
    { method: "GET", handler: route((s, q, r) => listRange(context, s, q, r)) },
    memberReadPreflight(context),
    {
      method: "DELETE",
      schema: headers,
      handler: route((s, q, r) => deleteRange(context, s, q, r)),
    },
  ]);
  registerResource(app, context.metrics, "/v1/txn", [
    { method: "POST", schema: headers, handler: route((s, q, r) => txn(context, s, q, r)) },
  ]);
  registerResource(app, context.metrics, "/v1/leases", [
    { method: "POST", schema: headers, handler: route((s, q, r) => grant(context, s, q, r)) },
  ]);
  registerResource(app, context.metrics, "/v1/leases/:id", [
    { method: "GET", handler: route((s, q, r) => leaseInfo(context, s, q, r)) },
    { method: "DELETE", schema: headers, handler: route((s, q, r) => revoke(context, s, q, r)) },
  ]);
  registerResource(app, context.metrics, "/v1/leases/:id/keepalive", [
    { method: "POST", schema: headers, handler: route((s, q, r) => keepAlive(context, s, q, r)) },
  ]);
}

/**
 * `GET /v1/kv?prefix=P&limit=N&after=TOKEN&keysOnly=true&stale=true`: 200
 * `{"revision","items":[{"key","value","revision"}…],"next"}`, keys in order, consistent
 * at `revision`; `next` is the token for the following page, or null after the last.
 */
async function listRange(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const query = readRangeQuery(request, context.limits);
  const options = {
    prefix: query.prefix,
    after: query.after,
    limit: query.limit,
    valueBytesMax: query.keysOnly ? Number.POSITIVE_INFINITY : RANGE_VALUE_BYTES_MAX,
  };
  const page = await withDeadline(
    store.range(options, { stale: query.stale }),
    context.requestTimeoutMs,
  );
  const items = page.items.map((item) =>
    query.keysOnly
      ? { key: item.key, revision: item.revision }
      : { key: item.key, value: textOf(item.value), revision: item.revision },
  );
  const last = page.items.at(-1);
  const next = page.more && last !== undefined ? encodeToken(last.key) : null;
  return reply.send({ revision: page.revision, items, next });
}

/** `DELETE /v1/kv?prefix=P`: 200 `{"revision","deleted"}`, all at one revision. */
async function deleteRange(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const prefix = readDeletePrefix(request, context.limits);
  const command: KvCommand = { type: "delete_range", prefix, ...idempotency(request) };
  const result = await propose(context, store, command);
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, prefix, context.limits));
  return reply.send({ revision: result.revision, deleted: result.deleted ?? 0 });
}

/** `POST /v1/txn`: 200 `{"succeeded","revision"}`. */
async function txn(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const body = readTxnBody(request.body as Buffer | undefined, context.limits);
  const command: KvCommand = { type: "txn", ...body, ...idempotency(request) };
  const result = await propose(context, store, command);
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, "", context.limits));
  return reply.send({ succeeded: result.succeeded === true, revision: result.revision });
}

/** `POST /v1/leases` `{"ttlSeconds"}`: 200 `{"id","ttlSeconds"}`. */
async function grant(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const ttlMs = readLeaseGrant(request.body as Buffer | undefined, context.limits);
  const command: KvCommand = { type: "lease_grant", ttlMs, ...idempotency(request) };
  return sendLease(reply, await propose(context, store, command));
}

/** `POST /v1/leases/{id}/keepalive`: 200 `{"id","ttlSeconds"}`; 404 ERR_LEASE_NOT_FOUND. */
async function keepAlive(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const id = readLeaseId((request.params as { id?: string }).id, "id");
  const command: KvCommand = { type: "lease_keepalive", id, ...idempotency(request) };
  return sendLease(reply, await propose(context, store, command));
}

/** `DELETE /v1/leases/{id}`: 200 `{"revision"}`, its keys deleted; 404 when not held. */
async function revoke(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const id = readLeaseId((request.params as { id?: string }).id, "id");
  const command: KvCommand = { type: "lease_revoke", id, ...idempotency(request) };
  const result = await propose(context, store, command);
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, "", context.limits));
  return reply.send({ revision: result.revision });
}

/** `GET /v1/leases/{id}`: 200 `{"id","ttlSeconds","remainingSeconds"}`; 404 when not held. */
async function leaseInfo(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const id = readLeaseId((request.params as { id?: string }).id, "id");
  const lease = await withDeadline(store.lease(id), context.requestTimeoutMs);
  if (lease === null) {
    return sendErrorAnswer(
      reply,
      describeKvFailure({ ok: false, code: "lease_not_found", leaseId: id }, ""),
    );
  }
  return reply.send({
    id,
    ttlSeconds: lease.ttlMs / 1000,
    remainingSeconds: Math.ceil(lease.remainingMs / 1000),
  });
}

function sendLease(reply: FastifyReply, result: KvResult): FastifyReply {
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, ""));
  assert(result.lease !== undefined, "a lease command answers with its lease");
  return reply.send({ id: result.lease.id, ttlSeconds: result.lease.ttlMs / 1000 });
}

function propose(context: HttpContext, store: KvStoreApi, command: KvCommand) {
  return withDeadline(store.propose(command), context.requestTimeoutMs);
}

/**
 * The request's Idempotency-Key (checked by the schema), as command fields. A precondition
 * header is refused rather than ignored: these writes compare with `compare` (a
 * transaction) or not at all, and a client that sent one expects it to hold.
 */
function idempotency(request: FastifyRequest): { idempotencyKey?: string } {
  for (const header of ["if-match", "if-none-match"] as const) {
    if (request.headers[header] !== undefined) {
      const field = header === "if-match" ? "If-Match" : "If-None-Match";
      throw new InvalidInputError(field, "is not supported here; use POST /v1/txn to compare");
    }
  }
  const { idempotencyKey } = readWriteOptions({
    "idempotency-key": request.headers["idempotency-key"],
  });
  return idempotencyKey === undefined ? {} : { idempotencyKey };
}

/** A leading byte-order mark is part of the value, as `GET /v1/kv/{key}` keeps it. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** A value as UTF-8 text, as `GET /v1/kv/{key}` answers it. */
function textOf(value: Uint8Array): string {
  return decoder.decode(value);
}
