/**
 * A node without tokens and the browser: a page on another site may not change anything
 * (its "simple" cross-origin POST, PUT and DELETE are refused by their Origin), and a page
 * that rebinds its host name to a loopback node may not use it at all (its Host is not one
 * of the node's names). Programs, which send no Origin, and the cluster's own dashboards
 * are unaffected.
 */

import { connect } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function listening() {
  const api = new LocalKvNode(1);
  const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
  servers.push(server);
  const { url } = await server.listen("127.0.0.1", 0);
  return { app: server.app, url, port: new URL(url).port };
}

describe("browser guard (no tokens)", () => {
  it("guard: a foreign page's change is refused by its Origin; programs and the node's own pages are not", async () => {
    const { app, port } = await listening();
    const foreign = { origin: "https://evil.example" };
    for (const [method, url, payload] of [
      ["PUT", "/v1/kv/color", "red"],
      ["DELETE", "/v1/kv/color", undefined],
      ["POST", "/v1/txn", '{"success":[{"put":{"key":"a","value":"b"}}]}'],
      ["POST", "/v1/switchover", ""],
    ] as const) {
      const body = payload === undefined ? {} : { payload };
      const refused = await app.inject({ method, url, ...body, headers: foreign });
      expect(refused.statusCode, `${method} ${url}`).toBe(403);
      expect(refused.json()).toMatchObject({ code: "ERR_FORBIDDEN", field: "Origin" });
      expect(refused.json().error).toContain("https://evil.example");
    }
    // A program (no Origin) and this node's own dashboard write as before.
    expect(
      (await app.inject({ method: "PUT", url: "/v1/kv/color", payload: "blue" })).statusCode,
    ).toBe(200);
    const own = { origin: `http://127.0.0.1:${port}` };
    const fromDashboard = await app.inject({
      method: "PUT",
      url: "/v1/kv/color",
      payload: "green",
      headers: own,
    });
    expect(fromDashboard.statusCode).toBe(200);
    // Reading changes nothing: a foreign page cannot read the answer anyway.
    expect((await app.inject({ url: "/v1/kv/color", headers: foreign })).statusCode).toBe(200);
  });

  it("guard: on a loopback listener a Host that is not one of the node's names is refused (DNS rebinding)", async () => {
    const { app, port } = await listening();
    const rebound = await app.inject({
      url: "/v1/kv?prefix=",
      headers: { host: `evil.example:${port}` },
    });
    expect(rebound.statusCode).toBe(403);
    expect(rebound.json()).toMatchObject({ code: "ERR_FORBIDDEN", field: "Host" });
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      expect((await app.inject({ url: "/v1/kv?prefix=", headers: { host } })).statusCode).toBe(200);
    }
    // A request without a Host (HTTP/1.0: a script, a health checker) is no browser's.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), "127.0.0.1", () =>
        socket.write("GET /v1/status HTTP/1.0\r\n\r\n"),
      );
      let text = "";
      socket.on("data", (chunk) => {
        text += chunk.toString();
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.[01] 200/);
    // A load balancer's health check names the node its own way: health tells nothing.
    const check = await app.inject({ url: "/health", headers: { host: "backend.internal" } });
    expect(check.statusCode).toBe(200);
  });
});
