/**
 * The contract between the node runtime and whatever carries protocol messages between
 * nodes. It owns the shape of that contract only: sending, receiving, peer-up/peer-down
 * events, what each peer advertised about itself, and statistics. Implementations (TCP,
 * in-memory) must pass the conformance suite in test/conformance/transport.suite.ts.
 *
 * Delivery is best effort, because Raft tolerates lost messages: a transport may drop a
 * message (full queue, lost connection), but it must never reorder the messages of one
 * kind on one link (appends among appends, answers among answers: the TCP transport's
 * queue lets control messages such as heartbeats and votes pass bulk ones, appends,
 * snapshot chunks and forwarded writes, while they wait), duplicate them, or deliver a
 * message whose `to` is not the receiving node. The runtime tolerates a duplicate all the
 * same (the simulator's network delivers some twice). `send`
 * never blocks and never throws for network trouble; the runtime must not wait on it.
 */

import type { NodeId, WireMessage } from "../protocol/messages.js";

/** A peer's id and its node-to-node address ("host:port", "[v6]:port"). */
export interface PeerAddress {
  readonly id: NodeId;
  readonly address: string;
}

/**
 * What a node advertises about itself to every peer in each handshake, in both directions,
 * so that a backup knows where to forward client requests and a status page can list every
 * member. It is small and bounded by the frame schema (see `checkPeerInfo`): add a field
 * only with a protocol version bump.
 */
export interface PeerInfo {
  /**
   * Base URL of the node's HTTP API: "http://" or "https://", printable ASCII, at most
   * HTTP_URL_BYTES_MAX (256) bytes, no credentials, query or fragment. Null when the node
   * serves no HTTP API.
   */
  readonly httpUrl: string | null;
}

/**
 * Why a message was not queued. `queue_full`: the peer's bounded queue (count or bytes) is
 * full. `too_large`: its encoding exceeds the frame limit, so no peer would accept it.
 * `unknown_peer`: `to` is not a configured peer (for instance just removed by a membership
 * change). `closed`: the transport is not running.
 */
export type DropReason =
  | "queue_full"
  | "too_large"
  | "unknown_peer"
  | "closed"
  /** Fault injection: the node is cut off from its peers on purpose. */
  | "partitioned";

/** What `send` did with a message: queued for the peer, or dropped and counted. */
export type SendResult =
  | { readonly queued: true }
  | { readonly queued: false; readonly reason: DropReason };

/**
 * Why a peer is considered unreachable. `refused`: nothing listens at its address (the
 * fastest evidence that a process died). `lost`: an established connection closed or
 * reset. `timeout`: connecting or the handshake took too long. `handshake_refused`: the
 * peer answered the handshake with an error (wrong cluster, unknown id). `protocol_error`:
 * the peer sent bytes that break the protocol. `closed`: the peer (in-memory) or this
 * transport shut down. `partitioned`: an in-memory test cut the link.
 */
export type PeerDownReason =
  | "refused"
  | "lost"
  | "timeout"
  | "handshake_refused"
  | "protocol_error"
  | "closed"
  | "partitioned";

export type MessageHandler = (message: WireMessage) => void;
export type PeerUpHandler = (peer: NodeId) => void;
export type PeerDownHandler = (peer: NodeId, reason: PeerDownReason) => void;
/** Removes the handler it was returned for. Calling it twice is harmless. */
export type Unsubscribe = () => void;

/** Counters for one peer link (the direction this node sends on). */
export interface PeerStats {
  readonly peer: NodeId;
  /** True while this node can send to the peer (connected and handshake done). */
  readonly connected: boolean;
  /** Messages waiting to be written to the peer. */
  readonly queuedMessages: number;
  /** Encoded bytes (frame headers included) waiting to be written to the peer. */
  readonly queuedBytes: number;
  /** Messages handed to the connection (not necessarily received). */
  readonly sentMessages: number;
  /** Messages received from the peer and handed to the message handlers. */
  readonly receivedMessages: number;
  /** Messages dropped for this peer, for any DropReason except `unknown_peer`. */
  readonly droppedMessages: number;
  /** Connection attempts after the first one, over the transport's lifetime. */
  readonly reconnectAttempts: number;
  /** Why the link last went down, or null if it never did. */
  readonly lastDownReason: PeerDownReason | null;
  /** The same as `Transport.peerInfo(peer)`. */
  readonly info: PeerInfo | null;
}

export interface TransportStats {
  readonly nodeId: NodeId;
  readonly peers: readonly PeerStats[];
  /** Messages dropped for any reason, `unknown_peer` and `closed` included. */
  readonly droppedMessages: number;
  /** Connections or frames rejected because they broke the protocol. */
  readonly protocolErrors: number;
}

/**
 * What the node runtime uses to talk to its peers.
 *
 * Events: `onPeerUp` fires when this node becomes able to send to a peer; `onPeerDown`
 * fires when it stops being able to (or learns at the first attempt that it cannot).
 * They fire on transitions only, alternating per peer, never twice in a row with the same
 * kind. Handlers run synchronously inside the transport; a handler that throws is a bug
 * and the exception propagates (the process crashes, as for any failed assertion).
 */
export interface Transport {
  readonly nodeId: NodeId;
  /** Starts listening and connecting to peers. Resolves once the node accepts connections. */
  start(): Promise<void>;
  /**
   * Stops everything: no message is delivered or sent after close resolves, and queued
   * messages are discarded. Idempotent.
   */
  close(): Promise<void>;
  /** Queues `message` for `message.to`, or drops it with a reason. Never blocks. */
  send(message: WireMessage): SendResult;
  onMessage(handler: MessageHandler): Unsubscribe;
  onPeerUp(handler: PeerUpHandler): Unsubscribe;
  onPeerDown(handler: PeerDownHandler): Unsubscribe;
  /**
   * Adds a peer (membership change). Adding an existing id replaces its address: a link to
   * the old address that was up reports down (`closed`) before it goes.
   */
  addPeer(peer: PeerAddress): void;
  /**
   * Removes a peer, discarding its queue and closing its connections. Its events end
   * there, with no down event; added again, it starts afresh (its first event is an up).
   */
  removePeer(id: NodeId): void;
  /**
   * A message from `peer` broke a protocol rule (the node's core said so): close the
   * connection it came on, count a protocol error and log `reason`. The peer may dial
   * again; the node never stops for a peer's mistake.
   */
  closePeerConnection(peer: NodeId, reason: string): void;
  /**
   * What peer `id` advertised in its latest handshake with this node, whichever side
   * dialled; null before the first one, and for ids that are not peers (this node itself
   * included). It is known by the time `onPeerUp` fires for that handshake, and is kept
   * while the peer is down, so that status pages still show it; `removePeer` forgets it.
   */
  peerInfo(id: NodeId): PeerInfo | null;
  stats(): TransportStats;
  /**
   * The cluster id drawn when the cluster bootstrapped, once this node knows it: every
   * later handshake presents it, and a peer presenting another one is refused (two
   * clusters never mix). Optional: transports without a handshake leave it out.
   */
  setClusterUid?(clusterUid: string): void;
  /**
   * This node's member incarnation (its data directory's) and the peer address its members
   * know it by ("" if none), presented in every later handshake. Optional, like
   * `setClusterUid`.
   */
  setMemberIdentity?(identity: {
    readonly incarnation: number;
    readonly peerAddress: string;
  }): void;
  /**
   * Decides about a sender that is not a peer: `admit` adds it with `addPeer` and answers
   * admitted, or answers why not (the TCP handshake tells the caller). A node behind on the
   * log may not know a member yet (added, or removed and added back under its id, while it
   * was cut off), and must follow it if it is the master: the caller's member incarnation
   * and peer address let it.
   */
  onUnknownPeer?(admit: (caller: UnknownCaller) => Admission): void;

  /**
   * What `peer`'s connection to this node presented in its handshake (member incarnation,
   * cluster id), or null while it has none open. A node that does not know its cluster id
   * yet takes the word of a member its configuration lists under that incarnation and that
   * is connected now (see BatonNode's admit).
   */
  presentedBy?(peer: NodeId): PresentedMember | null;
}

/** What a sender that is not a peer says about itself (Transport.onUnknownPeer). */
export interface UnknownCaller {
  readonly id: NodeId;
  /** Its member incarnation, as its handshake or, in the simulator, its messages name it. */
  readonly memberIncarnation: number;
  /** The peer address its handshake advertises; null when nothing says (the simulator). */
  readonly peerAddress: string | null;
  /** Whether it presented this node's cluster id (both known, and equal). */
  readonly sameCluster: boolean;
  /** The cluster id it presented, or "" when it has none or nothing says (the simulator). */
  readonly clusterUid: string;
}

/** A node's answer about a sender that is not a peer (Transport.onUnknownPeer). */
export type Admission =
  | { readonly admitted: true }
  | {
      readonly admitted: false;
      /** Said to the caller: why, and what its operator can do, if anything. */
      readonly reason: string;
    };

/** The answer that admits a caller. */
export const ADMITTED: Admission = { admitted: true };

/**
 * Why a node refuses a caller it does not list and knows to be no member: also what a
 * member hears that was removed, or left out of a forced recovery, and came back with its
 * old data directory, so it is told how to return.
 */
export function notAMember(id: NodeId): string {
  return `node ${id} is not a member of this cluster (removed, or left out of a forced recovery): wipe its data directory and bring it back with baton member add and baton start --join`;
}

/** What a peer's newest handshake to this node said of its membership (Transport.presentedBy). */
export interface PresentedMember {
  /** Its member incarnation, 0 while it has none. */
  readonly memberIncarnation: number;
  /** Its cluster id, "" while it has none. */
  readonly clusterUid: string;
}
