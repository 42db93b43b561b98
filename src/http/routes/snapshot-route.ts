/**
 * `POST /v1/snapshot`: a backup of the whole store, streamed from the master (`baton
 * snapshot save`). The body is the state machine's snapshot data; the headers say what it
 * covers and how to check it: `Baton-Snapshot-Index` (every write whose revision is at most
 * this log index), `Baton-Snapshot-Term`, `Content-Length` and `Baton-Snapshot-Crc32` (CRC-32
 * of the body, as the snapshot file stores it). An admin route: it reads every key.
 *
 * Only the master answers with a snapshot, after a read barrier, so the backup holds every
 * write acknowledged before the request; a backup answers 503 ERR_NOT_MASTER naming the
 * master. This file reads the request and streams; the node takes the snapshot.
 */

import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { HttpContext } from "../http-context.js";
import { withDeadline } from "../request-deadline.js";
import { registerResource } from "./resource.js";

/** A stored snapshot as the node hands it out (storage's SnapshotReader). */
export interface BackupSnapshot {
  readonly meta: { readonly index: number; readonly term: number };
  readonly dataBytes: number;
  readonly dataCrc32: number;
  /** The data, in order; the stream throws if the file fails its checksum at the end. */
  chunks(): AsyncIterable<Uint8Array>;
}

export interface SnapshotSource {
  /**
   * A snapshot holding every write acknowledged before the call. Throws NotMasterError on a
   * node that is not the master, as the node's other master-only operations do.
   */
  backupSnapshot(): Promise<BackupSnapshot>;
}

/** Registers `POST /v1/snapshot` on `app` when the node can give snapshots. */
export function registerSnapshotRoute(
  app: FastifyInstance,
  context: HttpContext,
  source: SnapshotSource | null,
): void {
  if (source === null) return;
  registerResource(app, context.metrics, "/v1/snapshot", [
    { method: "POST", handler: (_request, reply) => sendSnapshot(context, source, reply) },
  ]);
}

async function sendSnapshot(
  context: HttpContext,
  source: SnapshotSource,
  reply: FastifyReply,
): Promise<FastifyReply> {
  // Taking the snapshot is bounded by the request deadline; streaming it is not (a large
  // store on a slow link takes what it takes, and the connection limits still apply).
  const snapshot = await withDeadline(source.backupSnapshot(), context.requestTimeoutMs);
  return reply
    .header("content-type", "application/octet-stream")
    .header("content-length", String(snapshot.dataBytes))
    .header("baton-snapshot-index", String(snapshot.meta.index))
    .header("baton-snapshot-term", String(snapshot.meta.term))
    .header("baton-snapshot-crc32", String(snapshot.dataCrc32))
    .send(Readable.from(snapshot.chunks()));
}
