/**
 * What a resource times for the metrics: a key-value request refused before its handler
 * (by the token check or the browser guard) is timed from its arrival like any other, so
 * the latency histogram and the dashboard's percentiles do not count it as taking no time.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeKvNodeApi } from "../../../harness/doubles/fake-node-api.js";
import { createHttpServer, type HttpServer, type HttpServerOptions } from "../server.js";
import { hashToken, TokenStore } from "../tokens.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup(options: Partial<HttpServerOptions> = {}) {
  const server = createHttpServer({
    api: new FakeKvNodeApi(1),
    logger: pino({ level: "silent" }),
    ...options,
  });
  servers.push(server);
  return server;
}

/** A clock that moves 5 ms each time it is read, so every measured span is above zero. */
function steppingClock(): void {
  let now = 0;
  vi.spyOn(performance, "now").mockImplementation(() => {
    now += 5;
    return now;
  });
}

/** The sum and count of `baton_http_request_duration_seconds` for `method`. */
async function duration(server: HttpServer, method: string) {
  const text = await server.registry.metrics();
  const read = (part: string): number => {
    const line = new RegExp(
      `^baton_http_request_duration_seconds_${part}\\{method="${method}"\\} (\\S+)$`,
      "m",
    );
    return Number(line.exec(text)?.[1] ?? Number.NaN);
  };
  return { sum: read("sum"), count: read("count") };
}

describe("http resource metrics", () => {
  it("timing: a key-value request refused by the token check is timed from its arrival, not as 0 s", async () => {
    const tokens = new TokenStore([
      { name: "reader", role: "read", sha256: hashToken("baton_read-token") },
    ]);
    const server = setup({ tokens });
    steppingClock();
    const unauthenticated = await server.app.inject({
      method: "PUT",
      url: "/v1/kv/a",
      payload: "v",
    });
    expect(unauthenticated.statusCode).toBe(401);
    const forbidden = await server.app.inject({
      method: "DELETE",
      url: "/v1/kv/a",
      headers: { authorization: "Bearer baton_read-token" },
    });
    expect(forbidden.statusCode).toBe(403);
    const put = await duration(server, "PUT");
    expect(put.count).toBe(1);
    expect(put.sum).toBeGreaterThan(0);
    const del = await duration(server, "DELETE");
    expect(del.count).toBe(1);
    expect(del.sum).toBeGreaterThan(0);
  });

  it("timing: a key-value change refused by the browser guard (a foreign Origin) is timed from its arrival", async () => {
    const server = setup();
    steppingClock();
    const refused = await server.app.inject({
      method: "PUT",
      url: "/v1/kv/a",
      payload: "v",
      headers: { origin: "https://evil.example" },
    });
    expect(refused.statusCode).toBe(403);
    const put = await duration(server, "PUT");
    expect(put.count).toBe(1);
    expect(put.sum).toBeGreaterThan(0);
  });
});
