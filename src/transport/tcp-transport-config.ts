/**
 * Configuration of the TCP transport: who this node is, where it listens, who its peers
 * are, and every bound the transport enforces. It owns the defaults and the validation of
 * untrusted input; no other transport file reads a default or re-checks a field.
 */

import type { NodeId } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { parseAddress } from "./address.js";
import type { BackoffLimits } from "./backoff.js";
import type { FrameCodecLimits } from "./frame-codec.js";
import { checkPeerInfo, FRAME_TEXT_CHARS_MAX, NODE_ID_MAX } from "./frame-schema.js";
import type { PeerTlsConfig } from "./peer-tls.js";
import type { SendQueueLimits } from "./send-queue.js";
import type { SilenceLimits } from "./silence-watch.js";
import type { PeerAddress, PeerInfo } from "./transport.js";

export interface TcpTransportConfig
  extends FrameCodecLimits,
    SendQueueLimits,
    BackoffLimits,
    SilenceLimits {
  /**
   * This node's id, 1..4294967295.
   * @default 1
   */
  readonly nodeId: NodeId;
  /**
   * Shared by all nodes of a cluster; a peer presenting another one is refused, so that two
   * clusters on one network never mix.
   * @default "baton"
   */
  readonly clusterId: string;
  /**
   * Node-to-node address to listen on, "host:port" or "[IPv6]:port"; port 0 picks one.
   * @default "127.0.0.1:7101"
   */
  readonly listen: string;
  /**
   * The other members and their addresses. An entry for this node itself is allowed (the
   * same list can be given to every node) and ignored.
   * @default []
   */
  readonly peers: readonly PeerAddress[];
  /**
   * What this node tells every peer about itself in each handshake; peers read it with
   * `Transport.peerInfo`. `httpUrl` is the base URL of this node's HTTP API as clients
   * and peers reach it (not a wildcard listen address), at most 256 bytes of printable
   * ASCII, "http://" or "https://", without credentials, query or fragment; null when
   * this node serves no HTTP API.
   * @default { httpUrl: null }
   */
  readonly advertise: PeerInfo;
  /**
   * Longest wait for a connection plus handshake, in milliseconds, on either side. A silent
   * client is disconnected after it; a dial that takes longer counts as a failure.
   * @default 2000
   */
  readonly handshakeTimeoutMs: number;
  /**
   * Idle time before TCP keepalive probes start on a connection, in milliseconds.
   * @default 1000
   */
  readonly keepAliveInitialDelayMs: number;
  /**
   * Most inbound connections that have not finished their handshake. Further ones are
   * closed at once, so that stray clients cannot exhaust file descriptors.
   * @default 64
   */
  readonly pendingConnectionsMax: number;
  /**
   * Mutual TLS with a cluster CA (PEM text, not file names), or null for plain TCP. With
   * it, every connection in either direction must present a certificate signed by the CA
   * that names the member id the peer claims (see peer-tls.ts); without it, anyone who can
   * reach the port can claim to be a member, so plain TCP is for loopback and trusted
   * networks only.
   * @default null
   */
  readonly tls: PeerTlsConfig | null;
}

export function defaultTcpTransportConfig(): TcpTransportConfig {
  return {
    nodeId: 1,
    clusterId: "baton",
    listen: "127.0.0.1:7101",
    peers: [],
    advertise: { httpUrl: null },
    frameBytesMax: 16 * 1024 * 1024,
    queueMessagesMax: 4096,
    queueBytesMax: 64 * 1024 * 1024,
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 1000,
    handshakeTimeoutMs: 2000,
    keepAliveInitialDelayMs: 1000,
    pingIntervalMs: 1000,
    peerSilenceMsMax: 5000,
    pendingConnectionsMax: 64,
    tls: null,
  };
}

export type ParseTcpTransportConfigResult =
  | { readonly ok: true; readonly config: TcpTransportConfig }
  | { readonly ok: false; readonly errors: readonly string[] };

/**
 * Validates untrusted input (a config file, CLI flags) over the defaults. Reports every
 * bad field at once; on success returns a frozen config.
 */
export function parseTcpTransportConfig(input: unknown): ParseTcpTransportConfigResult {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return { ok: false, errors: ["transport config must be an object"] };
  }
  const merged = { ...defaultTcpTransportConfig(), ...input } as Record<string, unknown>;
  const known = new Set(Object.keys(defaultTcpTransportConfig()));
  const errors = Object.keys(input)
    .filter((key) => !known.has(key))
    .map((key) => `${key}: unknown field`);
  errors.push(...checkTcpTransportConfig(merged));
  if (errors.length > 0) return { ok: false, errors };
  const config = merged as unknown as TcpTransportConfig;
  const peers = Object.freeze(config.peers.map((peer) => Object.freeze({ ...peer })));
  const advertise = Object.freeze({ httpUrl: config.advertise.httpUrl });
  const tls = config.tls === null ? null : Object.freeze({ ...config.tls });
  return { ok: true, config: Object.freeze({ ...config, peers, advertise, tls }) };
}

const positiveIntegerFields = [
  "frameBytesMax",
  "queueMessagesMax",
  "queueBytesMax",
  "reconnectDelayMsMin",
  "reconnectDelayMsMax",
  "handshakeTimeoutMs",
  "keepAliveInitialDelayMs",
  "pingIntervalMs",
  "peerSilenceMsMax",
  "pendingConnectionsMax",
] as const;

/** Every problem with `config`, one message per bad field; empty when it is valid. */
export function checkTcpTransportConfig(config: Readonly<Record<string, unknown>>): string[] {
  const errors: string[] = [];
  if (!isNodeId(config.nodeId)) errors.push(`nodeId: must be an integer 1..${NODE_ID_MAX}`);
  const clusterId = config.clusterId;
  if (typeof clusterId !== "string" || clusterId === "" || clusterId.length > 256) {
    errors.push("clusterId: must be a non-empty string of at most 256 chars");
  }
  const listen = typeof config.listen === "string" ? parseAddress(config.listen) : null;
  if (listen === null) errors.push("listen: must be a string host:port");
  else if (!listen.ok) errors.push(`listen: ${listen.reason}`);
  errors.push(...checkPeers(config.peers, config.nodeId));
  const advertise = checkPeerInfo(config.advertise);
  if (advertise !== null) errors.push(`advertise: ${advertise}`);
  for (const field of positiveIntegerFields) {
    const value = config[field];
    if (!Number.isSafeInteger(value) || (value as number) <= 0) {
      errors.push(`${field}: must be a positive integer`);
    }
  }
  errors.push(...checkRelations(config));
  errors.push(...checkTls(config.tls));
  return errors;
}

function checkTls(tls: unknown): string[] {
  if (tls === null) return [];
  if (typeof tls !== "object" || tls === undefined || Array.isArray(tls)) {
    return ["tls: must be null or {ca, cert, key} (PEM text)"];
  }
  const errors: string[] = [];
  for (const field of ["ca", "cert", "key"] as const) {
    const value = (tls as Record<string, unknown>)[field];
    if (typeof value !== "string" || !value.includes("-----BEGIN ")) {
      errors.push(`tls.${field}: must be PEM text`);
    }
  }
  return errors;
}

function checkPeers(peers: unknown, nodeId: unknown): string[] {
  if (!Array.isArray(peers)) return ["peers: must be an array of {id, address}"];
  const errors: string[] = [];
  const seen = new Set<unknown>();
  peers.forEach((peer: unknown, i) => {
    const { id, address } = (peer ?? {}) as { id?: unknown; address?: unknown };
    if (!isNodeId(id)) errors.push(`peers[${i}].id: must be an integer 1..${NODE_ID_MAX}`);
    else if (seen.has(id)) errors.push(`peers[${i}].id: node ${id} is listed twice`);
    seen.add(id);
    const parsed = typeof address === "string" ? parseAddress(address) : null;
    if (parsed === null) errors.push(`peers[${i}].address: must be a string host:port`);
    else if (!parsed.ok) errors.push(`peers[${i}].address: ${parsed.reason}`);
    else if (parsed.address.port === 0 && id !== nodeId) {
      // This node's own entry is never dialled, so it may say port 0 like `listen` does.
      errors.push(`peers[${i}].address: port 0 cannot be dialled`);
    }
  });
  return errors;
}

function checkRelations(config: Readonly<Record<string, unknown>>): string[] {
  const errors: string[] = [];
  const { frameBytesMax, queueBytesMax, reconnectDelayMsMin, reconnectDelayMsMax } = config;
  if (typeof frameBytesMax === "number" && frameBytesMax > 0xffff_ffff) {
    errors.push("frameBytesMax: must fit the 4-byte length prefix");
  }
  if (
    typeof frameBytesMax === "number" &&
    typeof queueBytesMax === "number" &&
    queueBytesMax < frameBytesMax + 4
  ) {
    errors.push("queueBytesMax: must hold at least one frame of frameBytesMax");
  }
  if (
    typeof reconnectDelayMsMin === "number" &&
    typeof reconnectDelayMsMax === "number" &&
    reconnectDelayMsMin > reconnectDelayMsMax
  ) {
    errors.push("reconnectDelayMsMin: must not exceed reconnectDelayMsMax");
  }
  const { pingIntervalMs, peerSilenceMsMax } = config;
  if (
    typeof pingIntervalMs === "number" &&
    typeof peerSilenceMsMax === "number" &&
    pingIntervalMs >= peerSilenceMsMax
  ) {
    errors.push("pingIntervalMs: must be below peerSilenceMsMax");
  }
  return errors;
}

function isNodeId(value: unknown): value is NodeId {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= NODE_ID_MAX;
}

/** Asserts that a config built in code (not parsed) is valid: an invalid one is a bug. */
export function assertTcpTransportConfig(config: TcpTransportConfig): void {
  const errors = checkTcpTransportConfig(config as unknown as Record<string, unknown>);
  assert(errors.length === 0, `invalid TcpTransportConfig: ${errors.join("; ")}`);
  assert(config.clusterId.length <= FRAME_TEXT_CHARS_MAX);
}
