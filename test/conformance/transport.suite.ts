/**
 * The behaviour every Transport implementation must share, as one Vitest suite that each
 * implementation runs against its own harness: in-order delivery per link, peer up/down
 * events, restart at the same address, close stopping delivery and events, the bounded
 * queue dropping the excess, and what peers advertise about themselves (peerInfo). It
 * owns these checks and the sample messages used by transport tests; it must not depend
 * on any one implementation.
 *
 * Waiting is event-driven (promises resolved by handlers); the timeouts are only a safety
 * net so that a broken implementation fails instead of hanging.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Entry, Message, NodeId, WireMessage } from "../../src/protocol/messages.js";
import { isBulk, type SendQueueLimits } from "../../src/transport/send-queue.js";
import type { PeerDownReason, PeerInfo, Transport } from "../../src/transport/transport.js";

/** A log line written by a transport under test, parsed. */
export type LogLine = Record<string, unknown> & { msg: string; level: number };

/** A debug-level logger whose lines are kept, parsed, in `lines`. */
export function captureLogger() {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: "debug" },
    { write: (line: string) => lines.push(JSON.parse(line)) },
  );
  return { logger, lines };
}

/** Waits until a log line matches `predicate`, checking after each turn of the event loop. */
export async function untilLogged(lines: LogLine[], predicate: (line: LogLine) => boolean) {
  const deadline = Date.now() + 5000;
  while (!lines.some(predicate)) {
    if (Date.now() > deadline) throw new Error("expected log line never written");
    await new Promise((resolve) => setImmediate(resolve));
  }
  return lines.find(predicate) as LogLine;
}

/** Settings a test may give one node; the harness keeps its defaults for the rest. */
export interface NodeOptions extends Partial<SendQueueLimits> {
  /** What the node advertises to its peers. */
  readonly advertise?: PeerInfo;
}

/** Creates transports for one test; each test gets a fresh harness. */
export interface TransportHarness {
  /**
   * Creates (without starting) node `id` of the cluster the harness was made for. Creating
   * an id again after closing its previous transport simulates a restart at the same
   * address.
   */
  create(id: NodeId, options?: NodeOptions): Transport;
  /** The peer address node `id` listens on, as a member list would name it. */
  address(id: NodeId): string;
  /** Releases what the harness holds; called after every transport is closed. */
  dispose(): Promise<void>;
}

export type HarnessFactory = (ids: readonly NodeId[]) => Promise<TransportHarness>;

/** Longest wait for any one expected event, in milliseconds. */
const EVENT_WAIT_MS_MAX = 5000;

/** Deterministic bytes, so that failures reproduce. */
export function patternBytes(length: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

/** One message of every type from `from` to `to`, the append carrying a large entry. */
export function sampleMessages(from: NodeId, to: NodeId, largeEntryBytes = 256 * 1024): Message[] {
  const entries: Entry[] = [
    { index: 8, term: 2, kind: "noop", data: new Uint8Array(0) },
    { index: 9, term: 3, kind: "command", data: patternBytes(17, 9) },
    { index: 10, term: 3, kind: "command", data: patternBytes(largeEntryBytes, 10) },
  ];
  const envelope = { from, to, term: 3 };
  return [
    {
      ...envelope,
      type: "vote_request",
      incarnation: 0,
      preVote: true,
      handover: false,
      lastIndex: 7,
      lastTerm: 2,
    },
    { ...envelope, type: "vote_response", incarnation: 0, preVote: false, granted: true },
    {
      ...envelope,
      type: "append",
      incarnation: 0,
      prevIndex: 7,
      prevTerm: 2,
      entries,
      commitIndex: 6,
    },
    {
      ...envelope,
      type: "append",
      incarnation: 0,
      prevIndex: 0,
      prevTerm: 0,
      entries: [],
      commitIndex: 0,
    },
    {
      ...envelope,
      type: "append_response",
      incarnation: 0,
      success: false,
      index: 7,
      hintIndex: 5,
      hintTerm: 1,
    },
    { ...envelope, type: "heartbeat", incarnation: 0, commitIndex: 10, readContext: 42 },
    { ...envelope, type: "heartbeat_response", incarnation: 0, readContext: 42 },
  ];
}

/**
 * The messages with entry bytes as base64 text: deep equality on large typed arrays is
 * very slow in Vitest, and text compares fast with a readable diff.
 */
export function comparable(messages: readonly WireMessage[]): unknown[] {
  return messages.map((message) =>
    message.type === "append"
      ? {
          ...message,
          entries: message.entries.map((entry) => ({
            ...entry,
            data: Buffer.from(entry.data).toString("base64"),
            isBytes: entry.data instanceof Uint8Array,
          })),
        }
      : message,
  );
}

/**
 * `comparable(messages)` per send-queue lane: control messages may overtake bulk ones
 * (appends, snapshot chunks) that wait in the queue, and each lane keeps its own order.
 */
export function comparableByLane(messages: readonly WireMessage[]): unknown[][] {
  return [
    comparable(messages.filter((m) => !isBulk(m.type))),
    comparable(messages.filter((m) => isBulk(m.type))),
  ];
}

/** A heartbeat numbered by `readContext`, for order checks. */
export function numberedHeartbeat(from: NodeId, to: NodeId, n: number): Message {
  return { type: "heartbeat", incarnation: 0, from, to, term: 1, commitIndex: 0, readContext: n };
}

/** Collects what one transport receives and lets a test await a count. */
export class Inbox {
  readonly messages: WireMessage[] = [];
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(transport: Transport) {
    transport.onMessage((message) => {
      this.messages.push(message);
      this.waiters = this.waiters.filter((waiter) => {
        if (this.messages.length < waiter.count) return true;
        waiter.resolve();
        return false;
      });
    });
  }

  /** Resolves once at least `count` messages have arrived. */
  until(count: number): Promise<void> {
    if (this.messages.length >= count) return Promise.resolve();
    const arrived = new Promise<void>((resolve) => this.waiters.push({ count, resolve }));
    return withTimeout(arrived, `${count} messages (have ${this.messages.length})`);
  }
}

/** Resolves on the next up (or down) event of `transport` about `peer`. */
export function nextPeerEvent(
  transport: Transport,
  kind: "up" | "down",
  peer: NodeId,
): Promise<PeerDownReason | null> {
  let unsubscribe = (): void => {};
  const event = new Promise<PeerDownReason | null>((resolve) => {
    unsubscribe =
      kind === "up"
        ? transport.onPeerUp((id) => id === peer && resolve(null))
        : transport.onPeerDown((id, reason) => id === peer && resolve(reason));
  });
  return withTimeout(event, `peer ${peer} ${kind} at node ${transport.nodeId}`).finally(() =>
    unsubscribe(),
  );
}

/** Resolves once `transport` can send to `peer`, whether that happened already or not. */
export function whenConnected(transport: Transport, peer: NodeId): Promise<unknown> {
  const connected = transport.stats().peers.find((stats) => stats.peer === peer)?.connected;
  return connected === true ? Promise.resolve() : nextPeerEvent(transport, "up", peer);
}

/** Resolves once `condition` holds, checking after each turn of the event loop. */
export async function untilTrue(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

export function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), EVENT_WAIT_MS_MAX);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Registers the shared suite for one implementation. */
export function transportConformanceSuite(name: string, makeHarness: HarnessFactory): void {
  describe(`${name} conformance`, () => {
    let harness: TransportHarness | null = null;
    const started: Transport[] = [];

    async function cluster(ids: readonly NodeId[]): Promise<TransportHarness> {
      harness = await makeHarness(ids);
      return harness;
    }

    async function startNode(h: TransportHarness, id: NodeId, options?: NodeOptions) {
      const transport = h.create(id, options);
      started.push(transport);
      await transport.start();
      return transport;
    }

    afterEach(async () => {
      await Promise.all(started.splice(0).map((transport) => transport.close()));
      await harness?.dispose();
      harness = null;
    });

    it("transport: delivers every message type intact (two nodes)", async () => {
      const h = await cluster([1, 2]);
      const [a, b] = [await startNode(h, 1), await startNode(h, 2)];
      const inbox = new Inbox(b);
      await whenConnected(a, 2);
      const messages = sampleMessages(1, 2);
      for (const message of messages) expect(a.send(message)).toEqual({ queued: true });
      await inbox.until(messages.length);
      expect(comparableByLane(inbox.messages)).toEqual(comparableByLane(messages));
    });

    it("transport: delivers in send order per link (three nodes, both directions)", async () => {
      const h = await cluster([1, 2, 3]);
      const nodes = [await startNode(h, 1), await startNode(h, 2), await startNode(h, 3)];
      const [a, b, c] = nodes as [Transport, Transport, Transport];
      const [inboxA, inboxB, inboxC] = nodes.map((node) => new Inbox(node)) as [
        Inbox,
        Inbox,
        Inbox,
      ];
      await Promise.all([whenConnected(a, 2), whenConnected(a, 3), whenConnected(b, 1)]);
      const count = 200;
      for (let n = 0; n < count; n++) {
        a.send(numberedHeartbeat(1, 2, n));
        a.send(numberedHeartbeat(1, 3, n));
        b.send(numberedHeartbeat(2, 1, n));
      }
      await Promise.all([inboxA.until(count), inboxB.until(count), inboxC.until(count)]);
      const contexts = (inbox: Inbox) =>
        inbox.messages.map((m) => (m as { readContext: number }).readContext);
      const expected = Array.from({ length: count }, (_, n) => n);
      expect(contexts(inboxB)).toEqual(expected);
      expect(contexts(inboxC)).toEqual(expected);
      expect(contexts(inboxA)).toEqual(expected);
      expect(inboxB.messages.every((m) => m.from === 1 && m.to === 2)).toBe(true);
      expect(c.stats().peers.find((p) => p.peer === 1)?.receivedMessages).toBe(count);
    });

    it("transport: reports a peer down until it starts, then up, then down when it closes", async () => {
      const h = await cluster([1, 2]);
      const a = h.create(1);
      started.push(a);
      const firstDown = nextPeerEvent(a, "down", 2);
      await a.start();
      expect(await firstDown).toBeTypeOf("string");
      const up = nextPeerEvent(a, "up", 2);
      const b = await startNode(h, 2);
      await up;
      expect(a.stats().peers.find((p) => p.peer === 2)?.connected).toBe(true);
      const down = nextPeerEvent(a, "down", 2);
      await b.close();
      expect(await down).toBeTypeOf("string");
      expect(a.stats().peers.find((p) => p.peer === 2)?.connected).toBe(false);
    });

    it("transport: a restarted peer receives again (same address)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      const first = await startNode(h, 2);
      await whenConnected(a, 2);
      const down = nextPeerEvent(a, "down", 2);
      await first.close();
      await down;
      const up = nextPeerEvent(a, "up", 2);
      const second = await startNode(h, 2);
      const inbox = new Inbox(second);
      await up;
      a.send(numberedHeartbeat(1, 2, 7));
      await inbox.until(1);
      expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 7)]);
    });

    it("transport: close stops delivery and events (receiver closed, then sender)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      const b = await startNode(h, 2);
      const inbox = new Inbox(b);
      await whenConnected(a, 2);
      await b.close();
      a.send(numberedHeartbeat(1, 2, 1));
      const events: string[] = [];
      a.onPeerUp((peer) => events.push(`up ${peer}`));
      a.onPeerDown((peer) => events.push(`down ${peer}`));
      await a.close();
      expect(a.send(numberedHeartbeat(1, 2, 2))).toEqual({ queued: false, reason: "closed" });
      // Nothing may arrive after close: give pending I/O a chance to misbehave.
      await new Promise((resolve) => setImmediate(resolve));
      expect(inbox.messages).toEqual([]);
      const eventsAtClose = events.length;
      await new Promise((resolve) => setImmediate(resolve));
      expect(events.length).toBe(eventsAtClose);
    });

    it("transport: drops messages beyond the queue bound (peer not running)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1, { queueMessagesMax: 5 });
      const results = Array.from({ length: 8 }, (_, n) => a.send(numberedHeartbeat(1, 2, n)));
      expect(results.filter((r) => r.queued)).toHaveLength(5);
      expect(results.slice(5)).toEqual(Array(3).fill({ queued: false, reason: "queue_full" }));
      const stats = a.stats().peers.find((p) => p.peer === 2);
      expect(stats).toMatchObject({ queuedMessages: 5, droppedMessages: 3, connected: false });
      expect(a.stats().droppedMessages).toBe(3);
      const b = await startNode(h, 2);
      const inbox = new Inbox(b);
      await inbox.until(5);
      expect(inbox.messages).toEqual([0, 1, 2, 3, 4].map((n) => numberedHeartbeat(1, 2, n)));
    });

    it("transport: drops messages beyond the byte bound (peer not running)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1, { queueBytesMax: 64 * 1024 });
      const big = sampleMessages(1, 2, 40 * 1024)[2] as Message;
      expect(a.send(big)).toEqual({ queued: true });
      expect(a.send(big)).toEqual({ queued: false, reason: "queue_full" });
      expect(a.send(numberedHeartbeat(1, 2, 1))).toEqual({ queued: true });
      const stats = a.stats().peers.find((p) => p.peer === 2);
      expect(stats?.queuedBytes).toBeGreaterThan(40 * 1024);
      expect(stats?.queuedBytes).toBeLessThanOrEqual(64 * 1024);
    });

    it("transport: drops messages to an unknown peer (unknown_peer)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      expect(a.send(numberedHeartbeat(1, 9, 1))).toEqual({ queued: false, reason: "unknown_peer" });
      expect(a.stats().droppedMessages).toBe(1);
    });

    it("transport: an unsubscribed handler receives nothing more (two handlers)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      const b = await startNode(h, 2);
      const removed: WireMessage[] = [];
      const unsubscribe = b.onMessage((message) => removed.push(message));
      unsubscribe();
      const inbox = new Inbox(b);
      await whenConnected(a, 2);
      a.send(numberedHeartbeat(1, 2, 1));
      await inbox.until(1);
      expect(removed).toEqual([]);
    });

    it("transport: counts sent and received messages in stats (two nodes)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      const b = await startNode(h, 2);
      const inbox = new Inbox(b);
      await whenConnected(a, 2);
      for (let n = 0; n < 3; n++) a.send(numberedHeartbeat(1, 2, n));
      await inbox.until(3);
      expect(a.stats().peers).toEqual([expect.objectContaining({ peer: 2, sentMessages: 3 })]);
      expect(b.stats().peers).toEqual([
        expect.objectContaining({ peer: 1, receivedMessages: 3, droppedMessages: 0 }),
      ]);
      expect(a.stats().nodeId).toBe(1);
    });

    it("transport: each side learns the other's httpUrl by peer-up (two nodes)", async () => {
      const h = await cluster([1, 2]);
      const a = h.create(1, { advertise: { httpUrl: "http://10.0.0.1:8080" } });
      started.push(a);
      const infoAtUp: (PeerInfo | null)[] = [];
      a.onPeerUp((peer) => infoAtUp.push(a.peerInfo(peer)));
      await a.start();
      const b = await startNode(h, 2, { advertise: { httpUrl: "https://node-2.example/api" } });
      await Promise.all([whenConnected(a, 2), whenConnected(b, 1)]);
      expect(infoAtUp).toEqual([{ httpUrl: "https://node-2.example/api" }]);
      expect(a.peerInfo(2)).toEqual({ httpUrl: "https://node-2.example/api" });
      expect(b.peerInfo(1)).toEqual({ httpUrl: "http://10.0.0.1:8080" });
      expect(a.stats().peers).toEqual([
        expect.objectContaining({ peer: 2, info: { httpUrl: "https://node-2.example/api" } }),
      ]);
      expect(b.stats().peers).toEqual([
        expect.objectContaining({ peer: 1, info: { httpUrl: "http://10.0.0.1:8080" } }),
      ]);
    });

    it("transport: peerInfo is null before any handshake, for non-peers and for itself", async () => {
      const h = await cluster([1, 2, 3]);
      const a = await startNode(h, 1);
      expect(a.peerInfo(2)).toBeNull();
      expect(a.stats().peers.find((p) => p.peer === 2)?.info).toBeNull();
      const b = await startNode(h, 2);
      await Promise.all([whenConnected(a, 2), whenConnected(b, 1)]);
      // A node that advertises no HTTP API is still known, with a null URL.
      expect(a.peerInfo(2)).toEqual({ httpUrl: null });
      expect(a.peerInfo(3)).toBeNull();
      expect(a.peerInfo(9)).toBeNull();
      expect(a.peerInfo(1)).toBeNull();
    });

    it("transport: keeps a down peer's info and replaces it when the peer restarts (new URL)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1, { advertise: { httpUrl: "http://a:8080" } });
      const first = await startNode(h, 2, { advertise: { httpUrl: "http://b-old:8080" } });
      await whenConnected(a, 2);
      expect(a.peerInfo(2)).toEqual({ httpUrl: "http://b-old:8080" });
      const down = nextPeerEvent(a, "down", 2);
      await first.close();
      await down;
      // Status pages keep showing a member that is down.
      expect(a.peerInfo(2)).toEqual({ httpUrl: "http://b-old:8080" });
      expect(a.stats().peers[0]).toMatchObject({
        connected: false,
        info: { httpUrl: "http://b-old:8080" },
      });
      const up = nextPeerEvent(a, "up", 2);
      const second = await startNode(h, 2, { advertise: { httpUrl: "http://b-new:9090" } });
      await up;
      expect(a.peerInfo(2)).toEqual({ httpUrl: "http://b-new:9090" });
      await whenConnected(second, 1);
      expect(second.peerInfo(1)).toEqual({ httpUrl: "http://a:8080" });
    });

    it("transport: asks the node about a sender it does not list, on the identity that sender set, and links it once admitted (membership change)", async () => {
      const h = await cluster([1, 2, 3]);
      const a = h.create(1);
      const b = h.create(3);
      started.push(a, b);
      // Node 1 does not list node 3 yet (it missed the change that added it).
      a.removePeer(3);
      a.removePeer(2);
      b.removePeer(2);
      expect(a.onUnknownPeer, "admission (onUnknownPeer) is implemented").toBeDefined();
      a.setClusterUid?.("c0ffee");
      b.setClusterUid?.("c0ffee");
      b.setMemberIdentity?.({ incarnation: 77, peerAddress: h.address(3) });
      const asked: Array<{ id: NodeId; memberIncarnation: number; sameCluster: boolean }> = [];
      let admit = false;
      a.onUnknownPeer?.((caller) => {
        asked.push({
          id: caller.id,
          memberIncarnation: caller.memberIncarnation,
          sameCluster: caller.sameCluster,
        });
        if (!admit) return { admitted: false, reason: "not yet" };
        a.addPeer({ id: caller.id, address: caller.peerAddress ?? h.address(caller.id) });
        return { admitted: true };
      });
      await Promise.all([a.start(), b.start()]);
      const inbox = new Inbox(a);
      b.send(numberedHeartbeat(3, 1, 1));
      await withTimeout(
        untilTrue(() => asked.length > 0),
        "node 1 asked about node 3",
      );
      expect(asked[0]).toEqual({ id: 3, memberIncarnation: 77, sameCluster: true });
      expect(inbox.messages).toEqual([]);
      expect(a.stats().peers).toEqual([]);
      admit = true;
      await inbox.until(1);
      expect(inbox.messages[0]).toMatchObject({ from: 3, readContext: 1 });
      await whenConnected(a, 3);
      const back = new Inbox(b);
      expect(a.send(numberedHeartbeat(1, 3, 2))).toEqual({ queued: true });
      await back.until(1);
      expect(back.messages[0]).toMatchObject({ from: 1, readContext: 2 });
    });

    it("transport: removePeer forgets the peer's info (membership change)", async () => {
      const h = await cluster([1, 2]);
      const a = await startNode(h, 1);
      const b = await startNode(h, 2, { advertise: { httpUrl: "http://b:8080" } });
      await Promise.all([whenConnected(a, 2), whenConnected(b, 1)]);
      expect(a.peerInfo(2)).toEqual({ httpUrl: "http://b:8080" });
      a.removePeer(2);
      expect(a.peerInfo(2)).toBeNull();
      expect(a.stats().peers).toEqual([]);
    });
  });
}
