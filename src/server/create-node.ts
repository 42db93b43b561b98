/**
 * The embedding API: make a Node.js program's own deterministic state machine highly
 * available. `createNode` opens the data directory (or memory), starts the transport and
 * the runtime, and returns the running node.
 *
 *   const node = await createNode({ id: 1, peers, dataDir: "./data/1", stateMachine });
 *   const result = await node.propose(bytes);   // on the master; applied on every node
 *   await node.readBarrier();                   // then read your state machine: linearizable
 */

import pino, { type Logger } from "pino";
import { rethrowIfBug } from "../shared/assert.js";
import type { StateMachine } from "../shared/state-machine.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { MemoryStorage } from "../storage/memory-storage.js";
import { defaultTcpTransportConfig, TcpTransport } from "../transport/tcp-transport.js";
import { BatonNode } from "./node.js";
import { type NodeConfig, type NodeConfigInput, parseNodeConfig } from "./node-config.js";

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

/** Starts a node from a parsed configuration; storage errors name the file and what to do. */
export async function startNode(
  config: NodeConfig,
  stateMachine: StateMachine,
  logger: Logger,
): Promise<BatonNode> {
  const opened =
    config.dataDir === null ? await MemoryStorage.open() : await DiskStorage.open(config.dataDir);
  const transport = new TcpTransport(
    {
      ...defaultTcpTransportConfig(),
      nodeId: config.id,
      clusterId: config.clusterId,
      listen: config.listen,
      peers: config.peers.map((p) => ({ id: p.id, address: p.address })),
      advertise: { httpUrl: config.http === null ? null : `http://${config.http}` },
    },
    { logger: logger.child({ component: "transport" }) },
  );
  try {
    return await BatonNode.start({ config, opened, transport, stateMachine, logger });
  } catch (error) {
    await transport.close().catch(rethrowIfBug);
    await opened.storage.close().catch(rethrowIfBug);
    throw error;
  }
}
