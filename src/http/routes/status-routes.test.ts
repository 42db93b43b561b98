/**
 * The health checks' answers on a node that is stopping or in another role: a stopping
 * node says when to come back (Retry-After), as every ERR_SHUTTING_DOWN answer does.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../../harness/doubles/fake-node-api.js";
import { createHttpServer, type HttpServer } from "../server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function setup() {
  const api = new FakeKvNodeApi(1);
  const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
  servers.push(server);
  return { api, app: server.app };
}

describe("http health checks", () => {
  it("health: a stopping node answers every check 503 ERR_SHUTTING_DOWN with Retry-After", async () => {
    const { api, app } = setup();
    api.stopped = "it is handing over and stopping (SIGTERM)";
    for (const url of ["/health", "/health/master", "/health/backup"]) {
      const response = await app.inject({ url });
      expect(response.statusCode, url).toBe(503);
      expect(response.json(), url).toMatchObject({ code: "ERR_SHUTTING_DOWN" });
      expect(response.headers["retry-after"], url).toBe("1");
    }
  });

  it("health: a node in another role answers 503 ERR_WRONG_ROLE without Retry-After", async () => {
    const { app } = setup();
    const response = await app.inject({ url: "/health/backup" });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ code: "ERR_WRONG_ROLE", role: "master" });
    expect(response.headers["retry-after"]).toBeUndefined();
    const live = await app.inject({ url: "/health" });
    expect(live.statusCode).toBe(200);
    expect(live.headers["retry-after"]).toBeUndefined();
  });
});
