/**
 * Authentication and TLS on the HTTP API, against the in-memory node: which role each
 * route needs, the 401 and 403 answers in the API's error shape, the open health checks,
 * and a real HTTPS listener used through the client library with the cluster CA and a
 * token (and refused without them).
 */

import { pino } from "pino";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { issueCa, issueNodeCert } from "../../src/cli/commands/cert-issuer.js";
import { createClient } from "../../src/client/index.js";
import { requiredRole } from "../../src/http/auth.js";
import { createHttpServer, type HttpServer, type HttpTlsConfig } from "../../src/http/server.js";
import { hashToken, type TokenRole, TokenStore } from "../../src/http/tokens.js";

const TOKENS: Record<TokenRole, string> = {
  read: "baton_read-token",
  readwrite: "baton_readwrite-token",
  admin: "baton_admin-token",
};

function tokenStore(): TokenStore {
  return new TokenStore(
    (Object.keys(TOKENS) as TokenRole[]).map((role) => ({
      name: `${role}-user`,
      role,
      sha256: hashToken(TOKENS[role]),
    })),
  );
}

const logger = pino({ level: "silent" });
let tls: HttpTlsConfig & { ca: string };
let otherCa: string;

beforeAll(async () => {
  const ca = await issueCa({ validDays: 1 });
  const pair = await issueNodeCert(ca, {
    memberId: 1,
    hosts: ["127.0.0.1", "localhost"],
    clusterId: null,
    validDays: 1,
  });
  tls = { cert: pair.certPem, key: pair.keyPem, ca: ca.certPem };
  otherCa = (await issueCa({ validDays: 1 })).certPem;
});

describe("http auth", () => {
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  function server(options: { tokens?: TokenStore | null; tls?: HttpTlsConfig } = {}): HttpServer {
    const made = createHttpServer({ api: new FakeKvNodeApi(1), logger, ...options });
    servers.push(made);
    return made;
  }

  it("auth: each route needs the role its effect calls for", () => {
    expect(requiredRole("GET", "/health")).toBeNull();
    expect(requiredRole("GET", "/health/master")).toBeNull();
    expect(requiredRole("GET", "/")).toBeNull();
    expect(requiredRole("GET", "/v1/kv/*")).toBe("read");
    expect(requiredRole("GET", "/v1/status")).toBe("read");
    expect(requiredRole("GET", "/v1/members")).toBe("read");
    expect(requiredRole("GET", "/v1/events")).toBe("read");
    expect(requiredRole("GET", "/metrics")).toBe("read");
    expect(requiredRole("PUT", "/v1/kv/*")).toBe("readwrite");
    expect(requiredRole("DELETE", "/v1/kv/*")).toBe("readwrite");
    expect(requiredRole("POST", "/v1/switchover")).toBe("admin");
    expect(requiredRole("POST", "/v1/faults/kill")).toBe("admin");
    expect(requiredRole("POST", "/v1/members")).toBe("admin");
    expect(requiredRole("DELETE", "/v1/members/:id")).toBe("admin");
    // The join answer hands out a member incarnation: whoever has it speaks as the member.
    expect(requiredRole("GET", "/v1/members/:id/join")).toBe("admin");
    // The store beyond single keys: reads need read, its writes readwrite.
    expect(requiredRole("GET", "/v1/kv")).toBe("read");
    expect(requiredRole("GET", "/v1/watch")).toBe("read");
    expect(requiredRole("GET", "/v1/leases/:id")).toBe("read");
    expect(requiredRole("DELETE", "/v1/kv")).toBe("readwrite");
    expect(requiredRole("POST", "/v1/txn")).toBe("readwrite");
    expect(requiredRole("POST", "/v1/leases")).toBe("readwrite");
    expect(requiredRole("POST", "/v1/leases/:id/keepalive")).toBe("readwrite");
    expect(requiredRole("DELETE", "/v1/leases/:id")).toBe("readwrite");
  });

  it("auth: no token is 401 ERR_UNAUTHENTICATED with WWW-Authenticate: Bearer", async () => {
    const { app } = server({ tokens: tokenStore() });
    const answer = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    expect(answer.statusCode).toBe(401);
    expect(answer.headers["www-authenticate"]).toBe('Bearer realm="baton"');
    expect(answer.json()).toMatchObject({
      code: "ERR_UNAUTHENTICATED",
      error: expect.stringMatching(/requires a token.*baton certs token/),
    });
  });

  it("auth: a method a route does not serve is 401 without a token, and 405 with any valid token", async () => {
    const { app } = server({ tokens: tokenStore() });
    for (const [method, url] of [
      ["PATCH", "/v1/kv/a"],
      ["POST", "/v1/kv/a"],
      ["POST", "/v1/status"],
      ["PUT", "/v1/members"],
    ] as const) {
      const answer = await app.inject({ method, url, payload: "{}" });
      expect(answer.statusCode, `${method} ${url}`).toBe(401);
    }
    // With any valid token the answer is 405, whatever role the method would need elsewhere.
    for (const role of ["read", "readwrite", "admin"] as const) {
      for (const [method, url] of [
        ["PATCH", "/v1/kv/a"],
        ["POST", "/v1/kv/a"],
        ["PUT", "/v1/switchover"],
        ["POST", "/v1/status"],
      ] as const) {
        const withToken = await app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${TOKENS[role]}` },
        });
        expect(withToken.statusCode, `${role}: ${method} ${url}`).toBe(405);
      }
    }
  });

  it("auth: a page on another member's origin may send a token: preflight, and a refusal it can read", async () => {
    const { app } = server({ tokens: tokenStore() });
    // The dashboard reads every member's status, events and fault state with the token.
    for (const url of ["/v1/status", "/v1/events", "/v1/faults"]) {
      const preflight = await app.inject({
        method: "OPTIONS",
        url,
        headers: {
          origin: "http://127.0.0.1:8102",
          "access-control-request-method": "GET",
          "access-control-request-headers": "authorization, last-event-id",
        },
      });
      expect(preflight.statusCode, url).toBe(204);
      expect(preflight.headers["access-control-allow-origin"], url).toBe("*");
      expect(preflight.headers["access-control-allow-headers"], url).toMatch(
        /authorization.*last-event-id/,
      );
    }
    // Without a token, with a wrong one, with too low a role: the page sees why.
    const refusals = [
      await app.inject({ url: "/v1/status", headers: { origin: "http://elsewhere" } }),
      await app.inject({ url: "/v1/status", headers: { authorization: "Bearer baton_guessed" } }),
      await app.inject({
        method: "POST",
        url: "/v1/switchover",
        headers: { authorization: `Bearer ${TOKENS.read}` },
      }),
    ];
    expect(refusals.map((r) => r.statusCode)).toEqual([401, 401, 403]);
    for (const r of refusals) expect(r.headers["access-control-allow-origin"]).toBe("*");
    // With the token the read is answered, cross-origin too.
    const read = await app.inject({
      url: "/v1/status",
      headers: { authorization: `Bearer ${TOKENS.read}`, origin: "http://127.0.0.1:8102" },
    });
    expect(read.statusCode).toBe(200);
    expect(read.headers["access-control-allow-origin"]).toBe("*");
  });

  it("auth: an unknown token is 401 with error=invalid_token, and never echoed", async () => {
    const { app } = server({ tokens: tokenStore() });
    const answer = await app.inject({
      url: "/v1/status",
      headers: { authorization: "Bearer baton_guessed" },
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.headers["www-authenticate"]).toMatch(/error="invalid_token"/);
    expect(answer.body).not.toContain("baton_guessed");
  });

  it("auth: a read token reads but gets 403 ERR_FORBIDDEN on PUT and switchover", async () => {
    const { app } = server({ tokens: tokenStore() });
    const headers = { authorization: `Bearer ${TOKENS.read}` };
    expect((await app.inject({ url: "/v1/status", headers })).statusCode).toBe(200);
    const put = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v", headers });
    expect(put.statusCode).toBe(403);
    expect(put.json()).toMatchObject({
      code: "ERR_FORBIDDEN",
      error: expect.stringMatching(
        /"read-user" has role read.*PUT \/v1\/kv\/\{key\} needs readwrite/,
      ),
    });
    const switchover = await app.inject({ method: "POST", url: "/v1/switchover", headers });
    expect(switchover.statusCode).toBe(403);
  });

  it("auth: readwrite writes, admin may switch over, health stays open", async () => {
    const { app } = server({ tokens: tokenStore() });
    const rw = { authorization: `Bearer ${TOKENS.readwrite}` };
    const put = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v", headers: rw });
    expect(put.statusCode).toBe(200);
    const asRw = await app.inject({ method: "POST", url: "/v1/switchover", headers: rw });
    expect(asRw.statusCode).toBe(403);
    const admin = { authorization: `bearer ${TOKENS.admin}` };
    const asAdmin = await app.inject({ method: "POST", url: "/v1/switchover", headers: admin });
    expect(asAdmin.statusCode).not.toBe(401);
    expect(asAdmin.statusCode).not.toBe(403);
    expect((await app.inject({ url: "/health" })).statusCode).toBe(200);
  });

  it("auth: a replaced token list takes effect on the next request (reload)", async () => {
    const tokens = tokenStore();
    const { app } = server({ tokens });
    const headers = { authorization: `Bearer ${TOKENS.read}` };
    expect((await app.inject({ url: "/v1/status", headers })).statusCode).toBe(200);
    tokens.replace([]);
    expect((await app.inject({ url: "/v1/status", headers })).statusCode).toBe(401);
  });

  it("auth: without a tokens file every route is open, as before", async () => {
    const { app } = server();
    const put = await app.inject({ method: "PUT", url: "/v1/kv/k", payload: "v" });
    expect(put.statusCode).toBe(200);
  });

  it("https: the client library writes with the cluster CA and a readwrite token", async () => {
    const made = server({ tokens: tokenStore(), tls });
    const { url } = await made.listen("127.0.0.1", 0);
    expect(url).toMatch(/^https:\/\//);
    const client = createClient({
      endpoints: [url],
      ca: tls.ca,
      token: TOKENS.readwrite,
      deadlineMs: 2000,
    });
    try {
      expect(await client.put("k", "v")).toEqual({ revision: expect.any(Number) });
      expect((await client.get("k"))?.text()).toBe("v");
    } finally {
      await client.close();
    }
  });

  it("https: the client library gets ERR_FORBIDDEN, ERR_UNAUTHENTICATED at once, not retries", async () => {
    const made = server({ tokens: tokenStore(), tls });
    const { url } = await made.listen("127.0.0.1", 0);
    const reader = createClient({ endpoints: [url], ca: tls.ca, token: TOKENS.read });
    const anonymous = createClient({ endpoints: [url], ca: tls.ca });
    try {
      await expect(reader.put("k", "v")).rejects.toMatchObject({ code: "ERR_FORBIDDEN" });
      await expect(anonymous.get("k")).rejects.toMatchObject({ code: "ERR_UNAUTHENTICATED" });
      await expect(anonymous.status(url)).rejects.toMatchObject({ code: "ERR_UNAUTHENTICATED" });
    } finally {
      await Promise.all([reader.close(), anonymous.close()]);
    }
  });

  it("https: setTls serves the new certificate to new connections (rotation)", async () => {
    const made = server({ tls });
    const { url } = await made.listen("127.0.0.1", 0);
    const next = await issueCa({ validDays: 1 });
    const pair = await issueNodeCert(next, {
      memberId: 1,
      hosts: ["127.0.0.1"],
      clusterId: null,
      validDays: 1,
    });
    expect(() =>
      made.setTls({ cert: "-----BEGIN CERTIFICATE-----\nx\n", key: pair.keyPem }),
    ).toThrow();
    made.setTls({ cert: pair.certPem, key: pair.keyPem });
    const client = createClient({ endpoints: [url], ca: next.certPem, deadlineMs: 2000 });
    try {
      expect(await client.put("rotated", "yes")).toEqual({ revision: expect.any(Number) });
    } finally {
      await client.close();
    }
  });

  it("https: a client that trusts another CA never sends its request", async () => {
    const made = server({ tls });
    const { url } = await made.listen("127.0.0.1", 0);
    const client = createClient({ endpoints: [url], ca: otherCa, deadlineMs: 300 });
    try {
      await expect(client.put("k", "v")).rejects.toMatchObject({
        code: "ERR_NO_MASTER",
        message: expect.stringMatching(/certificate/i),
      });
    } finally {
      await client.close();
    }
  });
});
