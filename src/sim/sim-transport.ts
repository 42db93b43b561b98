/**
 * The simulated network under the production runtime: a `Transport` per node process,
 * carrying real wire frames (the frame codec's encoding, decoded and schema-checked on
 * arrival, so no object is ever shared between nodes) with a seeded delay and loss, over
 * links that the nemesis cuts one direction at a time. It keeps the Transport contract:
 * best effort, never reordered on one link (a seed may duplicate a message, which TCP
 * never does, delivering the copy later), peer-up and peer-down events
 * on transitions only, and a process that dies (its transport is `kill`ed) goes silent
 * at once; its peers learn it as "refused", as a TCP peer would.
 *
 * Delivery runs on the network's own clock, which a crash never stops; the receiving
 * process must be the very incarnation the message was sent to, or it is dropped.
 */

import type { Prng } from "../core/prng.js";
import type { NodeId, WireMessage } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import type { Clock } from "../shared/clock.js";
import {
  decodePayload,
  defaultFrameCodecLimits,
  encodeFrame,
  FRAME_HEADER_BYTES,
} from "../transport/frame-codec.js";
import { isMessage } from "../transport/frame-schema.js";
import type {
  Admission,
  MessageHandler,
  PeerAddress,
  PeerDownHandler,
  PeerDownReason,
  PeerInfo,
  PeerUpHandler,
  SendResult,
  Transport,
  TransportStats,
  UnknownCaller,
  Unsubscribe,
} from "../transport/transport.js";

/** Delay and loss of every link. */
export interface SimNetFaults {
  /** One-way delay of a message, drawn in [min, max] virtual ms. */
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  /** Chance that a message is lost. */
  readonly lossChance: number;
  /**
   * Chance that a message is delivered twice, the copy up to 50 ms later and so possibly
   * after newer ones (TCP never does this; a protocol must survive it all the same).
   * @default 0
   */
  readonly duplicateChance?: number;
}

const FRAME_LIMITS = defaultFrameCodecLimits();

export class SimNet {
  private readonly running = new Map<NodeId, SimTransport>();
  /** Cut directions, "from>to". */
  private readonly cuts = new Set<string>();
  /** When the last message on each direction arrives, so that none overtakes another. */
  private readonly lastArrival = new Map<string, number>();
  sent = 0;
  dropped = 0;
  duplicated = 0;

  constructor(
    readonly clock: Clock,
    private readonly prng: Prng,
    public faults: SimNetFaults,
  ) {}

  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
    this.refreshAll();
  }

  heal(from: NodeId, to: NodeId): void {
    this.cuts.delete(`${from}>${to}`);
    this.refreshAll();
  }

  healAll(): void {
    this.cuts.clear();
    this.refreshAll();
  }

  isCut(from: NodeId, to: NodeId): boolean {
    // Asked for every message sent and delivered: no key is built while nothing is cut.
    return this.cuts.size > 0 && this.cuts.has(`${from}>${to}`);
  }

  /** Why `from` cannot send to `to`, or null when it can. */
  downReason(from: NodeId, to: NodeId): PeerDownReason | null {
    if (!this.running.has(to)) return "refused";
    if (this.isCut(from, to) || this.isCut(to, from)) return "partitioned";
    return null;
  }

  register(transport: SimTransport): void {
    assert(!this.running.has(transport.nodeId), `node ${transport.nodeId} runs twice`);
    this.running.set(transport.nodeId, transport);
    this.refreshAll();
  }

  unregister(transport: SimTransport): void {
    if (this.running.get(transport.nodeId) === transport) this.running.delete(transport.nodeId);
    this.refreshAll();
  }

  /** Sends one encoded frame from `from` to `to`: it arrives later, or is lost. */
  carry(from: NodeId, to: NodeId, frame: Uint8Array): void {
    const target = this.running.get(to);
    this.sent++;
    if (target === undefined || this.prng.chance(this.faults.lossChance)) {
      this.dropped++;
      return;
    }
    const link = `${from}>${to}`;
    const { delayMsMin, delayMsMax } = this.faults;
    const delay = delayMsMin + this.prng.next() * (delayMsMax - delayMsMin);
    const now = this.clock.monotonicMs();
    const at = Math.max(now + delay, this.lastArrival.get(link) ?? 0);
    this.lastArrival.set(link, at);
    this.deliver(from, to, target, frame, at - now);
    const duplicate = this.faults.duplicateChance ?? 0;
    if (duplicate > 0 && this.prng.chance(duplicate)) {
      this.duplicated++;
      this.deliver(from, to, target, frame, at - now + this.prng.next() * 50);
    }
  }

  private deliver(from: NodeId, to: NodeId, target: SimTransport, frame: Uint8Array, ms: number) {
    this.clock.setTimeout(() => {
      // Cut while in flight, or the receiver died meanwhile: lost with the connection.
      if (this.isCut(from, to) || this.running.get(to) !== target) {
        this.dropped++;
        return;
      }
      target.receive(frame);
    }, ms);
  }

  private refreshAll(): void {
    // Connections notice changes a moment later, never inside the call that made them.
    this.clock.setTimeout(() => {
      for (const transport of [...this.running.values()]) transport.refresh();
    }, 0);
  }
}

type State = "new" | "running" | "closed";

export class SimTransport implements Transport {
  private state: State = "new";
  private readonly peers = new Set<NodeId>();
  /** The node's decision about a sender that is not a peer (Transport.onUnknownPeer). */
  private admitUnknown: ((caller: UnknownCaller) => Admission) | null = null;
  private readonly reported = new Map<NodeId, "up" | "down">();
  private readonly messageHandlers = new Set<MessageHandler>();
  private readonly upHandlers = new Set<PeerUpHandler>();
  private readonly downHandlers = new Set<PeerDownHandler>();
  private droppedMessages = 0;
  private protocolErrors = 0;
  /** The process is stopped: frames wait in `held`, and connection changes are seen later. */
  private paused = false;
  private held: Uint8Array[] = [];

  constructor(
    private readonly net: SimNet,
    readonly nodeId: NodeId,
    peers: readonly NodeId[],
  ) {
    for (const peer of peers) if (peer !== nodeId) this.peers.add(peer);
  }

  async start(): Promise<void> {
    assert(this.state === "new", "SimTransport.start called twice");
    this.state = "running";
    this.net.register(this);
  }

  async close(): Promise<void> {
    this.kill();
  }

  /** The process stops (SIGSTOP): what arrives meanwhile waits for it. */
  pause(): void {
    this.paused = true;
  }

  /** The process runs again: it reads what arrived, in order, and sees its connections. */
  resume(): void {
    this.paused = false;
    for (const frame of this.held.splice(0)) this.receive(frame);
    this.refresh();
  }

  /** The process died or stopped: nothing more is sent, received or reported. */
  kill(): void {
    if (this.state === "closed") return;
    const wasRunning = this.state === "running";
    this.state = "closed";
    if (wasRunning) this.net.unregister(this);
  }

  /** Sees every message the node hands over (checkers; it changes nothing). */
  onSend: ((message: WireMessage) => void) | null = null;

  send(message: WireMessage): SendResult {
    assert(message.from === this.nodeId, `node ${this.nodeId} sending as ${message.from}`);
    this.onSend?.(message);
    assert(message.to !== this.nodeId, "a node does not send messages to itself");
    if (this.state !== "running") return this.drop("closed");
    if (!this.peers.has(message.to)) return this.drop("unknown_peer");
    if (this.net.downReason(this.nodeId, message.to) !== null) return this.drop("partitioned");
    const encoded = encodeFrame(message, FRAME_LIMITS);
    if (!encoded.ok) return this.drop("too_large");
    this.net.carry(this.nodeId, message.to, encoded.bytes);
    return { queued: true };
  }

  receive(frame: Uint8Array): void {
    if (this.state !== "running") return;
    if (this.paused) {
      // The kernel keeps receiving for a stopped process; it reads the bytes on resuming.
      this.held.push(frame);
      return;
    }
    const decoded = decodePayload(frame.subarray(FRAME_HEADER_BYTES));
    assert(decoded.ok && isMessage(decoded.frame), "the frame codec broke a message");
    const message = decoded.frame;
    if (message.to !== this.nodeId || !(this.peers.has(message.from) || this.admits(message))) {
      this.protocolErrors++;
      return;
    }
    for (const handler of [...this.messageHandlers]) handler(message);
  }

  refresh(): void {
    if (this.state !== "running" || this.paused) return;
    for (const peer of this.peers) {
      const reason = this.net.downReason(this.nodeId, peer);
      const now = reason === null ? "up" : "down";
      const before = this.reported.get(peer);
      if (before === now || (before === undefined && now === "down" && reason === "partitioned"))
        continue;
      this.reported.set(peer, now);
      if (now === "up") for (const h of [...this.upHandlers]) h(peer);
      else for (const h of [...this.downHandlers]) h(peer, reason!);
      if (this.state !== "running") return;
    }
  }

  onMessage(handler: MessageHandler): Unsubscribe {
    this.messageHandlers.add(handler);
    return () => this.messageHandlers.delete(handler);
  }

  onPeerUp(handler: PeerUpHandler): Unsubscribe {
    this.upHandlers.add(handler);
    return () => this.upHandlers.delete(handler);
  }

  onPeerDown(handler: PeerDownHandler): Unsubscribe {
    this.downHandlers.add(handler);
    return () => this.downHandlers.delete(handler);
  }

  onUnknownPeer(admit: (caller: UnknownCaller) => Admission): void {
    this.admitUnknown = admit;
  }

  /**
   * Whether the node admits the sender of `message`, not a peer, again: what the TCP
   * transport asks at the handshake, on the member incarnation every core message names.
   */
  private admits(message: WireMessage): boolean {
    const incarnation = (message as { incarnation?: unknown }).incarnation;
    if (typeof incarnation !== "number" || this.admitUnknown === null) return false;
    // The simulated network has no handshake: nothing names a peer address or cluster.
    return this.admitUnknown({
      id: message.from,
      memberIncarnation: incarnation,
      peerAddress: null,
      sameCluster: false,
      clusterUid: "",
    }).admitted;
  }

  addPeer(peer: PeerAddress): void {
    if (peer.id !== this.nodeId) this.peers.add(peer.id);
  }

  removePeer(id: NodeId): void {
    this.peers.delete(id);
    this.reported.delete(id);
  }

  closePeerConnection(_peer: NodeId, _reason: string): void {
    this.protocolErrors++;
  }

  peerInfo(_id: NodeId): PeerInfo | null {
    return null;
  }

  stats(): TransportStats {
    return {
      nodeId: this.nodeId,
      peers: [...this.peers].map((peer) => ({
        peer,
        connected: this.state === "running" && this.reported.get(peer) === "up",
        queuedMessages: 0,
        queuedBytes: 0,
        sentMessages: 0,
        receivedMessages: 0,
        droppedMessages: 0,
        reconnectAttempts: 0,
        lastDownReason: null,
        info: null,
      })),
      droppedMessages: this.droppedMessages,
      protocolErrors: this.protocolErrors,
    };
  }

  private drop(reason: Exclude<SendResult, { queued: true }>["reason"]): SendResult {
    this.droppedMessages++;
    return { queued: false, reason };
  }
}
