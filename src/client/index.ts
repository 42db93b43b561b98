/**
 * The public face of the Baton client library: what an application imports to talk to a
 * cluster. Everything else in src/client is private to it; the error classes are exported
 * so that callers can test `instanceof` as well as `err.code`.
 */

// The catalogue errors the client throws, so that callers need only this one import.
export {
  BusyError,
  ClusterError,
  CompactedError,
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  LeaseNotFoundError,
  NoMasterError,
  QuotaExceededError,
  SwitchoverFailedError,
  TableFullError,
  TimeoutError,
  TooLargeError,
  UnauthenticatedError,
} from "../shared/errors.js";
export {
  type BatonClient,
  type CasResult,
  type ClientOptions,
  createClient,
  type EndpointStatus,
  type JoinInfo,
  type KvValue,
  type Member,
  type WriteOptions,
} from "./client.js";
export {
  ClientClosedError,
  DeadlineExceededError,
  type GiveUpDetails,
  IdempotencyKeyReusedError,
  MasterBusyError,
  MasterTableFullError,
  NoMasterReachableError,
  OutcomeUnknownError,
  PreconditionFailedError,
  UnexpectedResponseError,
  UnreachableError,
} from "./errors.js";
export {
  campaign,
  LEASE_EARLY_MS_MAX,
  type Leadership,
  type Lock,
  type LockOptions,
  leader,
  lock,
  observe,
} from "./lock.js";
export type { MemberStatus, NodeStatus } from "./node-status.js";
export { normalizeEndpoint } from "./server-pool.js";
export type {
  IdempotentOptions,
  Lease,
  RangeItem,
  RangeOptions,
  RangePage,
  TxnCompare,
  TxnOp,
  TxnRequest,
  WatchChange,
  WatchOptions,
} from "./store-client.js";
