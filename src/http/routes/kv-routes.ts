/**
 * The key-value routes: `GET`, `PUT` and `DELETE /v1/kv/{key}`. Each reads and checks its
 * input, calls the node under the request deadline, and answers from the result. A backup's
 * node forwards writes and linearizable reads to the master itself (over the peer link),
 * so these routes are the same on every node.
 *
 * This is the path the benchmarks measure, so it allocates only what the answer needs:
 * no per-request closures beyond the deadline's, and shared objects for the common options.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { describeKvFailure, notFoundAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import { withDeadline } from "../request-deadline.js";
import {
  KV_ROUTE,
  type KvParams,
  kvSchemas,
  readKey,
  readStale,
  readWriteOptions,
  type StaleQuery,
  wantsOctetStream,
} from "../request-input.js";
import { registerResource } from "./resource.js";

const STALE_READ = Object.freeze({ stale: true });
const LINEARIZABLE_READ = Object.freeze({ stale: false });
const EMPTY_VALUE = Buffer.alloc(0);

/** Registers the key-value routes on `app`. */
export function registerKvRoutes(app: FastifyInstance, context: HttpContext): void {
  const schemas = kvSchemas(context.limits);
  registerResource(app, context.metrics, KV_ROUTE, [
    { method: "GET", schema: schemas.get, handler: (req, reply) => getKey(context, req, reply) },
    { method: "PUT", schema: schemas.put, handler: (req, reply) => putKey(context, req, reply) },
    {
      method: "DELETE",
      schema: schemas.delete,
      handler: (req, reply) => deleteKey(context, req, reply),
    },
  ]);
}

/**
 * `GET /v1/kv/{key}[?stale=true]`: 200 `{"key","value","revision"}` (value as UTF-8 text)
 * or the raw bytes for `Accept: application/octet-stream`, both with `ETag: "<revision>"`;
 * 404 ERR_NOT_FOUND when the key has no value.
 */
async function getKey(
  context: HttpContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const key = readKey(request.params as KvParams, context.limits);
  const stale = readStale(request.query as StaleQuery);
  const read = context.api.get(key, stale ? STALE_READ : LINEARIZABLE_READ);
  const entry = await withDeadline(read, context.requestTimeoutMs);
  if (entry === null) return sendErrorAnswer(reply, notFoundAnswer(key));
  // A view of the stored bytes, not a copy: the store never changes a stored value.
  const bytes = Buffer.from(entry.value.buffer, entry.value.byteOffset, entry.value.byteLength);
  reply.header("etag", `"${entry.revision}"`);
  if (wantsOctetStream(request.headers.accept)) {
    return reply.type("application/octet-stream").send(bytes);
  }
  return reply.send({ key, value: bytes.toString("utf8"), revision: entry.revision });
}

/**
 * `PUT /v1/kv/{key}[?lease=id]` with the value as the body: 200 `{"revision": n}` with
 * `ETag`; 412 ERR_PRECONDITION_FAILED with `currentRevision` when `If-Match` does not hold;
 * 404 ERR_LEASE_NOT_FOUND when the lease is not held.
 */
async function putKey(
  context: HttpContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const key = readKey(request.params as KvParams, context.limits);
  const lease = (request.query as { lease?: string }).lease;
  const headerOptions = readWriteOptions(request.headers);
  // The schema checked the lease's digits; most puts have none and share the options.
  const options = lease === undefined ? headerOptions : { ...headerOptions, lease: Number(lease) };
  const value = (request.body as Buffer | undefined) ?? EMPTY_VALUE;
  const result = await withDeadline(context.api.put(key, value, options), context.requestTimeoutMs);
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, key, context.limits));
  reply.header("etag", `"${result.revision}"`);
  return sendRevision(reply, result.revision);
}

/**
 * `DELETE /v1/kv/{key}`: 200 `{"revision": n}` (the revision of the delete); 404 when the
 * key has no value; 412 when `If-Match` does not hold.
 */
async function deleteKey(
  context: HttpContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const key = readKey(request.params as KvParams, context.limits);
  const options = readWriteOptions(request.headers);
  const result = await withDeadline(context.api.delete(key, options), context.requestTimeoutMs);
  if (!result.ok) return sendErrorAnswer(reply, describeKvFailure(result, key, context.limits));
  return sendRevision(reply, result.revision);
}

function sendRevision(reply: FastifyReply, revision: number): FastifyReply {
  // Serialised by hand: this is the hottest answer, and the string is all it takes.
  return reply.type("application/json; charset=utf-8").send(`{"revision":${revision}}`);
}
