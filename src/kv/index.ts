/**
 * The public face of the key-value state machine: what the node runtime, the HTTP API and
 * the simulator import. Helpers that only the state machine itself needs (tables, frames,
 * digests) stay private to this directory; nothing here may import beyond `src/shared`.
 */

export type { ChangeListener, KvChange } from "./change-history.js";
export {
  COMMAND_FORMAT_VERSION,
  type DecodeCommandResult,
  type DeleteCommand,
  decodeCommand,
  decodeResult,
  encodeCommand,
  encodeResult,
  type KvCommand,
  type KvCommandProblem,
  type KvErrorCode,
  type KvInvalidReason,
  type KvOk,
  type KvQuotaName,
  type KvResult,
  type KvTable,
  type PutCommand,
  type SessionTag,
  utf8ByteLength,
  validateCommand,
  type WriteOptions,
} from "./commands.js";
export {
  type KvEntry,
  type KvRange,
  type KvRangeItem,
  type KvRangeOptions,
  KvStateMachine,
  type KvWatchStart,
} from "./kv-state-machine.js";
export {
  defaultKvLimits,
  type KvLimits,
  type ParseKvLimitsResult,
  parseKvLimits,
} from "./limits.js";
export {
  openPrefixWatch,
  type PrefixWatchEvent,
  type PrefixWatchListener,
  type PrefixWatchRequest,
  type PrefixWatchStart,
  type WatchSource,
} from "./prefix-watch.js";
export { KvSnapshotError, SNAPSHOT_FORMAT_VERSION } from "./snapshot-frames.js";
export type {
  DeleteRangeCommand,
  LeaseGrantCommand,
  LeaseKeepAliveCommand,
  LeaseRevokeCommand,
  SetQuotaCommand,
  StoreCommand,
  TickCommand,
  TxnCommand,
  TxnCompare,
  TxnOp,
} from "./store-commands.js";
