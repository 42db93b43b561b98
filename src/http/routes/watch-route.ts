/**
 * `GET /v1/watch?prefix=P&fromRevision=R`: the changes of the keys under a prefix as
 * server-sent events, one event per change:
 *
 *   id: <revision>.<n>
 *   data: {"type":"put"|"delete","key","value","revision"}
 *
 * `value` is the new value as UTF-8 text, null for a delete; `n` counts the events of the
 * same revision (a transaction or prefix delete changes several keys at one revision), so a
 * browser's `Last-Event-ID` resumes exactly after the last event it got. Without
 * `fromRevision` the stream starts with the changes after now.
 *
 * The changes come from this node's own watch history (see kv/change-history.ts); every
 * node holds the same changes at the same revisions, so a client that loses its node
 * resumes on another from the last revision it saw, with no gap and no duplicate. A
 * revision older than the history holds is answered 410 ERR_COMPACTED. A stream whose
 * reader falls behind by more than STREAM_BUFFER_BYTES_MAX is closed (the client resumes),
 * and at most WATCHES_MAX streams are open on a node, so watchers never grow memory
 * without bound.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { KvChange } from "../../kv/index.js";
import { CompactedError } from "../../shared/errors.js";
import { describeError, errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import type { KvStoreApi } from "../store-api.js";
import { readWatchQuery } from "../store-input.js";
import { type EventStream, openEventStream } from "./event-stream.js";
import type { EventStreams } from "./events-route.js";
import { registerResource } from "./resource.js";

/** Watch streams open at once on one node. */
export const WATCHES_MAX = 10_000;
/** Bytes a stream may have waiting in its socket before it is closed as too slow. */
const STREAM_BUFFER_BYTES_MAX = 8 * 1024 * 1024;

/** Registers `/v1/watch`; returns the handle that ends every open watch. */
export function registerWatchRoute(
  app: FastifyInstance,
  context: HttpContext,
  store: KvStoreApi,
): EventStreams {
  const open = new Set<() => void>();
  registerResource(app, context.metrics, "/v1/watch", [
    {
      method: "GET",
      handler: async (request, reply) => watch(context, store, request, reply, open),
    },
  ]);
  return {
    closeAll() {
      for (const end of [...open]) end();
    },
  };
}

const decoder = new TextDecoder();

/**
 * Each change's `data:` line, made once however many watches send it: every watch gets the
 * same change object from the history, and with a thousand watches open the decoding and
 * the JSON would otherwise be done a thousand times per write.
 */
const dataLines = new WeakMap<KvChange, string>();

function dataLine(change: KvChange): string {
  let line = dataLines.get(change);
  if (line === undefined) {
    const value = change.value === null ? null : decoder.decode(change.value);
    const event = { type: change.type, key: change.key, value, revision: change.revision };
    line = `data: ${JSON.stringify(event)}\n\n`;
    dataLines.set(change, line);
  }
  return line;
}

/**
 * Turns changes into the events of one watch: only keys under its prefix, numbered within
 * their revision, and the first `skip` of revision `fromRevision` left out (a browser that
 * resumes with Last-Event-ID has them).
 */
class WatchEvents {
  private revision = 0;
  private count = 0;

  constructor(
    private readonly prefix: string,
    private readonly fromRevision: number,
    private skip: number,
  ) {}

  format(changes: readonly KvChange[]): string {
    let text = "";
    for (const change of changes) {
      if (!change.key.startsWith(this.prefix)) continue;
      this.count = change.revision === this.revision ? this.count + 1 : 1;
      this.revision = change.revision;
      if (change.revision === this.fromRevision && this.skip > 0) {
        this.skip--;
        continue;
      }
      text += `id: ${change.revision}.${this.count}\n${dataLine(change)}`;
    }
    return text;
  }
}

function watch(
  context: HttpContext,
  store: KvStoreApi,
  request: FastifyRequest,
  reply: FastifyReply,
  open: Set<() => void>,
): FastifyReply | undefined {
  const query = readWatchQuery(request.query as Readonly<Record<string, unknown>>, context.limits);
  if (open.size >= WATCHES_MAX) {
    const answer = errorAnswer("ERR_BUSY", `${WATCHES_MAX} watches are open on this node`);
    return sendErrorAnswer(reply, answer);
  }
  if (request.method === "HEAD") {
    // The headers a watch would have, and no stream: a HEAD must not hang.
    return reply.type("text/event-stream; charset=utf-8").send();
  }
  const resume = resumePoint(request.headers["last-event-id"]);
  const fromRevision = resume?.revision ?? query.fromRevision ?? store.revision() + 1;
  const { prefix } = query;
  const events = new WatchEvents(prefix, fromRevision, resume?.count ?? 0);
  let stream: EventStream | null = null;
  // The events of the commands applied in one turn of the event loop (the entries of one
  // Ready) leave in one write, after the applies: with many watches open, a write per
  // command per watch held the apply loop for the whole fan-out, once per command.
  let pending = "";
  const deliver = (): void => {
    const text = pending;
    pending = "";
    stream?.write(text);
  };
  const started = store.watch(fromRevision, {
    changes: (changes) => {
      const text = events.format(changes);
      if (text === "") return;
      if (pending === "") queueMicrotask(deliver);
      pending += text;
    },
    reset: () => {
      deliver();
      stream?.end();
    },
  });
  if (!started.ok) {
    const error = new CompactedError(fromRevision, started.startRevision);
    return sendErrorAnswer(reply, describeError(error));
  }
  const opened = openEventStream(reply, {
    bufferBytesMax: STREAM_BUFFER_BYTES_MAX,
    onEnd: () => {
      started.cancel();
      open.delete(opened.end);
    },
  });
  stream = opened;
  // A comment first, so that the client knows the watch is in place before any change.
  opened.write(`: watching ${JSON.stringify(prefix)} from revision ${fromRevision}\n\n`);
  opened.write(events.format(started.backlog));
  if (!opened.ended) open.add(opened.end);
  return undefined;
}

/**
 * Where a reconnecting browser resumes, from its `Last-Event-ID` ("<revision>.<n>"): at
 * that revision, skipping the n events of it already delivered; null without one.
 */
function resumePoint(lastEventId: unknown): { revision: number; count: number } | null {
  if (typeof lastEventId !== "string") return null;
  const match = /^(\d{1,16})\.(\d{1,9})$/.exec(lastEventId);
  if (match === null) return null;
  const revision = Number(match[1]);
  return Number.isSafeInteger(revision) && revision >= 1
    ? { revision, count: Number(match[2]) }
    : null;
}
