/**
 * The server-sent-events plumbing the event feed (`/v1/events`) and watches (`/v1/watch`)
 * share: taking the response over from fastify, the stream's headers, a keep-alive comment
 * every KEEP_ALIVE_MS so that idle proxies keep the connection (or a comment of the
 * caller's, more often), and one `end` that runs
 * once however the stream ends (the server closes it, the reader hangs up, or the reader
 * fell too far behind). What goes into the stream is the caller's.
 *
 * A stream's 200 is counted here, when it opens: the response no longer goes through
 * fastify, so the route's own counting (in its onSend hook) never sees it.
 */

import type { OutgoingHttpHeaders } from "node:http";
import type { FastifyReply } from "fastify";
import type { Grant } from "../auth.js";
import type { HttpMetrics, RouteTally } from "../http-metrics.js";

/** Interval of the keep-alive comment, milliseconds. */
const KEEP_ALIVE_MS = 15_000;

/**
 * Bytes all the streams of one server may have waiting together: in their sockets, and held
 * for them outside (`EventStream.hold`).
 */
export const STREAM_BUFFERS_BYTES_MAX = 256 * 1024 * 1024;

/** One stream's part of a StreamBuffers budget. */
export interface StreamHolder {
  /** The bytes it has waiting (in its socket, and held outside it), as last seen. */
  held: number;
  /** Closes the stream for its backlog (its reader resumes later); releases its bytes. */
  cut(): void;
}

/**
 * The bytes all the streams of one server have waiting, as last seen by each (in its socket
 * at its writes, none there once its socket drained, and what is held for it outside the
 * socket, `EventStream.hold`), kept at most `bytesMax`: a stream
 * whose write takes them past it has the largest holders cut, itself first among equals,
 * until they are within it again. A stream's own limit bounds one slow reader; this
 * bounds thousands of them together, which their own limits alone let hold gigabytes
 * (cutting only a writer that held a megabyte let thousands hold just under one each).
 */
export class StreamBuffers {
  private total = 0;
  private readonly holders = new Set<StreamHolder>();

  constructor(readonly bytesMax = STREAM_BUFFERS_BYTES_MAX) {}

  get bytes(): number {
    return this.total;
  }

  add(holder: StreamHolder): void {
    this.holders.add(holder);
    this.total += holder.held;
  }

  /** `holder`'s stream ended: its bytes go with its connection. */
  remove(holder: StreamHolder): void {
    if (!this.holders.delete(holder)) return;
    this.total -= holder.held;
    holder.held = 0;
  }

  /** `holder` now has `bytes` waiting; cuts the largest holders while over the budget. */
  set(holder: StreamHolder, bytes: number): void {
    if (!this.holders.has(holder)) return;
    this.total += bytes - holder.held;
    holder.held = bytes;
    while (this.total > this.bytesMax) {
      let largest = holder.held > 0 && this.holders.has(holder) ? holder : null;
      for (const other of this.holders) {
        if (other.held > (largest?.held ?? 0)) largest = other;
      }
      if (largest === null) break;
      largest.cut();
      // A cut stream leaves the budget (remove); one that did not is not cut again here.
      this.remove(largest);
    }
  }
}

/** A stream route's metrics and its tally for GET, where its streams are counted. */
export interface CountedRoute {
  readonly metrics: HttpMetrics;
  readonly tally: RouteTally;
}

export interface EventStream {
  /**
   * Writes `text` (whole events); ends the stream when its reader is `bufferBytesMax` behind.
   * Returns whether the socket has room for more now (false: wait for `whenDrained`).
   */
  write(text: string): boolean;
  /**
   * The caller holds `bytes` of text for the stream outside its socket (to write later),
   * instead of what it said before: they count with the socket's against `bufferBytesMax`
   * and the shared budget, which cut the stream as a write past them does. Say 0 before
   * writing that text, or it counts twice.
   */
  hold(bytes: number): void;
  /** Calls `then` once the socket has written out what it holds (unless the stream ends first). */
  whenDrained(then: () => void): void;
  /** Ends the stream; safe to call more than once. */
  end(): void;
  readonly ended: boolean;
}

/**
 * Takes over `reply` as an event stream, with the headers set on the reply before (the
 * server's hooks: the origins that may read it); `onEnd` runs once when it ends, whatever
 * ended it.
 */
export function openEventStream(
  reply: FastifyReply,
  options: {
    readonly bufferBytesMax: number;
    /** The budget the server's streams share. */
    readonly buffers: StreamBuffers;
    /**
     * The token the stream's request was let in with (null: a node without tokens): a
     * stream outlives its request, so it ends when a reload stops accepting that token
     * for the stream's route (a revoked token, a lowered role).
     */
    readonly grant?: Grant | null;
    readonly onEnd: () => void;
    /** Where the stream's 200 is counted. */
    readonly counted: CountedRoute;
    /**
     * The comment to send every `commentEveryMs` instead of the keep-alive alone (its text,
     * after ": "), or null to send nothing that time; the keep-alive still goes out when
     * nothing was sent for KEEP_ALIVE_MS.
     */
    readonly comment?: () => string | null;
    readonly commentEveryMs?: number;
  },
): EventStream {
  // A hijacked reply does not send the headers set on it: they go with the stream's own.
  const hooked: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) hooked[name] = value;
  }
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    ...hooked,
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    // Tells nginx-like proxies not to buffer the stream.
    "x-accel-buffering": "no",
  });
  options.counted.metrics.count(options.counted.tally, 200);
  const { comment } = options;
  const everyMs = comment === undefined ? KEEP_ALIVE_MS : (options.commentEveryMs ?? KEEP_ALIVE_MS);
  let silentMs = 0;
  const keepAlive = setInterval(() => {
    silentMs += everyMs;
    const text = comment?.() ?? (silentMs >= KEEP_ALIVE_MS ? "keep-alive" : null);
    if (text === null) return;
    silentMs = 0;
    raw.write(`: ${text}\n\n`);
  }, everyMs);
  keepAlive.unref();
  const { buffers } = options;
  /** This stream's bytes in `buffers`. */
  const holder: StreamHolder = {
    held: 0,
    cut: () => {
      cut = true;
      stream.end();
    },
  };
  /** Ends the watch on the tokens' replacement (see `grant`). */
  let stopWatchingTokens: (() => void) | null = null;
  /** Whether the stream ends for its backlog, which is then dropped with the connection. */
  let cut = false;
  /** The bytes the caller holds for the stream outside its socket (`hold`). */
  let heldOutside = 0;
  /** Counts what the stream has waiting; cuts it when past its own limit or the budget. */
  const count = (): void => {
    const waiting = raw.writableLength + heldOutside;
    // Cut, not ended: ending gracefully would keep the backlog (up to the stream's
    // whole share) until the idle timeout closed the socket, so the budget would
    // bound nothing while a reader that never reads opened stream after stream.
    if (waiting > options.bufferBytesMax) holder.cut();
    else buffers.set(holder, waiting);
  };
  const socket = reply.request.raw.socket;
  const onSocketClose = (): void => stream.end();
  const stream: EventStream = {
    ended: false,
    write(text) {
      if (stream.ended) return false;
      if (text === "") return !raw.writableNeedDrain;
      const room = raw.write(text);
      count();
      return room && !stream.ended;
    },
    hold(bytes) {
      if (stream.ended) return;
      heldOutside = bytes;
      count();
    },
    whenDrained(then) {
      if (!stream.ended) raw.once("drain", then);
    },
    end() {
      if (stream.ended) return;
      (stream as { ended: boolean }).ended = true;
      stopWatchingTokens?.();
      buffers.remove(holder);
      clearInterval(keepAlive);
      socket.off("close", onSocketClose);
      options.onEnd();
      if (cut) raw.destroy();
      else raw.end();
    },
  };
  const grant = options.grant ?? null;
  if (grant !== null) {
    stopWatchingTokens = grant.tokens.onReplace(() => {
      if (!grant.tokens.allows(grant.sha256, grant.needed)) stream.end();
    });
  }
  buffers.add(holder);
  raw.on("drain", () => buffers.set(holder, heldOutside));
  raw.on("close", () => stream.end());
  // The connection's own close too: an answer that never got the socket emits no close.
  // Removed when the stream ends, since a kept-alive connection may carry many streams.
  socket.once("close", onSocketClose);
  return stream;
}
