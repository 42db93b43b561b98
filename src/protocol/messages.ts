/**
 * The protocol's vocabulary: log entries, hard state and the messages nodes exchange.
 * Everything here is plain data (no classes, no methods) so that the transport can
 * encode it and the simulator can copy, drop, duplicate and reorder it freely.
 */

/** A node's id. Positive integer, unique within a cluster. */
export type NodeId = number;

/**
 * What a log entry carries. `noop` is the empty entry a new master appends to commit
 * everything before it (Raft §8); `command` carries application bytes; `config` carries
 * the cluster's whole new member list (encoded by src/core/configuration.ts), which takes
 * effect on every node as soon as the entry is in its log (dissertation §4.1).
 */
export type EntryKind = "noop" | "command" | "config";

/**
 * One member of the cluster as the configuration lists it. `incarnation` identifies the
 * data directory that speaks for this id: it is drawn when the directory is initialised
 * (bootstrap) or when the member is added (`--join` learns it), and a message from any
 * other incarnation of this id is ignored. 0 means "the incarnation that bootstrapped
 * the cluster", for configurations made from the command line before any change.
 * A learner (`voter` false) receives the log but neither votes nor counts for a commit.
 */
export interface Member {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly voter: boolean;
  /** Node-to-node address, host:port ("" when only the command line knows it). */
  readonly peerAddress: string;
  /** Client API URL ("" when only the command line knows it). */
  readonly httpUrl: string;
}

export interface Entry {
  /** Position in the log, starting at 1. */
  readonly index: number;
  /** Term of the master that created the entry. */
  readonly term: number;
  readonly kind: EntryKind;
  /** Application bytes for `command`; empty for `noop`. */
  readonly data: Uint8Array;
}

/** The state that must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  /** Whom this node voted for in `term`, or null. */
  readonly votedFor: NodeId | null;
  /** Highest index known committed; persisted as a hint, never trusted beyond the log. */
  readonly commitIndex: number;
  /**
   * This node lost its data (its directory was wiped) and is catching up: it neither
   * votes nor campaigns until it holds everything committed. Absent means false.
   */
  readonly joining?: boolean;
}

/** Identifies the state a snapshot captures: everything up to and including `index`. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  /**
   * The configuration in effect at `index` (the last config entry at or below it), when
   * one was ever logged; absent means the configuration the node was started with.
   */
  readonly config?: readonly Member[];
  /** The cluster id, when the node that took or sent the snapshot knew it. */
  readonly clusterId?: string;
}

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term (for a pre-vote request, the term it would campaign in). */
  readonly term: number;
}

/**
 * The core's messages also name the sender's incarnation (see Member): a vote or an
 * acknowledgement counts only when it comes from the incarnation the configuration lists,
 * so a message sent before a member's data directory was wiped is never taken for one
 * sent after.
 */
interface MemberEnvelope extends Envelope {
  readonly incarnation: number;
}

/**
 * A candidate asking for a vote; `preVote` asks whether a real election could win.
 * `handover` marks the election of a switchover: the master asked this candidate to run
 * (TimeoutNow), so voters answer although they heard from that master a moment ago.
 */
export interface VoteRequest extends MemberEnvelope {
  readonly type: "vote_request";
  readonly preVote: boolean;
  readonly handover: boolean;
  readonly lastIndex: number;
  readonly lastTerm: number;
}

export interface VoteResponse extends MemberEnvelope {
  readonly type: "vote_response";
  readonly preVote: boolean;
  readonly granted: boolean;
}

/** Entries (possibly none) following `prevIndex`, which must hold `prevTerm`. */
export interface Append extends MemberEnvelope {
  readonly type: "append";
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  readonly commitIndex: number;
}

export interface AppendResponse extends MemberEnvelope {
  readonly type: "append_response";
  readonly success: boolean;
  /**
   * On success: the last index the backup now holds that matches the master's log.
   * On rejection: the `prevIndex` that was rejected.
   */
  readonly index: number;
  /** On rejection, a hint for fast back-off: the backup's last index, capped at `index`... */
  readonly hintIndex: number;
  /** ...and the term of the backup's entry there (0 when it has none). */
  readonly hintTerm: number;
}

/**
 * The master's periodic proof of life. It carries a commit index the backup is known to
 * be able to use, and an optional read context that makes it double as a ReadIndex round.
 */
export interface Heartbeat extends MemberEnvelope {
  readonly type: "heartbeat";
  readonly commitIndex: number;
  readonly readContext: number;
}

export interface HeartbeatResponse extends MemberEnvelope {
  readonly type: "heartbeat_response";
  readonly readContext: number;
}

/**
 * A node that lost its data asks a peer for its current term, which it must learn from
 * enough peers before it may acknowledge anything (see Replica's joining state).
 */
export interface TermProbe extends MemberEnvelope {
  readonly type: "term_probe";
}

/**
 * The answer to a TermProbe: `term` is the answering node's current term. A node whose
 * data directory is empty asks with term probes too, before it may vote (the bootstrap
 * gate): the answer says whether the cluster already has an id, whether the answering
 * node is itself bootstrapping, and whether the asker may join as the member the
 * configuration lists (see `welcome`).
 */
export interface TermProbeResponse extends MemberEnvelope {
  readonly type: "term_probe_response";
  /** The cluster id the answering node knows (committed), or "" when it knows none. */
  readonly clusterId: string;
  /** The answering node started from an empty data directory and has no cluster id yet. */
  readonly bootstrapping: boolean;
  /**
   * The cluster has an id and the answering node's configuration lists the asker with
   * incarnation 0: no master ever heard from it (a member of the command line that
   * started late), so it may join with that id. Only a node that holds the cluster's log
   * (neither gated nor catching up) welcomes or binds.
   */
  readonly welcome: boolean;
  /**
   * The cluster has an id and the answering node's configuration lists another
   * incarnation of the asker, or does not list it: the asker must not take part.
   */
  readonly bound: boolean;
  /**
   * The cluster has an id and the answering node's configuration lists the asker with the
   * very incarnation it asked with. To a node whose data directory is empty but for its
   * identity (its log and hard state were lost: a crash before its first write reached
   * the disk, or a partial wipe), this says that a master heard from this incarnation, so
   * it may have promised what it no longer remembers: it must not take part either.
   */
  readonly listed: boolean;
}

/**
 * Switchover (dissertation §3.10): the master, having brought this backup up to its last
 * index and stopped taking new writes, tells it to start an election now.
 */
export interface TimeoutNow extends MemberEnvelope {
  readonly type: "timeout_now";
}

export type Message =
  | VoteRequest
  | VoteResponse
  | Append
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | TermProbe
  | TermProbeResponse
  | TimeoutNow;

export type MessageType = Message["type"];

/**
 * State transfer travels beside the protocol, not through the core: the master's runtime
 * streams its newest snapshot in bounded chunks and the backup's runtime acknowledges
 * each. The core only decides when a transfer is needed and whether to adopt the result.
 */
export interface SnapshotChunk extends Envelope {
  readonly type: "snapshot_chunk";
  /** The snapshot being sent. */
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  /** Byte offset of `data` within the snapshot's data. */
  readonly offset: number;
  readonly totalBytes: number;
  /** CRC32 of the whole data, checked by the receiver at the end. */
  readonly crc32: number;
  readonly data: Uint8Array;
  /**
   * The configuration in effect at the snapshot's index, encoded as a config entry's data
   * (src/core/configuration.ts): the entries that set it are compacted away.
   */
  readonly config: Uint8Array;
}

export interface SnapshotAck extends Envelope {
  readonly type: "snapshot_ack";
  readonly snapshotIndex: number;
  /** The next byte offset the receiver expects. */
  readonly nextOffset: number;
  /** Set once everything arrived: whether the receiver adopts the snapshot. */
  readonly done: boolean;
  readonly accepted: boolean;
}

export type TransferMessage = SnapshotChunk | SnapshotAck;

/**
 * Forwarding also travels beside the protocol: a backup hands a client's command to the
 * master over the peer link, and the master proposes it and answers with where it went in
 * the log. The backup then learns the result by applying that entry itself, so no result
 * ever crosses the wire and any deterministic state machine can be forwarded to.
 */
export interface ForwardProposal extends Envelope {
  readonly type: "forward_proposal";
  /** Chosen by the backup, unique among its forwards in flight. */
  readonly requestId: number;
  /** The command, as the application gave it (the master stamps it with its time). */
  readonly data: Uint8Array;
}

/**
 * How a forwarded proposal ended at the node it was sent to. `proposed`: it is in the
 * master's log at `index` in `entryTerm` (it may still be replaced if that master is lost
 * before it commits). `not_master`: the receiver is not the master and proposed nothing.
 * `busy`: the master refused it (too many uncommitted entries) and proposed nothing.
 */
export type ForwardOutcome = "proposed" | "not_master" | "busy";

export interface ForwardProposalResponse extends Envelope {
  readonly type: "forward_proposal_response";
  readonly requestId: number;
  readonly outcome: ForwardOutcome;
  /** With `proposed`: the entry's index and term; otherwise 0. */
  readonly index: number;
  readonly entryTerm: number;
}

/** A backup asks the master for a read index, to serve a linearizable read itself. */
export interface ForwardRead extends Envelope {
  readonly type: "forward_read";
  readonly requestId: number;
}

/**
 * The master confirmed its mastership after the request arrived: a read made once the
 * backup has applied `index` is linearizable. `ok` false: the receiver is not the master.
 */
export interface ForwardReadResponse extends Envelope {
  readonly type: "forward_read_response";
  readonly requestId: number;
  readonly ok: boolean;
  readonly index: number;
}

/** A backup asks the master for a switchover to `target` (0: the best-placed backup). */
export interface ForwardSwitchover extends Envelope {
  readonly type: "forward_switchover";
  readonly requestId: number;
  readonly target: number;
}

/**
 * Whether the master started the switchover (`started`, to `target`), or why not: the
 * reasons of the core's SwitchoverResult (`not_master`, `in_progress`, `unknown_member`,
 * `no_candidate`, `unreachable`).
 */
export interface ForwardSwitchoverResponse extends Envelope {
  readonly type: "forward_switchover_response";
  readonly requestId: number;
  readonly outcome: string;
  readonly target: number;
}

export type ForwardMessage =
  | ForwardProposal
  | ForwardProposalResponse
  | ForwardRead
  | ForwardReadResponse
  | ForwardSwitchover
  | ForwardSwitchoverResponse;

/** Everything that travels between nodes. */
export type WireMessage = Message | TransferMessage | ForwardMessage;
