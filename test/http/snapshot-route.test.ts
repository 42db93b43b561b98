/**
 * `POST /v1/snapshot` in-process, over a snapshot source of the test's own: the data
 * streams with its index, term, length and CRC-32 in the headers; a backup's NotMasterError
 * is 503 ERR_NOT_MASTER naming the master; the route needs an admin token; and a server
 * given no source does not serve it.
 */

import { crc32 } from "node:zlib";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import type { SnapshotSource } from "../../src/http/routes/snapshot-route.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { hashToken, TokenStore } from "../../src/http/tokens.js";
import { NotMasterError } from "../../src/shared/errors.js";

const servers: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const DATA = [Buffer.from("first chunk, "), Buffer.from("second chunk")];

function source(master: boolean): SnapshotSource {
  return {
    async backupSnapshot() {
      if (!master) throw new NotMasterError(2);
      const all = Buffer.concat(DATA);
      return {
        meta: { index: 42, term: 3 },
        dataBytes: all.length,
        dataCrc32: crc32(all),
        async *chunks() {
          yield* DATA;
        },
      };
    },
  };
}

function server(options: { master?: boolean; tokens?: TokenStore; serve?: boolean } = {}) {
  const created = createHttpServer({
    api: new FakeKvNodeApi(1),
    logger: pino({ level: "silent" }),
    snapshots: options.serve === false ? null : source(options.master ?? true),
    tokens: options.tokens ?? null,
  });
  servers.push(created);
  return created.app;
}

describe("http snapshot route", () => {
  it("snapshot: the master streams the data with its index, term, length and CRC-32", async () => {
    const response = await server().inject({ method: "POST", url: "/v1/snapshot" });
    expect(response.statusCode).toBe(200);
    const all = Buffer.concat(DATA);
    expect(response.rawPayload.equals(all)).toBe(true);
    expect(response.headers).toMatchObject({
      "content-type": "application/octet-stream",
      "content-length": String(all.length),
      "baton-snapshot-index": "42",
      "baton-snapshot-term": "3",
      "baton-snapshot-crc32": String(crc32(all)),
    });
  });

  it("snapshot: a backup answers 503 ERR_NOT_MASTER with the master's id", async () => {
    const response = await server({ master: false }).inject({
      method: "POST",
      url: "/v1/snapshot",
    });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ code: "ERR_NOT_MASTER", master: 2 });
  });

  it("snapshot: only an admin token may take one, and GET is 405", async () => {
    const tokens = new TokenStore([
      { name: "app", role: "readwrite", sha256: hashToken("rw-token") },
      { name: "ops", role: "admin", sha256: hashToken("admin-token") },
    ]);
    const app = server({ tokens });
    const as = (token: string) =>
      app.inject({
        method: "POST",
        url: "/v1/snapshot",
        headers: { authorization: `Bearer ${token}` },
      });
    expect((await as("rw-token")).statusCode).toBe(403);
    expect((await as("admin-token")).statusCode).toBe(200);
    const get = await app.inject({
      method: "GET",
      url: "/v1/snapshot",
      headers: { authorization: "Bearer admin-token" },
    });
    expect(get.statusCode).toBe(405);
  });

  it("snapshot: a server given no snapshot source does not serve the route", async () => {
    const response = await server({ serve: false }).inject({ method: "POST", url: "/v1/snapshot" });
    expect(response.statusCode).toBe(404);
  });
});
