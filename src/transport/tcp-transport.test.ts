import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  captureLogger,
  comparableByLane,
  Inbox,
  type LogLine,
  nextPeerEvent,
  numberedHeartbeat,
  sampleMessages,
  transportConformanceSuite,
  untilLogged,
  untilTrue,
  whenConnected,
  withTimeout,
} from "../../test/conformance/transport.suite.js";
import type { Message, NodeId } from "../protocol/messages.js";
import { encodeFrame, FrameDecoder } from "./frame-codec.js";
import { type Frame, PROTOCOL_VERSION } from "./frame-schema.js";
import type { SendQueueLimits } from "./send-queue.js";
import {
  defaultTcpTransportConfig,
  TcpTransport,
  type TcpTransportConfig,
} from "./tcp-transport.js";
import type { PeerInfo, UnknownCaller } from "./transport.js";

/** Ports that were free a moment ago, one per id, reserved by listening on port 0. */
async function reservePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
    servers.push(server);
    ports.push((server.address() as { port: number }).port);
  }
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/**
 * Test configuration spelled out: a short maximum back-off keeps restarts quick, and the
 * frame limit shrinks with a small queue because the queue must hold one largest frame.
 */
function testConfig(
  nodeId: NodeId,
  addresses: ReadonlyMap<NodeId, string>,
  overrides: Partial<TcpTransportConfig> = {},
): TcpTransportConfig {
  const queueBytesMax = overrides.queueBytesMax ?? 64 * 1024 * 1024;
  return {
    ...defaultTcpTransportConfig(),
    nodeId,
    clusterId: "test-cluster",
    listen: addresses.get(nodeId) ?? "127.0.0.1:0",
    peers: [...addresses].map(([id, address]) => ({ id, address })),
    frameBytesMax: Math.min(16 * 1024 * 1024, queueBytesMax - 4),
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 100,
    handshakeTimeoutMs: 2000,
    ...overrides,
  };
}

async function addressesFor(ids: readonly NodeId[]): Promise<Map<NodeId, string>> {
  const ports = await reservePorts(ids.length);
  return new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
}

transportConformanceSuite("TcpTransport", async (ids) => {
  const addresses = await addressesFor(ids);
  const { logger } = captureLogger();
  return {
    create: (id: NodeId, limits?: Partial<SendQueueLimits>) =>
      new TcpTransport(testConfig(id, addresses, limits), { logger }),
    address: (id: NodeId) => addresses.get(id) as string,
    dispose: async () => {},
  };
});

/** A raw TCP client that records the frames (or raw bytes) it receives. */
class RawClient {
  readonly frames: Frame[] = [];
  readonly errors: string[] = [];
  raw = Buffer.alloc(0);
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder({ frameBytesMax: 1024 * 1024 });

  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.raw = Buffer.concat([this.raw, chunk]);
      this.decoder.push(chunk);
      for (let step = this.decoder.next(); step.kind !== "need_more"; step = this.decoder.next()) {
        if (step.kind === "error") {
          this.errors.push(step.error.code);
          break;
        }
        this.frames.push(step.frame);
      }
    });
    socket.on("error", () => {});
    this.closed = withTimeout(
      new Promise((resolve) => socket.on("close", () => resolve())),
      "the connection to close",
    );
  }

  static async open(address: string): Promise<RawClient> {
    const [host, port] = splitAddress(address);
    const socket = connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  /** Sends `frame` as is; the encoder does not check it, so it may break the schema. */
  sendFrame(frame: Frame | Record<string, unknown>): void {
    const encoded = encodeFrame(frame as Frame, { frameBytesMax: 1024 * 1024 });
    if (!encoded.ok) throw new Error("frame too large");
    this.socket.write(encoded.bytes);
  }

  hello(
    fields: Partial<{
      clusterId: string;
      clusterUid: string;
      fromId: number;
      toId: number;
      version: number;
      incarnation: number;
      memberIncarnation: number;
      peerAddress: string;
      /** Sent as is, so that a test can advertise what the schema refuses. */
      advertise: unknown;
    }>,
  ) {
    this.sendFrame({
      type: "hello",
      magic: "baton",
      protocolVersion: fields.version ?? PROTOCOL_VERSION,
      clusterId: fields.clusterId ?? "test-cluster",
      clusterUid: fields.clusterUid ?? "",
      fromId: fields.fromId ?? 2,
      toId: fields.toId ?? 1,
      incarnation: fields.incarnation ?? 1,
      memberIncarnation: fields.memberIncarnation ?? 0,
      peerAddress: fields.peerAddress ?? "",
      advertise: (fields.advertise ?? { httpUrl: null }) as PeerInfo,
    });
  }
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon).replace(/^\[|\]$/g, ""), Number(address.slice(colon + 1))];
}

/** Resolves once `condition` holds, checking after each turn of the event loop. */
describe("TcpTransport", () => {
  const transports: TcpTransport[] = [];
  const clients: RawClient[] = [];
  const servers: Closable[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.socket.destroy();
    await Promise.all(transports.splice(0).map((transport) => transport.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  /**
   * Node 1's transport, not started, and a stand-in for node 2 (`peer`, stalledPeer's by
   * default: it answers the handshake, then reads nothing) on a port of its own.
   */
  async function towardPeer(
    overrides: Partial<TcpTransportConfig> = {},
    makePeer: (port: number) => ReturnType<typeof stalledPeer> = (port) => stalledPeer(port, 2),
  ) {
    const [port] = await reservePorts(1);
    const peer = await makePeer(port as number);
    servers.push(peer);
    return { ...nodeOne(port as number, overrides), peer };
  }

  /** Node 1's transport, not started, with node 2 at `port` of this machine. */
  function nodeOne(port: number, overrides: Partial<TcpTransportConfig>) {
    const addresses = new Map([
      [1, "127.0.0.1:0"],
      [2, `127.0.0.1:${port}`],
    ]);
    const { logger, lines } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses, overrides), { logger });
    transports.push(a);
    return { a, lines };
  }

  async function startNodes(
    ids: readonly NodeId[],
    overrides: Partial<TcpTransportConfig> = {},
  ): Promise<{ nodes: TcpTransport[]; lines: LogLine[]; addresses: Map<NodeId, string> }> {
    const addresses = await addressesFor(ids);
    const { logger, lines } = captureLogger();
    const nodes = ids.map(
      (id) => new TcpTransport(testConfig(id, addresses, overrides), { logger }),
    );
    transports.push(...nodes);
    await Promise.all(nodes.map((node) => node.start()));
    return { nodes, lines, addresses };
  }

  /** Node 1 alone: its peer 2 never runs, so only raw clients speak for node 2. */
  async function loneNode(overrides: Partial<TcpTransportConfig> = {}) {
    const [port] = await reservePorts(1);
    const { a, lines } = nodeOne(port as number, overrides);
    await a.start();
    return { a, lines, address: `127.0.0.1:${a.listenAddress().port}` };
  }

  async function openClient(address: string): Promise<RawClient> {
    const client = await RawClient.open(address);
    clients.push(client);
    return client;
  }

  /** Sends one heartbeat 1 -> 2 and waits for it: proof that the real link still works. */
  async function expectLinkWorks(a: TcpTransport, b: TcpTransport, n: number): Promise<void> {
    const inbox = new Inbox(b);
    await whenConnected(a, b.nodeId);
    a.send(numberedHeartbeat(a.nodeId, b.nodeId, n));
    await inbox.until(1);
    expect(inbox.messages).toEqual([numberedHeartbeat(a.nodeId, b.nodeId, n)]);
  }

  it("tcp: round-trips every message type with large entries (4 MiB entry)", async () => {
    const { nodes } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    const inbox = new Inbox(b);
    await whenConnected(a, 2);
    const messages = sampleMessages(1, 2, 4 * 1024 * 1024);
    for (const message of messages) expect(a.send(message).queued).toBe(true);
    await inbox.until(messages.length);
    // The 4 MiB append fills the socket: the control messages after it overtake it.
    expect(comparableByLane(inbox.messages)).toEqual(comparableByLane(messages));
  });

  it("tcp: what was queued for a peer process is not delivered to the process that replaces it", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(a, 2);
    const down = nextPeerEvent(a, "down", 2);
    await b.close();
    await down;
    // Queued while node 2 is down: meant for the process that stopped.
    for (const n of [1, 2, 3]) expect(a.send(numberedHeartbeat(1, 2, n)).queued).toBe(true);
    const { logger } = captureLogger();
    const restarted = new TcpTransport(testConfig(2, addresses), { logger });
    transports.push(restarted);
    const inbox = new Inbox(restarted);
    await restarted.start();
    await whenConnected(a, 2);
    a.send(numberedHeartbeat(1, 2, 4));
    await inbox.until(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 4)]);
    expect(a.stats().peers.find((p) => p.peer === 2)?.droppedMessages).toBe(3);
  });

  it("tcp: an answer to a restarted peer's first message, queued while the link to it reconnects, reaches it", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(a, 2);
    const down = nextPeerEvent(a, "down", 2);
    await b.close();
    await down;
    const { logger } = captureLogger();
    const restarted = new TcpTransport(testConfig(2, addresses), { logger });
    transports.push(restarted);
    const inbox = new Inbox(restarted);
    // Node 1 answers the new process's first message at once, as a node answers a vote
    // request: its own link to node 2 is still being set up, so the answer is queued.
    let answered = false;
    a.onMessage((message) => {
      if (message.from !== 2 || answered) return;
      answered = true;
      a.send(numberedHeartbeat(1, 2, 7));
    });
    await restarted.start();
    await whenConnected(restarted, 1);
    restarted.send(numberedHeartbeat(2, 1, 1));
    await inbox.until(1);
    expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 7)]);
  });

  it("tcp: reconnects quickly after the peer restarts (same port)", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(a, 2);
    const down = nextPeerEvent(a, "down", 2);
    await b.close();
    expect(["lost", "refused"]).toContain(await down);
    const { logger } = captureLogger();
    const restarted = new TcpTransport(testConfig(2, addresses), { logger });
    transports.push(restarted);
    const up = nextPeerEvent(a, "up", 2);
    await restarted.start();
    await up;
    await expectLinkWorks(a, restarted, 1);
    expect(a.stats().peers[0]?.reconnectAttempts).toBeGreaterThan(0);
  });

  it("tcp: bounds queued bytes when the peer stops reading (back-pressure)", async () => {
    const queueBytesMax = 4 * 1024 * 1024;
    const { a } = await towardPeer({ queueBytesMax });
    await a.start();
    await whenConnected(a, 2);
    const [, , big] = sampleMessages(1, 2, 256 * 1024) as [Message, Message, Message];
    const results = Array.from({ length: 200 }, () => a.send(big));
    const stats = a.stats().peers[0];
    expect(results.some((r) => !r.queued && r.reason === "queue_full")).toBe(true);
    expect(stats?.queuedBytes).toBeLessThanOrEqual(queueBytesMax);
    expect(stats?.droppedMessages).toBe(results.filter((r) => !r.queued).length);
    expect(stats?.connected).toBe(true);
  });

  it("tcp: what was queued on a connection that fails is dropped with it, not sent on the next one (a forward delivered after a partition)", async () => {
    const { a, peer: stalled } = await towardPeer();
    await a.start();
    await whenConnected(a, 2);
    const [, , big] = sampleMessages(1, 2, 256 * 1024) as [Message, Message, Message];
    // The peer reads nothing: once the socket's buffers are full, the rest waits in the queue.
    for (let i = 0; i < 40; i++) a.send(big);
    const queued = a.stats().peers[0]?.queuedMessages ?? 0;
    expect(queued).toBeGreaterThan(0);
    const dropped = a.stats().peers[0]?.droppedMessages ?? 0;
    const down = nextPeerEvent(a, "down", 2);
    await stalled.close();
    await down;
    expect(a.stats().peers[0]?.queuedMessages).toBe(0);
    // (The socket may have taken a frame or two more before it failed.)
    expect(a.stats().peers[0]?.droppedMessages).toBeGreaterThan(dropped + queued / 2);
    // Sent while the link is down: kept for the next connection.
    expect(a.send(numberedHeartbeat(1, 2, 1)).queued).toBe(true);
    expect(a.stats().peers[0]?.queuedMessages).toBe(1);
  });

  it("tcp: drops a connection to an old peer process when a new one dials in (half-open)", async () => {
    const { a, peer: oldProcess } = await towardPeer();
    const downs: string[] = [];
    a.onPeerDown((peer, reason) => downs.push(`${peer} ${reason}`));
    await a.start();
    await whenConnected(a, 2);
    const address = a.listenAddress();
    // The same process dialling again proves nothing about the outbound connection.
    const sameProcess = await openClient(`127.0.0.1:${address.port}`);
    sameProcess.hello({ fromId: 2, incarnation: 1 });
    await withTimeout(
      untilTrue(() => sameProcess.frames.length === 1),
      "hello_ok",
    );
    // A new process proves the old one is gone, though its connection never closed.
    const down = nextPeerEvent(a, "down", 2);
    const up = nextPeerEvent(a, "up", 2);
    const newProcess = await openClient(`127.0.0.1:${address.port}`);
    newProcess.hello({ fromId: 2, incarnation: 2 });
    expect(await down).toBe("lost");
    await up;
    expect(downs).toEqual(["2 lost"]);
    expect(oldProcess.hellos).toBe(2);
  });

  /** Ping every 20 ms, lose a peer after 150 ms of silence: the defaults, 50 times faster. */
  const FAST_SILENCE = { pingIntervalMs: 20, peerSilenceMsMax: 150 } as const;

  it("tcp: a peer that answers the handshake and then falls silent is lost and redialled (no TCP error needed)", async () => {
    // Answers the hello, then never reads again: its connection stays open, as a
    // machine that went dark leaves it, and no pong ever comes back.
    const { a, peer: silent, lines } = await towardPeer(FAST_SILENCE);
    await a.start();
    await whenConnected(a, 2);
    expect(await nextPeerEvent(a, "down", 2)).toBe("lost");
    const line = await untilLogged(lines, (l) => l.reason === "peer_silent");
    expect(line.msg).toBe("closing a connection: peer silent");
    await nextPeerEvent(a, "up", 2);
    expect(silent.hellos).toBeGreaterThanOrEqual(2);
  });

  it("tcp: two live nodes stay connected through many silence limits: pings are answered", async () => {
    const { nodes } = await startNodes([1, 2], FAST_SILENCE);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(a, 2);
    await whenConnected(b, 1);
    const downs: string[] = [];
    a.onPeerDown((peer, reason) => downs.push(`${peer} ${reason}`));
    b.onPeerDown((peer, reason) => downs.push(`${peer} ${reason}`));
    // Ten silence limits with no message sent either way: only pings and pongs.
    await new Promise((resolve) => setTimeout(resolve, 10 * FAST_SILENCE.peerSilenceMsMax));
    expect(downs).toEqual([]);
    expect(a.stats().peers[0]?.reconnectAttempts).toBe(0);
    expect(b.stats().peers[0]?.reconnectAttempts).toBe(0);
    await expectLinkWorks(a, b, 1);
  });

  it("tcp: a peer that reads slowly is not lost while its pongs wait behind the data, and is once it stops reading", async () => {
    const [port] = await reservePorts(1);
    const slow = await slowReader(port as number, 2);
    servers.push(slow);
    const addresses = new Map([
      [1, "127.0.0.1:0"],
      [2, `127.0.0.1:${port}`],
    ]);
    const { logger } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses, FAST_SILENCE), { logger });
    transports.push(a);
    const downs: string[] = [];
    a.onPeerDown((peer, reason) => downs.push(`${peer} ${reason}`));
    await a.start();
    await whenConnected(a, 2);
    // Far more than the socket buffers hold: the link waits for 'drain' again and again.
    const [, , big] = sampleMessages(1, 2, 64 * 1024) as [Message, Message, Message];
    for (let i = 0; i < 400; i++) expect(a.send(big).queued).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 8 * FAST_SILENCE.peerSilenceMsMax));
    expect(downs).toEqual([]);
    expect(slow.bytesRead).toBeGreaterThan(0);
    expect(a.stats().peers[0]?.queuedMessages).toBeGreaterThan(0);
    slow.stopReading();
    expect(await nextPeerEvent(a, "down", 2)).toBe("lost");
  });

  it("tcp: a frame that takes longer than the silence limit to cross a slow link arrives, and the link is not lost meanwhile", async () => {
    // Node 1 reaches node 2 through a proxy that lets a read of at most 64 KiB through
    // every 20 ms: a 1 MiB append takes some 300 ms, two silence limits, and node 1's pings
    // wait behind it. Node 2 says it reads by the pongs it sends while the bytes arrive
    // (with pongs only for whole frames, the link was lost after 150 ms, for ever).
    const [port1, port2] = await reservePorts(2);
    const slow = await throttledProxy(port2 as number, 32 * 1024, 20);
    servers.push(slow);
    const { logger } = captureLogger();
    const peers = (via: number) =>
      new Map([
        [1, `127.0.0.1:${port1}`],
        [2, `127.0.0.1:${via}`],
      ]);
    const a = new TcpTransport(testConfig(1, peers(slow.port), FAST_SILENCE), { logger });
    const b = new TcpTransport(
      { ...testConfig(2, peers(port2 as number), FAST_SILENCE), listen: `127.0.0.1:${port2}` },
      { logger },
    );
    transports.push(a, b);
    await Promise.all([a.start(), b.start()]);
    await whenConnected(a, 2);
    const downs: string[] = [];
    a.onPeerDown((peer, reason) => downs.push(`${peer} ${reason}`));
    const inbox = new Inbox(b);
    const [, , big] = sampleMessages(1, 2, 1024 * 1024) as [Message, Message, Message];
    expect(a.send(big).queued).toBe(true);
    await inbox.until(1);
    expect(downs).toEqual([]);
  });

  it("tcp: answers a ping with a pong and closes an inbound connection whose peer falls silent", async () => {
    const { lines, address } = await loneNode(FAST_SILENCE);
    const client = await openClient(address);
    client.hello({ fromId: 2 });
    await withTimeout(
      untilTrue(() => client.frames.length === 1),
      "hello_ok",
    );
    // Pinging keeps the connection open well past the silence limit.
    for (let i = 0; i < 10; i++) {
      client.sendFrame({ type: "ping" });
      await new Promise((resolve) => setTimeout(resolve, FAST_SILENCE.pingIntervalMs));
    }
    // A pong for each ping, and now and then one more for the bytes that came (unasked).
    await withTimeout(
      untilTrue(() => client.frames.length >= 11),
      "ten pongs",
    );
    const answers = client.frames.slice(1);
    expect(answers.every((frame) => frame.type === "pong")).toBe(true);
    expect(answers.length).toBeLessThanOrEqual(20);
    // Then nothing: the node closes the connection after the silence limit.
    const silentFrom = Date.now();
    await client.closed;
    // Not before the limit (less the last ping's head start, and a scheduling margin).
    expect(Date.now() - silentFrom).toBeGreaterThanOrEqual(FAST_SILENCE.peerSilenceMsMax / 2);
    const line = await untilLogged(lines, (l) => l.reason === "peer_silent");
    expect(line.msg).toBe("closing connection: peer silent");
  });

  it("tcp: a dialler that sends messages hears a pong at most once a ping interval, unasked", async () => {
    const { address } = await loneNode({ pingIntervalMs: 200, peerSilenceMsMax: 1000 });
    const client = await openClient(address);
    client.hello({ fromId: 2 });
    for (let n = 1; n <= 100; n++) client.sendFrame(numberedHeartbeat(2, 1, n));
    await withTimeout(
      untilTrue(() => client.frames.length === 2),
      "a pong",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(client.frames).toEqual([
      expect.objectContaining({ type: "hello_ok" }),
      { type: "pong" },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    client.sendFrame(numberedHeartbeat(2, 1, 101));
    await withTimeout(
      untilTrue(() => client.frames.length === 3),
      "a second pong",
    );
  });

  it("tcp: a pong from the dialler is a protocol error", async () => {
    const { lines, address } = await loneNode();
    const client = await openClient(address);
    client.hello({ fromId: 2 });
    client.sendFrame({ type: "pong" });
    await client.closed;
    const line = await untilLogged(lines, (l) => l.reason === "unexpected_frame");
    expect(line.detail).toBe("pong after hello");
  });

  it("tcp: a close while start is binding ends start, leaves no listener behind and never runs", async () => {
    const [port] = await reservePorts(1);
    const addresses = new Map([
      [1, `127.0.0.1:${port}`],
      [2, "127.0.0.1:1"],
    ]);
    const { logger } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses), { logger });
    const started = a.start();
    await a.close();
    await withTimeout(started, "start to end after a close");
    expect(a.stats().peers.every((peer) => !peer.connected)).toBe(true);
    // The port is free again: a listener of our own can take it.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(port, "127.0.0.1", () => resolve());
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  });

  it("tcp: a peer given a new address reports down before the new link comes up (events alternate)", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(a, 2);
    await whenConnected(b, 1);
    const events: string[] = [];
    a.onPeerUp((peer) => events.push(`${peer} up`));
    a.onPeerDown((peer, reason) => events.push(`${peer} down ${reason}`));
    const bEvents: string[] = [];
    b.onPeerDown((peer, reason) => bEvents.push(`${peer} down ${reason}`));
    const [unused] = await reservePorts(1);
    a.addPeer({ id: 2, address: `127.0.0.1:${unused}` });
    expect(events).toEqual(["2 down closed"]);
    // The new link's dial is refused: no second down (it was reported "2 down refused").
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(events).toEqual(["2 down closed"]);
    // The connection node 2 made to node 1 stays: before, it was destroyed with the link,
    // and node 2 saw its link to a healthy node 1 lost.
    expect(bEvents).toEqual([]);
    const up = nextPeerEvent(a, "up", 2);
    a.addPeer({ id: 2, address: addresses.get(2) as string });
    await up;
    expect(events).toEqual(["2 down closed", "2 up"]);
  });

  it("tcp: a peer address that is not host:port is logged and not dialled; the node runs on", async () => {
    const { nodes, lines } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    a.addPeer({ id: 3, address: "node_3:99999" });
    const line = await untilLogged(lines, (l) => l.reason === "bad_address");
    expect(line).toMatchObject({ peer: 3, address: "node_3:99999" });
    expect(String(line.msg)).toMatch(
      /cannot dial node 3: .*neither an IP address nor a hostname; replace/,
    );
    await expectLinkWorks(b, a, 1);
  });

  it("tcp: refuses a wrong cluster id with a reason and logs it", async () => {
    const { nodes, lines, addresses } = await startNodes([1, 2]);
    const client = await openClient(addresses.get(1) as string);
    client.hello({ clusterId: "other-cluster" });
    await client.closed;
    expect(client.frames).toEqual([
      { type: "hello_error", reason: expect.stringMatching(/cluster id/) },
    ]);
    const line = await untilLogged(lines, (l) => l.msg === "refusing handshake");
    expect(line).toMatchObject({ peer: 2, reason: expect.stringMatching(/cluster id/) });
    expect(line.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    await expectLinkWorks(nodes[1] as TcpTransport, nodes[0] as TcpTransport, 1);
  });

  it("tcp: a hello with another drawn cluster id is refused, naming both (one empty id is accepted)", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    const a = nodes[0] as TcpTransport;
    a.setClusterUid("aaaa");
    const stranger = await openClient(addresses.get(1) as string);
    stranger.hello({ clusterUid: "bbbb" });
    await stranger.closed;
    expect(stranger.frames).toEqual([
      {
        type: "hello_error",
        reason: expect.stringMatching(/node 2 belongs to cluster bbbb and node 1 to cluster aaaa/),
      },
    ]);
    // A node without an id yet (bootstrapping, or upgraded) is not refused for it: the
    // bootstrap gate in the core decides what it may do.
    const empty = await openClient(addresses.get(1) as string);
    empty.hello({ clusterUid: "" });
    await untilTrue(() => empty.frames.length > 0);
    expect(empty.frames[0]).toMatchObject({ type: "hello_ok", clusterUid: "aaaa" });
  });

  it("tcp: two transports with different drawn cluster ids stay apart (handshake_refused)", async () => {
    const addresses = await addressesFor([1, 2]);
    const { logger } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses), { logger });
    const b = new TcpTransport(testConfig(2, addresses), { logger });
    a.setClusterUid("first");
    b.setClusterUid("second");
    transports.push(a, b);
    const down = nextPeerEvent(a, "down", 2);
    await Promise.all([a.start(), b.start()]);
    expect(await down).toBe("handshake_refused");
    expect(a.stats().peers[0]?.connected).toBe(false);
  });

  it("tcp: a node of another cluster sees handshake_refused (two transports)", async () => {
    const addresses = await addressesFor([1, 2]);
    const { logger } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses), { logger });
    const b = new TcpTransport(testConfig(2, addresses, { clusterId: "elsewhere" }), { logger });
    transports.push(a, b);
    const down = nextPeerEvent(a, "down", 2);
    await Promise.all([a.start(), b.start()]);
    expect(await down).toBe("handshake_refused");
    expect(a.stats().peers[0]?.connected).toBe(false);
  });

  it.each([
    ["an unknown sender", { fromId: 9 }, /not a member/],
    ["a hello for another node", { toId: 3 }, /this is node 1, not node 3/],
    ["another protocol version", { version: 99 }, /protocol version 99/],
  ])("tcp: refuses %s in the hello", async (_, fields, reason) => {
    const { lines, addresses } = await startNodes([1, 2]);
    const client = await openClient(addresses.get(1) as string);
    client.hello(fields);
    await client.closed;
    expect(client.frames).toEqual([{ type: "hello_error", reason: expect.stringMatching(reason) }]);
    await untilLogged(
      lines,
      (l) => l.msg === "refusing handshake" && reason.test(String(l.reason)),
    );
  });

  it("tcp: asks the node about a sender that is not a peer, on what its hello says", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    nodes[0]!.setClusterUid("c0ffee");
    const asked: UnknownCaller[] = [];
    // The node admits incarnation 77 of node 9 (a member added back while it was behind)
    // by linking it again, and refuses any other.
    nodes[0]!.onUnknownPeer((caller) => {
      asked.push(caller);
      if (caller.memberIncarnation !== 77) {
        return { admitted: false, reason: "incarnation 76 of node 9 was removed" };
      }
      nodes[0]!.addPeer({ id: caller.id, address: addresses.get(2) as string });
      return { admitted: true };
    });
    const removed = await openClient(addresses.get(1) as string);
    removed.hello({ fromId: 9, memberIncarnation: 76, peerAddress: "127.0.0.1:1" });
    await removed.closed;
    // The caller hears the node's own reason.
    expect(removed.frames).toEqual([
      { type: "hello_error", reason: "incarnation 76 of node 9 was removed" },
    ]);
    const received: number[] = [];
    nodes[0]!.onMessage((m) => received.push(m.from));
    const added = await openClient(addresses.get(1) as string);
    added.hello({ fromId: 9, memberIncarnation: 77, clusterUid: "c0ffee" });
    await withTimeout(
      untilTrue(() => added.frames.length === 1),
      "hello_ok",
    );
    expect(added.frames[0]).toMatchObject({ type: "hello_ok", nodeId: 1 });
    added.sendFrame(numberedHeartbeat(9, 1, 1));
    await withTimeout(
      untilTrue(() => received.length === 1),
      "the message of the admitted node",
    );
    expect(asked).toEqual([
      {
        id: 9,
        memberIncarnation: 76,
        peerAddress: "127.0.0.1:1",
        sameCluster: false,
        clusterUid: "",
      },
      { id: 9, memberIncarnation: 77, peerAddress: null, sameCluster: true, clusterUid: "c0ffee" },
    ]);
    // What the admitted node's handshake presented stays known while its connection lives.
    expect(nodes[0]!.presentedBy(9)).toEqual({ memberIncarnation: 77, clusterUid: "c0ffee" });
    expect(nodes[0]!.presentedBy(5)).toBeNull();
  });

  it("tcp: closes a garbage connection with a logged reason; real peers unaffected", async () => {
    const { nodes, lines, addresses } = await startNodes([1, 2]);
    const [a, b] = nodes as [TcpTransport, TcpTransport];
    await whenConnected(b, 1);
    const client = await openClient(addresses.get(1) as string);
    client.socket.write(Buffer.from([0, 0, 0, 5, 0xc1, 0xc1, 0xff, 0x00, 0x13]));
    await client.closed;
    const line = await untilLogged(lines, (l) => l.msg === "closing connection: protocol error");
    expect(line).toMatchObject({ reason: "bad_msgpack", peer: null });
    expect(line.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(a.stats().protocolErrors).toBe(1);
    await expectLinkWorks(b, a, 1);
    await expectLinkWorks(a, b, 2);
  });

  it("tcp: answers an HTTP request on the peer port with 400 and closes", async () => {
    const { nodes, lines, addresses } = await startNodes([1, 2]);
    const client = await openClient(addresses.get(1) as string);
    client.socket.write("GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await client.closed;
    expect(client.raw.toString()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    const line = await untilLogged(lines, (l) => l.reason === "http_request");
    expect(line.detail).toMatch(/exceeds the limit/);
    await expectLinkWorks(nodes[1] as TcpTransport, nodes[0] as TcpTransport, 1);
  });

  it("tcp: refuses an oversized frame length after the handshake", async () => {
    const { nodes, lines, addresses } = await startNodes([1, 2, 3]);
    const client = await openClient(addresses.get(1) as string);
    client.hello({ fromId: 3 });
    client.socket.write(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    await client.closed;
    expect(client.frames).toEqual([
      {
        type: "hello_ok",
        protocolVersion: PROTOCOL_VERSION,
        nodeId: 1,
        clusterUid: "",
        incarnation: expect.any(Number),
        advertise: { httpUrl: null },
      },
    ]);
    await untilLogged(lines, (l) => l.reason === "oversized_frame" && l.peer === 3);
    await expectLinkWorks(nodes[1] as TcpTransport, nodes[0] as TcpTransport, 1);
  });

  it("tcp: refuses a message whose sender differs from the handshake", async () => {
    const { lines, addresses } = await startNodes([1, 2, 3]);
    const client = await openClient(addresses.get(1) as string);
    client.hello({ fromId: 3 });
    client.sendFrame(numberedHeartbeat(2, 1, 1));
    await client.closed;
    const line = await untilLogged(lines, (l) => l.reason === "unexpected_frame");
    expect(line).toMatchObject({ peer: 3, detail: expect.stringMatching(/from 2 to 1/) });
  });

  it("tcp: refuses a message before the hello", async () => {
    const { lines, addresses } = await startNodes([1, 2]);
    const client = await openClient(addresses.get(1) as string);
    client.sendFrame(numberedHeartbeat(2, 1, 1));
    await client.closed;
    await untilLogged(lines, (l) => l.reason === "unexpected_frame" && l.peer === null);
  });

  it("tcp: disconnects a silent client after the handshake timeout (200 ms)", async () => {
    const { lines, addresses } = await startNodes([1, 2], { handshakeTimeoutMs: 200 });
    const client = await openClient(addresses.get(1) as string);
    await client.closed;
    await untilLogged(lines, (l) => l.reason === "handshake_timeout");
  });

  it("tcp: closes connections beyond the pending-handshake limit (limit 2)", async () => {
    const { nodes, addresses } = await startNodes([1, 2], { pendingConnectionsMax: 2 });
    await whenConnected(nodes[1] as TcpTransport, 1);
    const address = addresses.get(1) as string;
    const silent = [await openClient(address), await openClient(address)];
    const extra = await openClient(address);
    await extra.closed;
    expect(silent.every((client) => !client.socket.destroyed)).toBe(true);
    await expectLinkWorks(nodes[1] as TcpTransport, nodes[0] as TcpTransport, 1);
  });

  it("tcp: drops a message larger than the frame limit (too_large)", async () => {
    const { nodes } = await startNodes([1, 2], { frameBytesMax: 64 * 1024 });
    const [, , big] = sampleMessages(1, 2, 100 * 1024) as [Message, Message, Message];
    expect((nodes[0] as TcpTransport).send(big)).toEqual({ queued: false, reason: "too_large" });
    expect((nodes[0] as TcpTransport).stats().peers[0]?.droppedMessages).toBe(1);
  });

  it("tcp: reports refused when nothing listens at the peer's address", async () => {
    const [port] = await reservePorts(1);
    const addresses = new Map([
      [1, "127.0.0.1:0"],
      [2, `127.0.0.1:${port}`],
    ]);
    const { logger } = captureLogger();
    const a = new TcpTransport(testConfig(1, addresses), { logger });
    transports.push(a);
    const down = nextPeerEvent(a, "down", 2);
    await a.start();
    expect(await down).toBe("refused");
  });

  it("tcp: listens and connects on IPv6 loopback ([::1])", async (context) => {
    if (!(await ipv6Available())) context.skip();
    const ports = await reservePorts(2);
    const addresses = new Map([
      [1, `[::1]:${ports[0]}`],
      [2, `[::1]:${ports[1]}`],
    ]);
    const { logger } = captureLogger();
    const nodes = [1, 2].map((id) => new TcpTransport(testConfig(id, addresses), { logger }));
    transports.push(...nodes);
    await Promise.all(nodes.map((node) => node.start()));
    expect(nodes[0]?.listenAddress().host).toBe("::1");
    await expectLinkWorks(nodes[0] as TcpTransport, nodes[1] as TcpTransport, 1);
  });

  it("tcp: learns peer info from an inbound hello; a newer hello replaces it (peer never dialled)", async () => {
    const { a, address } = await loneNode({ advertise: { httpUrl: "http://node-1:8080" } });
    const first = await openClient(address);
    first.hello({ fromId: 2, incarnation: 1, advertise: { httpUrl: "http://node-2:8080" } });
    await withTimeout(
      untilTrue(() => first.frames.length === 1),
      "hello_ok",
    );
    // The acceptor's answer carries its own info, for the dialler to learn.
    expect(first.frames[0]).toMatchObject({ advertise: { httpUrl: "http://node-1:8080" } });
    expect(a.peerInfo(2)).toEqual({ httpUrl: "http://node-2:8080" });
    expect(a.stats().peers[0]).toMatchObject({
      connected: false,
      info: { httpUrl: "http://node-2:8080" },
    });
    const second = await openClient(address);
    second.hello({ fromId: 2, incarnation: 2, advertise: { httpUrl: "http://node-2b:8080" } });
    await withTimeout(
      untilTrue(() => second.frames.length === 1),
      "hello_ok",
    );
    expect(a.peerInfo(2)).toEqual({ httpUrl: "http://node-2b:8080" });
  });

  it.each([
    ["an httpUrl over 256 bytes", { httpUrl: `http://a/${"x".repeat(300)}` }],
    ["an ftp httpUrl", { httpUrl: "ftp://node-2" }],
    ["an extra advertised key", { httpUrl: null, role: "master" }],
  ])("tcp: closes a hello advertising %s as a protocol error", async (_, advertise) => {
    const { a, lines, address } = await loneNode();
    const client = await openClient(address);
    client.hello({ fromId: 2, advertise });
    await client.closed;
    expect(client.frames).toEqual([]);
    const line = await untilLogged(lines, (l) => l.reason === "invalid_frame");
    expect(line.detail).toMatch(/^hello\.advertise: /);
    expect(a.stats().protocolErrors).toBe(1);
    expect(a.peerInfo(2)).toBeNull();
    // The refusal is about that connection only: a valid hello is still accepted.
    const valid = await openClient(address);
    valid.hello({ fromId: 2, advertise: { httpUrl: "http://node-2:8080" } });
    await withTimeout(
      untilTrue(() => valid.frames.length === 1),
      "hello_ok",
    );
    expect(a.peerInfo(2)).toEqual({ httpUrl: "http://node-2:8080" });
  });

  it("tcp: a hello_ok advertising an invalid httpUrl takes the peer down (protocol_error)", async () => {
    const { a } = await towardPeer({}, (port) =>
      stalledPeer(port, 2, { httpUrl: "http://u:secret@node-2" }),
    );
    const down = nextPeerEvent(a, "down", 2);
    await a.start();
    expect(await down).toBe("protocol_error");
    expect(a.peerInfo(2)).toBeNull();
    expect(a.stats().protocolErrors).toBeGreaterThan(0);
  });

  it("tcp: a peer that drops the link right after each handshake is redialled with a growing back-off", async () => {
    const { a, peer } = await towardPeer({ reconnectDelayMsMax: 400 }, (port) =>
      stalledPeer(port, 2, { httpUrl: null }, { dropAfterHello: true }),
    );
    await a.start();
    await new Promise((resolve) => setTimeout(resolve, 800));
    // 10, 20, 40, 80, 160, 320 ms (each at least half that): a handful, where a back-off
    // that started over at every handshake redialled about every 10 ms (some 60 times).
    expect(peer.hellos).toBeGreaterThanOrEqual(3);
    expect(peer.hellos).toBeLessThanOrEqual(12);
  });

  it("tcp: closes a hello of protocol version 1 with a log naming the version", async () => {
    const { lines, addresses } = await startNodes([1, 2]);
    const client = await openClient(addresses.get(1) as string);
    client.sendFrame({
      type: "hello",
      magic: "baton",
      protocolVersion: 1,
      clusterId: "test-cluster",
      fromId: 2,
      toId: 1,
      incarnation: 1,
    });
    await client.closed;
    const line = await untilLogged(lines, (l) => l.reason === "invalid_frame");
    expect(line.detail).toMatch(
      new RegExp(`protocol version 1 is not supported \\(this node speaks ${PROTOCOL_VERSION}\\)`),
    );
  });

  it("tcp: rejects a second start and a port already in use", async () => {
    const { nodes, addresses } = await startNodes([1, 2]);
    await expect((nodes[0] as TcpTransport).start()).rejects.toThrow(/twice/);
    const { logger } = captureLogger();
    const clash = new TcpTransport(testConfig(1, addresses), { logger });
    transports.push(clash);
    // Named by the setting, with what to do, and Node's code kept.
    await expect(clash.start()).rejects.toMatchObject({
      code: "EADDRINUSE",
      message: `--listen ${addresses.get(1)}: the port is in use by another process (is another node running here?) (EADDRINUSE)`,
    });
  });
});

/**
 * A fake peer `id` (incarnation 1) that completes handshakes and then never reads, so that
 * the sender's socket buffers fill and back-pressure reaches its queue. Like a crashed
 * host, it never closes a connection either. `hellos` counts the handshakes it answered.
 * Its hello_ok carries `advertise` as is, so that a test can send what the schema refuses.
 */
async function stalledPeer(
  port: number,
  id: NodeId,
  advertise: unknown = { httpUrl: null },
  options: { readonly dropAfterHello?: boolean } = {},
): Promise<Closable & { hellos: number }> {
  let hellos = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    const decoder = new FrameDecoder({ frameBytesMax: 1024 * 1024 });
    socket.on("error", () => {});
    socket.once("data", (chunk: Buffer) => {
      decoder.push(chunk);
      const step = decoder.next();
      if (step.kind !== "frame" || step.frame.type !== "hello") return socket.destroy();
      const helloOk = {
        type: "hello_ok",
        protocolVersion: PROTOCOL_VERSION,
        nodeId: id,
        clusterUid: "",
      };
      const ok = encodeFrame({ ...helloOk, incarnation: 1, advertise } as Frame, {
        frameBytesMax: 1024,
      });
      if (ok.ok) socket.write(ok.bytes);
      hellos++;
      socket.pause();
      if (options.dropAfterHello === true) setTimeout(() => socket.destroy(), 1);
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port }, resolve));
  return {
    get hellos() {
      return hellos;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A peer that answers the hello and then reads one chunk every 20 ms (some 3 MB/s at
 * most, far below what the dialler offers), until told to stop reading at all. Like a
 * node, it sends a pong whenever it reads, at most once a ping interval (20 ms); it never
 * parses the frames, so the dialler's pings, queued behind megabytes, go unanswered.
 */
async function slowReader(
  port: number,
  id: NodeId,
): Promise<Closable & { bytesRead: number; stopReading(): void }> {
  let bytesRead = 0;
  let reading = true;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("data", () => {
      const helloOk = {
        type: "hello_ok",
        protocolVersion: PROTOCOL_VERSION,
        nodeId: id,
        clusterUid: "",
        incarnation: 1,
        advertise: { httpUrl: null },
      };
      const ok = encodeFrame(helloOk as Frame, { frameBytesMax: 1024 });
      if (ok.ok) socket.write(ok.bytes);
      socket.pause();
      const pong = encodeFrame({ type: "pong" }, { frameBytesMax: 1024 });
      let pongedAt = 0;
      socket.on("data", (chunk: Buffer) => {
        bytesRead += chunk.length;
        socket.pause();
        if (pong.ok && Date.now() - pongedAt >= 20) {
          pongedAt = Date.now();
          socket.write(pong.bytes);
        }
      });
      const timer = setInterval(() => {
        if (reading) socket.resume();
      }, 20);
      timers.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port }, resolve));
  return {
    get bytesRead() {
      return bytesRead;
    },
    stopReading() {
      reading = false;
    },
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A TCP proxy on a port of its own to `target` on 127.0.0.1 that forwards at most `bytes`
 * toward it every `everyMs` (the answers pass freely): a slow link.
 */
async function throttledProxy(
  target: number,
  bytes: number,
  everyMs: number,
): Promise<Closable & { port: number }> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port: target });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
    }
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    let budget = bytes;
    client.on("data", (chunk: Buffer) => {
      upstream.write(chunk);
      budget -= chunk.length;
      if (budget <= 0) client.pause();
    });
    const timer = setInterval(() => {
      budget = bytes;
      client.resume();
    }, everyMs);
    timers.add(timer);
    const end = () => {
      clearInterval(timer);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

interface Closable {
  close(): Promise<void>;
}

async function ipv6Available(): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen({ host: "::1", port: 0 }, () => server.close(() => resolve(true)));
  });
}
