/**
 * What tests that run several nodes in one process, on a memory network, share.
 */

import type { NodeId } from "../src/protocol/messages.js";
import {
  type NodeConfig,
  type NodeConfigInput,
  parseNodeConfig,
} from "../src/server/node-config.js";

/**
 * Node `id`'s configuration among `members` at test speed: 5 ms ticks, a heartbeat every
 * 20 ms and elections after 100 to 200 ms, so that a master is elected within a test's
 * first few hundred ms; the peers' addresses are never dialled (a memory network carries
 * the messages). `extra` overrides or adds settings.
 */
export function fastNodeConfig(
  id: NodeId,
  members: readonly NodeId[],
  extra: Partial<NodeConfigInput> = {},
): NodeConfig {
  return parseNodeConfig({
    id,
    peers: members.map((i) => ({ id: i, address: `127.0.0.1:${7100 + i}` })),
    tickMs: 5,
    heartbeatMs: 20,
    electionMsMin: 100,
    electionMsMax: 200,
    ...extra,
  });
}
