/**
 * Event streams in the metrics: a stream is taken over from fastify, so its 200 never
 * passes the route's own counting; it is counted when the stream opens, for the node's
 * events and for watches alike.
 */

import type { LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../../harness/doubles/local-kv-node.js";
import { createHttpServer, type HttpServer } from "../server.js";

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
