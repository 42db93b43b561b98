/**
 * A node started from a source tree that was never built has no dashboard files: `GET /`
 * says so in the API's JSON error shape, with a code, and the API around it still works.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../../harness/doubles/fake-node-api.js";
import { createHttpServer, type HttpServer } from "../server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe("dashboard files missing", () => {
  it("dashboard: without its files, GET / is 503 ERR_DASHBOARD_MISSING in JSON saying to build, and /v1/status still answers", async () => {
    const server = createHttpServer({
      api: new FakeKvNodeApi(1),
      logger: pino({ level: "silent" }),
      dashboardDir: "/nonexistent/baton-dashboard",
    });
    servers.push(server);
    const page = await server.app.inject({ url: "/" });
    expect(page.statusCode).toBe(503);
    expect(page.headers["content-type"]).toMatch(/^application\/json/);
    expect(page.headers["retry-after"]).toBeUndefined();
    expect(page.json()).toEqual({
      code: "ERR_DASHBOARD_MISSING",
      error: expect.stringMatching(/^this node has no dashboard files; .*npm run build/),
    });
    expect((await server.app.inject({ url: "/dashboard/app.js" })).statusCode).toBe(404);
    expect((await server.app.inject({ url: "/v1/status" })).statusCode).toBe(200);
  });
});
