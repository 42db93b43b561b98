/**
 * The dashboard page's Content-Security-Policy with a member whose advertised URL does not
 * parse, or whose host holds policy syntax (an older version's configuration may hold
 * either): that URL is left out, and the members listed after it are still allowed.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi, memberStatus } from "../../../harness/doubles/fake-node-api.js";
import type { MemberStatus } from "../../protocol/status.js";
import { createHttpServer, type HttpServer } from "../server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe("dashboard policy", () => {
  it("dashboard: a member's unparsable URL, or one whose host holds `;`, is left out of connect-src, the members after it are not", async () => {
    const api = new FakeKvNodeApi(1);
    api.members = [
      memberStatus(1, "http://10.0.0.1:8101", "10.0.0.1:7101"),
      memberStatus(2, "http://a:99999", "10.0.0.2:7102"),
      // Parsed by URL, but its host would end connect-src and start a directive.
      memberStatus(4, "http://x;frame-ancestors", "10.0.0.4:7104"),
      memberStatus(3, "https://node-3.example:8443", "10.0.0.3:7103"),
    ];
    const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
    servers.push(server);
    const page = await server.app.inject({ url: "/" });
    expect(page.statusCode).toBe(200);
    const policy = String(page.headers["content-security-policy"]);
    const connect = policy.split("; ").find((part) => part.startsWith("connect-src "));
    expect(connect?.split(" ")).toEqual([
      "connect-src",
      "'self'",
      "http://10.0.0.1:8101",
      "http://10.0.0.1:*",
      "https://10.0.0.1:*",
      "http://10.0.0.2:*",
      "https://10.0.0.2:*",
      "http://10.0.0.4:*",
      "https://10.0.0.4:*",
      "https://node-3.example:8443",
      "http://10.0.0.3:*",
      "https://10.0.0.3:*",
    ]);
    expect(policy.match(/frame-ancestors/g)).toHaveLength(1);
  });
});
