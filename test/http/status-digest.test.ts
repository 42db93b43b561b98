/**
 * `GET /v1/status?digest=true` over the real state machine on one-node stand-ins: a node
 * and a follower that applies every command it applies (as a backup would) show the same
 * digest after a random mix of writes through the HTTP API, and it is the digest a full
 * recomputation of the state gives. The digest is O(1) per call (src/kv/kv-state.ts).
 */

import fc from "fast-check";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function serve(api: LocalKvNode): HttpServer {
  const server = createHttpServer({ api, logger: pino({ level: "silent" }) });
  servers.push(server);
  return server;
}

const request = fc.oneof(
  fc.record({
    method: fc.constant("PUT" as const),
    key: fc.constantFrom("a", "b", "c/1", "c/2"),
    body: fc.string({ maxLength: 8 }),
    idem: fc.option(fc.constantFrom("k1", "k2"), { nil: undefined }),
  }),
  fc.record({
    method: fc.constant("DELETE" as const),
    key: fc.constantFrom("a", "b", "c/1", "c/2"),
  }),
  fc.constant({ method: "DELETE" as const, key: "?prefix=c%2F" }),
);

describe("http status digest", () => {
  it("digest: a node and its follower show the same digest, the full recomputation's (random writes)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { maxLength: 30 }), async (requests) => {
        const master = new LocalKvNode(1);
        const follower = new LocalKvNode(2);
        master.followers.push(follower);
        const [a, b] = [serve(master), serve(follower)];
        for (const r of requests) {
          const url = r.key.startsWith("?") ? `/v1/kv${r.key}` : `/v1/kv/${r.key}`;
          const headers: Record<string, string> =
            "idem" in r && r.idem !== undefined ? { "idempotency-key": r.idem } : {};
          const payload = "body" in r ? r.body : undefined;
          await a.app.inject({
            method: r.method,
            url,
            headers,
            ...(payload === undefined ? {} : { payload }),
          });
        }
        const digestOf = async (server: HttpServer) =>
          (await server.app.inject({ url: "/v1/status?digest=true" })).json().stateDigest;
        const digest = await digestOf(a);
        expect(digest).toMatch(/^[0-9a-f]{16}$/);
        expect(await digestOf(b)).toBe(digest);
        expect(master.stateMachine.stateHashRecomputed()).toBe(digest);
        expect((await a.app.inject({ url: "/v1/status" })).json().stateDigest).toBeUndefined();
        await Promise.all(servers.splice(0).map((server) => server.close()));
      }),
      { numRuns: 25 },
    );
  });
});
