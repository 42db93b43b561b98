/**
 * Configuration of one node process: who it is, where it listens, who its peers are,
 * where its data lives and how fast it reacts. `parseNodeConfig` reports every bad field
 * at once and returns a frozen object; no other code reads a default.
 */

import type { NodeId } from "../protocol/messages.js";
import { InvalidInputError } from "../shared/errors.js";
import { parseAddress } from "../transport/address.js";

export interface PeerConfig {
  readonly id: NodeId;
  /** Node-to-node address, host:port. */
  readonly address: string;
}

export interface NodeConfig {
  /** This node's id, a positive integer listed in `peers`. */
  readonly id: NodeId;
  /** Name shared by the cluster's nodes; a node of another cluster is refused. @default "baton" */
  readonly clusterId: string;
  /** Every member, this node included. */
  readonly peers: readonly PeerConfig[];
  /** Node-to-node listen address; defaults to this node's address in `peers`. */
  readonly listen: string;
  /** Client HTTP API listen address, host:port, or null for none (embedded use). @default null */
  readonly http: string | null;
  /**
   * The host:port at which clients and the other members reach this node's HTTP API, when
   * it differs from `http` (a wildcard such as 0.0.0.0, a NAT, a container). Required when
   * `http` is a wildcard, which is never advertised. @default null (advertise `http`)
   */
  readonly advertiseHttp: string | null;
  /**
   * The node-to-node host:port at which the other members reach this node. It must be
   * this node's address in `peers`, since that is where they dial; never a wildcard.
   * @default this node's address in `peers`
   */
  readonly advertisePeer: string;
  /** Data directory, or null to keep everything in memory (tests, demos). */
  readonly dataDir: string | null;
  /** Timer resolution: the core's tick, in milliseconds. @default 10 */
  readonly tickMs: number;
  /** Master heartbeat interval, in milliseconds. @default 50 */
  readonly heartbeatMs: number;
  /** Election timeout range, in milliseconds. @default 300 and 600 */
  readonly electionMsMin: number;
  readonly electionMsMax: number;
  /** Take a snapshot every this many applied entries. @default 10000 */
  readonly snapshotEntries: number;
  /**
   * Also take a snapshot once the commands applied since the last one hold this many
   * bytes, so that a log of large values stays bounded on disk and in a restart's replay.
   * @default 64 MiB
   */
  readonly snapshotBytes: number;
  /** Entries kept in the log behind a snapshot, for backups slightly behind. @default 5000 */
  readonly snapshotKeepEntries: number;
  /**
   * At most this many bytes of entries are kept behind a snapshot, whatever
   * `snapshotKeepEntries` says. @default 16 MiB
   */
  readonly snapshotKeepBytes: number;
  /**
   * A master keeps the log after a snapshot it sent by state transfer until the backup has
   * caught up (a large state takes a while to install, and the writes meanwhile pile up),
   * up to this many bytes of entries past its usual compaction; a backup further behind
   * gets another transfer. @default 256 MiB
   */
  readonly transferCatchUpBytesMax: number;
  /** Proposals and reads give up after this long, in milliseconds. @default 5000 */
  readonly requestTimeoutMs: number;
  /** Largest state-transfer chunk, in bytes, at most 8 MiB. @default 1 MiB */
  readonly transferChunkBytes: number;
  /** A state transfer that makes no progress for this long is restarted, ms. @default 10000 */
  readonly transferStallMs: number;
  /**
   * This node's data directory was wiped (or lost) and it rejoins its cluster: until a
   * master has caught it up it neither votes nor campaigns, because before it lost its
   * data it may have voted in the current term, and it lacks committed entries. Takes
   * effect only on an empty data directory; the state survives restarts. @default false
   */
  readonly join: boolean;
  /**
   * Votes and acknowledgements count only from the member incarnation the configuration
   * lists: the master writes down each member's once it answered, together with the
   * cluster id (see ReplicaConfig.bindIncarnations). A wiped member then comes back
   * through `baton member replace` and `--join <url>`. Off only for the whole-node
   * simulator, whose nemesis still wipes nodes and restarts them with a bare `--join`.
   * @default true
   */
  readonly bindIncarnations: boolean;
  /**
   * Mutual TLS between nodes: the cluster CA certificate, this node's certificate and its
   * key, as file names (`baton certs ca`, `baton certs node`). All three or none; none is
   * plain TCP, which `baton start` allows only on loopback or with `insecure`. The files
   * are read at start and again on `reload` (SIGHUP). @default null
   */
  readonly tlsCa: string | null;
  readonly tlsCert: string | null;
  readonly tlsKey: string | null;
  /**
   * HTTPS for the client API: certificate and key file names, both or none. With them the
   * node advertises an https:// URL. @default null
   */
  readonly httpTlsCert: string | null;
  readonly httpTlsKey: string | null;
  /**
   * The tokens file (`baton certs token`) the HTTP API checks bearer tokens against; null
   * for no authentication. @default null
   */
  readonly tokens: string | null;
  /**
   * Run without TLS or tokens on addresses other machines can reach, on purpose (a
   * network the operator trusts). @default false
   */
  readonly insecure: boolean;
}

export function defaultNodeConfig(): Omit<NodeConfig, "id" | "peers" | "listen" | "advertisePeer"> {
  return {
    clusterId: "baton",
    http: null,
    advertiseHttp: null,
    dataDir: null,
    tickMs: 10,
    heartbeatMs: 50,
    electionMsMin: 300,
    electionMsMax: 600,
    snapshotEntries: 10_000,
    snapshotBytes: 64 * 1024 * 1024,
    snapshotKeepEntries: 5_000,
    snapshotKeepBytes: 16 * 1024 * 1024,
    transferCatchUpBytesMax: 256 * 1024 * 1024,
    requestTimeoutMs: 5_000,
    transferChunkBytes: 1024 * 1024,
    transferStallMs: 10_000,
    join: false,
    bindIncarnations: true,
    tlsCa: null,
    tlsCert: null,
    tlsKey: null,
    httpTlsCert: null,
    httpTlsKey: null,
    tokens: null,
    insecure: false,
  };
}

export type NodeConfigInput = Partial<NodeConfig> & Pick<NodeConfig, "id" | "peers">;

/**
 * A node configuration that fails its checks: `problems` lists every one, each naming its
 * setting; the message lists them too. An InvalidInputError (ERR_INVALID_INPUT, field
 * "config"), so a program tells it from the other errors of createNode by its code.
 */
export class NodeConfigError extends InvalidInputError {
  constructor(readonly problems: readonly string[]) {
    super("config", `invalid node configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

/** Validates `input` over the defaults; throws one NodeConfigError listing every problem. */
export function parseNodeConfig(input: NodeConfigInput): NodeConfig {
  // From JavaScript anything may come: without a list of peers nothing else can be
  // checked (it was a TypeError reading `find`).
  if (typeof input !== "object" || input === null || !Array.isArray(input.peers)) {
    throw new NodeConfigError([
      "peers must be a list of { id, address }: every member of the cluster, this node included",
    ]);
  }
  const problems: string[] = [];
  const self = input.peers.find((p) => p.id === input.id);
  const config: NodeConfig = {
    ...defaultNodeConfig(),
    ...stripUndefined(input),
    listen: input.listen ?? self?.address ?? "",
    advertisePeer: input.advertisePeer ?? self?.address ?? "",
  };
  const idIsNumber = Number.isInteger(config.id) && config.id >= 1;
  // JSON, so that a string shows as one: `(got "1")`, not `(got 1)`.
  if (!idIsNumber)
    problems.push(`id must be a positive integer (got ${JSON.stringify(config.id)})`);
  if (self === undefined && idIsNumber)
    problems.push(
      `id ${config.id} is not one of the peers (${config.peers.map((p) => p.id).join(", ")})`,
    );
  const ids = new Set<number>();
  for (const peer of config.peers) {
    if (!Number.isInteger(peer.id) || peer.id < 1)
      problems.push(`peer id must be a positive integer (got ${peer.id})`);
    if (ids.has(peer.id)) problems.push(`peer id ${peer.id} is listed twice`);
    ids.add(peer.id);
    if (!parseAddress(peer.address).ok)
      problems.push(`peer ${peer.id}: bad address "${peer.address}" (expected host:port)`);
  }
  // Without its own entry in peers the id's problem is said above; an empty listen
  // address derived from no entry would only repeat it.
  if ((self !== undefined || input.listen !== undefined) && !parseAddress(config.listen).ok)
    problems.push(`listen: bad address "${config.listen}" (expected host:port)`);
  if (config.http !== null && !parseAddress(config.http).ok)
    problems.push(`http: bad address "${config.http}" (expected host:port)`);
  problems.push(...advertiseProblems(config, self));
  if (config.clusterId.length === 0) problems.push("clusterId must not be empty");
  for (const key of [
    "tickMs",
    "heartbeatMs",
    "electionMsMin",
    "electionMsMax",
    "snapshotEntries",
    "snapshotBytes",
    "requestTimeoutMs",
    "transferChunkBytes",
    "transferStallMs",
  ] as const) {
    const v = config[key];
    if (!Number.isFinite(v) || v <= 0) problems.push(`${key} must be a positive number (got ${v})`);
  }
  // A chunk travels in one peer frame (16 MiB at most) with its envelope: a larger one is
  // dropped on every link, and the transfer stalls and starts again for ever.
  if (config.transferChunkBytes > TRANSFER_CHUNK_BYTES_MAX) {
    problems.push(
      `transferChunkBytes must be at most ${TRANSFER_CHUNK_BYTES_MAX} (8 MiB: a chunk travels in one peer frame; got ${config.transferChunkBytes})`,
    );
  }
  if (!Number.isInteger(config.snapshotKeepEntries) || config.snapshotKeepEntries < 0)
    problems.push("snapshotKeepEntries must be a non-negative integer");
  if (!Number.isInteger(config.snapshotKeepBytes) || config.snapshotKeepBytes < 0)
    problems.push("snapshotKeepBytes must be a non-negative integer");
  if (!Number.isInteger(config.transferCatchUpBytesMax) || config.transferCatchUpBytesMax < 0)
    problems.push("transferCatchUpBytesMax must be a non-negative integer");
  if (config.heartbeatMs < config.tickMs) problems.push("heartbeatMs must be at least tickMs");
  if (config.electionMsMin <= config.heartbeatMs)
    problems.push("electionMsMin must be above heartbeatMs");
  if (config.electionMsMax < config.electionMsMin)
    problems.push("electionMsMax must be at least electionMsMin");
  if (config.join && config.peers.length === 1)
    problems.push(
      "join: a single-node cluster has no peer to learn the term from or catch up with; start it without --join (its lost data cannot be recovered)",
    );
  problems.push(...securityFileProblems(config));
  if (problems.length > 0) throw new NodeConfigError(problems);
  return Object.freeze({
    ...config,
    peers: Object.freeze(config.peers.map((p) => Object.freeze({ ...p }))),
  });
}

/**
 * A wildcard address (0.0.0.0, ::) is where a node listens, never where others reach it:
 * the HTTP address that goes to clients and members, and this node's address in `peers`.
 */
function advertiseProblems(config: NodeConfig, self: PeerConfig | undefined): string[] {
  const problems: string[] = [];
  if (config.http !== null && config.advertiseHttp === null && isWildcardAddress(config.http))
    problems.push(
      `http ${config.http} is a wildcard address, which clients and members cannot reach: give advertiseHttp (--advertise-http <host:port>), the address they should use`,
    );
  if (config.advertiseHttp !== null) {
    if (config.http === null) problems.push("advertiseHttp is given but there is no http API");
    if (!parseAddress(config.advertiseHttp).ok || isWildcardAddress(config.advertiseHttp))
      problems.push(`advertiseHttp: "${config.advertiseHttp}" is not a host:port others can reach`);
  }
  if (self !== undefined && isWildcardAddress(self.address))
    problems.push(
      `peers: node ${self.id} is listed at the wildcard address ${self.address}, which members cannot dial: list its routable address (bind every interface with listen instead)`,
    );
  if (self !== undefined && config.advertisePeer !== self.address)
    problems.push(
      `advertisePeer ${config.advertisePeer} differs from node ${self.id}'s address in peers (${self.address}): members dial the address in peers, so make them the same`,
    );
  if (isWildcardAddress(config.advertisePeer))
    problems.push(`advertisePeer ${config.advertisePeer} is a wildcard address`);
  return problems;
}

/** Whether `address` (host:port) names every interface (0.0.0.0, ::) rather than one host. */
export function isWildcardAddress(address: string): boolean {
  const parsed = parseAddress(address);
  return parsed.ok && ["0.0.0.0", "::"].includes(parsed.address.host);
}

function securityFileProblems(config: NodeConfig): string[] {
  const problems: string[] = [];
  const peerFiles = [config.tlsCa, config.tlsCert, config.tlsKey];
  if (peerFiles.some((f) => f !== null) && peerFiles.some((f) => f === null)) {
    problems.push(
      "tlsCa, tlsCert and tlsKey (--tls-ca, --tls-cert, --tls-key) go together: give all three",
    );
  }
  if ((config.httpTlsCert === null) !== (config.httpTlsKey === null)) {
    problems.push("httpTlsCert and httpTlsKey (--http-tls-cert, --http-tls-key) go together");
  }
  return problems;
}

/** The base URL this node advertises for its HTTP API, or null when it serves none. */
export function advertisedHttpUrl(config: NodeConfig): string | null {
  if (config.http === null) return null;
  const address = config.advertiseHttp ?? config.http;
  return `${config.httpTlsCert === null ? "http" : "https"}://${address}`;
}

/** Whether `host` (of a host:port address) can be reached only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/**
 * Why this node must not start as configured, or null: an address other machines can reach
 * (`listen` or `http` not on loopback) without mutual TLS between nodes, HTTPS and tokens,
 * unless `insecure` says the network is trusted. The message says how to set them up.
 */
export function insecureExposure(config: NodeConfig): string | null {
  if (config.insecure) return null;
  const exposed = [config.listen, config.http].filter((address): address is string => {
    if (address === null) return false;
    const parsed = parseAddress(address);
    return parsed.ok && !isLoopbackHost(parsed.address.host);
  });
  if (exposed.length === 0) return null;
  const missing: string[] = [];
  if (config.tlsCa === null)
    missing.push("mutual TLS between nodes (--tls-ca, --tls-cert, --tls-key)");
  if (config.http !== null && config.httpTlsCert === null) {
    missing.push("HTTPS for clients (--http-tls-cert, --http-tls-key)");
  }
  if (config.http !== null && config.tokens === null) missing.push("API tokens (--tokens)");
  if (missing.length === 0) return null;
  const host = hostOf(exposed[0] as string);
  const dir = `./pki/node${config.id}`;
  return [
    `node ${config.id} would listen on ${exposed.join(" and ")}, which other machines can reach, without:`,
    ...missing.map((item) => `  - ${item}`),
    "Set them up once for the cluster (docs/security.md):",
    "  baton certs ca --out ./pki",
    `  baton certs node --id ${config.id} --ca ./pki --host ${host} --out ${dir}    (one per node; copy ${dir} to the node)`,
    "  baton certs token --name admin --role admin --tokens ./pki/tokens.json",
    "then start this node with",
    `  --tls-ca ${dir}/ca.crt --tls-cert ${dir}/node.crt --tls-key ${dir}/node.key \\`,
    `  --http-tls-cert ${dir}/node.crt --http-tls-key ${dir}/node.key --tokens ./pki/tokens.json`,
    "or pass --insecure to run without them on a network you trust.",
  ].join("\n");
}

/**
 * Why an embedded node (`createNode`, no HTTP API of Baton's) must not start as
 * configured, or null: a peer address other machines can reach without mutual TLS between
 * nodes, unless `insecure` says the network is trusted. Anyone who reaches that port
 * could otherwise speak as a member.
 */
export function insecurePeerLink(config: NodeConfig): string | null {
  if (config.insecure || config.tlsCa !== null) return null;
  const parsed = parseAddress(config.listen);
  if (!parsed.ok || isLoopbackHost(parsed.address.host)) return null;
  return `node ${config.id} would listen for its peers on ${config.listen}, which other machines can reach, without mutual TLS between nodes: give tlsCa, tlsCert and tlsKey (baton certs; docs/security.md), or insecure: true to run without it on a network you trust`;
}

/** The largest state-transfer chunk a node may be configured with, in bytes. */
export const TRANSFER_CHUNK_BYTES_MAX = 8 * 1024 * 1024;

/** The host of `address` for a certificate, or a placeholder for a wildcard address. */
function hostOf(address: string): string {
  const parsed = parseAddress(address);
  const wildcard = !parsed.ok || parsed.address.host === "0.0.0.0" || parsed.address.host === "::";
  return wildcard ? "<this node's name or IP>" : parsed.address.host;
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Parses "1=127.0.0.1:7101,2=127.0.0.1:7102" into peers; throws naming the bad item. */
export function parsePeers(text: string): PeerConfig[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0)
    .map((item) => {
      const eq = item.indexOf("=");
      const id = Number(item.slice(0, eq));
      if (eq < 1 || !Number.isInteger(id) || id < 1) {
        throw new Error(`--peers: "${item}" is not of the form <id>=<host>:<port>`);
      }
      return { id, address: item.slice(eq + 1) };
    });
}

/**
 * The election timeout range as `--election-ms` gives it: "<min>-<max>" milliseconds, or
 * "<min>" alone for min to twice min. Null when the text is neither; whether the range
 * is usable (min above the heartbeat, max at least min) is `parseNodeConfig`'s to say.
 */
export function parseElectionMs(text: string): { min: number; max: number } | null {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text.trim());
  if (m === null) return null;
  const min = Number(m[1]);
  return { min, max: m[2] === undefined ? min * 2 : Number(m[2]) };
}
