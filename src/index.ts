/**
 * Baton's library entry point: embed a highly available state machine in a Node.js
 * program (`createNode`), talk to a Baton cluster (`createClient`), or use the pieces.
 */

// The built-in key-value store, run in this process, and the types its methods take and give.
export { KvNode, type KvNodeOptions, type ReloadOutcome } from "./app/kv-node.js";
export type { KvStore } from "./app/kv-store.js";
export type { StoreQuota } from "./app/store-quota.js";
export type { BatonClient, ClientOptions } from "./client/index.js";
export { createClient } from "./client/index.js";
export type { MemberChange } from "./core/configuration.js";
export type { KvWriteOptions, MemberChangeRequest, StatusOptions } from "./http/node-api.js";
export type { BackupSnapshot } from "./http/routes/snapshot-route.js";
export type {
  ChangeListener,
  KvChange,
  KvCommand,
  KvEntry,
  KvErrorCode,
  KvOk,
  KvRange,
  KvRangeItem,
  KvRangeOptions,
  KvResult,
  KvWatchStart,
} from "./kv/index.js";
export type { Member } from "./protocol/messages.js";
export type { NodeStatus, Role } from "./protocol/status.js";
export {
  type CreateNodeOptions,
  createNode,
  drawIncarnation,
  type JoinedIdentity,
} from "./server/create-node.js";
export {
  type HealthRequest,
  type HealthResponse,
  type HealthSource,
  healthHandler,
} from "./server/health-handler.js";
export {
  BatonNode,
  BootstrapRefusedError,
  COMMAND_BYTES_MAX,
  type FailoverEvent,
  type MemberChangeOutcome,
  type NodeEvents,
  type PeerEvent,
  type RoleEvent,
  type SwitchoverOutcome,
} from "./server/node.js";
export {
  type NodeConfig,
  NodeConfigError,
  type NodeConfigInput,
  parseNodeConfig,
  parsePeers,
} from "./server/node-config.js";
export * from "./shared/errors.js";
export type { HealthAnswer, HealthBody, HealthCheck } from "./shared/health.js";
export type {
  ApplyContext,
  IncrementalRestore,
  SnapshotOptions,
  StateMachine,
} from "./shared/state-machine.js";
// What createNode and a node's `fatal` event may give when its data directory fails.
export * from "./storage/errors.js";
