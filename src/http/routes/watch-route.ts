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
 * Comments: the stream opens with `: watching "P" from revision F`; every 5 s, when the
 * node's revision moved on and every change up to it has been sent, `: revision R` (a
 * reader that resumes may resume from R + 1: nothing under the prefix up to R is left to
 * send); otherwise `: keep-alive` every 15 s.
 *
 * The changes come from this node's own watch history (see kv/change-history.ts), handed
 * only to the watches whose prefix they fall under (watch-hub.ts), then chosen, numbered and
 * skipped by kv/prefix-watch.ts (which the simulator's watchers use too); every
 * node holds the same changes at the same revisions, so a client that loses its node
 * resumes on another from the last revision it saw, with no gap and no duplicate. A
 * revision older than the history holds is answered 410 ERR_COMPACTED. A stream whose
 * reader falls behind by more than STREAM_BUFFER_BYTES_MAX is closed (the client resumes),
 * the streams of a node together hold at most STREAM_BUFFERS_BYTES_MAX (event-stream.ts;
 * the live changes waiting behind a backlog count too),
 * and at most WATCHES_MAX streams are open on a node (fewer under a lower connection cap,
 * which must leave room for ordinary requests), so watchers never grow memory without
 * bound. A node that has known no master for WATCH_MASTERLESS_MS (cut off) ends
 * its streams, so that their readers resume on a node that still gets the changes.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type KvChange, openPrefixWatch, type PrefixWatchEvent } from "../../kv/index.js";
import { CompactedError } from "../../shared/errors.js";
import { grantOf } from "../auth.js";
import { describeError, errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { HttpContext } from "../http-context.js";
import type { KvStoreApi } from "../store-api.js";
import { readWatchQuery } from "../store-input.js";
import { WatchHub } from "../watch-hub.js";
import { type CountedRoute, type EventStream, openEventStream } from "./event-stream.js";
import type { EventStreams } from "./events-route.js";
import { memberReadPreflight, registerResource } from "./resource.js";

/** Watch streams open at once on one node. */
export const WATCHES_MAX = 10_000;
/** Bytes a stream may have waiting in its socket before it is closed as too slow. */
const STREAM_BUFFER_BYTES_MAX = 8 * 1024 * 1024;
/** How often a watch says how far it has sent (`: revision R`), when that moved on, ms. */
export const WATCH_PROGRESS_MS = 5000;
/** A node that has known no master this long ends its watches (they resume elsewhere), ms. */
export const WATCH_MASTERLESS_MS = 3000;
/** A backlog goes out in pieces of about this many characters, each once the socket drained. */
const BACKLOG_PIECE_CHARS = 64 * 1024;

/** The watches open on a node: how many, and the handle that ends them all. */
export interface WatchStreams extends EventStreams {
  readonly openCount: number;
}

/** Registers `/v1/watch`; returns the handle that counts and ends the open watches. */
export function registerWatchRoute(
  app: FastifyInstance,
  context: HttpContext,
  store: KvStoreApi,
  timings: { readonly progressMs?: number; readonly masterlessMs?: number } = {},
): WatchStreams {
  const open = new Set<() => void>();
  const hub = new WatchHub(store);
  const closeAll = (): void => {
    for (const end of [...open]) end();
  };
  const masterless = new MasterlessWatch(
    context,
    timings.masterlessMs ?? WATCH_MASTERLESS_MS,
    open,
    closeAll,
  );
  // At least every 10 ms, whatever is asked: a timer per stream must not spin.
  const progressMs = Math.max(10, timings.progressMs ?? WATCH_PROGRESS_MS);
  const counted = { metrics: context.metrics, tally: context.metrics.tally("GET", "/v1/watch") };
  registerResource(app, context.metrics, "/v1/watch", [
    memberReadPreflight(context),
    {
      method: "GET",
      handler: async (request, reply) => {
        const answer = watch(context, store, hub, request, reply, open, progressMs, counted);
        masterless.watchesOpen();
        return answer;
      },
    },
  ]);
  return {
    closeAll,
    get openCount() {
      return open.size;
    },
  };
}

/**
 * Ends the watches of a node that has known no master for `masterlessMs`: a node cut off
 * from the cluster (a backup that lost the master, a master that stepped down) still
 * answers, keeps its streams alive with comments, and has no new changes to send, so its
 * readers would wait for as long as the cut lasts. Ended, they resume on another node from
 * where they were, with no gap; one that comes back here is ended again a while later, at
 * most once per `masterlessMs`. It looks only while watches are open.
 */
class MasterlessWatch {
  private timer: ReturnType<typeof setInterval> | null = null;
  private since: number | null = null;

  constructor(
    private readonly context: HttpContext,
    private readonly masterlessMs: number,
    private readonly open: ReadonlySet<() => void>,
    private readonly closeAll: () => void,
  ) {}

  /** A watch may have opened: look from now on, while any is open. */
  watchesOpen(): void {
    if (this.timer !== null || this.open.size === 0) return;
    this.since = null;
    const everyMs = Math.max(10, Math.min(1000, this.masterlessMs / 2));
    this.timer = setInterval(() => this.look(), everyMs);
    this.timer.unref();
  }

  private look(): void {
    if (this.open.size === 0) {
      clearInterval(this.timer!);
      this.timer = null;
      return;
    }
    if (this.context.api.status().master !== null) {
      this.since = null;
      return;
    }
    const now = performance.now();
    this.since ??= now;
    if (now - this.since < this.masterlessMs) return;
    this.since = now;
    this.closeAll();
  }
}

/** As `GET /v1/kv/{key}` decodes a value: a leading byte-order mark is part of it. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Each change's `data:` line, made once however many watches send it: every watch gets the
 * same change object from the history, and with a thousand watches open the decoding and
 * the JSON would otherwise be done a thousand times per write.
 */
const dataLines = new WeakMap<KvChange, string>();

function dataLine(change: KvChange): string {
  let line = dataLines.get(change);
  if (line === undefined) {
    line = formatDataLine(change);
    dataLines.set(change, line);
  }
  return line;
}

function formatDataLine(change: KvChange): string {
  const value = change.value === null ? null : decoder.decode(change.value);
  const event = { type: change.type, key: change.key, value, revision: change.revision };
  return `data: ${JSON.stringify(event)}\n\n`;
}

/** The UTF-8 bytes of each change's `data:` line, measured once however many watches hold it. */
const dataLineBytes = new WeakMap<KvChange, number>();

/** The UTF-8 bytes of `eventText(events)`. */
function eventBytes(events: readonly PrefixWatchEvent[]): number {
  let bytes = 0;
  for (const { change, n } of events) {
    let lineBytes = dataLineBytes.get(change);
    if (lineBytes === undefined) {
      lineBytes = Buffer.byteLength(dataLine(change));
      dataLineBytes.set(change, lineBytes);
    }
    // The id line is ASCII: a byte a character.
    bytes += `id: ${change.revision}.${n}\n`.length + lineBytes;
  }
  return bytes;
}

/** The text of events: an id (`<revision>.<n>`) and the change's `data:` line each. */
function eventText(events: readonly PrefixWatchEvent[]): string {
  let text = "";
  for (const { change, n } of events) text += `id: ${change.revision}.${n}\n${dataLine(change)}`;
  return text;
}

/**
 * The text of the backlog's events from `from` on, up to about BACKLOG_PIECE_CHARS, and where
 * the next piece starts. A backlog is one reader's alone, so its lines are not kept in
 * `dataLines`: a watch from the oldest revision would otherwise keep a line for every change
 * the history holds, up to six times the history's bytes (a control character is six in JSON).
 */
function backlogPiece(
  events: readonly PrefixWatchEvent[],
  from: number,
): { text: string; next: number } {
  let text = "";
  let i = from;
  while (i < events.length && text.length < BACKLOG_PIECE_CHARS) {
    const { change, n } = events[i]!;
    text += `id: ${change.revision}.${n}\n${formatDataLine(change)}`;
    i++;
  }
  return { text, next: i };
}

function watch(
  context: HttpContext,
  store: KvStoreApi,
  hub: WatchHub,
  request: FastifyRequest,
  reply: FastifyReply,
  open: Set<() => void>,
  progressMs: number,
  counted: CountedRoute,
): FastifyReply | undefined {
  const query = readWatchQuery(request, context.limits);
  if (open.size >= context.watchesMax) {
    const answer = errorAnswer(
      "ERR_BUSY",
      `${context.watchesMax} watches are open on this node, as many as it takes; watch through another node, or retry later`,
      { retryAfterMs: 1000 },
    );
    return sendErrorAnswer(reply, answer);
  }
  const resume = resumePoint(request.headers["last-event-id"]);
  if (request.method === "HEAD") {
    // The headers the watch would have (a compacted revision's 410 included) and no stream:
    // a HEAD must not hang, and it reads no backlog (up to the whole history) to send none.
    const fromRevision = resume?.revision ?? query.fromRevision ?? store.revision() + 1;
    const startRevision = store.watchStartRevision();
    if (fromRevision < startRevision) {
      return sendCompacted(reply, fromRevision, startRevision, resume !== null);
    }
    return reply.type("text/event-stream; charset=utf-8").send();
  }
  const { prefix } = query;
  let stream: EventStream | null = null;
  // The events of the commands applied in one turn of the event loop (the entries of one
  // Ready) leave in one write, after the applies: with many watches open, a write per
  // command per watch held the apply loop for the whole fan-out, once per command. While
  // the backlog is still going out, they wait behind it, held for the stream (`hold`).
  let pending = "";
  /** The UTF-8 bytes of `pending` while the backlog goes out (held for the stream then). */
  let pendingBytes = 0;
  let backlogSent = false;
  const deliver = (): void => {
    if (!backlogSent) return;
    const text = pending;
    pending = "";
    if (pendingBytes > 0) {
      // Before the write, which counts the text again in the socket.
      pendingBytes = 0;
      stream?.hold(0);
    }
    stream?.write(text);
  };
  const started = openPrefixWatch(
    hub.sourceFor(prefix),
    {
      prefix,
      fromRevision: resume?.revision ?? query.fromRevision,
      skip: resume?.count ?? 0,
    },
    {
      events: (events) => {
        if (pending === "" && backlogSent) queueMicrotask(deliver);
        pending += eventText(events);
        // Behind the backlog, they count with what the socket holds, against the stream's
        // limit and the node's budget (STREAM_BUFFERS_BYTES_MAX): past either the stream is
        // cut as a write past them cuts it, and its reader resumes from its last event. Not
        // counted, thousands of watches from an old revision that read nothing held 8 MiB each.
        if (!backlogSent) {
          pendingBytes += eventBytes(events);
          stream?.hold(pendingBytes);
        }
      },
      end: () => {
        deliver();
        stream?.end();
      },
    },
  );
  if (!started.ok) {
    return sendCompacted(reply, started.fromRevision, started.startRevision, resume !== null);
  }
  const { fromRevision } = started;
  // Progress: once every change up to the node's revision has gone into the stream, a
  // comment says so, and a reader that resumes may start after it. A watch of a quiet
  // prefix would otherwise resume from its last change, which the history may have dropped
  // long since (much written elsewhere), and be refused as compacted everywhere.
  let progressSent = fromRevision - 1;
  const progress = (): string | null => {
    const revision = store.revision();
    if (!backlogSent || pending !== "" || revision <= progressSent) return null;
    progressSent = revision;
    return `revision ${revision}`;
  };
  const opened = openEventStream(reply, {
    bufferBytesMax: STREAM_BUFFER_BYTES_MAX,
    buffers: context.streams,
    grant: grantOf(request),
    onEnd: () => {
      started.cancel();
      open.delete(opened.end);
    },
    comment: progress,
    commentEveryMs: progressMs,
    counted,
  });
  stream = opened;
  // A comment first, so that the client knows the watch is in place before any change.
  opened.write(`: watching ${JSON.stringify(prefix)} from revision ${fromRevision}\n\n`);
  // The backlog (up to the whole history: 100,000 changes, 64 MiB of values and more as
  // JSON) goes out a piece at a time as the reader takes it, never all into the socket's
  // buffer at once: a reader that does not read holds one piece, not the history.
  const backlog = started.backlog;
  let next = 0;
  const sendBacklog = (): void => {
    while (next < backlog.length) {
      const piece = backlogPiece(backlog, next);
      next = piece.next;
      if (!opened.write(piece.text) && next < backlog.length) {
        opened.whenDrained(sendBacklog);
        return;
      }
    }
    backlogSent = true;
    deliver();
  };
  sendBacklog();
  if (!opened.ended) open.add(opened.end);
  return undefined;
}

/** 410 ERR_COMPACTED, naming the field the start revision came from. */
function sendCompacted(
  reply: FastifyReply,
  fromRevision: number,
  startRevision: number,
  resumed: boolean,
): FastifyReply {
  const answer = describeError(new CompactedError(fromRevision, startRevision));
  // A browser resuming names its revision in Last-Event-ID, not in the query.
  const field = resumed ? "Last-Event-ID" : "fromRevision";
  return sendErrorAnswer(reply, { ...answer, body: { ...answer.body, field } });
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
