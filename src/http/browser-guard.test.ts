/**
 * The browser guard and the members' origins: a member whose advertised URL does not parse
 * (a configuration written by an older version may hold one) is left out alone, and a
 * member advertised on a loopback address is the same dashboard under any loopback name
 * (a page opened at localhost talks to members advertised at 127.0.0.1), while every other
 * name, port and scheme is still refused.
 */

import { get, type IncomingHttpHeaders } from "node:http";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi, memberStatus } from "../../harness/doubles/fake-node-api.js";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { httpOrigin } from "./browser-guard.js";
import type { FaultInjector } from "./routes/fault-routes.js";
import { createHttpServer, type HttpServer } from "./server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe("browser guard: members' origins", () => {
  it("guard: a member's unparsable URL leaves out that member only; the others' dashboards still write", async () => {
    const api = new FakeKvNodeApi(1);
    api.members = [
      memberStatus(1, "http://a:99999"),
      memberStatus(2, "http://%"),
      memberStatus(3, "http://127.0.0.1:8103"),
    ];
    const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
    servers.push(server);
    const write = (origin: string) =>
      server.app.inject({ method: "PUT", url: "/v1/kv/a", payload: "v", headers: { origin } });
    expect((await write("http://127.0.0.1:8103")).statusCode).toBe(200);
    expect((await write("http://a:9999")).statusCode).toBe(403);
  });

  it("guard: a member advertised on loopback is let in under localhost or [::1] too, at its own port and scheme only", async () => {
    const api = new FakeKvNodeApi(1);
    api.members = [
      memberStatus(1, "http://127.0.0.1:8101"),
      memberStatus(2, "http://127.0.0.1:8102"),
      memberStatus(3, "http://10.0.0.3:8103", "10.0.0.3:7103"),
    ];
    const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
    servers.push(server);
    const write = (origin: string) =>
      server.app.inject({ method: "PUT", url: "/v1/kv/a", payload: "v", headers: { origin } });
    for (const origin of ["http://localhost:8102", "http://[::1]:8102", "http://localhost:8101"]) {
      expect((await write(origin)).statusCode, origin).toBe(200);
    }
    for (const origin of [
      // No member at that port, another scheme, a member that is not on loopback.
      "http://localhost:8109",
      "https://localhost:8102",
      "http://localhost:8103",
      // Other names for this machine are no loopback name a browser keeps to itself.
      "http://127.0.0.2:8102",
      "http://localhost.evil.example:8102",
      "http://evil.example:8102",
    ]) {
      const refused = await write(origin);
      expect(refused.statusCode, origin).toBe(403);
      expect(refused.json(), origin).toMatchObject({ code: "ERR_FORBIDDEN", field: "Origin" });
    }
  });

  it("guard: the fault routes take a dashboard opened at localhost for a member advertised at 127.0.0.1", async () => {
    const calls: string[] = [];
    const faults: FaultInjector = {
      kill: () => calls.push("kill"),
      pause: () => calls.push("pause"),
      partition: () => calls.push("partition"),
      heal: () => calls.push("heal"),
      partitioned: () => false,
    };
    const api = new FakeKvNodeApi(2);
    api.members = [
      memberStatus(1, "http://127.0.0.1:8101"),
      memberStatus(2, "http://127.0.0.1:8102"),
    ];
    const token = "0123456789abcdef0123456789abcdef";
    const server = createHttpServer({
      api,
      logger: pino({ level: "silent" }),
      faults,
      faultToken: token,
    });
    servers.push(server);
    const origin = "http://localhost:8101";
    const state = await server.app.inject({ url: "/v1/faults", headers: { origin } });
    expect(state.json()).toMatchObject({ enabled: true, token });
    const preflight = await server.app.inject({
      method: "OPTIONS",
      url: "/v1/faults/partition",
      headers: { origin, "access-control-request-method": "POST" },
    });
    expect(preflight.statusCode).toBe(204);
    const post = await server.app.inject({
      method: "POST",
      url: "/v1/faults/partition",
      headers: { origin, "x-baton-fault": token },
    });
    expect(post.statusCode).toBe(200);
    expect(calls).toEqual(["partition"]);
    // A page elsewhere gets no token, and its request changes nothing.
    const foreign = await server.app.inject({
      url: "/v1/faults",
      headers: { origin: "http://evil.example:8101" },
    });
    expect(foreign.json().token).toBeUndefined();
  });

  it("guard: a member's dashboard may read the keys and watch them across origins; any other page may not", async () => {
    const api = new LocalKvNode(1);
    api.members = [
      memberStatus(1, "http://127.0.0.1:8101"),
      memberStatus(2, "http://10.0.0.2:8102"),
    ];
    const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
    servers.push(server);
    const member = "http://10.0.0.2:8102";
    const list = (origin: string) =>
      server.app.inject({ url: "/v1/kv?prefix=a", headers: { origin } });
    const listed = await list(member);
    expect(listed.statusCode).toBe(200);
    expect(listed.headers["access-control-allow-origin"]).toBe(member);
    expect(listed.headers.vary).toContain("Origin");
    const foreign = await list("http://evil.example");
    expect(foreign.headers["access-control-allow-origin"]).toBeUndefined();
    const key = await server.app.inject({ url: "/v1/kv/a", headers: { origin: member } });
    expect(key.statusCode).toBe(404);
    expect(key.headers["access-control-allow-origin"]).toBe(member);
    // A write answers no page of another origin, a member's included.
    const put = await server.app.inject({
      method: "PUT",
      url: "/v1/kv/a",
      payload: "v",
      headers: { origin: member },
    });
    expect(put.headers["access-control-allow-origin"]).toBeUndefined();
    // The preflight of a read with the API token, for /v1/kv and /v1/watch alike.
    for (const url of ["/v1/kv?prefix=a", "/v1/watch?prefix=a"]) {
      const preflight = (origin: string) =>
        server.app.inject({
          method: "OPTIONS",
          url,
          headers: { origin, "access-control-request-headers": "authorization" },
        });
      const allowed = await preflight(member);
      expect(allowed.statusCode, url).toBe(204);
      expect(allowed.headers["access-control-allow-origin"]).toBe(member);
      expect(allowed.headers["access-control-allow-headers"]).toContain("authorization");
      const refused = await preflight("http://evil.example");
      expect(refused.statusCode, url).toBe(403);
      expect(refused.json()).toMatchObject({ code: "ERR_FORBIDDEN", field: "Origin" });
      expect(refused.headers["access-control-allow-origin"]).toBeUndefined();
    }
    // The watch's stream carries the header too (a hijacked reply sends its own headers).
    const { port } = await server.listen("127.0.0.1", 0);
    const headersOf = (origin: string) =>
      new Promise<IncomingHttpHeaders>((resolve, reject) => {
        const request = get(
          {
            host: "127.0.0.1",
            port,
            path: "/v1/watch?prefix=a",
            headers: { origin, host: "127.0.0.1" },
          },
          (response) => {
            resolve(response.headers);
            request.destroy();
          },
        );
        request.on("error", reject);
      });
    expect((await headersOf(member))["access-control-allow-origin"]).toBe(member);
    expect((await headersOf("http://evil.example"))["access-control-allow-origin"]).toBeUndefined();
  });

  it("guard: httpOrigin gives an http or https URL's origin, else null", () => {
    expect(httpOrigin("https://node-2.example:8443/")).toBe("https://node-2.example:8443");
    expect(httpOrigin("http://[::1]:8101")).toBe("http://[::1]:8101");
    for (const url of ["http://a:99999", "http://%", "http://[", "ftp://a:21", "node-2:8101"]) {
      expect(httpOrigin(url), url).toBeNull();
    }
  });
});
