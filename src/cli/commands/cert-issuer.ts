/**
 * Issuing the X.509 certificates a secure cluster runs on: a cluster CA, and one
 * certificate per node that names its member id (and the cluster id, when one is given)
 * so that peers can check who is on the other end of a link. Keys are ECDSA P-256, made
 * and used through Node's own WebCrypto; the certificates are built by @peculiar/x509,
 * so that no ASN.1 is written by hand here.
 *
 * It only issues: it never reads or writes files (certs.ts does) and never decides what
 * a peer may do (src/transport/peer-tls.ts checks identities).
 */

import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { clusterUri, memberUri } from "../../transport/peer-tls.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Issued certificates are valid from this long ago, so that small clock skew is harmless. */
const BACKDATE_MS = 5 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface IssuedPair {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface Validity {
  /** Days the certificate is valid from now. Ignored when `notAfter` is given. */
  readonly validDays: number;
  /** Overrides the start of validity (tests make expired certificates). @default now - 5 min */
  readonly notBefore?: Date;
  /** Overrides the end of validity. @default notBefore + validDays */
  readonly notAfter?: Date;
}

export interface CaOptions extends Validity {
  /** @default "Baton cluster CA" */
  readonly commonName?: string;
}

export interface NodeCertOptions extends Validity {
  readonly memberId: number;
  /** DNS names and IP addresses clients and peers reach the node by (HTTPS checks them). */
  readonly hosts: readonly string[];
  /** Named in the certificate when given; a node of another cluster then refuses it. */
  readonly clusterId: string | null;
}

/** Makes a self-signed cluster CA that may sign node certificates only (path length 0). */
export async function issueCa(options: CaOptions): Promise<IssuedPair> {
  const keys = await generateKeys();
  const { notBefore, notAfter } = validity(options);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [options.commonName ?? "Baton cluster CA"] }],
    notBefore,
    notAfter,
    keys: keys as unknown as Parameters<
      typeof x509.X509CertificateGenerator.createSelfSigned
    >[0]["keys"],
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return {
    certPem: withFinalNewline(cert.toString("pem")),
    keyPem: await exportKey(keys.privateKey),
  };
}

/**
 * Makes a node certificate signed by `ca`: subject CN "baton member <id>", subject
 * alternative names `baton://member/<id>` (and `baton://cluster/<clusterId>`) plus every
 * host, for both TLS server and client use (a node dials and accepts).
 */
export async function issueNodeCert(ca: IssuedPair, options: NodeCertOptions): Promise<IssuedPair> {
  const names: x509.JsonGeneralName[] = [{ type: "url", value: memberUri(options.memberId) }];
  if (options.clusterId !== null) names.push({ type: "url", value: clusterUri(options.clusterId) });
  for (const host of options.hosts)
    names.push({ type: isIP(host) === 0 ? "dns" : "ip", value: host });
  return issueLeaf(ca, `baton member ${options.memberId}`, names, options);
}

async function issueLeaf(
  ca: IssuedPair,
  commonName: string,
  names: x509.JsonGeneralName[],
  options: Validity,
): Promise<IssuedPair> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = await generateKeys();
  const { notBefore, notAfter } = validity(options);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [commonName] }],
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingKey: caKey as never,
    publicKey: keys.publicKey as never,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return {
    certPem: withFinalNewline(cert.toString("pem")),
    keyPem: await exportKey(keys.privateKey),
  };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** PEM text ending in a newline, so that files joined with cat stay one block per line. */
function withFinalNewline(pem: string): string {
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<CryptoKey> {
  const body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  if (body === "") throw new Error("the CA key is not a PEM PKCS#8 private key");
  return (await webcrypto.subtle.importKey("pkcs8", Buffer.from(body, "base64"), ALGORITHM, false, [
    "sign",
  ])) as CryptoKey;
}

function validity(options: Validity): { notBefore: Date; notAfter: Date } {
  const notBefore = options.notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + options.validDays * DAY_MS);
  return { notBefore, notAfter };
}

/** A random positive 128-bit serial number, as hex (RFC 5280 allows up to 20 bytes). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes.toString("hex");
}
