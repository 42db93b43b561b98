/**
 * Mutual TLS between nodes over real sockets on 127.0.0.1, with throwaway certificates
 * made for this file: real peers connect both ways; a client or server with no
 * certificate, one from another CA, another node's certificate or an expired one is
 * refused, logged and counted, in both directions; a reload changes what new connections
 * use.
 */

import { connect as netConnect, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from "node:tls";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  captureLogger,
  Inbox,
  type LogLine,
  nextPeerEvent,
  numberedHeartbeat,
  untilLogged,
  untilTrue,
  whenConnected,
  withTimeout,
} from "../../test/conformance/transport.suite.js";
import { type IssuedPair, issueCa, issueNodeCert } from "../cli/commands/cert-issuer.js";
import type { NodeId } from "../protocol/messages.js";
import { encodeFrame, FrameDecoder } from "./frame-codec.js";
import { type Frame, PROTOCOL_VERSION } from "./frame-schema.js";
import { certificateIdentity, identityProblem, type PeerTlsConfig } from "./peer-tls.js";
import { defaultTcpTransportConfig, TcpTransport } from "./tcp-transport.js";

const CLUSTER = "tls-test";
const DAY_MS = 24 * 60 * 60 * 1000;

interface Certs {
  ca: IssuedPair;
  otherCa: IssuedPair;
  node: Map<NodeId, IssuedPair>;
  otherCaNode2: IssuedPair;
  expiredNode2: IssuedPair;
  otherClusterNode2: IssuedPair;
}

let certs: Certs;

beforeAll(async () => {
  const ca = await issueCa({ validDays: 1 });
  const otherCa = await issueCa({ validDays: 1, commonName: "another CA" });
  const issue = (authority: IssuedPair, memberId: number, clusterId: string | null = CLUSTER) =>
    issueNodeCert(authority, { memberId, hosts: ["127.0.0.1"], clusterId, validDays: 1 });
  const node = new Map<NodeId, IssuedPair>();
  for (const id of [1, 2, 3]) node.set(id, await issue(ca, id));
  const past = new Date(Date.now() - 10 * DAY_MS);
  certs = {
    ca,
    otherCa,
    node,
    otherCaNode2: await issue(otherCa, 2),
    expiredNode2: await issueNodeCert(ca, {
      memberId: 2,
      hosts: ["127.0.0.1"],
      clusterId: CLUSTER,
      validDays: 1,
      notBefore: past,
      notAfter: new Date(past.getTime() + DAY_MS),
    }),
    otherClusterNode2: await issue(ca, 2, "another-cluster"),
  };
});

function tlsFor(pair: IssuedPair, ca: IssuedPair = certs.ca): PeerTlsConfig {
  return { ca: ca.certPem, cert: pair.certPem, key: pair.keyPem };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  await withTimeout(
    (async () => {
      await untilTrue(condition);
    })(),
    what,
  );
}

/** A TLS client that speaks the handshake by hand and records the frames it gets. */
class RawTlsClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder({ frameBytesMax: 64 * 1024 });

  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let step = this.decoder.next(); step.kind === "frame"; step = this.decoder.next()) {
        this.frames.push(step.frame);
      }
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
  }

  /** Connects to `port` presenting `pair` (or no certificate), trusting the cluster CA. */
  static open(port: number, pair: IssuedPair | null): RawTlsClient {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port,
      ca: certs.ca.certPem,
      ...(pair === null ? {} : { cert: pair.certPem, key: pair.keyPem }),
      checkServerIdentity: () => undefined,
    });
    return new RawTlsClient(socket);
  }

  hello(fromId: NodeId, toId: NodeId = 1): void {
    const encoded = encodeFrame(
      {
        type: "hello",
        magic: "baton",
        protocolVersion: PROTOCOL_VERSION,
        clusterId: CLUSTER,
        clusterUid: "",
        fromId,
        toId,
        incarnation: 1,
        memberIncarnation: 0,
        peerAddress: "",
        advertise: { httpUrl: null },
      },
      { frameBytesMax: 64 * 1024 },
    );
    if (!encoded.ok) throw new Error("hello too large");
    this.socket.write(encoded.bytes);
  }
}

describe("peer TLS", () => {
  const transports: TcpTransport[] = [];
  const sockets: Socket[] = [];
  const servers: Server[] = [];

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(transports.splice(0).map((transport) => transport.close()));
    await Promise.all(
      servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))),
    );
  });

  /** A transport for `id` whose peers listen at `addresses` (port 0 for itself). */
  function transport(
    id: NodeId,
    addresses: ReadonlyMap<NodeId, string>,
    tls: PeerTlsConfig,
  ): { node: TcpTransport; lines: LogLine[] } {
    const { logger, lines } = captureLogger();
    const node = new TcpTransport(
      {
        ...defaultTcpTransportConfig(),
        nodeId: id,
        clusterId: CLUSTER,
        listen: addresses.get(id) ?? "127.0.0.1:0",
        peers: [...addresses].map(([peer, address]) => ({ id: peer, address })),
        reconnectDelayMsMin: 10,
        reconnectDelayMsMax: 100,
        handshakeTimeoutMs: 2000,
        tls,
      },
      { logger },
    );
    transports.push(node);
    return { node, lines };
  }

  /** Node 1 alone, with TLS; node 2's address is a closed port nobody dials from. */
  async function loneNode() {
    const { node, lines } = transport(
      1,
      new Map([
        [1, "127.0.0.1:0"],
        [2, "127.0.0.1:1"],
      ]),
      tlsFor(certs.node.get(1) as IssuedPair),
    );
    await node.start();
    return { node, lines, port: node.listenAddress().port };
  }

  /** A stranger's TLS server presenting `pair`, that answers any hello as node 2. */
  async function fakePeer(pair: IssuedPair): Promise<number> {
    const server = createTlsServer({
      cert: pair.certPem,
      key: pair.keyPem,
      ca: certs.ca.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    });
    server.on("secureConnection", (socket: TLSSocket) => {
      sockets.push(socket);
      socket.on("error", () => {});
      const answer = encodeFrame(
        {
          type: "hello_ok",
          protocolVersion: PROTOCOL_VERSION,
          nodeId: 2,
          clusterUid: "",
          incarnation: 7,
          advertise: { httpUrl: null },
        },
        { frameBytesMax: 64 * 1024 },
      );
      if (answer.ok) socket.once("data", () => socket.write(answer.bytes));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
    return (server.address() as { port: number }).port;
  }

  /**
   * Node 1 dialling a fake node 2 that presents `pair`; resolves once node 2 is reported
   * `event` ("down": with its reason).
   */
  async function dialFakePeer(pair: IssuedPair, event: "up" | "down" = "down") {
    const port = await fakePeer(pair);
    const { node, lines } = transport(
      1,
      new Map([
        [1, "127.0.0.1:0"],
        [2, `127.0.0.1:${port}`],
      ]),
      tlsFor(certs.node.get(1) as IssuedPair),
    );
    const reported = nextPeerEvent(node, event, 2);
    await node.start();
    return { node, lines, reason: await reported };
  }

  async function refusedHello(pair: IssuedPair | null, claimedId: NodeId) {
    const { node, lines, port } = await loneNode();
    const client = RawTlsClient.open(port, pair);
    sockets.push(client.socket);
    client.hello(claimedId);
    await withTimeout(client.closed, "the refused connection to close");
    const line = await untilLogged(lines, (l) => l.msg === "refusing handshake");
    return { node, client, line };
  }

  it("tls: two nodes with certificates from the cluster CA exchange messages both ways", async () => {
    const [port1, port2] = await Promise.all([freePort(), freePort()]);
    const addresses = new Map([
      [1, `127.0.0.1:${port1}`],
      [2, `127.0.0.1:${port2}`],
    ]);
    const a = transport(1, addresses, tlsFor(certs.node.get(1) as IssuedPair)).node;
    const b = transport(2, addresses, tlsFor(certs.node.get(2) as IssuedPair)).node;
    await Promise.all([a.start(), b.start()]);
    await Promise.all([whenConnected(a, 2), whenConnected(b, 1)]);
    const inboxA = new Inbox(a);
    const inboxB = new Inbox(b);
    a.send(numberedHeartbeat(1, 2, 1));
    b.send(numberedHeartbeat(2, 1, 2));
    await Promise.all([inboxA.until(1), inboxB.until(1)]);
    expect(inboxB.messages).toEqual([numberedHeartbeat(1, 2, 1)]);
    expect(inboxA.messages).toEqual([numberedHeartbeat(2, 1, 2)]);
    expect(a.stats().protocolErrors + b.stats().protocolErrors).toBe(0);
  });

  it("tls: refuses an inbound peer that presents no certificate (logged, counted)", async () => {
    const { node, client, line } = await refusedHello(null, 2);
    expect(client.frames).toEqual([
      { type: "hello_error", reason: expect.stringMatching(/no certificate was presented/) },
    ]);
    expect(line).toMatchObject({ peer: 2, reason: expect.stringMatching(/no certificate/) });
    expect(node.stats().protocolErrors).toBe(1);
  });

  it("tls: refuses an inbound peer whose certificate comes from another CA", async () => {
    const { node, client } = await refusedHello(certs.otherCaNode2, 2);
    expect(client.frames).toEqual([
      { type: "hello_error", reason: expect.stringMatching(/not signed by this cluster's CA/) },
    ]);
    expect(node.stats().protocolErrors).toBe(1);
  });

  it("tls: refuses an inbound peer that claims another node's id (node 2's cert, hello as 3)", async () => {
    const { node, client, line } = await refusedHello(certs.node.get(2) as IssuedPair, 3);
    const reason = "the hello claims node 3, but its certificate names member 2, not member 3";
    expect(client.frames).toEqual([{ type: "hello_error", reason }]);
    expect(line).toMatchObject({ peer: 3, reason });
    expect(node.stats().protocolErrors).toBe(1);
  });

  it("tls: refuses an inbound peer with an expired certificate", async () => {
    const { node, client } = await refusedHello(certs.expiredNode2, 2);
    expect(client.frames).toEqual([
      { type: "hello_error", reason: expect.stringMatching(/expired/) },
    ]);
    expect(node.stats().protocolErrors).toBe(1);
  });

  it("tls: refuses an inbound peer whose certificate names another cluster", async () => {
    const { client } = await refusedHello(certs.otherClusterNode2, 2);
    expect(client.frames).toEqual([
      { type: "hello_error", reason: expect.stringMatching(/cluster "another-cluster"/) },
    ]);
  });

  it("tls: accepts an inbound peer whose certificate is good (node 2's cert, hello as 2)", async () => {
    const { node, port } = await loneNode();
    const client = RawTlsClient.open(port, certs.node.get(2) as IssuedPair);
    sockets.push(client.socket);
    client.hello(2);
    await until(() => client.frames.length === 1, "hello_ok");
    expect(client.frames[0]).toMatchObject({ type: "hello_ok", nodeId: 1 });
    expect(node.stats().protocolErrors).toBe(0);
  });

  it("tls: counts a client that does not speak TLS on the peer port", async () => {
    const { node, lines, port } = await loneNode();
    const socket = netConnect({ host: "127.0.0.1", port });
    sockets.push(socket);
    socket.on("error", () => {});
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await untilLogged(lines, (l) => l.reason === "tls_handshake");
    expect(node.stats().protocolErrors).toBe(1);
  });

  for (const [name, pick, detail] of [
    ["from another CA", () => certs.otherCaNode2, /not signed by this cluster's CA/],
    ["of another node (3)", () => certs.node.get(3) as IssuedPair, /names member 3, not member 2/],
    ["that has expired", () => certs.expiredNode2, /expired/],
  ] as const) {
    it(`tls: refuses to send to a peer whose certificate is ${name} (outbound)`, async () => {
      const { node, lines, reason } = await dialFakePeer(pick());
      expect(reason).toBe("protocol_error");
      const line = await untilLogged(lines, (l) => l.msg === "refusing the peer's certificate");
      expect(line).toMatchObject({ peer: 2, detail: expect.stringMatching(detail) });
      expect(node.stats().protocolErrors).toBeGreaterThanOrEqual(1);
      expect(node.stats().peers[0]?.connected).toBe(false);
    });
  }

  it("tls: connects to a peer whose certificate names it (outbound, fake node 2)", async () => {
    const { node } = await dialFakePeer(certs.node.get(2) as IssuedPair, "up");
    expect(node.stats().protocolErrors).toBe(0);
  });

  it("tls: a reloaded certificate is used by the next connection (expired, then renewed)", async () => {
    const [port1, port2] = await Promise.all([freePort(), freePort()]);
    const addresses = new Map([
      [1, `127.0.0.1:${port1}`],
      [2, `127.0.0.1:${port2}`],
    ]);
    const a = transport(1, addresses, tlsFor(certs.node.get(1) as IssuedPair)).node;
    const b = transport(2, addresses, tlsFor(certs.expiredNode2)).node;
    const refused = nextPeerEvent(b, "down", 1);
    await Promise.all([a.start(), b.start()]);
    expect(await refused).toBe("handshake_refused");
    b.setTls(tlsFor(certs.node.get(2) as IssuedPair));
    await withTimeout(whenConnected(b, 1), "node 2 to connect with its renewed certificate");
    await whenConnected(a, 2);
    const inbox = new Inbox(a);
    b.send(numberedHeartbeat(2, 1, 1));
    await inbox.until(1);
  });

  it("tls: setTls refuses PEM text that is not a certificate and keeps the old one", async () => {
    const { node } = await loneNode();
    const bad = {
      ...tlsFor(certs.node.get(1) as IssuedPair),
      cert: "-----BEGIN CERTIFICATE-----\nnope\n",
    };
    expect(() => node.setTls(bad)).toThrow();
  });
});

describe("peer certificate identity", () => {
  it("tls: reads member and cluster ids from the subject alternative names", () => {
    const identity = certificateIdentity({
      subjectaltname:
        'URI:baton://member/2, URI:baton://cluster/prod%20eu, IP Address:10.0.0.2, URI:"baton://member/3, x"',
    } as never);
    expect(identity).toEqual({ memberIds: [2], clusterIds: ["prod eu"] });
    expect(identityProblem(identity, 2, "prod eu")).toBeNull();
    expect(identityProblem(identity, 3, "prod eu")).toMatch(/names member 2, not member 3/);
    expect(identityProblem(identity, 2, "staging")).toMatch(/cluster "prod eu"/);
    expect(identityProblem({ memberIds: [2], clusterIds: [] }, 2, "any")).toBeNull();
    expect(identityProblem({ memberIds: [], clusterIds: [] }, 2, "any")).toMatch(/no member id/);
  });

  it("tls: no piece of a quoted name is read as a member or cluster, whatever it holds", () => {
    // A CA that signs arbitrary URIs could issue one that, split on ", ", would name member 3.
    const crafted = certificateIdentity({
      subjectaltname:
        'URI:baton://member/5, URI:"x, URI:baton://member/3, y", DNS:"a\\", URI:baton://member/4"',
    } as never);
    expect(crafted).toEqual({ memberIds: [5], clusterIds: [] });
    expect(identityProblem(crafted, 3, "c")).toMatch(/names member 5, not member 3/);
    // Text that is not in Node's form names no one.
    for (const malformed of ['URI:"baton://member/3', "URI:baton://member/3,URI:x", "nonsense"]) {
      expect(certificateIdentity({ subjectaltname: malformed } as never).memberIds).toEqual([]);
    }
  });
});

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
