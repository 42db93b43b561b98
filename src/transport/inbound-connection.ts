/**
 * The receiving half of the TCP transport: one accepted connection, its handshake as the
 * accepting side, and turning its bytes into messages for the node. Anything that is not
 * a Baton peer of this cluster speaking the protocol (a port scanner, an HTTP client, a
 * node of another cluster, a buggy peer) gets this one connection closed with a logged
 * reason; it must never throw, crash the node or disturb other connections.
 *
 * The connection sends nothing after its hello answer but pongs: one for each ping, and
 * one at most every `pingIntervalMs` while frames arrive, which tells the peer that this
 * node reads what it sends even when its pings wait behind megabytes of it. This node
 * sends to the peer on its own outbound connection. A peer silent for
 * `peerSilenceMsMax` after the handshake (no message, no ping) is gone, and its connection
 * is closed (see silence-watch.ts).
 *
 * Over mutual TLS the hello is believed only if the certificate under it chained to the
 * cluster CA and names the member id the hello claims; a hello that claims another id is
 * refused like any other bad hello (logged, counted, answered with a reason).
 */

import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { NodeId, WireMessage } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";
import { formatAddress } from "./address.js";
import { encodeFrame, FrameDecoder, looksLikeHttp } from "./frame-codec.js";
import {
  type Frame,
  HANDSHAKE_FRAME_BYTES_MAX,
  type Hello,
  type Incarnation,
  isMessage,
  PROTOCOL_VERSION,
  type ProtocolError,
} from "./frame-schema.js";
import { type CertificateIdentity, identityProblem } from "./peer-tls.js";
import { SilenceWatch } from "./silence-watch.js";
import type { TcpTransportConfig } from "./tcp-transport-config.js";
import type { Admission, PeerInfo, PresentedMember } from "./transport.js";

/** What an inbound connection needs from the transport that accepted it. */
export interface InboundContext {
  readonly config: TcpTransportConfig;
  readonly logger: Logger;
  /** The handshake timeout. */
  readonly clock: Clock;
  /** This transport's incarnation, presented in every hello answer. */
  readonly incarnation: Incarnation;
  /** This node's cluster id drawn at bootstrap, or "" while it has none. */
  clusterUid(): string;
  /**
   * Whether the dialler of `hello` may connect: a peer, or one the node admits (see
   * Transport.onUnknownPeer) on what its hello says; else why not.
   */
  admits(hello: Hello): Admission;
  /** Decides whether a warning about `key` is news or a repeat to log at debug. */
  warningLevel(key: string): "warn" | "debug";
  /** The handshake succeeded; the connection now carries messages from `connection.peer`. */
  onHandshake(connection: InboundConnection): void;
  onMessage(connection: InboundConnection, message: WireMessage): void;
  onClosed(connection: InboundConnection): void;
  onProtocolError(): void;
}

/** The pong frame, the same bytes every time. */
const PONG_FRAME = (() => {
  const encoded = encodeFrame({ type: "pong" }, { frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX });
  assert(encoded.ok, "pong frame too large");
  // A copy: the encoder's view would keep its whole shared buffer alive for good.
  return new Uint8Array(encoded.bytes);
})();

/** Sent once to a client that speaks HTTP to the peer port, to tell a human what happened. */
const httpRefusal = httpResponse(
  "This is a Baton node-to-node port. Send HTTP requests to the node's HTTP address.\n",
);

function httpResponse(body: string): Buffer {
  const head =
    "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n" +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.from(head + body);
}

/**
 * What the TLS layer proved about the peer of a connection: the identity its certificate
 * names, or why its certificate was not accepted. Null on a plain TCP connection.
 */
export type PeerCertificateCheck =
  | { readonly ok: true; readonly identity: CertificateIdentity }
  | { readonly ok: false; readonly reason: string };

interface LogFields {
  readonly reason: string;
  readonly detail?: string;
  /** Overrides the connection's peer, for a hello that names one but is refused. */
  readonly peer?: NodeId;
}

export class InboundConnection {
  /** The peer that completed the handshake, or null before that. */
  peer: NodeId | null = null;
  /** The incarnation the peer presented in its hello, or null before that. */
  incarnation: Incarnation | null = null;
  /** The member incarnation and cluster id the peer presented in its hello, or null before that. */
  member: PresentedMember | null = null;
  /** What the peer advertised in its hello, or null before that. */
  info: PeerInfo | null = null;
  private readonly remote: string;
  private readonly decoder = new FrameDecoder({ frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX });
  /** The first bytes received, kept until the handshake to recognise HTTP clients. */
  private firstBytes: Buffer | null = null;
  private timer: Timer | null;
  /** True once this side has decided to close; later bytes are ignored. */
  private closing = false;
  /** Closes the connection when the peer falls silent, once the handshake is done. */
  private silence: SilenceWatch | null = null;
  /** When this side last sent a pong (monotonic ms). */
  private pongSentAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly socket: Socket,
    private readonly context: InboundContext,
    private readonly certificate: PeerCertificateCheck | null = null,
  ) {
    this.remote = formatAddress({
      host: socket.remoteAddress ?? "unknown",
      port: socket.remotePort ?? 0,
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, context.config.keepAliveInitialDelayMs);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    // Errors (resets, mostly) are followed by 'close', which does the cleanup.
    socket.on("error", (error) => this.log("debug", "connection error", { reason: error.message }));
    socket.on("close", () => this.onClose());
    this.timer = this.context.clock.setTimeout(() => {
      this.timer = null;
      // After a refusal the timer only reaps a client that never closed its side.
      if (!this.closing) {
        this.warn("closing connection: no handshake in time", { reason: "handshake_timeout" });
      }
      this.destroy();
    }, context.config.handshakeTimeoutMs);
  }

  /** Closes the connection at once, dropping anything not yet delivered. */
  destroy(): void {
    this.closing = true;
    this.stopSilenceWatch();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    if (this.silence !== null) {
      this.silence.heard();
      // Bytes of a frame too large to arrive within a ping interval are proof enough that
      // this node reads: the peer's ping waits behind them.
      if (
        this.context.clock.monotonicMs() - this.pongSentAt >=
        this.context.config.pingIntervalMs
      ) {
        this.pong();
      }
    }
    // Copied, so that a 64 KiB chunk is not kept alive for the sake of four bytes.
    if (this.peer === null && this.firstBytes === null) {
      this.firstBytes = Buffer.from(chunk.subarray(0, 4));
    }
    this.decoder.push(chunk);
    while (!this.closing) {
      const step = this.decoder.next();
      if (step.kind === "need_more") return;
      if (step.kind === "error") {
        this.protocolError(step.error);
        return;
      }
      if (this.peer === null) this.onHello(step.frame);
      else this.onFrame(this.peer, step.frame);
    }
  }

  /**
   * Sends a pong, unless one is still waiting to be written: a peer that does not read its
   * pongs (it pings and never reads) must not grow this node's memory, and one pending
   * pong proves as much as many.
   */
  private pong(): void {
    this.pongSentAt = this.context.clock.monotonicMs();
    if (this.socket.writableLength > 0) return;
    this.socket.write(PONG_FRAME);
  }

  private onHello(frame: Frame): void {
    if (frame.type !== "hello") {
      this.protocolError({ code: "unexpected_frame", detail: `${frame.type} before hello` });
      return;
    }
    const refusal = this.checkHello(frame);
    if (refusal !== null) {
      this.refuse(frame, refusal);
      return;
    }
    this.clearTimer();
    this.peer = frame.fromId;
    this.incarnation = frame.incarnation;
    this.member = { memberIncarnation: frame.memberIncarnation, clusterUid: frame.clusterUid };
    this.info = frame.advertise;
    this.firstBytes = null;
    // Only now may frames grow to the configured size.
    this.decoder.setFrameBytesMax(this.context.config.frameBytesMax);
    const { nodeId, advertise } = this.context.config;
    const answer = encodeFrame(
      {
        type: "hello_ok",
        protocolVersion: PROTOCOL_VERSION,
        nodeId,
        clusterUid: this.context.clusterUid(),
        incarnation: this.context.incarnation,
        advertise,
      },
      { frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX },
    );
    if (answer.ok) this.socket.write(answer.bytes);
    this.silence = new SilenceWatch(this.context.clock, this.context.config, (silentMs) => {
      if (silentMs === null || this.closing) return;
      this.log("info", "closing connection: peer silent", {
        reason: "peer_silent",
        detail: `nothing from the peer for ${silentMs} ms`,
      });
      this.destroy();
    });
    this.context.onHandshake(this);
  }

  /** Why the hello must be refused, or null to accept it. */
  private checkHello(hello: Hello): string | null {
    const { config } = this.context;
    const certificate = this.certificate;
    // Checked first: a peer that cannot prove who it is learns nothing more about this node.
    if (certificate !== null && !certificate.ok) {
      return `this node accepts only peers with a certificate from the cluster CA, and ${certificate.reason}`;
    }
    if (certificate !== null) {
      const problem = identityProblem(certificate.identity, hello.fromId, config.clusterId);
      if (problem !== null) return `the hello claims node ${hello.fromId}, but ${problem}`;
    }
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return `protocol version ${hello.protocolVersion} is not supported (this node speaks ${PROTOCOL_VERSION})`;
    }
    if (hello.clusterId !== config.clusterId) {
      return `cluster id ${JSON.stringify(hello.clusterId)} does not match this node's cluster`;
    }
    const own = this.context.clusterUid();
    if (hello.clusterUid !== "" && own !== "" && hello.clusterUid !== own) {
      return differentClusters(hello.fromId, hello.clusterUid, config.nodeId, own);
    }
    if (hello.toId !== config.nodeId)
      return `this is node ${config.nodeId}, not node ${hello.toId}`;
    const admission = this.context.admits(hello);
    return admission.admitted ? null : admission.reason;
  }

  /** Answers a hello with an error frame, then closes once it is written. */
  private refuse(hello: Hello, reason: string): void {
    this.closing = true;
    this.context.onProtocolError();
    this.warn("refusing handshake", { reason, peer: hello.fromId });
    const answer = encodeFrame(
      { type: "hello_error", reason },
      { frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX },
    );
    if (answer.ok) this.socket.end(answer.bytes);
    else this.socket.end();
    // The timer still runs: a client that never closes its side is destroyed by it.
  }

  private onFrame(peer: NodeId, frame: Frame): void {
    const { nodeId } = this.context.config;
    if (frame.type === "ping") {
      this.pong();
      return;
    }
    if (!isMessage(frame)) {
      this.protocolError({ code: "unexpected_frame", detail: `${frame.type} after hello` });
      return;
    }
    if (frame.from !== peer || frame.to !== nodeId) {
      const detail = `message from ${frame.from} to ${frame.to} on the link ${peer} -> ${nodeId}`;
      this.protocolError({ code: "unexpected_frame", detail });
      return;
    }
    this.context.onMessage(this, frame);
  }

  private protocolError(error: ProtocolError): void {
    this.closing = true;
    this.context.onProtocolError();
    const http = this.peer === null && this.firstBytes !== null && looksLikeHttp(this.firstBytes);
    const reason = http ? "http_request" : error.code;
    this.warn("closing connection: protocol error", { reason, detail: error.detail });
    if (http) this.socket.end(httpRefusal);
    else this.socket.destroy();
  }

  private onClose(): void {
    this.closing = true;
    this.clearTimer();
    this.stopSilenceWatch();
    this.context.onClosed(this);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.context.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private stopSilenceWatch(): void {
    this.silence?.stop();
    this.silence = null;
  }

  /** Logs a warning, demoted to debug when the same client keeps repeating it. */
  private warn(message: string, fields: LogFields): void {
    const host = this.socket.remoteAddress ?? "unknown";
    const level = this.context.warningLevel(`${host} ${fields.peer ?? this.peer} ${message}`);
    this.log(level, message, fields);
  }

  /** Logs with the structured fields every connection log line carries. */
  private log(level: "debug" | "info" | "warn", message: string, fields: LogFields): void {
    this.context.logger[level]({ peer: this.peer, remote: this.remote, ...fields }, message);
  }
}

/**
 * Why two nodes whose data directories belong to different clusters refuse each other:
 * each was bootstrapped (or joined) apart, and mixing them would merge two histories.
 */
export function differentClusters(
  peer: NodeId,
  peerCluster: string,
  self: NodeId,
  selfCluster: string,
): string {
  return `node ${peer} belongs to cluster ${peerCluster} and node ${self} to cluster ${selfCluster}: they are different clusters (check the peer addresses; a node's data directory cannot move between clusters)`;
}
