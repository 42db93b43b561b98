/**
 * Mutual TLS between nodes: the secure context built from the cluster CA and this node's
 * certificate, and the one rule about identities. A node's certificate names its member
 * id as the URI `baton://member/<id>` (and may name its cluster as
 * `baton://cluster/<clusterId>`); a connection is accepted only from a certificate that
 * chains to the cluster CA and names the id the peer claims, and this node dials only a
 * peer whose certificate names the id it meant to reach.
 *
 * It decides nothing about the protocol and never reads files: the caller hands it PEM
 * text, so that a reload (SIGHUP) is a new PeerTls and new connections use it.
 */

import type { X509Certificate } from "node:crypto";
import { createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import type { NodeId } from "../protocol/messages.js";

/** The PEM text of the cluster CA, this node's certificate (chain) and its private key. */
export interface PeerTlsConfig {
  /** The cluster CA certificate(s), PEM. Peers must present a certificate it signed. */
  readonly ca: string;
  /** This node's certificate, PEM; it must name this node's member id. */
  readonly cert: string;
  /** This node's private key, PEM. */
  readonly key: string;
}

const MEMBER_URI_PREFIX = "baton://member/";
const CLUSTER_URI_PREFIX = "baton://cluster/";

/** The URI a node certificate carries to name member `id`. */
export function memberUri(id: NodeId): string {
  return `${MEMBER_URI_PREFIX}${id}`;
}

/** The URI a node certificate carries to name cluster `clusterId`. */
export function clusterUri(clusterId: string): string {
  return `${CLUSTER_URI_PREFIX}${encodeURIComponent(clusterId)}`;
}

/** Who a certificate says it is: the member ids and cluster ids its URIs name. */
export interface CertificateIdentity {
  readonly memberIds: readonly NodeId[];
  readonly clusterIds: readonly string[];
}

/**
 * Reads the identity from a certificate's subject alternative names. Node renders them as
 * "URI:baton://member/2, IP Address:127.0.0.1" and quotes (as a JSON string) any value that
 * holds a comma, a quote or another special character. The names are read one by one with
 * the quoting taken into account, so that no piece of a quoted value is read as a name of
 * ours, and a quoted value never is one (ours need no quoting).
 */
export function certificateIdentity(cert: PeerCertificate | X509Certificate): CertificateIdentity {
  const names =
    ("subjectaltname" in cert ? cert.subjectaltname : (cert as X509Certificate).subjectAltName) ??
    "";
  const memberIds: NodeId[] = [];
  const clusterIds: string[] = [];
  for (const name of alternativeNames(names)) {
    if (name.type !== "URI" || name.quoted) continue;
    const uri = name.value;
    if (uri.startsWith(MEMBER_URI_PREFIX)) {
      const text = uri.slice(MEMBER_URI_PREFIX.length);
      const id = Number(text);
      if (/^[1-9]\d{0,9}$/.test(text) && id <= 0xffff_ffff) memberIds.push(id);
    } else if (uri.startsWith(CLUSTER_URI_PREFIX)) {
      try {
        clusterIds.push(decodeURIComponent(uri.slice(CLUSTER_URI_PREFIX.length)));
      } catch {
        // A malformed cluster name matches no cluster.
        clusterIds.push(uri);
      }
    }
  }
  return { memberIds, clusterIds };
}

/**
 * The subject alternative names in Node's rendering, in order: "TYPE:value" joined by ", ",
 * a value that needs it quoted as a JSON string. Text that does not follow that form yields
 * no names at all, so that nothing in it can be read as an identity.
 */
function alternativeNames(text: string): { type: string; value: string; quoted: boolean }[] {
  const names: { type: string; value: string; quoted: boolean }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) return [];
    const type = text.slice(i, colon);
    let j = colon + 1;
    if (text[j] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let end = j + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (end >= text.length) return [];
      let value: unknown;
      try {
        value = JSON.parse(text.slice(j, end + 1));
      } catch {
        return [];
      }
      names.push({ type, value: String(value), quoted: true });
      j = end + 1;
    } else {
      const end = text.indexOf(", ", j);
      j = end < 0 ? text.length : end;
      names.push({ type, value: text.slice(colon + 1, j), quoted: false });
    }
    if (j === text.length) break;
    if (!text.startsWith(", ", j)) return [];
    i = j + 2;
  }
  return names;
}

/**
 * Why a certificate with `identity` may not speak for member `claimedId` of cluster
 * `clusterId`, or null when it may. A certificate that names no cluster is good for any
 * cluster its CA signs for; one that names clusters must name this one.
 */
export function identityProblem(
  identity: CertificateIdentity,
  claimedId: NodeId,
  clusterId: string,
): string | null {
  if (!identity.memberIds.includes(claimedId)) {
    const named =
      identity.memberIds.length === 0 ? "no member id" : `member ${identity.memberIds.join(", ")}`;
    return `its certificate names ${named}, not member ${claimedId}`;
  }
  if (identity.clusterIds.length > 0 && !identity.clusterIds.includes(clusterId)) {
    return `its certificate is for cluster ${JSON.stringify(identity.clusterIds[0])}, not ${JSON.stringify(clusterId)}`;
  }
  return null;
}

/** This node's TLS material, made into a secure context once and shared by connections. */
export class PeerTls {
  readonly context: SecureContext;

  /** Throws (with OpenSSL's reason) when the PEM text is not a usable CA, cert and key. */
  constructor(readonly config: PeerTlsConfig) {
    this.context = createSecureContext({
      ca: config.ca,
      cert: config.cert,
      key: config.key,
      minVersion: "TLSv1.3",
    });
  }
}

/** A plain-language reason for an OpenSSL verification code, for logs and refusals. */
export function describeVerifyError(code: string | Error | null | undefined): string {
  const text = code instanceof Error ? ((code as { code?: string }).code ?? code.message) : code;
  switch (text) {
    case undefined:
    case null:
    case "":
      return "no certificate was presented";
    case "CERT_HAS_EXPIRED":
      return "its certificate has expired (CERT_HAS_EXPIRED)";
    case "CERT_NOT_YET_VALID":
      return "its certificate is not valid yet (CERT_NOT_YET_VALID)";
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_SIGNATURE_FAILURE":
      return `its certificate is not signed by this cluster's CA (${text})`;
    default:
      return `its certificate was refused (${text})`;
  }
}
