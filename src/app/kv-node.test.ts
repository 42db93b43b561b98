/**
 * KvNode's start and stop around the HTTP API: a failed listen stops the node and frees
 * its data directory, whatever else fails on the way out.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { freePorts } from "../../harness/processes.js";
import { issueCa, issueNodeCert } from "../cli/commands/cert-issuer.js";
import { defaultNodeConfig, type NodeConfig } from "../server/node-config.js";
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
  await expect(KvNode.start(config(taken), logger)).rejects.toThrow(/EADDRINUSE/);
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
