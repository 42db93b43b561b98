/**
 * An in-process transport for tests of the node runtime: a MemoryNetwork connects any
 * number of MemoryTransports by node id, with links that tests can cut and heal. It owns
 * only that simulation; it is not the deterministic simulator's network (src/sim/), which
 * drives the pure core directly.
 *
 * It behaves like the TCP transport where the runtime can tell: every message is encoded
 * and decoded with the real frame codec (so aliasing bugs and unencodable messages show
 * up here too), queues have the same bounds, delivery and events happen later (never
 * inside `send` or `start`), a peer is reachable only if both nodes are running and list
 * each other, and messages queued for an unreachable peer wait, bounded, until it is back
 * (those queued while it was up and not yet delivered are dropped when it goes down, as a
 * TCP link drops what it had queued on a connection that failed).
 * A peer's advertised PeerInfo passes the frame schema's check, as a handshake would, and
 * is learned whenever the peer is found reachable, before its peer-up event. A sender this
 * node does not list is put to the node (onUnknownPeer) with the member incarnation and
 * cluster id it set, as a hello would carry them; refused, it is unreachable.
 */

import type { NodeId, WireMessage } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { realClock, type Timer } from "../shared/clock.js";
import {
  decodePayload,
  defaultFrameCodecLimits,
  encodeFrame,
  FRAME_HEADER_BYTES,
  type FrameCodecLimits,
} from "./frame-codec.js";
import { checkPeerInfo, isMessage } from "./frame-schema.js";
import { HandlerSet } from "./handler-set.js";
import { isBulk, SendQueue, type SendQueueLimits } from "./send-queue.js";
import type {
  Admission,
  DropReason,
  MessageHandler,
  PeerAddress,
  PeerDownHandler,
  PeerDownReason,
  PeerInfo,
  PeerStats,
  PeerUpHandler,
  PresentedMember,
  SendResult,
  Transport,
  TransportStats,
  UnknownCaller,
  Unsubscribe,
} from "./transport.js";

export interface MemoryTransportConfig extends FrameCodecLimits, SendQueueLimits {
  /**
   * What this node tells its peers about itself, with the same rules as the TCP
   * transport's `advertise` (checked by the frame schema; an invalid one is a bug).
   * @default { httpUrl: null }
   */
  readonly advertise: PeerInfo;
}

/** The same bounds as the TCP transport's defaults. */
export function defaultMemoryTransportConfig(): MemoryTransportConfig {
  return {
    ...defaultFrameCodecLimits(),
    queueMessagesMax: 4096,
    queueBytesMax: 64 * 1024 * 1024,
    advertise: { httpUrl: null },
  };
}

export interface MemoryNetworkOptions {
  /**
   * Runs a task later; all deliveries and events go through it. Tests with fake timers
   * can keep the default (it is faked) or pass their own queue.
   * @default setImmediate
   */
  readonly schedule?: (task: () => void) => void;
}

/** Connects the MemoryTransports created from it. */
export class MemoryNetwork {
  private readonly nodes = new Map<NodeId, MemoryTransport>();
  private readonly cuts = new Set<string>();
  private readonly refreshing = new Set<MemoryTransport>();
  readonly schedule: (task: () => void) => void;

  constructor(options: MemoryNetworkOptions = {}) {
    this.schedule = options.schedule ?? ((task) => realClock.setImmediate(task));
  }

  /** A transport for node `id` that can reach `peers`; start it to join the network. */
  createTransport(
    id: NodeId,
    peers: readonly NodeId[],
    config: Partial<MemoryTransportConfig> = {},
  ): MemoryTransport {
    const merged = { ...defaultMemoryTransportConfig(), ...config };
    return new MemoryTransport(this, id, peers, merged);
  }

  /** Cuts the link between `a` and `b` in both directions until `heal(a, b)`. */
  partition(a: NodeId, b: NodeId): void {
    this.cuts.add(linkKey(a, b));
    this.refreshAll();
  }

  heal(a: NodeId, b: NodeId): void {
    this.cuts.delete(linkKey(a, b));
    this.refreshAll();
  }

  /** True when a message from `from` can reach `to` now. */
  reachable(from: NodeId, to: NodeId): boolean {
    const target = this.nodes.get(to);
    return (target?.accepts(from) ?? false) && !this.cuts.has(linkKey(from, to));
  }

  /** Why `to` is unreachable from `from`, assuming it is. */
  downReason(from: NodeId, to: NodeId): PeerDownReason {
    if (this.cuts.has(linkKey(from, to))) return "partitioned";
    return this.nodes.has(to) ? "handshake_refused" : "refused";
  }

  /** Called by a transport when it starts. A running node id can be registered once. */
  register(transport: MemoryTransport): void {
    assert(!this.nodes.has(transport.nodeId), `node ${transport.nodeId} is already running`);
    this.nodes.set(transport.nodeId, transport);
    this.refreshAll();
  }

  unregister(transport: MemoryTransport): void {
    if (this.nodes.get(transport.nodeId) === transport) this.nodes.delete(transport.nodeId);
    this.refreshing.delete(transport);
    this.refreshAll();
  }

  /** What running node `id` advertises, or null when it is not running. */
  advertisedBy(id: NodeId): PeerInfo | null {
    return this.nodes.get(id)?.advertise ?? null;
  }

  /** Running node `id`, as a dialled node would see it in its hello; null if not running. */
  transportOf(id: NodeId): MemoryTransport | null {
    return this.nodes.get(id) ?? null;
  }

  deliverTo(to: NodeId, message: WireMessage): void {
    this.nodes.get(to)?.receive(message);
  }

  /** Schedules one refresh per running transport, however many changes happen first. */
  private refreshAll(): void {
    for (const transport of this.nodes.values()) this.requestRefresh(transport);
  }

  requestRefresh(transport: MemoryTransport): void {
    if (this.refreshing.has(transport)) return;
    this.refreshing.add(transport);
    this.schedule(() => {
      this.refreshing.delete(transport);
      transport.refresh();
    });
  }
}

function linkKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

/** One direction of one pair: this node's queue and counters for a peer. */
interface MemoryLink {
  readonly queue: SendQueue;
  reported: "up" | "down" | null;
  sentMessages: number;
  receivedMessages: number;
  droppedMessages: number;
  lastDownReason: PeerDownReason | null;
  /** What the peer advertised when last found reachable; kept while it is down. */
  info: PeerInfo | null;
}

type MemoryState = "new" | "running" | "closed";

/** How long a node refused by a running peer waits before it tries again. */
const REDIAL_MS = 20;

export class MemoryTransport implements Transport {
  /** A frozen copy of `config.advertise`, so that the caller cannot change it later. */
  readonly advertise: PeerInfo;
  private state: MemoryState = "new";
  private readonly links = new Map<NodeId, MemoryLink>();
  private readonly messageHandlers = new HandlerSet<[WireMessage]>();
  private readonly upHandlers = new HandlerSet<[NodeId]>();
  private readonly downHandlers = new HandlerSet<[NodeId, PeerDownReason]>();
  private droppedMessages = 0;
  private protocolErrors = 0;
  /** The cluster id this node presents ("" until set) and its member identity. */
  private clusterUid = "";
  private memberIdentity: { readonly incarnation: number; readonly peerAddress: string } = {
    incarnation: 0,
    peerAddress: "",
  };
  /** The node's decision about a sender that is not a peer (onUnknownPeer). */
  private admitUnknown: ((caller: UnknownCaller) => Admission) | null = null;
  /** The pending retry of peers that refused this node, if any. */
  private redial: Timer | null = null;

  constructor(
    private readonly network: MemoryNetwork,
    readonly nodeId: NodeId,
    peers: readonly NodeId[],
    private readonly config: MemoryTransportConfig,
  ) {
    const problem = checkPeerInfo(config.advertise);
    assert(problem === null, `invalid advertise for node ${nodeId}: ${problem}`);
    this.advertise = Object.freeze({ httpUrl: config.advertise.httpUrl });
    for (const peer of peers) this.addPeer({ id: peer, address: "memory" });
  }

  async start(): Promise<void> {
    assert(this.state === "new", "MemoryTransport.start called twice");
    this.state = "running";
    this.network.register(this);
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    const wasRunning = this.state === "running";
    this.state = "closed";
    realClock.clearTimeout(this.redial);
    this.redial = null;
    for (const link of this.links.values()) link.queue.clear();
    if (wasRunning) this.network.unregister(this);
  }

  send(message: WireMessage): SendResult {
    assert(message.from === this.nodeId, `node ${this.nodeId} sending as ${message.from}`);
    assert(message.to !== this.nodeId, "a node does not send messages to itself");
    if (this.state !== "running") return this.drop(null, "closed");
    const link = this.links.get(message.to);
    if (link === undefined) return this.drop(null, "unknown_peer");
    const encoded = encodeFrame(message, this.config);
    if (!encoded.ok) return this.drop(link, "too_large");
    if (!link.queue.offer(encoded.bytes, isBulk(message.type)))
      return this.drop(link, "queue_full");
    this.network.requestRefresh(this);
    return { queued: true };
  }

  onMessage(handler: MessageHandler): Unsubscribe {
    return this.messageHandlers.add(handler);
  }

  onPeerUp(handler: PeerUpHandler): Unsubscribe {
    return this.upHandlers.add(handler);
  }

  onPeerDown(handler: PeerDownHandler): Unsubscribe {
    return this.downHandlers.add(handler);
  }

  addPeer(peer: PeerAddress): void {
    if (peer.id === this.nodeId || this.links.has(peer.id)) return;
    this.links.set(peer.id, {
      queue: new SendQueue(this.config),
      reported: null,
      sentMessages: 0,
      receivedMessages: 0,
      droppedMessages: 0,
      lastDownReason: null,
      info: null,
    });
    if (this.state === "running") this.network.requestRefresh(this);
  }

  /** Counts the error; the in-memory network has no connection to close. */
  closePeerConnection(_peer: NodeId, _reason: string): void {
    this.protocolErrors++;
  }

  removePeer(id: NodeId): void {
    this.links.delete(id);
    if (this.state === "running") this.network.requestRefresh(this);
  }

  peerInfo(id: NodeId): PeerInfo | null {
    return this.links.get(id)?.info ?? null;
  }

  setClusterUid(clusterUid: string): void {
    assert(clusterUid.length > 0, "bad cluster id");
    this.clusterUid = clusterUid;
  }

  setMemberIdentity(identity: {
    readonly incarnation: number;
    readonly peerAddress: string;
  }): void {
    this.memberIdentity = { incarnation: identity.incarnation, peerAddress: identity.peerAddress };
  }

  onUnknownPeer(admit: (caller: UnknownCaller) => Admission): void {
    this.admitUnknown = admit;
  }

  stats(): TransportStats {
    const peers: PeerStats[] = [...this.links].map(([peer, link]) => ({
      peer,
      connected: this.state === "running" && link.reported === "up",
      queuedMessages: link.queue.count,
      queuedBytes: link.queue.bytes,
      sentMessages: link.sentMessages,
      receivedMessages: link.receivedMessages,
      droppedMessages: link.droppedMessages,
      reconnectAttempts: 0,
      lastDownReason: link.lastDownReason,
      info: link.info,
    }));
    return {
      nodeId: this.nodeId,
      peers,
      droppedMessages: this.droppedMessages,
      protocolErrors: this.protocolErrors,
    };
  }

  /**
   * Whether this node takes messages from `from` now: it runs and lists `from`, or the node
   * admits `from` (which adds it) on what its hello would say.
   */
  accepts(from: NodeId): boolean {
    if (this.state !== "running") return false;
    if (this.links.has(from)) return true;
    const hello = this.network.transportOf(from)?.hello();
    if (hello === undefined || this.admitUnknown === null) return false;
    const admitted = this.admitUnknown({
      id: from,
      memberIncarnation: hello.incarnation,
      peerAddress: hello.peerAddress === "" ? null : hello.peerAddress,
      sameCluster: this.clusterUid !== "" && hello.clusterUid === this.clusterUid,
      clusterUid: hello.clusterUid,
    });
    return admitted.admitted && this.links.has(from);
  }

  /** What a running peer's hello would say (the memory network has no handshakes). */
  presentedBy(peer: NodeId): PresentedMember | null {
    if (this.state !== "running" || !this.links.has(peer)) return null;
    const hello = this.network.transportOf(peer)?.hello();
    return hello === undefined
      ? null
      : { memberIncarnation: hello.incarnation, clusterUid: hello.clusterUid };
  }

  /** What this node's hello would say of it: its cluster id and member identity. */
  hello(): { clusterUid: string; incarnation: number; peerAddress: string } {
    return { clusterUid: this.clusterUid, ...this.memberIdentity };
  }

  /** Re-evaluates every link: reports transitions and delivers what can be delivered. */
  refresh(): void {
    let refused = false;
    for (const [peer, link] of this.links) {
      if (this.state !== "running") return;
      if (this.network.reachable(this.nodeId, peer)) {
        // Learned on every refresh, not only on the up transition: a peer that restarts
        // between two refreshes never looks down, yet it may advertise something new.
        link.info = this.network.advertisedBy(peer);
        this.report(peer, link, "up", null);
        this.flush(peer, link);
      } else {
        const reason = this.network.downReason(this.nodeId, peer);
        refused ||= reason === "handshake_refused";
        this.report(peer, link, "down", reason);
      }
    }
    // A running peer that does not take this node yet may admit it later (onUnknownPeer):
    // dial again after a while, as the TCP transport's back-off does.
    if (refused && this.redial === null) {
      this.redial = realClock.setTimeout(() => {
        this.redial = null;
        if (this.state === "running") this.network.requestRefresh(this);
      }, REDIAL_MS);
    }
  }

  /** Hands a message that crossed the network to this node's handlers. */
  receive(message: WireMessage): void {
    const link = this.links.get(message.from);
    if (this.state !== "running" || link === undefined) return;
    link.receivedMessages++;
    this.messageHandlers.emit(message);
  }

  private flush(peer: NodeId, link: MemoryLink): void {
    // Each delivery may run handlers that close nodes or cut links, so reachability is
    // checked again before every message.
    while (this.state === "running" && this.network.reachable(this.nodeId, peer)) {
      const frame = link.queue.shift();
      if (frame === undefined) return;
      const decoded = decodePayload(frame.subarray(FRAME_HEADER_BYTES));
      assert(decoded.ok && isMessage(decoded.frame), "the frame codec broke a message");
      link.sentMessages++;
      this.network.deliverTo(peer, decoded.frame);
    }
  }

  private report(
    peer: NodeId,
    link: MemoryLink,
    kind: "up" | "down",
    reason: PeerDownReason | null,
  ): void {
    if (link.reported === kind) return;
    const wasUp = link.reported === "up";
    link.reported = kind;
    if (kind === "up") {
      this.upHandlers.emit(peer);
      return;
    }
    assert(reason !== null, "a down transition needs a reason");
    link.lastDownReason = reason;
    // As a TCP link drops what it had queued on the connection that failed (what waits
    // before the peer was ever up was sent knowing it was down, and is kept).
    if (wasUp) {
      const discarded = link.queue.clear();
      link.droppedMessages += discarded;
      this.droppedMessages += discarded;
    }
    this.downHandlers.emit(peer, reason);
  }

  private drop(link: MemoryLink | null, reason: DropReason): SendResult {
    if (link !== null) link.droppedMessages++;
    this.droppedMessages++;
    return { queued: false, reason };
  }
}
