/**
 * A node checks its own peer certificate as its peers will (member id, cluster, validity,
 * issuer) before it starts or reloads, so that a node its peers would refuse says why
 * itself rather than never joining.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IssuedPair, issueCa, issueNodeCert } from "../cli/commands/cert-issuer.js";
import { ownCertificateProblem, readPeerTls } from "./create-node.js";
import { defaultNodeConfig } from "./node-config.js";

const NOW = Date.now();
let ca: IssuedPair;
let otherCa: IssuedPair;
let dir: string;

beforeAll(async () => {
  ca = await issueCa({ validDays: 1 });
  otherCa = await issueCa({ validDays: 1 });
  dir = mkdtempSync(join(tmpdir(), "baton-own-cert-"));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function pair(
  memberId: number,
  clusterId: string | null,
  issuer = ca,
  notAfter?: Date,
): Promise<{ ca: string; cert: string; key: string }> {
  const issued = await issueNodeCert(issuer, {
    memberId,
    hosts: ["127.0.0.1"],
    clusterId,
    validDays: 1,
    ...(notAfter === undefined ? {} : { notAfter }),
  });
  return { ca: ca.certPem, cert: issued.certPem, key: issued.keyPem };
}

describe("own peer certificate", () => {
  const node1 = { id: 1, clusterId: "orders-prod" };

  it("own certificate: its own member id and cluster (or none), from the CA, valid now: accepted", async () => {
    expect(ownCertificateProblem(await pair(1, "orders-prod"), node1, NOW)).toBeNull();
    expect(ownCertificateProblem(await pair(1, null), node1, NOW)).toBeNull();
    // During a CA rotation the file holds both CAs; a certificate of either is accepted.
    const rotated = await pair(1, null, otherCa);
    const bundle = { ...rotated, ca: ca.certPem + otherCa.certPem };
    expect(ownCertificateProblem(bundle, node1, NOW)).toBeNull();
  });

  it("own certificate: another member's, another cluster's, an expired one or another CA's is refused, saying what to do", async () => {
    expect(ownCertificateProblem(await pair(2, "orders-prod"), node1, NOW)).toMatch(
      /names member 2, not member 1, so every peer would refuse this node: issue node 1 its own \(baton certs node --id 1 --cluster-id orders-prod/,
    );
    expect(ownCertificateProblem(await pair(1, "billing"), node1, NOW)).toMatch(
      /is for cluster "billing", not "orders-prod", so every peer would refuse this node: if the cluster is named "billing", give --cluster-id billing \(or "clusterId" in the config file\); else issue node 1 its own/,
    );
    const expired = await pair(1, null, ca, new Date(NOW - 3_600_000));
    expect(ownCertificateProblem(expired, node1, NOW)).toMatch(/expired on .*--force, then reload/);
    expect(ownCertificateProblem(await pair(1, null, otherCa), node1, NOW)).toMatch(
      /not issued by the CA in --tls-ca \(1 certificate\(s\) there\)/,
    );
  });

  it("own certificate: readPeerTls (start, config check, SIGHUP) throws naming the file", async () => {
    const other = await pair(2, null);
    const files = {
      ca: join(dir, "ca.crt"),
      cert: join(dir, "node.crt"),
      key: join(dir, "node.key"),
    };
    writeFileSync(files.ca, other.ca);
    writeFileSync(files.cert, other.cert);
    writeFileSync(files.key, other.key);
    const config = {
      ...defaultNodeConfig(),
      id: 1,
      peers: [],
      listen: "127.0.0.1:0",
      advertisePeer: "127.0.0.1:0",
      tlsCa: files.ca,
      tlsCert: files.cert,
      tlsKey: files.key,
    };
    expect(() => readPeerTls(config)).toThrow(
      new RegExp(`^--tls-cert ${files.cert}: the certificate names member 2, not member 1`),
    );
  });
});
