/**
 * Watches and the bytes a node's streams hold together (STREAM_BUFFERS_BYTES_MAX, here a
 * smaller budget): the live changes that wait behind a backlog its reader does not take
 * count with what the socket holds, so the budget cuts such a watch as it cuts any stream;
 * one within it gets every event, in order, once.
 */

import { get as httpGet, type IncomingMessage } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../../harness/doubles/local-kv-node.js";
import { encodeCommand } from "../../kv/index.js";
import type { HttpContext } from "../http-context.js";
import { HttpMetrics } from "../http-metrics.js";
import { StreamBuffers } from "./event-stream.js";
import { registerWatchRoute, type WatchStreams } from "./watch-route.js";

const MiB = 1024 * 1024;
/** Changes of 1 MiB in the backlog: far more than a paused reader's socket takes. */
const BACKLOG_COUNT = 32;
/** Live changes of 1 MiB made while the backlog waits: under a watch's own 8 MiB. */
const LIVE_COUNT = 5;

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A node whose streams share `budgetBytes`, with a watch on `w/` from revision 1 that reads nothing. */
async function stuckWatch(budgetBytes: number) {
  const api = new LocalKvNode(1);
  const app: FastifyInstance = Fastify({ logger: false });
  const streams = new StreamBuffers(budgetBytes);
  const context: HttpContext = {
    api,
    limits: api.stateMachine.limits,
    requestTimeoutMs: 5000,
    metrics: new HttpMetrics(new Registry()),
    streams,
    watchesMax: 10,
    listening: () => null,
  };
  const watches: WatchStreams = registerWatchRoute(app, context, api.store);
  let response: IncomingMessage | null = null;
  cleanups.push(async () => {
    response?.destroy();
    watches.closeAll();
    await app.close();
  });
  const put = (key: string): void => {
    api.apply(encodeCommand({ type: "put", key, value: new Uint8Array(MiB).fill(120) }));
  };
  for (let i = 0; i < BACKLOG_COUNT; i++) put(`w/${i}`);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  response = await new Promise<IncomingMessage>((resolve, reject) => {
    httpGet(`${url}/v1/watch?prefix=w%2F&fromRevision=1`, { agent: false }, resolve).on(
      "error",
      reject,
    );
  });
  expect(response.statusCode).toBe(200);
  // The reader stops reading: the backlog waits, a piece in the socket, the rest unsent.
  response.pause();
  response.on("error", () => {});
  while (watches.openCount === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 100));
  expect(watches.openCount).toBe(1);
  expect(streams.bytes).toBeGreaterThan(0);
  expect(streams.bytes).toBeLessThan(2 * MiB);
  return { streams, watches, put, response };
}

/** Reads the rest of `response`: the ids of its events, and whether it ended whole. */
async function readRest(response: IncomingMessage): Promise<{ ids: string[]; whole: boolean }> {
  const ids: string[] = [];
  let text = "";
  response.setEncoding("utf8");
  response.on("data", (chunk: string) => {
    text += chunk;
    for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
      const id = /^id: (\S+)$/m.exec(text.slice(0, end))?.[1];
      if (id !== undefined) ids.push(id);
      text = text.slice(end + 2);
    }
  });
  await new Promise<void>((resolve) => {
    response.on("close", resolve);
    response.resume();
  });
  return { ids, whole: response.complete };
}

/** The ids of the first `count` events: one change per revision, from 1. */
function idsUpTo(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${i + 1}.1`);
}

describe("http watch: the bytes its backlog holds back", () => {
  it("watch: live changes waiting behind an unread backlog count in the node's budget, which cuts the watch (as any cut stream: the connection is dropped, the reader resumes from its last event)", async () => {
    const budgetBytes = 4 * MiB;
    const { streams, watches, put, response } = await stuckWatch(budgetBytes);
    for (let i = 0; i < LIVE_COUNT && watches.openCount > 0; i++) {
      put(`w/live-${i}`);
      expect(streams.bytes).toBeLessThanOrEqual(budgetBytes);
    }
    // Before, only the socket's bytes counted: the 5 MiB waiting behind the backlog did
    // not, and thousands of such watches held 8 MiB each.
    expect(watches.openCount).toBe(0);
    expect(streams.bytes).toBe(0);
    const { ids, whole } = await readRest(response);
    // Dropped, not ended: a chunked answer without its last chunk.
    expect(whole).toBe(false);
    // What arrived is the backlog's start, with no gap and no duplicate.
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.length).toBeLessThan(BACKLOG_COUNT);
    expect(ids).toEqual(idsUpTo(ids.length));
  });

  it("watch: within the budget, the live changes held behind the backlog count until they go out after it, every one once and in order", async () => {
    const budgetBytes = 16 * MiB;
    const { streams, watches, put, response } = await stuckWatch(budgetBytes);
    for (let i = 0; i < LIVE_COUNT; i++) put(`w/live-${i}`);
    expect(watches.openCount).toBe(1);
    expect(streams.bytes).toBeGreaterThan(LIVE_COUNT * MiB);
    expect(streams.bytes).toBeLessThan((LIVE_COUNT + 2) * MiB);
    // The reader takes everything; it ends only when the node closes the watch.
    const rest = readRest(response);
    while (streams.bytes > 0) {
      await new Promise((r) => setTimeout(r, 5));
    }
    watches.closeAll();
    const { ids, whole } = await rest;
    expect(whole).toBe(true);
    expect(ids).toEqual(idsUpTo(BACKLOG_COUNT + LIVE_COUNT));
  });
});
