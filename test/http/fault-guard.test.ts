/**
 * The fault routes' guard against requests a browser makes on a hostile page's behalf:
 * a Host outside the allow-list (DNS rebinding) and an Origin that only mirrors the Host
 * are refused, so the injector is never called; the node's own dashboard still works.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import type { FaultInjector } from "../../src/http/routes/fault-routes.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";

function recordingFaults(): FaultInjector & { readonly calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    kill: () => calls.push("kill"),
    pause: (ms) => calls.push(`pause ${ms}`),
    partition: () => calls.push("partition"),
    heal: () => calls.push("heal"),
    partitioned: () => false,
  };
}

describe("http fault guard", () => {
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function listening() {
    const faults = recordingFaults();
    const server = createHttpServer({
      api: new FakeKvNodeApi(1),
      logger: pino({ level: "silent" }),
      faults,
    });
    servers.push(server);
    const { port } = await server.listen("127.0.0.1", 0);
    const post = (headers: Record<string, string>) =>
      server.app.inject({
        method: "POST",
        url: "/v1/faults/partition",
        headers: { "x-baton-fault": "1", ...headers },
      });
    return { faults, port, post };
  }

  it("faults: a rebound host name is refused even when Origin matches it (DNS rebinding)", async () => {
    const { faults, port, post } = await listening();
    const host = `attacker.example:${port}`;
    const rebound = await post({ host, origin: `http://${host}` });
    expect(rebound.statusCode).toBe(400);
    expect(rebound.json()).toMatchObject({ code: "ERR_INVALID_INPUT", field: "Host" });
    const noOrigin = await post({ host });
    expect(noOrigin.statusCode).toBe(400);
    expect(faults.calls).toEqual([]);
  });

  it("faults: an Origin must match exactly, not merely mirror an allowed Host", async () => {
    const { faults, port, post } = await listening();
    const wrongPort = await post({ host: `127.0.0.1:${port}`, origin: "http://127.0.0.1:1" });
    expect(wrongPort.statusCode).toBe(400);
    expect(wrongPort.json()).toMatchObject({ field: "Origin" });
    const wrongScheme = await post({
      host: `localhost:${port}`,
      origin: `https://localhost:${port}`,
    });
    expect(wrongScheme.statusCode).toBe(400);
    expect(faults.calls).toEqual([]);
  });

  it("faults: the node's own dashboard and curl on localhost are served", async () => {
    const { faults, port, post } = await listening();
    const own = await post({ host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` });
    expect(own.statusCode).toBe(200);
    const byName = await post({ host: `localhost:${port}`, origin: `http://localhost:${port}` });
    expect(byName.statusCode).toBe(200);
    const curl = await post({ host: `127.0.0.1:${port}` });
    expect(curl.statusCode).toBe(200);
    expect(faults.calls).toEqual(["partition", "partition", "partition"]);
  });
});
