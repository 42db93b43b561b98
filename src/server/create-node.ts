/**
 * The embedding API: make a Node.js program's own deterministic state machine highly
 * available. `createNode` opens the data directory (or memory), starts the transport and
 * the runtime, and returns the running node.
 *
 *   const node = await createNode({ id: 1, peers, dataDir: "./data/1", stateMachine });
 *   const result = await node.propose(bytes);   // on the master; applied on every node
 *   await node.readBarrier();                   // then read your state machine: linearizable
 */

import { readFileSync } from "node:fs";
import pino, { type Logger } from "pino";
import { rethrowIfBug } from "../shared/assert.js";
import type { Clock } from "../shared/clock.js";
import type { StateMachine } from "../shared/state-machine.js";
import type { LockHost } from "../storage/dir-lock.js";
import { DiskStorage } from "../storage/disk-storage.js";
import type { FileSystem } from "../storage/file-system.js";
import { MemoryStorage } from "../storage/memory-storage.js";
import type { StorageConfig } from "../storage/storage-config.js";
import type { PeerTlsConfig } from "../transport/peer-tls.js";
import { defaultTcpTransportConfig, TcpTransport } from "../transport/tcp-transport.js";
import type { Transport } from "../transport/transport.js";
import { BatonNode } from "./node.js";
import {
  advertisedHttpUrl,
  type NodeConfig,
  type NodeConfigInput,
  parseNodeConfig,
} from "./node-config.js";

export interface CreateNodeOptions extends NodeConfigInput {
  readonly stateMachine: StateMachine;
  /** Structured logs. @default pino at "info" to stderr */
  readonly logger?: Logger;
}

export async function createNode(options: CreateNodeOptions): Promise<BatonNode> {
  const { stateMachine, logger: given, ...input } = options;
  const config = parseNodeConfig(input);
  const logger = given ?? pino({ name: "baton", level: "info" }, pino.destination(2));
  return startNode(config, stateMachine, logger.child({ node: config.id }));
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
  /** Seeds the core's election jitter. @default a random seed */
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
    const deps = { config, opened, transport, stateMachine, logger };
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

/** The peer TLS files of `config` as PEM text, or null for plain TCP. */
export function readPeerTls(config: NodeConfig): PeerTlsConfig | null {
  if (config.tlsCa === null || config.tlsCert === null || config.tlsKey === null) return null;
  return {
    ca: readPem(config.tlsCa, "--tls-ca"),
    cert: readPem(config.tlsCert, "--tls-cert"),
    key: readPem(config.tlsKey, "--tls-key"),
  };
}

/** The text of a PEM file; throws an Error naming the file and the option it came from. */
export function readPem(file: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new Error(`${option} ${file}: ${(error as Error).message}`);
  }
  if (!text.includes("-----BEGIN ")) throw new Error(`${option} ${file}: not a PEM file`);
  return text;
}
