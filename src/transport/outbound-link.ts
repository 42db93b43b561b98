/**
 * The sending half of the TCP transport for one peer: a single outbound connection, its
 * handshake as the dialling side, the bounded queue of frames waiting for it, and
 * reconnecting with back-off when it fails. It reports up/down transitions and never
 * delivers messages: the peer sends to this node on its own outbound connection, which
 * arrives here as an inbound one.
 *
 * Frames are written only while the socket accepts them (`write` returns true) and then
 * again after 'drain', so a slow peer fills this link's bounded queue, not the heap.
 * Frames already handed to a socket that fails are lost; Raft retransmits what matters.
 *
 * Over mutual TLS a connection counts only if the acceptor's certificate chains to the
 * cluster CA and names the member this link dials; anything else is a logged, counted
 * protocol error, and the link keeps redialling with back-off.
 *
 * Once ready the link pings the acceptor every `pingIntervalMs`; a connection on which
 * no pong came for `peerSilenceMsMax` is lost (see silence-watch.ts), however long TCP
 * would keep it open.
 */

import { connect, isIP, type Socket } from "node:net";
import { type PeerCertificate, connect as tlsConnect } from "node:tls";
import type { Logger } from "pino";
import type { NodeId } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";
import { formatAddress, type HostPort, parseAddress } from "./address.js";
import { reconnectDelayMs } from "./backoff.js";
import { encodeFrame, FrameDecoder } from "./frame-codec.js";
import {
  type Frame,
  HANDSHAKE_FRAME_BYTES_MAX,
  type Incarnation,
  PROTOCOL_MAGIC,
  PROTOCOL_VERSION,
  type ProtocolError,
} from "./frame-schema.js";
import { differentClusters } from "./inbound-connection.js";
import {
  certificateIdentity,
  describeVerifyError,
  identityProblem,
  type PeerTls,
} from "./peer-tls.js";
import { SendQueue } from "./send-queue.js";
import { SilenceWatch } from "./silence-watch.js";
import type { TcpTransportConfig } from "./tcp-transport-config.js";
import type { PeerDownReason, PeerInfo, PeerStats } from "./transport.js";

/**
 * The source address for a connection from a node listening on `listenHost` to `peerHost`,
 * or null to let the operating system choose. A node that listens on one specific address
 * dials from it too, so that its peers (and firewall rules) see it come from the address it
 * advertises. Null when the listen host is a wildcard or a name, when the two are not IP
 * addresses of the same family, or when a loopback source would dial a non-loopback peer
 * (such a packet could not leave the machine).
 */
export function sourceAddressFor(listenHost: string, peerHost: string): string | null {
  const family = isIP(listenHost);
  if (family === 0 || family !== isIP(peerHost)) return null;
  if (listenHost === "0.0.0.0" || listenHost === "::") return null;
  if (isLoopback(listenHost) && !isLoopback(peerHost)) return null;
  return listenHost;
}

function isLoopback(host: string): boolean {
  return host.startsWith("127.") || host === "::1";
}

/** What a link needs from the transport that owns it. */
export interface OutboundLinkContext {
  readonly config: TcpTransportConfig;
  readonly logger: Logger;
  /** Connect and handshake timeouts, reconnect delays. */
  readonly clock: Clock;
  /** This transport's incarnation, presented in every hello. */
  readonly incarnation: Incarnation;
  /** This node's cluster id drawn at bootstrap, or "" while it has none. */
  clusterUid(): string;
  /** This node's member incarnation, or 0 while it has none; presented in every hello. */
  memberIncarnation(): number;
  /** The peer address this node's members know it by, or ""; presented in every hello. */
  peerAddress(): string;
  /** Returns a number in [0, 1); drives reconnect jitter. */
  readonly random: () => number;
  /** The peer answered the hello with `info`; called just before `onUp`. */
  onPeerInfo(peer: NodeId, info: PeerInfo): void;
  onUp(peer: NodeId): void;
  onDown(peer: NodeId, reason: PeerDownReason): void;
  onProtocolError(): void;
  /** The TLS material new connections use, or null for plain TCP; it may change (reload). */
  tls(): PeerTls | null;
}

/** The ping frame, the same bytes every time. */
const PING_FRAME = (() => {
  const encoded = encodeFrame({ type: "ping" }, { frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX });
  assert(encoded.ok, "ping frame too large");
  // A copy: the encoder's view would keep its whole shared buffer alive for good.
  return new Uint8Array(encoded.bytes);
})();

/** The error a dial fails with when the acceptor's certificate names another member. */
const PEER_IDENTITY_ERROR = "ERR_BATON_PEER_IDENTITY";

/** OpenSSL's verification codes: the acceptor's certificate is not one this node trusts. */
const CERTIFICATE_ERRORS = new Set([
  PEER_IDENTITY_ERROR,
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
]);

/**
 * `idle`: not started. `connecting`: dialling or waiting for the hello answer. `ready`:
 * handshake done, frames flow. `waiting`: a reconnect is scheduled. `closed`: final.
 */
type LinkState = "idle" | "connecting" | "ready" | "waiting" | "closed";

export class OutboundLink {
  private readonly queue: SendQueue;
  private readonly logger: Logger;
  private state: LinkState = "idle";
  private socket: Socket | null = null;
  private decoder: FrameDecoder | null = null;
  /** The handshake timeout while connecting, the reconnect delay while waiting. */
  private timer: Timer | null = null;
  /** The last socket error's code on the current connection, for the down reason. */
  private socketErrorCode: string | null = null;
  /** Why the acceptor's certificate was refused on the current connection, if it was. */
  private certificateFailure: string | null = null;
  /** Consecutive failed connections since the link was last ready; drives back-off. */
  private failures = 0;
  /** When the link last became ready (monotonic ms), or null while it is not ready. */
  private readySince: number | null = null;
  /** The socket corked for the current turn of the event loop, if any. */
  private corked: Socket | null = null;
  /** True while the socket's buffer is full and the link waits for 'drain'. */
  private blocked = false;
  /** The incarnation of the peer process the current connection reached, once ready. */
  private peerIncarnation: Incarnation | null = null;
  /** The incarnation of the peer process this link last reached, across connections. */
  private lastPeerIncarnation: Incarnation | null = null;
  /** The last transition reported, so that up and down alternate. */
  private reported: "up" | "down" | null = null;
  /** Pings the peer and tells when it went silent, while the link is ready. */
  private silence: SilenceWatch | null = null;

  /** Whether the last transition this link reported was down. */
  get reportedDown(): boolean {
    return this.reported === "down";
  }
  private sentMessages = 0;
  private droppedMessages = 0;
  private reconnectAttempts = 0;
  private lastDownReason: PeerDownReason | null = null;
  /** Incremented by the transport when a message from this peer is delivered. */
  receivedMessages = 0;
  /** The address connections leave from (this node's listen host), or null for any. */
  private readonly localAddress: string | null;

  constructor(
    readonly peer: NodeId,
    readonly address: HostPort,
    private readonly context: OutboundLinkContext,
    /**
     * The peer was last reported down (by the link this one replaces, at the peer's old
     * address): this link's first failure is not reported again, so up and down alternate.
     */
    reportedDown = false,
  ) {
    if (reportedDown) this.reported = "down";
    this.queue = new SendQueue(context.config);
    this.logger = context.logger.child({ peer, remote: formatAddress(address) });
    const listen = parseAddress(context.config.listen);
    this.localAddress = listen.ok ? sourceAddressFor(listen.address.host, address.host) : null;
  }

  start(): void {
    assert(this.state === "idle", `link to ${this.peer} started twice`);
    this.connect();
  }

  /**
   * Queues an encoded frame (`bulk`: entries or snapshot data, which control frames
   * overtake); returns false (and counts a drop) when the queue is full.
   */
  enqueue(frame: Uint8Array, bulk = false): boolean {
    if (this.state === "closed" || !this.queue.offer(frame, bulk)) {
      this.droppedMessages++;
      return false;
    }
    this.flush();
    return true;
  }

  /** Counts a message dropped before it reached the queue (for instance too large). */
  countDrop(): void {
    this.droppedMessages++;
  }

  /**
   * The peer process `incarnation` has just dialled this node. If a reconnect is pending,
   * redial at once: the peer is evidently up, so waiting out the back-off would be a waste.
   * If this link is connected to an older incarnation, that process is gone and the
   * connection is dead even if TCP has not noticed (a crashed host sends no FIN): drop it
   * and redial. A connection still being set up is left alone.
   */
  onPeerDialled(incarnation: Incarnation): void {
    // The answers this node queues from now on are for this process: what waits for an
    // earlier one goes now, not when this link's own handshake with the new process ends
    // (which discarded the answers queued meanwhile, to the new process's requests).
    this.forgetQueuedFor(incarnation);
    if (this.state === "ready" && this.socket !== null && this.peerIncarnation !== incarnation) {
      this.logger.info(
        { reason: "peer_restarted" },
        "dropping a connection to an older peer process",
      );
      this.fail(this.socket, "lost", "the peer restarted");
    }
    if (this.state !== "waiting") return;
    this.clearTimer();
    this.failures = 0;
    this.reconnectAttempts++;
    this.connect();
  }

  /**
   * Closes the link for good. With `reason`, a link that was up reports down first (its
   * peer moved to another address: the node must learn that this connection is gone).
   */
  close(reason?: PeerDownReason): void {
    if (reason !== undefined && this.reported === "up" && this.state !== "closed") {
      this.report("down", reason);
    }
    this.state = "closed";
    this.clearTimer();
    this.stopSilenceWatch();
    this.socket?.destroy();
    this.socket = null;
    this.queue.clear();
  }

  /** The link's counters; the transport adds what it learned from the peer. */
  stats(): Omit<PeerStats, "info"> {
    return {
      peer: this.peer,
      connected: this.state === "ready",
      queuedMessages: this.queue.count,
      queuedBytes: this.queue.bytes,
      sentMessages: this.sentMessages,
      receivedMessages: this.receivedMessages,
      droppedMessages: this.droppedMessages,
      reconnectAttempts: this.reconnectAttempts,
      lastDownReason: this.lastDownReason,
    };
  }

  private connect(): void {
    const { config } = this.context;
    this.state = "connecting";
    this.socketErrorCode = null;
    this.certificateFailure = null;
    this.decoder = new FrameDecoder({ frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX });
    const socket = this.dial();
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, config.keepAliveInitialDelayMs);
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (socket !== this.socket) return;
      this.socketErrorCode = error.code ?? error.message;
      if (CERTIFICATE_ERRORS.has(error.code ?? "")) {
        this.certificateFailure =
          error.code === PEER_IDENTITY_ERROR ? error.message : describeVerifyError(error);
      }
    });
    socket.on("data", (chunk: Buffer) => this.onData(socket, chunk));
    socket.on("close", () => this.onSocketClose(socket));
    // Written before the connection completes: the socket buffers it until then (over
    // TLS, until the handshake is done and the acceptor's certificate was checked).
    socket.write(this.helloFrame());
    this.timer = this.context.clock.setTimeout(() => {
      this.fail(socket, "timeout", "connect or handshake timed out");
    }, config.handshakeTimeoutMs);
  }

  /** Opens a plain TCP connection, or a TLS one that accepts only this link's peer. */
  private dial(): Socket {
    const tls = this.context.tls();
    const local = this.localAddress === null ? {} : { localAddress: this.localAddress };
    if (tls === null)
      return connect({ host: this.address.host, port: this.address.port, ...local });
    return tlsConnect({
      host: this.address.host,
      port: this.address.port,
      ...local,
      secureContext: tls.context,
      minVersion: "TLSv1.3",
      rejectUnauthorized: true,
      // Peers are known by member id, not by host name: the certificate must name the
      // member this link dials, whatever address it is reached at.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => this.checkIdentity(cert),
    });
  }

  private checkIdentity(cert: PeerCertificate): Error | undefined {
    const problem = identityProblem(
      certificateIdentity(cert),
      this.peer,
      this.context.config.clusterId,
    );
    if (problem === null) return undefined;
    const error = new Error(`node ${this.peer} is not who it should be: ${problem}`);
    return Object.assign(error, { code: PEER_IDENTITY_ERROR });
  }

  private helloFrame(): Uint8Array {
    const { config } = this.context;
    const encoded = encodeFrame(
      {
        type: "hello",
        magic: PROTOCOL_MAGIC,
        protocolVersion: PROTOCOL_VERSION,
        clusterId: config.clusterId,
        clusterUid: this.context.clusterUid(),
        fromId: config.nodeId,
        toId: this.peer,
        incarnation: this.context.incarnation,
        memberIncarnation: this.context.memberIncarnation(),
        peerAddress: this.context.peerAddress(),
        advertise: config.advertise,
      },
      { frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX },
    );
    assert(encoded.ok, "hello frame too large");
    return encoded.bytes;
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.socket || this.decoder === null) return;
    const decoder = this.decoder;
    decoder.push(chunk);
    while (socket === this.socket) {
      const step = decoder.next();
      if (step.kind === "need_more") return;
      if (step.kind === "error") {
        this.protocolError(socket, step.error);
        return;
      }
      this.onFrame(socket, step.frame);
    }
  }

  private onFrame(socket: Socket, frame: Frame): void {
    // The acceptor answers the hello once and then only answers pings.
    if (this.state === "ready" && frame.type === "pong") {
      this.silence?.heard();
      return;
    }
    if (this.state !== "connecting") {
      this.protocolError(socket, unexpected(`${frame.type} after the handshake`));
      return;
    }
    if (frame.type === "hello_error") {
      // A refusal repeats at every redial until someone fixes the configuration.
      const level = this.failures === 0 ? "warn" : "debug";
      this.logger[level]({ reason: frame.reason }, "peer refused the handshake");
      this.fail(socket, "handshake_refused", frame.reason);
      return;
    }
    if (frame.type !== "hello_ok") {
      this.protocolError(socket, unexpected(`${frame.type} instead of hello_ok`));
      return;
    }
    if (frame.nodeId !== this.peer || frame.protocolVersion !== PROTOCOL_VERSION) {
      const detail = `hello_ok from node ${frame.nodeId} v${frame.protocolVersion}`;
      this.protocolError(socket, unexpected(detail));
      return;
    }
    const own = this.context.clusterUid();
    if (frame.clusterUid !== "" && own !== "" && frame.clusterUid !== own) {
      const reason = differentClusters(
        this.peer,
        frame.clusterUid,
        this.context.config.nodeId,
        own,
      );
      const level = this.failures === 0 ? "warn" : "debug";
      this.logger[level]({ reason }, "refusing the peer's handshake");
      this.fail(socket, "handshake_refused", reason);
      return;
    }
    this.peerIncarnation = frame.incarnation;
    this.forgetQueuedFor(frame.incarnation);
    this.context.onPeerInfo(this.peer, frame.advertise);
    this.becomeReady();
  }

  /**
   * The peer runs as process `incarnation`: what was queued for a previous one is not for
   * it (an answer to a request the old process forwarded could match a request of the new
   * one with the same number). The protocol resends what the new process needs.
   */
  private forgetQueuedFor(incarnation: Incarnation): void {
    if (this.lastPeerIncarnation !== null && this.lastPeerIncarnation !== incarnation) {
      const discarded = this.queue.clear();
      this.droppedMessages += discarded;
      if (discarded > 0) {
        this.logger.info(
          { reason: "peer_restarted", discarded },
          `discarded ${discarded} messages queued for the peer's previous process`,
        );
      }
    }
    this.lastPeerIncarnation = incarnation;
  }

  private becomeReady(): void {
    this.clearTimer();
    this.state = "ready";
    // The back-off starts over only once the link has stayed up a while (see fail): a peer
    // that accepts the handshake and then drops the link each time is redialled ever more
    // slowly, not every few milliseconds.
    this.readySince = this.context.clock.monotonicMs();
    this.blocked = false;
    this.logger.info("connected to peer");
    this.watchSilence();
    this.report("up", null);
    this.flush();
  }

  private watchSilence(): void {
    const socket = this.socket;
    assert(socket !== null && this.silence === null, "silence watched twice");
    this.silence = new SilenceWatch(this.context.clock, this.context.config, (silentMs) => {
      if (socket !== this.socket) return;
      if (silentMs === null) {
        this.write(socket, PING_FRAME);
        return;
      }
      const detail = `no answer from the peer for ${silentMs} ms`;
      this.logger.warn({ reason: "peer_silent", silentMs }, "closing a connection: peer silent");
      this.fail(socket, "lost", detail);
    });
  }

  private flush(): void {
    const socket = this.socket;
    while (this.state === "ready" && !this.blocked && socket !== null) {
      const frame = this.queue.shift();
      if (frame === undefined) return;
      this.sentMessages++;
      this.write(socket, frame);
    }
  }

  /** Writes a frame; when the socket's buffer is full, waits for 'drain' to send more. */
  private write(socket: Socket, frame: Uint8Array): void {
    this.corkUntilTickEnds(socket);
    if (socket.write(frame) || this.blocked) return;
    this.blocked = true;
    socket.once("drain", () => {
      if (socket !== this.socket) return;
      this.blocked = false;
      this.flush();
    });
  }

  /**
   * Holds the frames written in this turn of the event loop in the socket and hands them
   * to the kernel together (one writev) when the turn's synchronous work and microtasks
   * are done: a master's Ready sends appends, heartbeats and read confirmations to each
   * peer, and one system call per frame was its heaviest cost under load.
   */
  private corkUntilTickEnds(socket: Socket): void {
    if (this.corked === socket) return;
    this.corked = socket;
    socket.cork();
    process.nextTick(() => {
      if (this.corked === socket) this.corked = null;
      socket.uncork();
    });
  }

  private protocolError(socket: Socket, error: ProtocolError): void {
    this.logger.warn(
      { reason: error.code, detail: error.detail },
      "closing connection: protocol error",
    );
    this.context.onProtocolError();
    this.fail(socket, "protocol_error", error.detail);
  }

  private onSocketClose(socket: Socket): void {
    if (socket !== this.socket) return;
    if (this.certificateFailure !== null) {
      // A refusal repeats at every redial until someone fixes the certificates.
      const level = this.failures === 0 ? "warn" : "debug";
      const detail = this.certificateFailure;
      this.logger[level]({ reason: "peer_certificate", detail }, "refusing the peer's certificate");
      this.context.onProtocolError();
      this.fail(socket, "protocol_error", detail);
      return;
    }
    const code = this.socketErrorCode;
    // ETIMEDOUT on a link that was up is the kernel giving up on an established connection
    // (a peer's machine gone silent): lost, as the Transport interface defines it, so that
    // the node treats it as it does any lost master. Before that it is a connect timeout.
    const reason: PeerDownReason =
      code === "ECONNREFUSED"
        ? "refused"
        : code === "ETIMEDOUT" && this.state !== "ready"
          ? "timeout"
          : "lost";
    this.fail(socket, reason, code ?? "connection closed");
  }

  /** Tears down the current connection, reports the peer down and schedules a redial. */
  private fail(socket: Socket, reason: PeerDownReason, detail: string): void {
    if (socket !== this.socket || this.state === "closed") return;
    this.clearTimer();
    this.socket = null;
    this.decoder = null;
    this.blocked = false;
    this.peerIncarnation = null;
    this.stopSilenceWatch();
    socket.destroy();
    const upMs = this.readySince === null ? 0 : this.context.clock.monotonicMs() - this.readySince;
    if (this.readySince !== null) {
      // What was queued on the connection that failed is not sent on the next one: its
      // senders were told the peer went down (a backup answers a write it had forwarded
      // "indeterminate", and the client retries it elsewhere); delivered after a long
      // partition, past the exactly-once window, the forward would be applied again. The
      // protocol resends what the peer still needs. What is queued from now on, while the
      // link is down, is kept for the next connection.
      const discarded = this.queue.clear();
      this.droppedMessages += discarded;
      if (discarded > 0) {
        this.logger.debug(
          { reason: "connection_lost", discarded },
          `discarded ${discarded} messages queued on the connection that failed`,
        );
      }
    }
    this.readySince = null;
    if (upMs >= this.context.config.reconnectDelayMsMax) this.failures = 0;
    const firstFailure = this.failures === 0;
    // Repeated failures while a peer stays away are routine; only the first is news.
    this.logger[firstFailure ? "info" : "debug"]({ reason, detail }, "connection to peer failed");
    this.report("down", reason);
    // A peer-down handler may have closed the transport; a closed link never redials.
    if (!this.isClosed()) this.scheduleReconnect();
  }

  private isClosed(): boolean {
    return this.state === "closed";
  }

  private scheduleReconnect(): void {
    const delayMs = reconnectDelayMs(this.failures, this.context.config, this.context.random);
    this.failures++;
    this.state = "waiting";
    this.timer = this.context.clock.setTimeout(() => {
      this.timer = null;
      this.reconnectAttempts++;
      this.connect();
    }, delayMs);
  }

  private report(kind: "up" | "down", reason: PeerDownReason | null): void {
    if (kind === this.reported) return;
    this.reported = kind;
    if (kind === "up") {
      this.context.onUp(this.peer);
      return;
    }
    assert(reason !== null, "a down transition needs a reason");
    this.lastDownReason = reason;
    this.context.onDown(this.peer, reason);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.context.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private stopSilenceWatch(): void {
    this.silence?.stop();
    this.silence = null;
  }
}

function unexpected(detail: string): ProtocolError {
  return { code: "unexpected_frame", detail };
}
