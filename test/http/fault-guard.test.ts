/**
 * The fault routes' guard against requests a browser makes on a hostile page's behalf:
 * a Host outside the allow-list (DNS rebinding) and an Origin that only mirrors the Host
 * are refused, so the injector is never called; the node's own dashboard still works.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { type FaultInjector, newFaultToken } from "../../src/http/routes/fault-routes.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";

const TOKEN = "fedcba9876543210fedcba9876543210";

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
      faultToken: TOKEN,
    });
    servers.push(server);
    const { port } = await server.listen("127.0.0.1", 0);
    const post = (headers: Record<string, string>) =>
      server.app.inject({
        method: "POST",
        url: "/v1/faults/partition",
        headers: { "x-baton-fault": TOKEN, ...headers },
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

  it("faults: a refused preflight says why, in the API's JSON error shape", async () => {
    const { port } = await listening();
    const server = servers.at(-1)!;
    const host = `attacker.example:${port}`;
    const preflight = await server.app.inject({
      method: "OPTIONS",
      url: "/v1/faults/partition",
      headers: { host, origin: `http://${host}`, "access-control-request-method": "POST" },
    });
    expect(preflight.statusCode).toBe(400);
    expect(preflight.json()).toMatchObject({ code: "ERR_INVALID_INPUT", field: "Host" });
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

  it("faults: a caller on another machine is refused, even with the token and a good Host", async () => {
    const { faults, port } = await listening();
    const server = servers[0]!;
    for (const remoteAddress of ["10.0.0.7", "::ffff:192.168.1.2", "2001:db8::1"]) {
      const remote = await server.app.inject({
        method: "POST",
        url: "/v1/faults/partition",
        remoteAddress,
        headers: { host: `127.0.0.1:${port}`, "x-baton-fault": TOKEN },
      });
      expect(remote.statusCode).toBe(403);
      expect(remote.json()).toMatchObject({ code: "ERR_FAULTS_LOOPBACK_ONLY" });
      const state = await server.app.inject({
        url: "/v1/faults",
        remoteAddress,
        headers: { host: `127.0.0.1:${port}` },
      });
      expect(state.json()).toEqual({ enabled: true, partitioned: false });
    }
    const v6 = await server.app.inject({
      method: "POST",
      url: "/v1/faults/partition",
      remoteAddress: "::1",
      headers: { host: `[::1]:${port}`, "x-baton-fault": TOKEN },
    });
    expect(v6.statusCode).toBe(200);
    expect(faults.calls).toEqual(["partition"]);
  });

  it("faults: only this run's token is accepted; the old constant and a wrong token are not", async () => {
    const { faults, port, post } = await listening();
    const host = `127.0.0.1:${port}`;
    for (const value of ["1", TOKEN.slice(1), `${TOKEN}0`, TOKEN.toUpperCase()]) {
      const refused = await post({ host, "x-baton-fault": value });
      expect(refused.statusCode).toBe(400);
      expect(refused.json()).toMatchObject({ code: "ERR_INVALID_INPUT", field: "x-baton-fault" });
    }
    expect(faults.calls).toEqual([]);
  });

  it("faults: the node's own dashboard may read why its fault request was refused (a stale token); a foreign page may not", async () => {
    const { port, post } = await listening();
    const host = `127.0.0.1:${port}`;
    const origin = `http://${host}`;
    const stale = await post({ host, origin, "x-baton-fault": "stale" });
    expect(stale.statusCode).toBe(400);
    // Before, the refusal carried no Access-Control-Allow-Origin: the page saw no reason.
    expect(stale.headers["access-control-allow-origin"]).toBe(origin);
    expect(stale.json()).toMatchObject({ field: "x-baton-fault" });
    const foreign = await post({ host, origin: "http://127.0.0.1:1", "x-baton-fault": "stale" });
    expect(foreign.statusCode).toBe(400);
    expect(foreign.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("faults: GET /v1/faults gives the token only to the node's own machine and dashboards", async () => {
    const { port } = await listening();
    const server = servers[0]!;
    const get = (headers: Record<string, string>) =>
      server.app.inject({ url: "/v1/faults", headers });
    const own = await get({ host: `127.0.0.1:${port}` });
    expect(own.json()).toEqual({ enabled: true, partitioned: false, token: TOKEN });
    expect(own.headers["access-control-allow-origin"]).toBeUndefined();
    const dashboard = await get({ host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` });
    expect(dashboard.json().token).toBe(TOKEN);
    expect(dashboard.headers["access-control-allow-origin"]).toBe(`http://127.0.0.1:${port}`);
    // A foreign page may learn that faults are on, never the token.
    const foreign = await get({ host: `127.0.0.1:${port}`, origin: "https://evil.example" });
    expect(foreign.json()).toEqual({ enabled: true, partitioned: false });
    const rebound = `attacker.example:${port}`;
    const rebinding = await get({ host: rebound, origin: `http://${rebound}` });
    expect(rebinding.json()).toEqual({ enabled: true, partitioned: false });
  });

  it("faults: every server draws its own token, so a new run of the node refuses the old one", async () => {
    const api = new FakeKvNodeApi(1);
    const logger = pino({ level: "silent" });
    const runs = [0, 1].map(() => {
      const server = createHttpServer({ api, logger, faults: recordingFaults() });
      servers.push(server);
      return server;
    });
    const tokens: string[] = [];
    for (const server of runs) {
      const state = await server.app.inject({ url: "/v1/faults", headers: { host: "127.0.0.1" } });
      tokens.push(state.json().token);
    }
    expect(tokens[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(tokens[1]).not.toBe(tokens[0]);
    const post = (server: HttpServer, token: string) =>
      server.app.inject({
        method: "POST",
        url: "/v1/faults/heal",
        headers: { host: "127.0.0.1", "x-baton-fault": token },
      });
    expect((await post(runs[1]!, tokens[0]!)).statusCode).toBe(400);
    expect((await post(runs[1]!, tokens[1]!)).statusCode).toBe(200);
    expect(newFaultToken()).not.toBe(newFaultToken());
  });
});
