/**
 * Event streams in the metrics: a stream is taken over from fastify, so its 200 never
 * passes the route's own counting; it is counted when the stream opens, for the node's
 * events and for watches alike.
 */

import { EventEmitter } from "node:events";
import type { FastifyReply, LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../../harness/doubles/local-kv-node.js";
import { HttpMetrics } from "../http-metrics.js";
import { createHttpServer, type HttpServer } from "../server.js";
import { openEventStream, StreamBuffers } from "./event-stream.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** The count of `baton_http_responses_total` for GET `route` with status 200, or 0. */
async function answered(server: HttpServer, route: string): Promise<number> {
  const text = await server.registry.metrics();
  const line = `baton_http_responses_total{method="GET",route="${route}",status="200"} `;
  const found = text.split("\n").find((l) => l.startsWith(line));
  return found === undefined ? 0 : Number(found.slice(line.length));
}

describe("http event streams", () => {
  it("metrics: an opened /v1/events or /v1/watch stream counts as a 200 answer", async () => {
    const server = createHttpServer({ api: new LocalKvNode(1), logger: pino({ level: "silent" }) });
    servers.push(server);
    await server.app.ready();
    // Streams never end by themselves; closing the server ends them.
    const streams: Promise<LightMyRequestResponse>[] = [];
    for (const url of ["/v1/events", "/v1/events", "/v1/watch?prefix=a"]) {
      streams.push(server.app.inject({ url }));
    }
    // Both routes open their streams as soon as the request is handled: a few turns.
    const opened = async () =>
      (await answered(server, "/v1/events")) === 2 && (await answered(server, "/v1/watch")) === 1;
    for (let turn = 0; turn < 100 && !(await opened()); turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await answered(server, "/v1/events")).toBe(2);
    expect(await answered(server, "/v1/watch")).toBe(1);
    await server.close();
    servers.splice(0);
    for (const stream of await Promise.all(streams)) expect(stream.statusCode).toBe(200);
  });
});

/** A response that keeps every byte written (its reader never reads) until drained. */
class StuckResponse extends EventEmitter {
  writableLength = 0;
  writableNeedDrain = false;
  ended = false;
  writeHead(): void {}
  write(text: string): boolean {
    this.writableLength += Buffer.byteLength(text);
    this.writableNeedDrain = true;
    return false;
  }
  end(): void {
    this.ended = true;
  }
  destroyed = false;
  destroy(): void {
    this.destroyed = true;
  }
  /** The reader caught up. */
  drain(): void {
    this.writableLength = 0;
    this.writableNeedDrain = false;
    this.emit("drain");
  }
}

describe("http event streams: the bytes they hold together", () => {
  const MiB = 1024 * 1024;
  const metrics = new HttpMetrics(new Registry());
  const counted = { metrics, tally: metrics.tally("GET", "/v1/watch") };

  function open(buffers: StreamBuffers) {
    const raw = new StuckResponse();
    const socket = new EventEmitter();
    const reply = { hijack: () => {}, getHeaders: () => ({}), raw, request: { raw: { socket } } };
    const stream = openEventStream(reply as unknown as FastifyReply, {
      bufferBytesMax: 8 * MiB,
      buffers,
      onEnd: () => {},
      counted,
    });
    return { raw, stream, socket };
  }

  it("streams: a stream cut for its backlog is destroyed, not ended gracefully (which kept the backlog until the idle timeout); one ended otherwise ends", () => {
    const buffers = new StreamBuffers(64 * MiB);
    const slow = open(buffers);
    slow.stream.write("x".repeat(8 * MiB + 1));
    expect(slow.stream.ended).toBe(true);
    expect(slow.raw.destroyed).toBe(true);
    const caughtUp = open(buffers);
    caughtUp.stream.write("x".repeat(1000));
    caughtUp.raw.drain();
    caughtUp.stream.end();
    expect(caughtUp.raw.destroyed).toBe(false);
    expect(caughtUp.raw.ended).toBe(true);
  });

  it("streams: an ended stream leaves no listener on its kept-alive connection", () => {
    const buffers = new StreamBuffers(64 * MiB);
    const first = open(buffers);
    expect(first.socket.listenerCount("close")).toBe(1);
    first.stream.end();
    expect(first.socket.listenerCount("close")).toBe(0);
  });

  it("streams: past the server's budget the largest holders are cut, the writer first among equals; a drained one gives its share back", () => {
    const buffers = new StreamBuffers(3 * MiB);
    const a = open(buffers);
    const b = open(buffers);
    const small = open(buffers);
    a.stream.write("x".repeat(2 * MiB));
    expect(buffers.bytes).toBe(2 * MiB);
    // Each under its own 8 MiB, but 4 MiB together: b, as large as a and the writer, goes.
    b.stream.write("x".repeat(2 * MiB));
    expect(b.stream.ended).toBe(true);
    expect(b.raw.destroyed).toBe(true);
    expect(a.stream.ended).toBe(false);
    expect(buffers.bytes).toBe(2 * MiB);
    // The small stream's write takes them over: a, the largest, goes, not the writer.
    small.stream.write("x".repeat(MiB + 1));
    expect(a.stream.ended).toBe(true);
    expect(a.raw.destroyed).toBe(true);
    expect(small.stream.ended).toBe(false);
    expect(buffers.bytes).toBe(MiB + 1);
    small.raw.drain();
    expect(buffers.bytes).toBe(0);
    small.stream.end();
    expect(buffers.bytes).toBe(0);
  });

  it("streams: many streams each under a megabyte stay within the budget together (cutting only megabyte holders let them hold one each)", () => {
    const buffers = new StreamBuffers(3 * MiB);
    const streams = Array.from({ length: 8 }, () => open(buffers));
    for (const s of streams) {
      s.stream.write("x".repeat(900 * 1024));
      expect(buffers.bytes).toBeLessThanOrEqual(3 * MiB);
    }
    // Three fit (2.6 MiB); each later write cut its own stream, as large as any other.
    expect(streams.filter((s) => !s.stream.ended)).toHaveLength(3);
    expect(buffers.bytes).toBe(3 * 900 * 1024);
    for (const s of streams) s.stream.end();
    expect(buffers.bytes).toBe(0);
  });
});
