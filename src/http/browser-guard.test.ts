/**
 * The browser guard with a member whose advertised URL does not parse (a configuration
 * written by an older version may hold one): that member alone is left out, and the other
 * members' dashboards are still let in.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi, memberStatus } from "../../harness/doubles/fake-node-api.js";
import type { MemberStatus } from "../protocol/status.js";
import { httpOrigin } from "./browser-guard.js";
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

  it("guard: httpOrigin gives an http or https URL's origin, else null", () => {
    expect(httpOrigin("https://node-2.example:8443/")).toBe("https://node-2.example:8443");
    expect(httpOrigin("http://[::1]:8101")).toBe("http://[::1]:8101");
    for (const url of ["http://a:99999", "http://%", "http://[", "ftp://a:21", "node-2:8101"]) {
      expect(httpOrigin(url), url).toBeNull();
    }
  });
});
