/**
 * The production transport: framed TCP between nodes. It owns the listening socket, one
 * OutboundLink per peer (this node sends only on connections it dialled) and the inbound
 * connections peers dialled (this node receives only on those), and it turns their
 * events into the Transport interface.
 *
 * Two connections per pair of nodes keep each one simple: a connection carries data in
 * one direction, so there is no race over which of two simultaneous dials survives, and
 * per-link order is the order of one TCP stream. It must never block the caller, never
 * throw for anything a peer does, and never emit an event or deliver a message after
 * `close` has been called.
 *
 * With `config.tls` every connection is mutual TLS: the listening side asks for a
 * certificate, and a connection whose certificate does not chain to the cluster CA, or
 * does not name the id its hello claims, is refused, logged and counted as a protocol
 * error. `setTls` swaps the material for new connections (a certificate rotation).
 */

import { randomInt } from "node:crypto";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import {
  createServer as createTlsServer,
  type TLSSocket,
  type Server as TlsServer,
} from "node:tls";
import type { Logger } from "pino";
import type { NodeId, WireMessage } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { type Clock, realClock } from "../shared/clock.js";
import { listenError } from "../shared/listen-error.js";
import { type HostPort, parseAddress } from "./address.js";
import { encodeFrame } from "./frame-codec.js";
import { FRAME_TEXT_CHARS_MAX, INCARNATION_MAX, type Incarnation } from "./frame-schema.js";
import { HandlerSet } from "./handler-set.js";
import {
  InboundConnection,
  type InboundContext,
  type PeerCertificateCheck,
} from "./inbound-connection.js";
import { LogThrottle } from "./log-throttle.js";
import { OutboundLink, type OutboundLinkContext } from "./outbound-link.js";
import {
  certificateIdentity,
  describeVerifyError,
  PeerTls,
  type PeerTlsConfig,
} from "./peer-tls.js";
import { isBulk } from "./send-queue.js";
import { assertTcpTransportConfig, type TcpTransportConfig } from "./tcp-transport-config.js";
import {
  ADMITTED,
  type Admission,
  type DropReason,
  type MessageHandler,
  notAMember,
  type PeerAddress,
  type PeerDownHandler,
  type PeerDownReason,
  type PeerInfo,
  type PeerUpHandler,
  type PresentedMember,
  type SendResult,
  type Transport,
  type TransportStats,
  type UnknownCaller,
  type Unsubscribe,
} from "./transport.js";

export {
  defaultTcpTransportConfig,
  type ParseTcpTransportConfigResult,
  parseTcpTransportConfig,
  type TcpTransportConfig,
} from "./tcp-transport-config.js";

export interface TcpTransportOptions {
  /** Receives structured logs: fields `peer`, `remote`, `reason`, `detail`. */
  readonly logger: Logger;
  /**
   * Returns a number in [0, 1) for reconnect jitter; tests may pass a fixed sequence.
   * @default Math.random
   */
  readonly random?: () => number;
  /** Timers and time. @default realClock */
  readonly clock?: Clock;
}

/** `new`: constructed. `running`: listening. `closed`: final, also after a failed start. */
type TransportState = "new" | "running" | "closed";

const QUEUED: SendResult = Object.freeze({ queued: true });

/** Repeats of one warning about one client within this time are logged at debug. */
const REPEATED_WARNING_INTERVAL_MS = 10_000;

export class TcpTransport implements Transport {
  readonly nodeId: NodeId;
  /** Drawn once per transport; tells peers that this is a new process. */
  readonly incarnation: Incarnation;
  /** The cluster id drawn at bootstrap, once the node knows it; "" before. */
  private clusterUid = "";
  /** This node's member incarnation and peer address, once the node set them. */
  private memberIdentity = { incarnation: 0, peerAddress: "" };
  /** The node's decision about a hello from a node that is not a peer (onUnknownPeer). */
  private admitUnknown: ((caller: UnknownCaller) => Admission) | null = null;
  private readonly logger: Logger;
  private readonly random: () => number;
  private state: TransportState = "new";
  private server: Server | null = null;
  private readonly links = new Map<NodeId, OutboundLink>();
  private readonly inbound = new Set<InboundConnection>();
  /** The handshaken inbound connection of each peer; a newer one replaces an older one. */
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  /**
   * What each peer advertised in its latest handshake, in either direction. It outlives
   * connections, so that status pages still show a peer that is down; removePeer forgets it.
   */
  private readonly infoByPeer = new Map<NodeId, PeerInfo>();
  private readonly messageHandlers = new HandlerSet<[WireMessage]>();
  private readonly upHandlers = new HandlerSet<[NodeId]>();
  private readonly downHandlers = new HandlerSet<[NodeId, PeerDownReason]>();
  private droppedMessages = 0;
  /** Fault injection: while true, every message to and from peers is dropped. */
  private partitioned = false;
  private protocolErrors = 0;
  private readonly linkContext: OutboundLinkContext;
  private readonly inboundContext: InboundContext;
  private readonly throttle: LogThrottle;
  private readonly clock: Clock;
  /** The TLS material new connections use, or null for plain TCP. */
  private tls: PeerTls | null;
  /** Raw connections still in their TLS handshake, by remote address and port. */
  private readonly tlsHandshakes = new Map<string, Socket>();

  /**
   * `config` must be valid (see parseTcpTransportConfig); an invalid one is a bug. Throws
   * (OpenSSL's reason) when `config.tls` holds PEM text that is not a usable CA, cert and key.
   */
  constructor(
    private readonly config: TcpTransportConfig,
    options: TcpTransportOptions,
  ) {
    assertTcpTransportConfig(config);
    this.nodeId = config.nodeId;
    this.logger = options.logger.child({ component: "transport", node: config.nodeId });
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? realClock;
    this.throttle = new LogThrottle(REPEATED_WARNING_INTERVAL_MS, () => this.clock.wallMs());
    this.tls = config.tls === null ? null : new PeerTls(config.tls);
    this.incarnation = randomInt(1, INCARNATION_MAX);
    this.linkContext = this.makeLinkContext();
    this.inboundContext = this.makeInboundContext();
    for (const peer of config.peers) this.addPeer(peer);
  }

  /** Listens on `config.listen` and starts dialling every peer. Rejects if it cannot listen. */
  async start(): Promise<void> {
    assert(this.state === "new", "TcpTransport.start called twice");
    const listen = parseAddress(this.config.listen);
    assert(listen.ok, "listen address was validated");
    const server = this.tls === null ? this.plainServer() : this.tlsServer(this.tls);
    this.server = server;
    try {
      await listenOn(server, listen.address);
    } catch (error) {
      this.state = "closed";
      this.server = null;
      throw listenError(error, this.config.listen, {
        flag: "--listen",
        advertise: "--advertise-peer is the address peers dial",
      });
    }
    if (this.closedMeanwhile()) {
      // Closed while it was binding: it never runs, and a listener bound after the close
      // goes now.
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      return;
    }
    server.on("error", (error) => this.logger.error({ reason: error.message }, "server error"));
    this.state = "running";
    this.logger.info({ listen: this.config.listen }, "transport listening");
    for (const link of this.links.values()) link.start();
  }

  /** Whether close() ran while start() was waiting (a method: the state changed behind an await). */
  private closedMeanwhile(): boolean {
    return this.state === "closed";
  }

  /**
   * Replaces the TLS material (a rotated certificate or CA): connections made from now on,
   * in both directions, use it; established ones carry on. Throws, changing nothing, when
   * the PEM text is not usable. Only a transport started with TLS can change it.
   */
  setTls(config: PeerTlsConfig): void {
    assert(this.tls !== null, "setTls on a transport without TLS");
    const next = new PeerTls(config);
    this.tls = next;
    if (this.server !== null) (this.server as TlsServer).setSecureContext(serverTlsOptions(next));
    this.logger.info({ reason: "tls_reload" }, "peer TLS material replaced for new connections");
  }

  /** The address actually listened on (with the real port when configured with port 0). */
  listenAddress(): HostPort {
    const address = this.server?.address();
    assert(typeof address === "object" && address !== null, "listenAddress before start");
    return { host: (address as AddressInfo).address, port: (address as AddressInfo).port };
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    for (const link of this.links.values()) link.close();
    for (const connection of this.inbound) connection.destroy();
    for (const socket of this.tlsHandshakes.values()) socket.destroy();
    this.tlsHandshakes.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  send(message: WireMessage): SendResult {
    assert(message.from === this.nodeId, `node ${this.nodeId} sending as ${message.from}`);
    assert(message.to !== this.nodeId, "a node does not send messages to itself");
    if (this.state !== "running") return this.drop("closed");
    if (this.partitioned) return this.drop("partitioned");
    const link = this.links.get(message.to);
    if (link === undefined) return this.drop("unknown_peer");
    const encoded = encodeFrame(message, this.config);
    if (!encoded.ok) {
      const fields = { peer: message.to, type: message.type, bytes: encoded.payloadBytes };
      this.logger.warn(fields, "dropping a message larger than frameBytesMax");
      link.countDrop();
      return this.drop("too_large");
    }
    // The link counts its own drop when its queue is full.
    return link.enqueue(encoded.bytes, isBulk(message.type)) ? QUEUED : this.drop("queue_full");
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
    if (peer.id === this.nodeId || this.state === "closed") return;
    const parsed = parseAddress(peer.address);
    if (!parsed.ok) {
      // Input, not this node's own state: a committed configuration written by an older
      // version that took any address (the API refuses them now). The node runs on without
      // a link to that member until a configuration gives it a usable address.
      this.logger.error(
        { peer: peer.id, address: peer.address, reason: "bad_address" },
        `cannot dial node ${peer.id}: ${parsed.reason}; replace the member under a usable address`,
      );
      return;
    }
    const existing = this.links.get(peer.id);
    if (existing !== undefined) {
      const { host, port } = existing.address;
      if (host === parsed.address.host && port === parsed.address.port) return;
      // The peer moved: its old link goes, and if it was up the node hears it go down, so
      // that up and down keep alternating when the new link comes up (and the new link
      // does not report down a second time). Only the link to it: a connection it made to
      // this node, and what its hello said, stay until it dials from its new address.
      existing.close("closed");
      this.links.delete(peer.id);
    }
    const link = new OutboundLink(
      peer.id,
      parsed.address,
      this.linkContext,
      existing !== undefined && existing.reportedDown,
    );
    this.links.set(peer.id, link);
    if (this.state === "running") link.start();
  }

  closePeerConnection(peer: NodeId, reason: string): void {
    this.protocolErrors++;
    this.logger[this.throttle.level(`rule:${peer}`)](
      { peer, reason: "protocol_rule", detail: reason },
      `closing the connection from node ${peer}: its message broke a protocol rule (${reason})`,
    );
    this.inboundByPeer.get(peer)?.destroy();
    this.inboundByPeer.delete(peer);
  }

  removePeer(id: NodeId): void {
    this.links.get(id)?.close();
    this.links.delete(id);
    this.inboundByPeer.get(id)?.destroy();
    this.inboundByPeer.delete(id);
    this.infoByPeer.delete(id);
  }

  /**
   * Fault injection, for demos: while `on`, every message to and from peers is dropped and
   * counted, as a network partition that silently loses packets would. Connections stay
   * up, so peers notice only by the missing heartbeats and answers, as they would on a
   * real network.
   */
  setPartitioned(on: boolean): void {
    if (this.partitioned === on) return;
    this.partitioned = on;
    this.logger.warn(
      { reason: "fault_injection" },
      on ? "partitioned: dropping all peer traffic" : "partition healed",
    );
  }

  setClusterUid(clusterUid: string): void {
    assert(clusterUid.length > 0 && clusterUid.length <= FRAME_TEXT_CHARS_MAX, "bad cluster id");
    this.clusterUid = clusterUid;
  }

  setMemberIdentity(identity: {
    readonly incarnation: number;
    readonly peerAddress: string;
  }): void {
    const { incarnation, peerAddress } = identity;
    assert(Number.isSafeInteger(incarnation) && incarnation >= 0, "bad member incarnation");
    assert(peerAddress.length <= FRAME_TEXT_CHARS_MAX, "peer address too long for a hello");
    this.memberIdentity = { incarnation, peerAddress };
  }

  onUnknownPeer(admit: (caller: UnknownCaller) => Admission): void {
    this.admitUnknown = admit;
  }

  peerInfo(id: NodeId): PeerInfo | null {
    return this.infoByPeer.get(id) ?? null;
  }

  presentedBy(peer: NodeId): PresentedMember | null {
    return this.inboundByPeer.get(peer)?.member ?? null;
  }

  stats(): TransportStats {
    return {
      nodeId: this.nodeId,
      peers: [...this.links.values()].map((link) => ({
        ...link.stats(),
        info: this.peerInfo(link.peer),
      })),
      droppedMessages: this.droppedMessages,
      protocolErrors: this.protocolErrors,
    };
  }

  private drop(reason: DropReason): SendResult {
    this.droppedMessages++;
    return { queued: false, reason };
  }

  private plainServer(): Server {
    return createServer((socket) => {
      if (this.admit(socket)) this.inbound.add(new InboundConnection(socket, this.inboundContext));
    });
  }

  /**
   * A TLS server that asks every client for a certificate but decides about it itself, so
   * that a refused peer is told why in a hello_error and the refusal is logged and counted.
   */
  private tlsServer(tls: PeerTls): Server {
    const server = createTlsServer({
      ...serverTlsOptions(tls),
      handshakeTimeout: this.config.handshakeTimeoutMs,
    });
    server.on("connection", (socket: Socket) => {
      if (!this.admit(socket)) return;
      const key = `${socket.remoteAddress}:${socket.remotePort}`;
      this.tlsHandshakes.set(key, socket);
      socket.once("close", () => {
        if (this.tlsHandshakes.get(key) === socket) this.tlsHandshakes.delete(key);
      });
    });
    server.on("secureConnection", (socket: TLSSocket) => {
      this.tlsHandshakes.delete(`${socket.remoteAddress}:${socket.remotePort}`);
      if (this.state !== "running") {
        socket.destroy();
        return;
      }
      const check = certificateCheck(socket);
      this.inbound.add(new InboundConnection(socket, this.inboundContext, check));
    });
    server.on("tlsClientError", (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      this.protocolErrors++;
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      const detail = `${error.code ?? "tls"}: ${error.message}`;
      const level = this.throttle.level(`tls ${socket.remoteAddress}`);
      this.logger[level](
        { remote, reason: "tls_handshake", detail },
        "refusing connection: the TLS handshake failed (a peer without TLS, or not a Baton node?)",
      );
    });
    return server;
  }

  /** Whether a new connection may go on; closes it when the node is closed or swamped. */
  private admit(socket: Socket): boolean {
    if (this.state !== "running") {
      socket.destroy();
      return false;
    }
    let pending = this.tlsHandshakes.size;
    for (const connection of this.inbound) if (connection.peer === null) pending++;
    if (pending >= this.config.pendingConnectionsMax) {
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      const level = this.throttle.level("too_many_pending");
      this.logger[level]({ remote, reason: "too_many_pending" }, "refusing connection");
      socket.destroy();
      return false;
    }
    return true;
  }

  private makeLinkContext(): OutboundLinkContext {
    return {
      config: this.config,
      logger: this.logger,
      clock: this.clock,
      incarnation: this.incarnation,
      clusterUid: () => this.clusterUid,
      memberIncarnation: () => this.memberIdentity.incarnation,
      peerAddress: () => this.memberIdentity.peerAddress,
      random: this.random,
      onPeerInfo: (peer, info) => this.learnPeerInfo(peer, info),
      onUp: (peer) => {
        if (this.state === "running") this.upHandlers.emit(peer);
      },
      onDown: (peer, reason) => {
        if (this.state === "running") this.downHandlers.emit(peer, reason);
      },
      onProtocolError: () => {
        this.protocolErrors++;
      },
      tls: () => this.tls,
    };
  }

  private makeInboundContext(): InboundContext {
    return {
      config: this.config,
      logger: this.logger,
      clock: this.clock,
      incarnation: this.incarnation,
      clusterUid: () => this.clusterUid,
      admits: (hello) => {
        if (this.links.has(hello.fromId)) return ADMITTED;
        const own = this.clusterUid;
        return (
          this.admitUnknown?.({
            id: hello.fromId,
            memberIncarnation: hello.memberIncarnation,
            peerAddress: hello.peerAddress === "" ? null : hello.peerAddress,
            sameCluster: own !== "" && hello.clusterUid === own,
            clusterUid: hello.clusterUid,
          }) ?? { admitted: false, reason: notAMember(hello.fromId) }
        );
      },
      warningLevel: (key) => this.throttle.level(key),
      onHandshake: (connection) => this.onInboundHandshake(connection),
      onMessage: (connection, message) => {
        if (this.state !== "running" || this.inboundByPeer.get(message.from) !== connection) return;
        if (this.partitioned) {
          this.droppedMessages++;
          return;
        }
        const link = this.links.get(message.from);
        if (link !== undefined) link.receivedMessages++;
        this.messageHandlers.emit(message);
      },
      onClosed: (connection) => {
        this.inbound.delete(connection);
        const peer = connection.peer;
        if (peer !== null && this.inboundByPeer.get(peer) === connection) {
          this.inboundByPeer.delete(peer);
        }
      },
      onProtocolError: () => {
        this.protocolErrors++;
      },
    };
  }

  private onInboundHandshake(connection: InboundConnection): void {
    const peer = connection.peer;
    assert(peer !== null, "handshake without a peer");
    const previous = this.inboundByPeer.get(peer);
    // A peer that dials again has restarted or lost its old connection; the newest wins,
    // so that a half-open old connection cannot shadow the live one.
    if (previous !== undefined && previous !== connection) {
      this.logger.info({ peer, reason: "replaced" }, "closing an older connection from peer");
      previous.destroy();
    }
    this.inboundByPeer.set(peer, connection);
    assert(connection.info !== null, "handshake without peer info");
    this.learnPeerInfo(peer, connection.info);
    assert(connection.incarnation !== null, "handshake without an incarnation");
    this.links.get(peer)?.onPeerDialled(connection.incarnation);
  }

  /** Records what a handshake just told about `peer`; the newest handshake wins. */
  private learnPeerInfo(peer: NodeId, info: PeerInfo): void {
    // A peer removed while its handshake was in flight stays forgotten.
    if (this.links.has(peer)) this.infoByPeer.set(peer, info);
  }
}

/** What the listening side of mutual TLS needs: its material, and to ask for a client's. */
function serverTlsOptions(tls: PeerTls) {
  const { ca, cert, key } = tls.config;
  return {
    ca,
    cert,
    key,
    minVersion: "TLSv1.3" as const,
    requestCert: true,
    // Checked in certificateCheck, so that the refusal can be explained, logged and counted.
    rejectUnauthorized: false,
  };
}

/** What the TLS handshake proved about a client: its certificate's identity, or why not. */
function certificateCheck(socket: TLSSocket): PeerCertificateCheck {
  if (!socket.authorized) {
    const presented = Object.keys(socket.getPeerCertificate()).length > 0;
    const reason = presented ? describeVerifyError(String(socket.authorizationError)) : null;
    return { ok: false, reason: reason ?? describeVerifyError(null) };
  }
  return { ok: true, identity: certificateIdentity(socket.getPeerCertificate()) };
}

/** Resolves once `server` listens, or once it is closed before it got there. */
function listenOn(server: Server, address: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      server.off("error", reject);
      server.off("close", settle);
      resolve();
    };
    server.once("error", reject);
    // A close before the listener is bound cancels the listen, which then never calls back.
    server.once("close", settle);
    server.listen({ host: address.host, port: address.port }, settle);
  });
}
