/**
 * `GET /v1/events`: the node's event feed as server-sent events (text/event-stream), for
 * the dashboard and for anyone who wants to watch a node (`curl -N .../v1/events`).
 *
 * On connecting, a subscriber first gets the kept request samples and the events the node
 * kept (only those after `Last-Event-ID` when the browser reconnects to the same process),
 * then every new one as it happens. Each message is one JSON object on a `data:` line;
 * events carry "<feed epoch>.<seq>" as the SSE `id`, samples have none. A comment line every 15 s keeps
 * idle proxies from closing the stream.
 *
 * It must never let a slow reader grow the node's memory without bound: a stream whose
 * socket buffer passes STREAM_BUFFER_BYTES_MAX is closed (the browser reconnects and
 * replays from its last id), and at most EVENT_STREAMS_MAX streams are open at once.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { grantOf } from "../auth.js";
import { errorAnswer, sendErrorAnswer } from "../error-status.js";
import type { EventFeed, FeedItem } from "../event-feed.js";
import type { HttpMetrics } from "../http-metrics.js";
import { type CountedRoute, openEventStream, type StreamBuffers } from "./event-stream.js";
import { READ_PREFLIGHT, registerResource } from "./resource.js";

/** Streams open at once; each is one open dashboard (which keeps one per member). */
export const EVENT_STREAMS_MAX = 64;
/** Bytes a stream may have waiting in its socket before it is closed as too slow. */
const STREAM_BUFFER_BYTES_MAX = 1024 * 1024;
/** What a browser waits before reconnecting a dropped stream, milliseconds. */
const RECONNECT_MS = 1000;

/** Open streams, so that closing the server can end them (they would hold it open). */
export interface EventStreams {
  closeAll(): void;
}

/** Registers `/v1/events` on `app`; returns the handle that ends every open stream. */
export function registerEventsRoute(
  app: FastifyInstance,
  metrics: HttpMetrics,
  feed: EventFeed,
  buffers: StreamBuffers,
): EventStreams {
  const open = new Set<() => void>();
  const counted = { metrics, tally: metrics.tally("GET", "/v1/events") };
  registerResource(app, metrics, "/v1/events", [
    {
      method: "GET",
      handler: (request, reply) => stream(request, reply, feed, open, counted, buffers),
    },
    READ_PREFLIGHT,
  ]);
  return {
    closeAll() {
      for (const end of [...open]) end();
    },
  };
}

function stream(
  request: FastifyRequest,
  reply: FastifyReply,
  feed: EventFeed,
  open: Set<() => void>,
  counted: CountedRoute,
  buffers: StreamBuffers,
): FastifyReply | undefined {
  if (open.size >= EVENT_STREAMS_MAX) {
    const answer = errorAnswer("ERR_BUSY", "too many event streams are open on this node", {
      retryAfterMs: 1000,
    });
    return sendErrorAnswer(reply, answer);
  }
  if (request.method === "HEAD") {
    // The headers a stream would have, and no stream: a HEAD must not hang, nor hold one
    // of the EVENT_STREAMS_MAX places until the idle timeout.
    return reply.type("text/event-stream; charset=utf-8").send();
  }
  const after = replayAfter(request.headers["last-event-id"], feed.epoch);
  let unsubscribe: () => void = () => {};
  // Its Access-Control-Allow-Origin is the one the server's hook set on the reply.
  const stream = openEventStream(reply, {
    bufferBytesMax: STREAM_BUFFER_BYTES_MAX,
    buffers,
    grant: grantOf(request),
    counted,
    onEnd: () => {
      unsubscribe();
      open.delete(stream.end);
    },
  });
  stream.write(`retry: ${RECONNECT_MS}\n\n`);
  const write = (item: FeedItem): void => {
    const id = item.type === "sample" ? "" : `id: ${feed.epoch}.${item.seq}\n`;
    stream.write(`${id}data: ${JSON.stringify(item)}\n\n`);
  };
  for (const sample of feed.recentSamples()) write(sample);
  for (const event of feed.recentEvents(after)) write(event);
  // A reader too slow for the replay alone was ended by it, and is not subscribed.
  if (stream.ended) return undefined;
  unsubscribe = feed.subscribe(write);
  open.add(stream.end);
  return undefined;
}

/**
 * The sequence number after which to replay, from a reconnecting browser's Last-Event-ID
 * ("<epoch>.<seq>"): everything (0) unless the id comes from this very feed.
 */
export function replayAfter(lastEventId: string | string[] | undefined, epoch: number): number {
  if (typeof lastEventId !== "string") return 0;
  const match = /^(\d+)\.(\d+)$/.exec(lastEventId);
  if (match === null || Number(match[1]) !== epoch) return 0;
  const seq = Number(match[2]);
  return Number.isSafeInteger(seq) ? seq : 0;
}
