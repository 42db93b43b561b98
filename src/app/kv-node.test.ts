/**
 * KvNode's start and stop around the HTTP API: a failed listen stops the node and frees
 * its data directory, whatever else fails on the way out. A start checks its
 * configuration first, and refuses addresses other machines can reach without TLS and
 * tokens as `baton start` does, before anything opens or listens.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Agent, request } from "undici";
import { afterEach, expect, it } from "vitest";
import { freePorts } from "../../harness/processes.js";
import { issueCa, issueNodeCert } from "../cli/commands/cert-issuer.js";
import {
  defaultNodeConfig,
  type NodeConfig,
  NodeConfigError,
  type NodeConfigInput,
} from "../server/node-config.js";
import { KvNode } from "./kv-node.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A one-node cluster on loopback, in memory unless `overrides` give a data directory. */
function oneNode(peerPort: number, httpPort: number, overrides: Partial<NodeConfig>): NodeConfig {
  return {
    ...defaultNodeConfig(),
    id: 1,
    peers: [{ id: 1, address: `127.0.0.1:${peerPort}` }],
    listen: `127.0.0.1:${peerPort}`,
    advertisePeer: `127.0.0.1:${peerPort}`,
    http: `127.0.0.1:${httpPort}`,
    dataDir: null,
    ...overrides,
  };
}

it("kv node: an HTTP port in use fails the start, and the data directory is free again", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const taken = (blocker.address() as { port: number }).port;
  const [peerPort, httpPort] = await freePorts(2);
  const config = (http: number) => oneNode(peerPort!, http, { dataDir: join(dir, "n1") });
  const logger = pino({ level: "silent" });
  await expect(KvNode.start(config(taken), logger)).rejects.toMatchObject({
    code: "EADDRINUSE",
    message: `--http 127.0.0.1:${taken}: the port is in use by another process (is another node running here?) (EADDRINUSE)`,
  });
  expect(existsSync(join(dir, "n1", "LOCK"))).toBe(false);
  const again = await KvNode.start(config(httpPort!), logger);
  await again.stop();
  expect(existsSync(join(dir, "n1", "LOCK"))).toBe(false);
});

it("kv node: an expired HTTPS certificate stops the start, naming the files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await issueCa({ validDays: 1 });
  const expired = await issueNodeCert(ca, {
    memberId: 1,
    hosts: ["127.0.0.1"],
    clusterId: null,
    validDays: 1,
    notBefore: new Date(Date.now() - 2 * 86_400_000),
    notAfter: new Date(Date.now() - 86_400_000),
  });
  const cert = join(dir, "http.crt");
  const key = join(dir, "http.key");
  writeFileSync(cert, expired.certPem);
  writeFileSync(key, expired.keyPem);
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, { httpTlsCert: cert, httpTlsKey: key });
  await expect(KvNode.start(config, pino({ level: "silent" }))).rejects.toThrow(
    new RegExp(`--http-tls-cert ${cert} --http-tls-key ${key}: the certificate expired on`),
  );
});

it("kv node: a peer address other machines can reach is refused without mutual TLS, naming listen", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const [peerPort] = await freePorts(1);
  const config = oneNode(peerPort!, 0, {
    listen: `0.0.0.0:${peerPort}`,
    http: null,
    dataDir: join(dir, "n1"),
  });
  const started = KvNode.start(config, pino({ level: "silent" }));
  await expect(started).rejects.toMatchObject({ code: "ERR_INVALID_INPUT", field: "listen" });
  await expect(started).rejects.toThrow(
    /listen: node 1 would listen on 0\.0\.0\.0:\d+, which other machines can reach, without:\n {2}- mutual TLS/,
  );
  // Refused before anything opened: the data directory was never made.
  expect(existsSync(join(dir, "n1"))).toBe(false);
});

it("kv node: an HTTP API other machines can reach is refused without HTTPS and tokens, naming http (peers on loopback)", async () => {
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, {
    http: `0.0.0.0:${httpPort}`,
    advertiseHttp: `127.0.0.1:${httpPort}`,
  });
  const started = KvNode.start(config, pino({ level: "silent" }));
  await expect(started).rejects.toMatchObject({ code: "ERR_INVALID_INPUT", field: "http" });
  await expect(started).rejects.toThrow(/HTTPS for clients/);
  await expect(started).rejects.toThrow(/API tokens/);
});

it("kv node: insecure: true starts on addresses other machines can reach, without TLS or tokens", async () => {
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, {
    listen: `0.0.0.0:${peerPort}`,
    http: `0.0.0.0:${httpPort}`,
    advertiseHttp: `127.0.0.1:${httpPort}`,
    insecure: true,
  });
  const kv = await KvNode.start(config, pino({ level: "silent" }));
  cleanups.push(() => kv.stop());
  const health = await fetch(`http://127.0.0.1:${httpPort}/health`);
  expect(health.status).toBe(200);
});

it("kv node: a bad configuration is refused with NodeConfigError listing every problem (plain object)", async () => {
  const input = { id: 3, peers: [{ id: 1, address: "nowhere" }], tickMs: 0 };
  const started = KvNode.start(input, pino({ level: "silent" }));
  await expect(started).rejects.toBeInstanceOf(NodeConfigError);
  await expect(started).rejects.toMatchObject({
    code: "ERR_INVALID_INPUT",
    field: "config",
    problems: expect.arrayContaining([
      "id 3 is not one of the peers (1)",
      'peer 1: bad address "nowhere" (expected host:port)',
      "tickMs must be a positive number (got 0)",
    ]),
  });
});

it("kv node: a configuration without a list of peers is refused with NodeConfigError (JavaScript caller)", async () => {
  for (const input of [{ id: 1 }, { id: 1, peers: "1=127.0.0.1:7101" }, null]) {
    const started = KvNode.start(input as unknown as NodeConfigInput, pino({ level: "silent" }));
    await expect(started, JSON.stringify(input)).rejects.toMatchObject({
      code: "ERR_INVALID_INPUT",
      field: "config",
      problems: ["peers must be a list of { id, address }, this node included"],
    });
  }
});

it("kv node: a configuration of only id and peers starts with the defaults (no logger given)", async () => {
  const [peerPort] = await freePorts(1);
  const kv = await KvNode.start({ id: 1, peers: [{ id: 1, address: `127.0.0.1:${peerPort}` }] });
  cleanups.push(() => kv.stop());
  // The defaults: memory storage and no HTTP API.
  expect(kv.httpServer).toBeNull();
  expect(kv.status().id).toBe(1);
  // The cluster's name (the default), beside the id drawn at bootstrap.
  expect(kv.status().clusterName).toBe("baton");
});

it("kv node: the store's refusals resolve as results, not errors (precondition_failed, lease_not_found, not_found)", async () => {
  const [peerPort] = await freePorts(1);
  const kv = await KvNode.start(oneNode(peerPort!, 0, { http: null }), pino({ level: "silent" }));
  cleanups.push(() => kv.stop());
  await kv.node.waitForMaster();
  const value = new TextEncoder().encode("v");
  expect(await kv.put("k", value, { ifRevision: 0 })).toMatchObject({ ok: true });
  expect(await kv.put("k", value, { ifRevision: 0 })).toEqual({
    ok: false,
    code: "precondition_failed",
    currentRevision: expect.any(Number),
  });
  expect(await kv.put("leased", value, { lease: 42 })).toEqual({
    ok: false,
    code: "lease_not_found",
    leaseId: 42,
  });
  expect(await kv.delete("absent", {})).toEqual({ ok: false, code: "not_found" });
  // The options may be left out (a JavaScript caller's put(key, value) threw a TypeError).
  expect(await kv.put("plain", value)).toMatchObject({ ok: true });
  expect(await kv.get("plain")).toMatchObject({ value });
  expect(await kv.delete("plain")).toMatchObject({ ok: true });
  // A value that is not bytes is refused before it reaches the log, naming the field.
  const before = kv.status().lastIndex;
  await expect(kv.put("k", "text" as unknown as Uint8Array)).rejects.toMatchObject({
    code: "ERR_INVALID_INPUT",
    field: "value",
  });
  expect(kv.status().lastIndex).toBe(before);
});

it("kv node: an HTTPS certificate for another host stops the start, and a reload to one keeps the old certificate serving", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await issueCa({ validDays: 1 });
  const issue = (host: string) =>
    issueNodeCert(ca, { memberId: 1, hosts: [host], clusterId: null, validDays: 1 });
  const cert = join(dir, "http.crt");
  const key = join(dir, "http.key");
  const install = (pair: { certPem: string; keyPem: string }) => {
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem);
  };
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, { httpTlsCert: cert, httpTlsKey: key });
  install(await issue("127.0.0.9"));
  await expect(KvNode.start(config, pino({ level: "silent" }))).rejects.toThrow(
    /the certificate names IP Address:127\.0\.0\.9, not 127\.0\.0\.1, the host clients reach this node at \(--http\)/,
  );

  install(await issue("127.0.0.1"));
  const kv = await KvNode.start(config, pino({ level: "silent" }));
  cleanups.push(() => kv.stop());
  install(await issue("127.0.0.9"));
  const outcome = kv.reload();
  expect(outcome.failed.join("\n")).toMatch(/^HTTP TLS: .*not 127\.0\.0\.1/m);
  const agent = new Agent({ connect: { ca: ca.certPem } });
  cleanups.push(() => agent.close());
  const health = await request(`https://127.0.0.1:${httpPort}/health`, { dispatcher: agent });
  await health.body.text();
  expect(health.statusCode).toBe(200);
});

it("kv node: a reload puts a certificate the peers and HTTPS share in both or in neither", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await issueCa({ validDays: 1 });
  const issue = (host: string) =>
    issueNodeCert(ca, { memberId: 1, hosts: [host], clusterId: null, validDays: 1 });
  const caFile = join(dir, "ca.crt");
  const cert = join(dir, "node.crt");
  const key = join(dir, "node.key");
  writeFileSync(caFile, ca.certPem);
  const install = (pair: { certPem: string; keyPem: string }) => {
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem);
  };
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, {
    tlsCa: caFile,
    tlsCert: cert,
    tlsKey: key,
    httpTlsCert: cert,
    httpTlsKey: key,
  });
  install(await issue("127.0.0.1"));
  const kv = await KvNode.start(config, pino({ level: "silent" }));
  cleanups.push(() => kv.stop());
  // Re-issued without the host clients reach: the peers would take it, HTTPS would not.
  install(await issue("127.0.0.9"));
  const refused = kv.reload();
  // Before, the peers got the new certificate while HTTPS kept the old one.
  expect(refused.reloaded).toEqual([]);
  expect(refused.failed).toEqual([
    expect.stringMatching(/^HTTP TLS: .*not 127\.0\.0\.1/),
    "peer TLS: kept the old certificate: the same file serves HTTPS, which was refused",
  ]);
  install(await issue("127.0.0.1"));
  expect(kv.reload()).toEqual({ reloaded: ["peer TLS", "HTTP TLS"], failed: [] });
});

it("kv node: from the moment a stop is asked the node fails its health checks, before its HTTP side has drained", async () => {
  const [peerPort, httpPort] = await freePorts(2);
  const kv = await KvNode.start(oneNode(peerPort!, httpPort!, {}), pino({ level: "silent" }));
  expect(kv.stoppedReason()).toBeNull();
  // After the hand-over the HTTP side drains before the node stops (here for 200 ms, as
  // for requests under way): what do health checks hear meanwhile?
  const http = kv.httpServer as { close: () => Promise<void> };
  const close = http.close.bind(http);
  http.close = async () => {
    await new Promise((resolve) => setTimeout(resolve, 200));
    await close();
  };
  let done = false;
  const stopping = kv.stop({ handOver: true }).finally(() => {
    done = true;
  });
  const heard: (string | null)[] = [];
  while (!done) {
    heard.push(kv.stoppedReason());
    await new Promise((resolve) => setImmediate(resolve));
  }
  await stopping;
  // Before, they heard null (all is well) until the node itself stopped.
  expect(heard.filter((reason) => reason !== null)[0]).toBe(
    "a stop was asked; it finishes the requests under way",
  );
  expect(kv.stoppedReason()).not.toBeNull();
});

it("kv node: a store quota that is not two whole numbers >= 0 is refused before anything opens, naming the field", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-kv-node-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const [peerPort, httpPort] = await freePorts(2);
  const config = oneNode(peerPort!, httpPort!, { dataDir: join(dir, "n1") });
  for (const [quota, field] of [
    [{ keyCountMax: Number.NaN, bytesMax: 1 }, "quota.keyCountMax"],
    [{ keyCountMax: 10, bytesMax: 1.5 }, "quota.bytesMax"],
    [{ keyCountMax: -1, bytesMax: 0 }, "quota.keyCountMax"],
  ] as const) {
    // Before, the master proposed the quota the state machine refused four times a second,
    // and no quota was in force.
    await expect(KvNode.start(config, pino({ level: "silent" }), { quota })).rejects.toMatchObject({
      code: "ERR_INVALID_INPUT",
      field,
    });
  }
  expect(existsSync(join(dir, "n1"))).toBe(false);
});
