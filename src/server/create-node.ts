/**
 * The embedding API: make a Node.js program's own deterministic state machine highly
 * available. `createNode` opens the data directory (or memory), starts the transport and
 * the runtime, and returns the running node.
 *
 *   const node = await createNode({ id: 1, peers, dataDir: "./data/1", stateMachine });
 *   const result = await node.propose(bytes);   // on the master; applied on every node
 *   await node.readBarrier();                   // then read your state machine: linearizable
 */

import { randomInt, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import pino, { type Logger } from "pino";
import { MEMBER_INCARNATION_MAX } from "../core/configuration.js";
import { Prng } from "../core/prng.js";
import type { Member } from "../protocol/messages.js";
import { rethrowIfBug } from "../shared/assert.js";
import { type Clock, realClock } from "../shared/clock.js";
import { InvalidInputError } from "../shared/errors.js";
import { certificateValidityMs, pemBlocks, pemProblem } from "../shared/pem.js";
import type { StateMachine } from "../shared/state-machine.js";
import type { LockHost } from "../storage/dir-lock.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { type FileSystem, nodeFileSystem } from "../storage/file-system.js";
import { IdentityStore } from "../storage/identity-store.js";
import { MemoryStorage } from "../storage/memory-storage.js";
import type { OpenedStorage } from "../storage/storage.js";
import type { StorageConfig } from "../storage/storage-config.js";
import { certificateIdentity, identityProblem, type PeerTlsConfig } from "../transport/peer-tls.js";
import { defaultTcpTransportConfig, TcpTransport } from "../transport/tcp-transport.js";
import type { Transport } from "../transport/transport.js";
import { BatonNode } from "./node.js";
import {
  advertisedHttpUrl,
  insecurePeerLink,
  type NodeConfig,
  type NodeConfigInput,
  parseNodeConfig,
} from "./node-config.js";

export interface CreateNodeOptions<R = unknown> extends NodeConfigInput {
  readonly stateMachine: StateMachine<R>;
  /** Structured logs. @default pino at "info" to stderr */
  readonly logger?: Logger;
  /**
   * For an empty data directory of a member added to a running cluster as a learner
   * (a new machine, or one that lost its data and was replaced): the cluster id, the
   * member incarnation the master wrote for it and the members, as the master's
   * `clusterId` and `members()` give them (what `baton start --join` learns). Ignored once
   * the directory has an identity.
   */
  readonly joined?: JoinedIdentity;
}

/**
 * Starts a node of the caller's state machine. Rejects with NodeConfigError (an
 * InvalidInputError, field `config`) listing every problem of the configuration,
 * InvalidInputError (field `stateMachine`) without a state machine, or (field `listen`)
 * for a peer address other machines can reach without mutual TLS, unless `insecure`;
 * with StorageLockedError when another process holds the data directory, and the storage
 * errors of docs/storage.md when it fails its checks.
 */
export async function createNode<R = unknown>(
  options: CreateNodeOptions<R>,
): Promise<BatonNode<R>> {
  const { stateMachine, logger: given, joined, ...input } = options;
  const machine = stateMachine as Partial<StateMachine<unknown>> | undefined;
  if (
    typeof machine?.apply !== "function" ||
    typeof machine.snapshot !== "function" ||
    typeof machine.restore !== "function"
  ) {
    throw new InvalidInputError(
      "stateMachine",
      "give an object with apply, snapshot and restore (the StateMachine interface)",
    );
  }
  const config = parseNodeConfig(input);
  const exposure = insecurePeerLink(config);
  if (exposure !== null) throw new InvalidInputError("listen", exposure);
  const logger = given ?? pino({ name: "baton", level: "info" }, pino.destination(2));
  const child = logger.child({ node: config.id });
  // The node hands back what apply returned: R, for the machine given.
  return (await startNode(
    config,
    stateMachine,
    child,
    undefined,
    {},
    joined ?? null,
  )) as BatonNode<R>;
}

/**
 * What a node reaches the outside world through besides its transport: the real clock,
 * file system and process in production, virtual ones in the simulator.
 */
export interface NodeSeams {
  /** @default realClock */
  readonly clock?: Clock;
  /** The file system under the data directory. @default nodeFileSystem */
  readonly fs?: FileSystem;
  /** The process that locks the data directory. @default this process */
  readonly lockHost?: LockHost;
  /** Seeds the core's election jitter and a new member incarnation. @default a random seed */
  readonly seed?: number;
  /** Storage settings beyond the defaults (the simulator's small segments). @default none */
  readonly storage?: Partial<StorageConfig>;
}

/**
 * Starts a node from a parsed configuration; storage errors name the file and what to do.
 * `transport` is made from the configuration unless given (the key-value server keeps its
 * own, to reload its certificates; the simulator passes its virtual network).
 */
export async function startNode(
  config: NodeConfig,
  stateMachine: StateMachine,
  logger: Logger,
  transport: Transport = createTransport(config, logger),
  seams: NodeSeams = {},
  joined: JoinedIdentity | null = null,
): Promise<BatonNode> {
  const { clock, fs, lockHost, seed, storage } = seams;
  const opened =
    config.dataDir === null
      ? await MemoryStorage.open()
      : await DiskStorage.open(config.dataDir, {
          ...(fs === undefined ? {} : { fs }),
          ...(clock === undefined ? {} : { clock }),
          ...(lockHost === undefined ? {} : { lockHost }),
          ...(storage === undefined ? {} : { config: storage }),
        });
  try {
    const draw =
      seed === undefined
        ? drawIncarnation
        : () => new Prng(seed ^ 0x2545f491).int(1, MEMBER_INCARNATION_MAX);
    const identity =
      config.dataDir === null
        ? null
        : await ensureIdentity(config.dataDir, fs ?? nodeFileSystem, opened, logger, joined, draw);
    const incarnation = identity?.identity()?.incarnation ?? draw();
    const deps = { config, opened, transport, stateMachine, logger, incarnation, identity };
    return await BatonNode.start({
      ...deps,
      ...(clock === undefined ? {} : { clock }),
      ...(seed === undefined ? {} : { seed }),
    });
  } catch (error) {
    await transport.close().catch(rethrowIfBug);
    await opened.storage.close().catch(rethrowIfBug);
    throw error;
  }
}

/** A new member incarnation, as a new data directory gets one. */
export function drawIncarnation(): number {
  return randomInt(1, MEMBER_INCARNATION_MAX);
}

/**
 * The data directory's member incarnation: the one its identity file holds, or a new one
 * drawn and made durable before the node sends anything. A directory with no identity
 * file is new (nothing in it) or was written by Baton 0.1 or 0.2 (it holds state): either way
 * it gets a fresh incarnation, and the log says which. A wiped directory therefore never
 * speaks with the incarnation it had before.
 */
async function ensureIdentity(
  dir: string,
  fs: FileSystem,
  opened: OpenedStorage,
  logger: Logger,
  joined: JoinedIdentity | null,
  draw: () => number,
): Promise<IdentityStore> {
  const store = await IdentityStore.open(dir, fs);
  const known = store.identity();
  if (known !== null) {
    if (joined !== null && joined.incarnation !== known.incarnation) {
      logger.warn(
        { event: "identity", incarnation: known.incarnation },
        `--join ignored: the data directory ${dir} already has member incarnation ${known.incarnation}`,
      );
    }
    return store;
  }
  const empty =
    opened.hardState.term === 0 && opened.snapshot.index === 0 && opened.entries.length === 0;
  if (joined !== null && empty) {
    await store.save({
      clusterId: joined.clusterId,
      incarnation: joined.incarnation,
      joinedConfig: joined.members,
      appliedConfig: null,
    });
    logger.info(
      { event: "identity", incarnation: joined.incarnation, joined: true },
      `new data directory ${dir}: joined as member incarnation ${joined.incarnation}, a learner until promoted`,
    );
    return store;
  }
  const incarnation = draw();
  await store.save({ clusterId: null, incarnation, joinedConfig: null, appliedConfig: null });
  logger.info(
    { event: "identity", incarnation, upgraded: !empty },
    empty
      ? `new data directory ${dir}: member incarnation ${incarnation}`
      : `data directory ${dir} was written by Baton 0.1 or 0.2 (no identity): adopted member incarnation ${incarnation}`,
  );
  return store;
}

/** What `--join <url>` learned for a member added to a running cluster. */
export interface JoinedIdentity {
  /** The cluster id the member answered with; null while the cluster had none yet. */
  readonly clusterId: string | null;
  readonly incarnation: number;
  readonly members: readonly Member[];
}

/**
 * The TCP transport for `config`, with mutual TLS when it names certificate files. Throws
 * an Error naming the file when one cannot be read or is not usable.
 */
export function createTransport(config: NodeConfig, logger: Logger): TcpTransport {
  const tls = readPeerTls(config);
  try {
    return newTransport(config, logger, tls);
  } catch (error) {
    rethrowIfBug(error);
    throw new Error(`${tlsFiles(config)}: ${(error as Error).message}`);
  }
}

/** Names the peer TLS files, for an error about them. */
export function tlsFiles(config: NodeConfig): string {
  return `--tls-ca ${config.tlsCa} --tls-cert ${config.tlsCert} --tls-key ${config.tlsKey}`;
}

function newTransport(config: NodeConfig, logger: Logger, tls: PeerTlsConfig | null): TcpTransport {
  return new TcpTransport(
    {
      ...defaultTcpTransportConfig(),
      nodeId: config.id,
      clusterId: config.clusterId,
      listen: config.listen,
      peers: config.peers.map((p) => ({ id: p.id, address: p.address })),
      advertise: { httpUrl: advertisedHttpUrl(config) },
      tls,
    },
    { logger: logger.child({ component: "transport" }) },
  );
}

/**
 * The peer TLS files of `config` as PEM text, or null for plain TCP. Throws an Error naming
 * the file when one cannot be read, or when the node's own certificate is one its peers
 * would refuse (another member's, another cluster's, expired, or not from the CA).
 */
export function readPeerTls(config: NodeConfig, clock: Clock = realClock): PeerTlsConfig | null {
  if (config.tlsCa === null || config.tlsCert === null || config.tlsKey === null) return null;
  const tls = {
    ca: readPem(config.tlsCa, "--tls-ca"),
    cert: readPem(config.tlsCert, "--tls-cert"),
    key: readPem(config.tlsKey, "--tls-key"),
  };
  const problem = ownCertificateProblem(tls, config, clock.wallMs());
  if (problem !== null) throw new Error(`--tls-cert ${config.tlsCert}: ${problem}`);
  return tls;
}

/**
 * Why the peers would refuse this node's own certificate, or null: each checks it at every
 * handshake, so a node that starts with one they refuse never joins, and only they would
 * say why.
 */
export function ownCertificateProblem(
  tls: PeerTlsConfig,
  config: Pick<NodeConfig, "id" | "clusterId">,
  nowMs: number,
): string | null {
  let cert: X509Certificate;
  let cas: X509Certificate[];
  try {
    cert = new X509Certificate(tls.cert);
    // The issuer may be a CA of the bundle or an intermediate sent along in the cert file.
    const issuers = [...pemBlocks(tls.ca), ...pemBlocks(tls.cert).slice(1)];
    cas = issuers
      .filter((block) => block.startsWith("-----BEGIN CERTIFICATE-----"))
      .map((block) => new X509Certificate(block));
  } catch (error) {
    return `cannot read the certificate or the CA: ${(error as Error).message}`;
  }
  const reissue = `issue node ${config.id} its own (baton certs node --id ${config.id} --cluster-id ${config.clusterId} …)`;
  const named = certificateIdentity(cert);
  const identity = identityProblem(named, config.id, config.clusterId);
  if (identity !== null) {
    // Named for another cluster but the right member: most likely the node was started
    // without the cluster's name (the default "baton"), not given the wrong certificate.
    const cluster = named.memberIds.includes(config.id) ? named.clusterIds[0] : undefined;
    const fix =
      cluster === undefined
        ? reissue
        : `if the cluster is named ${JSON.stringify(cluster)}, give --cluster-id ${cluster} (or "clusterId" in the config file); else ${reissue}`;
    return `${identity.replace(/^its certificate/, "the certificate")}, so every peer would refuse this node: ${fix}`;
  }
  const validity = certificateValidityMs(cert);
  if (validity.toMs < nowMs) {
    return `the certificate expired on ${cert.validTo}, so every peer would refuse this node: ${reissue}, with --force, then reload`;
  }
  if (validity.fromMs > nowMs) {
    return `the certificate is not valid before ${cert.validFrom}: is this machine's clock right?`;
  }
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    return `the certificate was not issued by the CA in --tls-ca (${cas.length} certificate(s) there), which the peers trust: issue it from that CA, or add its issuer to the file`;
  }
  return null;
}

/** The text of a PEM file; throws an Error naming the file and the option it came from. */
export function readPem(file: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new Error(`${option} ${file}: ${(error as Error).message}`);
  }
  const problem = pemProblem(text);
  if (problem !== null) throw new Error(`${option} ${file}: ${problem}`);
  return text;
}
