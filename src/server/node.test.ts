import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createNodeMetrics } from "../app/node-metrics.js";
import { encodeConfiguration } from "../core/configuration.js";
import { Replica } from "../core/replica.js";
import { encodeCommand, type KvResult, KvStateMachine } from "../kv/index.js";
import type {
  Entry,
  NodeId,
  SnapshotChunk,
  SnapshotMeta,
  WireMessage,
} from "../protocol/messages.js";
import { AssertionError } from "../shared/assert.js";
import {
  BusyError,
  ConflictError,
  IndeterminateError,
  InvalidInputError,
  NoMasterError,
  TimeoutError,
} from "../shared/errors.js";
import { nodeFileSystem } from "../storage/file-system.js";
import { IdentityStore } from "../storage/identity-store.js";
import { storagePendingBytesMax } from "../storage/limits.js";
import { MemoryStorage, MemoryVolume } from "../storage/memory-storage.js";
import type { Storage } from "../storage/storage.js";
import { MemoryNetwork, MemoryTransport } from "../transport/memory-transport.js";
import type { Admission, PresentedMember, UnknownCaller } from "../transport/transport.js";
import { FORWARD_HOLD_MS } from "./forwarder.js";
import { BatonNode, COMMAND_BYTES_MAX } from "./node.js";
import { parseNodeConfig } from "./node-config.js";

/**
 * The runtime in-process: real timers (short ones), the in-memory transport and storage,
 * the key-value state machine. Real processes and TCP are covered in test/integration.
 */

const logger = pino({ level: process.env.BATON_TEST_LOG ?? "silent" });
const ids: NodeId[] = [1, 2, 3];
let running: BatonNode[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.map((n) => n.stop()));
  running = [];
});

interface TestNode {
  node: BatonNode;
  sm: KvStateMachine;
  volume: MemoryVolume;
}

interface StartOptions {
  /** @default 10_000 */
  readonly snapshotEntries?: number;
  /** @default 64 MiB and 16 MiB (the node's defaults) */
  readonly snapshotBytes?: number;
  readonly snapshotKeepBytes?: number;
  /** @default 100 */
  readonly electionMsMin?: number;
  readonly transferCatchUpBytesMax?: number;
  /** Stands between the node and its storage (a slow disk, say). */
  readonly wrap?: (storage: Storage) => Storage;
}

async function startOne(
  network: MemoryNetwork,
  id: NodeId,
  volume: MemoryVolume,
  options: StartOptions = {},
): Promise<TestNode> {
  const electionMsMin = options.electionMsMin ?? 100;
  const config = parseNodeConfig({
    id,
    peers: ids.map((i) => ({ id: i, address: `127.0.0.1:${7100 + i}` })),
    tickMs: 5,
    heartbeatMs: 20,
    electionMsMin,
    electionMsMax: 2 * electionMsMin,
    snapshotEntries: options.snapshotEntries ?? 10_000,
    snapshotKeepEntries: 5,
    ...(options.snapshotBytes === undefined ? {} : { snapshotBytes: options.snapshotBytes }),
    ...(options.snapshotKeepBytes === undefined
      ? {}
      : { snapshotKeepBytes: options.snapshotKeepBytes }),
    transferChunkBytes: 1024,
    ...(options.transferCatchUpBytesMax === undefined
      ? {}
      : { transferCatchUpBytesMax: options.transferCatchUpBytesMax }),
  });
  const sm = new KvStateMachine();
  const opened = await MemoryStorage.open(volume);
  const storage = options.wrap?.(opened.storage) ?? opened.storage;
  const transport = network.createTransport(id, ids);
  const node = await BatonNode.start({
    config,
    opened: { ...opened, storage },
    transport,
    stateMachine: sm,
    logger,
  });
  running.push(node);
  return { node, sm, volume };
}

async function until<T>(
  what: string,
  probe: () => T | null | undefined | false,
  ms = 5000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function noops(from: number, count: number, term: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({
    index: from + i,
    term,
    kind: "noop" as const,
    data: new Uint8Array(0),
  }));
}

/** Plays node `id` by hand: what it receives lands in `received`. */
async function puppet(network: MemoryNetwork, id: NodeId) {
  const transport = network.createTransport(id, ids);
  const received: WireMessage[] = [];
  transport.onMessage((message) => received.push(message));
  await transport.start();
  return { transport, received };
}

/** A whole snapshot in one chunk, from `from` in `term`. */
function snapshotChunk(
  from: NodeId,
  to: NodeId,
  term: number,
  meta: SnapshotMeta,
  data: Uint8Array,
) {
  const chunk: SnapshotChunk = {
    type: "snapshot_chunk",
    config: new Uint8Array(0),
    from,
    to,
    term,
    snapshotIndex: meta.index,
    snapshotTerm: meta.term,
    offset: 0,
    totalBytes: data.length,
    crc32: crc32(data),
    data,
  };
  return chunk;
}

/** The bytes of a key-value snapshot holding `key`. */
async function kvSnapshotWith(key: string): Promise<Uint8Array> {
  const sm = new KvStateMachine();
  sm.apply(put(key, "v"), { index: 1, term: 1, time: 0 });
  const parts: Uint8Array[] = [];
  for await (const part of sm.snapshot()) parts.push(part);
  return Buffer.concat(parts);
}

/** Storage whose syncs do not complete while stalled, as on a disk whose fsyncs hang. */
class StallingStorage implements Storage {
  private gate: Promise<void> | null = null;
  private open: () => void = () => {};

  constructor(private readonly inner: Storage) {}

  get stalling(): boolean {
    return this.gate !== null;
  }

  stall(): void {
    this.gate = new Promise((resolve) => {
      this.open = resolve;
    });
  }

  resume(): void {
    this.gate = null;
    this.open();
  }

  pendingBytes(): number {
    return this.inner.pendingBytes();
  }

  async sync(): Promise<void> {
    const gate = this.gate;
    await this.inner.sync();
    if (gate !== null) await gate;
  }

  hardState() {
    return this.inner.hardState();
  }
  setHardState(state: Parameters<Storage["setHardState"]>[0]) {
    this.inner.setHardState(state);
  }
  snapshot() {
    return this.inner.snapshot();
  }
  firstIndex() {
    return this.inner.firstIndex();
  }
  lastIndex() {
    return this.inner.lastIndex();
  }
  termAt(index: number) {
    return this.inner.termAt(index);
  }
  entries(from: number, to: number, maxBytes?: number) {
    return this.inner.entries(from, to, maxBytes);
  }
  append(entries: readonly Entry[]) {
    this.inner.append(entries);
  }
  truncateFrom(index: number) {
    this.inner.truncateFrom(index);
  }
  saveSnapshot(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>) {
    return this.inner.saveSnapshot(meta, chunks);
  }
  readSnapshot() {
    return this.inner.readSnapshot();
  }
  receiveSnapshot(meta: SnapshotMeta) {
    return this.inner.receiveSnapshot(meta);
  }
  compact(upToIndex: number) {
    return this.inner.compact(upToIndex);
  }
  close() {
    return this.inner.close();
  }
}

/** A disk whose syncs can hang, then fail at once (EIO), to order the two at will. */
class FailingStorage extends StallingStorage {
  failing = false;
  failed = false;
  stalled = false;

  override sync(): Promise<void> {
    if (this.failing) {
      this.failed = true;
      return Promise.reject(new Error("EIO: fdatasync failed (test)"));
    }
    this.stalled ||= this.stalling;
    return super.sync();
  }
}

function put(key: string, value: string) {
  return encodeCommand({ type: "put", key, value: new TextEncoder().encode(value) });
}

async function masterOf(nodes: TestNode[]): Promise<TestNode> {
  return until("a master", () => nodes.find((n) => n.node.role === "master"));
}

/**
 * Node 3 joins a two-node cluster empty and takes 1.5 s to make a received snapshot durable
 * (a large state on a slow disk), while the master writes in batches all along; returns
 * the snapshot indexes node 3 was sent, once it applied every write.
 */
async function slowInstall(catchUpBytesMax?: number): Promise<number[]> {
  const network = new MemoryNetwork();
  const start = (id: NodeId) =>
    startOne(network, id, new MemoryVolume(), {
      snapshotEntries: 20,
      electionMsMin: id === 1 ? 100 : 10_000,
      ...(catchUpBytesMax === undefined ? {} : { transferCatchUpBytesMax: catchUpBytesMax }),
    });
  const nodes = [await start(1), await start(2)];
  const master = await masterOf(nodes);
  expect(master.node.id).toBe(1);
  for (let i = 0; i < 30; i++) await master.node.propose(put(`k${i}`, `v${i}`));
  // Node 3 starts empty; making a received snapshot durable takes it 1.5 s (a large state
  // on a slow disk), longer than the master's election timeout of 200 ms many times over.
  const transfers: number[] = [];
  const late = await startOne(network, 3, new MemoryVolume(), {
    electionMsMin: 10_000,
    wrap: (storage) =>
      Object.assign(Object.create(storage) as Storage, {
        receiveSnapshot: async (meta: SnapshotMeta) => {
          transfers.push(meta.index);
          const receiver = await storage.receiveSnapshot(meta);
          return Object.assign(Object.create(receiver), {
            finish: async () => {
              await new Promise((r) => setTimeout(r, 1500));
              await receiver.finish();
            },
          });
        },
      }),
  });
  // Writes go on all along, each few making the master snapshot and compact again: far
  // more of them during the install than one append carries (512 entries), so the backup
  // needs many appends after its first answer, and the log must stay until it has them.
  let written = 30;
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline) {
    const batch = Array.from({ length: 20 }, (_, i) =>
      master.node.propose(put(`k${written + i}`, `v${written + i}`)),
    );
    await Promise.all(batch);
    written += batch.length;
  }
  await until("node 3 applied every write", () => late.sm.get(`k${written - 1}`) !== null, 15_000);
  for (let i = 0; i < written; i++) expect(late.sm.get(`k${i}`), `k${i}`).not.toBeNull();
  return transfers;
}

describe("node runtime", () => {
  it("timing: runtime: elects a master, replicates a write to every node, reads linearizably", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const result = (await master.node.propose(put("k", "v1"))) as { ok: boolean; revision: number };
    expect(result.ok).toBe(true);
    await master.node.readBarrier();
    expect(new TextDecoder().decode(master.sm.get("k")!.value)).toBe("v1");
    for (const n of nodes) await until(`node ${n.node.id} applies`, () => n.sm.get("k") !== null);
  });

  it("timing: forwarding: a backup forwards a write to the master and learns its result by applying it", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const backup = nodes.find((n) => n !== master)!;
    const viaBackup = (await backup.node.propose(put("k", "v1"))) as KvResult;
    const viaMaster = (await master.node.propose(put("k", "v2"))) as KvResult;
    expect(viaBackup.ok && viaMaster.ok).toBe(true);
    if (!viaBackup.ok || !viaMaster.ok) return;
    expect(viaMaster.revision).toBeGreaterThan(viaBackup.revision);
    // The backup applied its own write before answering; a follower read then sees the
    // master's later write too (the master confirms a read index, the backup catches up).
    await backup.node.readBarrier();
    expect(new TextDecoder().decode(backup.sm.get("k")!.value)).toBe("v2");
    for (const n of nodes) {
      await until(
        `node ${n.node.id} applies`,
        () => n.sm.get("k")?.revision === viaMaster.revision,
      );
    }
  });

  it("forwarding: a forwarded command over the command limit is refused, and the master goes on committing (its append would pass no link)", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const [a] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    const answers: WireMessage[] = [];
    network.transportOf(a.node.id)!.onMessage((message) => {
      if (message.type === "forward_proposal_response") answers.push(message);
    });
    network.transportOf(a.node.id)!.send({
      type: "forward_proposal",
      from: a.node.id,
      to: master.node.id,
      term: master.node.status().term,
      requestId: 4242,
      data: new Uint8Array(COMMAND_BYTES_MAX + 1),
    });
    await until("the master answered", () => answers.length === 1);
    expect(answers[0]).toMatchObject({ requestId: 4242, outcome: "busy" });
    const after = (await master.node.propose(put("after", "v"))) as KvResult;
    expect(after.ok).toBe(true);
    for (const n of nodes) {
      await until(`node ${n.node.id} applies`, () => n.sm.get("after") !== null);
    }
  });

  it("timing: forwarding: a copy of a forward (a network that delivers a message twice) gets its original's answer and is never proposed", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const [a, b] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await until("backup b follows the master", () => b.node.status().master === master.node.id);
    const aTransport = network.transportOf(a.node.id)!;
    const forward = () =>
      aTransport.send({
        type: "forward_proposal",
        from: a.node.id,
        to: b.node.id,
        term: b.node.status().term,
        requestId: 777,
        data: put("refused", "v"),
      });
    // A forward from backup a reaches b while b is a backup: refused, nothing proposed.
    forward();
    await new Promise((resolve) => setTimeout(resolve, 50));
    // b becomes the master; a copy of the same forward arrives only now.
    await master.node.switchover(b.node.id);
    expect(b.node.role).toBe("master");
    forward();
    await until("b answered the copy", () => b.node.counters.forwardCopies === 1);
    await b.node.readBarrier();
    // Proposing the copy applied a write whose forward had been refused ("not applied"),
    // after its client had been told so and may have sent it anew.
    expect(b.sm.get("refused")).toBeNull();
    // Every forward of a leaves twice: each copy is answered as its original was, and the
    // write (without an idempotency key, which would hide a second application) is applied
    // once.
    const send = aTransport.send.bind(aTransport);
    aTransport.send = (message) => {
      if (message.type === "forward_proposal") send(message);
      return send(message);
    };
    const viaA = (await a.node.propose(put("once", "v"))) as KvResult;
    expect(viaA.ok).toBe(true);
    await until("b answered the copy", () => b.node.counters.forwardCopies === 2);
    await b.node.readBarrier();
    expect(b.sm.get("once")?.revision).toBe(viaA.ok ? viaA.revision : -1);
  });

  it("timing: switchover: a copy of a forwarded switchover gets its original's answer, though the hand-over is done", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const [a, b] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await until("every node connected and following the master", () =>
      nodes.every(
        (n) =>
          n.node.status().members.every((m) => m.connected) &&
          n.node.status().master === master.node.id,
      ),
    );
    const aTransport = network.transportOf(a.node.id)!;
    const answers: { outcome: string; target: number }[] = [];
    aTransport.onMessage((message) => {
      if (message.type === "forward_switchover_response") answers.push(message);
    });
    const ask = () =>
      aTransport.send({
        type: "forward_switchover",
        from: a.node.id,
        to: master.node.id,
        term: a.node.status().term,
        requestId: 555,
        target: b.node.id,
      });
    ask();
    await until("b took over", () => b.node.role === "master");
    const term = b.node.status().term;
    // The copy reaches the old master only now: answering "not the master" told the backup
    // that a hand-over which happened had failed.
    ask();
    await until("both answered", () => answers.length === 2);
    expect(answers.map((m) => [m.outcome, m.target])).toEqual([
      ["started", b.node.id],
      ["started", b.node.id],
    ]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([b.node.role, b.node.status().term]).toEqual(["master", term]);
  });

  it("timing: forwarding: a backup that cannot reach any master answers 'not applied' after holding the write", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const backup = nodes.find((n) => n !== master)!;
    const other = nodes.find((n) => n !== master && n !== backup)!;
    network.partition(backup.node.id, master.node.id);
    network.partition(backup.node.id, other.node.id);
    await until("the backup sees the cut", () =>
      backup.node.status().members.every((m) => m.id === backup.node.id || !m.connected),
    );
    const started = Date.now();
    const error = await backup.node.propose(put("k", "lost")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoMasterError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(FORWARD_HOLD_MS - 20);
    network.heal(backup.node.id, master.node.id);
    network.heal(backup.node.id, other.node.id);
    await master.node.readBarrier();
    expect(master.sm.get("k")).toBeNull();
  });

  it("timing: switchover: the chosen backup takes over, and writes pending or arriving meanwhile complete", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const target = nodes.find((n) => n !== master)!;
    const term = master.node.status().term;
    const writes = Array.from({ length: 20 }, (_, i) => master.node.propose(put(`k${i}`, "v")));
    const handed = master.node.switchover(target.node.id);
    const during = Array.from({ length: 20 }, (_, i) => master.node.propose(put(`d${i}`, "v")));
    const outcome = await handed;
    expect(outcome).toEqual({ master: target.node.id, term: expect.any(Number) });
    expect(outcome.term).toBeGreaterThan(term);
    expect(target.node.role).toBe("master");
    const results = (await Promise.all([...writes, ...during])) as KvResult[];
    expect(results.every((r) => r.ok)).toBe(true);
    await target.node.readBarrier();
    for (let i = 0; i < 20; i++) expect(target.sm.get(`k${i}`), `k${i}`).not.toBeNull();
    for (let i = 0; i < 20; i++) expect(target.sm.get(`d${i}`), `d${i}`).not.toBeNull();
    expect(master.node.counters.failovers + target.node.counters.failovers).toBe(0);
  });

  it("timing: switchover: asked of a backup, refused for a non-member or an unreachable target", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const [a, b] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await until("every backup connected and following the master", () =>
      nodes.every(
        (n) =>
          n.node.status().members.every((m) => m.connected) &&
          n.node.status().master === master.node.id,
      ),
    );
    // Asked of backup a, to make backup b the master.
    const outcome = await a.node.switchover(b.node.id);
    expect(outcome.master).toBe(b.node.id);
    expect(b.node.role).toBe("master");
    await expect(b.node.switchover(9)).rejects.toBeInstanceOf(InvalidInputError);
    // The same master again: nothing to do.
    await expect(b.node.switchover(b.node.id)).resolves.toMatchObject({ master: b.node.id });
    network.partition(b.node.id, master.node.id);
    await until("the cut node is silent", () => {
      const member = b.node.status().members.find((m) => m.id === master.node.id);
      return member !== undefined && (member.lastContactMs ?? 0) > 500;
    });
    await expect(b.node.switchover(master.node.id)).rejects.toBeInstanceOf(ConflictError);
    expect(b.node.role).toBe("master");
  });

  it("timing: switchover: asked of a backup whose request never reaches the master, it ends in doubt (ERR_TIMEOUT), not 'the master serves on'", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const [a, b] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await until("backup a follows the master", () => a.node.status().master === master.node.id);
    // The request sits in a link's queue (as on a link that dropped and will come back).
    const transport = network.transportOf(a.node.id)!;
    const send = transport.send.bind(transport);
    transport.send = (message) =>
      message.type === "forward_switchover" ? { queued: true } : send(message);
    const asked = a.node.switchover(b.node.id);
    await expect(asked).rejects.toBeInstanceOf(TimeoutError);
    await expect(asked).rejects.toMatchObject({
      message: expect.stringContaining("it may still hand over"),
    });
  });

  it("timing: membership: a re-sent add of the same learner is answered with the members and logs nothing; a removed member's link is forgotten by the others", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    const learner = {
      id: 4,
      incarnation: 44,
      voter: false,
      peerAddress: "127.0.0.1:7104",
      httpUrl: "http://127.0.0.1:8104",
    };
    const add = { type: "add" as const, member: learner };
    // Asked the moment it is elected (its first entries may not be committed yet), and
    // asked for a second change while the first is in flight, a master waits for the
    // commits instead of refusing.
    const term = master.node.status().term;
    const fifth = { ...learner, id: 5, peerAddress: "127.0.0.1:7105", httpUrl: "" };
    const both = await Promise.all([
      master.node.changeMembers(add),
      master.node.changeMembers({ type: "add", member: fifth }),
    ]);
    expect(both[1].members.map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);
    expect(master.node.status().term).toBe(term);
    await master.node.changeMembers({ type: "remove", id: 5 });
    const lastIndex = master.node.status().lastIndex;
    // Its first answer was lost, say: the same add again is answered, with no new entry.
    const again = await master.node.changeMembers({
      ...add,
      member: { ...learner, incarnation: 45 },
    });
    expect(again.members.map((m) => m.id)).toEqual([1, 2, 3, 4]);
    expect(master.node.status().lastIndex).toBe(lastIndex);
    // Other addresses for the same id are still refused.
    await expect(
      master.node.changeMembers({ ...add, member: { ...learner, peerAddress: "127.0.0.1:7999" } }),
    ).rejects.toBeInstanceOf(InvalidInputError);

    const forgotten = vi.spyOn(MemoryTransport.prototype, "removePeer");
    const removed = nodes.find((n) => n !== master)!;
    const other = nodes.find((n) => n !== master && n !== removed)!;
    await master.node.changeMembers({ type: "remove", id: removed.node.id });
    await until("the master and the other backup forget the removed member's link", () => {
      const forgettingIds = forgotten.mock.contexts.map((t) => (t as MemoryTransport).nodeId);
      const calls = forgotten.mock.calls.map(([id], i) => `${forgettingIds[i]}:${id}`);
      return (
        calls.includes(`${master.node.id}:${removed.node.id}`) &&
        calls.includes(`${other.node.id}:${removed.node.id}`)
      );
    });
  });

  it("timing: switchover: a master stopped with handOver leaves a new master without an election timeout", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    await master.node.propose(put("k", "v"));
    const started = Date.now();
    await master.node.stop({ handOver: true });
    const rest = nodes.filter((n) => n !== master);
    const next = rest.find((n) => n.node.role === "master");
    expect(next, "a new master before the old one stopped").toBeDefined();
    expect(Date.now() - started).toBeLessThan(100); // the election timeout is 100-200 ms
    expect(rest.every((n) => n.node.counters.failovers === 0)).toBe(true);
  });

  it("timing: runtime: a new master takes over when the master stops, and nothing acknowledged is lost", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const first = await masterOf(nodes);
    for (let i = 0; i < 20; i++) await first.node.propose(put(`k${i}`, `v${i}`));
    await first.node.stop();
    const rest = nodes.filter((n) => n !== first);
    const second = await masterOf(rest);
    await second.node.readBarrier();
    for (let i = 0; i < 20; i++) expect(second.sm.get(`k${i}`), `k${i}`).not.toBeNull();
    const status = second.node.status();
    expect(status.role).toBe("master");
    expect(status.term).toBeGreaterThan(0);
    expect(status.members).toHaveLength(3);
  });

  it("timing: runtime: a master cut off from its majority steps down and fails its pending writes as indeterminate at once", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const master = await masterOf(nodes);
    await master.node.propose(put("before", "v"));
    for (const other of nodes) {
      if (other !== master) network.partition(master.node.id, other.node.id);
    }
    const started = Date.now();
    const pending = master.node.propose(put("cut", "v")).then(
      () => null,
      (error: unknown) => error as Error,
    );
    const error = await pending;
    // Check-quorum (within the shortest election timeout, 100 ms here), not the 5 s
    // request timeout.
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(error).toBeInstanceOf(IndeterminateError);
    expect(error?.message).toMatch(/with the same Idempotency-Key/);
    expect(master.node.role).not.toBe("master");
  });

  it("timing: runtime: a wiped backup catches up by state transfer after the log was compacted", async () => {
    const network = new MemoryNetwork();
    const volumes = ids.map(() => new MemoryVolume());
    const nodes = await Promise.all(
      ids.map((id, i) => startOne(network, id, volumes[i]!, { snapshotEntries: 20 })),
    );
    const master = await masterOf(nodes);
    const victim = nodes.find((n) => n !== master)!;
    await victim.node.stop();
    running = running.filter((n) => n !== victim.node);
    const big = "x".repeat(3000);
    for (let i = 0; i < 100; i++) await master.node.propose(put(`k${i}`, `${big}${i}`));
    await until("the master compacts", () => master.node.status().lastIndex > 100);
    // The victim comes back with nothing: only a state transfer can bring it up to date.
    const fresh = await startOne(network, victim.node.id, new MemoryVolume(), {
      snapshotEntries: 20,
    });
    const target = master.node.status().commitIndex;
    await until(
      "the wiped node catches up",
      () => fresh.node.status().appliedIndex >= target,
      10_000,
    );
    for (let i = 0; i < 100; i++) {
      expect(new TextDecoder().decode(fresh.sm.get(`k${i}`)!.value)).toBe(`${big}${i}`);
    }
    expect(fresh.sm.stateHash()).toBe(master.sm.stateHash());
  });

  it("timing: runtime: the master keeps the log after a snapshot it is still sending, so the backup needs no second transfer once it installs it", async () => {
    const network = new MemoryNetwork();
    const storages = new Map<NodeId, Storage>();
    const start = (id: NodeId) =>
      startOne(network, id, new MemoryVolume(), {
        snapshotEntries: 20,
        electionMsMin: id === 1 ? 100 : 10_000,
        wrap: (storage) => {
          storages.set(id, storage);
          return storage;
        },
      });
    const nodes = [await start(1), await start(2)];
    const master = await masterOf(nodes);
    expect(master.node.id).toBe(1);
    for (let i = 0; i < 30; i++) await master.node.propose(put(`k${i}`, `v${i}`));
    // Node 3 starts empty; its disk never finishes writing a received snapshot, so the
    // master's transfer to it stays in flight (within the transfer's stall timeout).
    let sent = 0;
    await startOne(network, 3, new MemoryVolume(), {
      electionMsMin: 10_000,
      wrap: (storage) =>
        Object.assign(Object.create(storage) as Storage, {
          receiveSnapshot: async (meta: SnapshotMeta) => {
            sent = meta.index;
            const receiver = await storage.receiveSnapshot(meta);
            return Object.assign(Object.create(receiver), {
              write: () => new Promise<number>(() => {}),
            });
          },
        }),
    });
    await until("a transfer to node 3", () => sent > 0);
    // The master snapshots twice more meanwhile.
    for (let i = 30; i < 80; i++) await master.node.propose(put(`k${i}`, `v${i}`));
    const storage = storages.get(1)!;
    await until(
      "the master snapshots past the one it sends",
      () => storage.snapshot().index > sent + 20,
    );
    // Every entry after the snapshot in flight is still there to follow its install.
    expect(storage.firstIndex()).toBeLessThanOrEqual(sent + 1);
  });

  it("timing: runtime: a backup that takes longer to install a transferred state than an election timeout gets it once, then follows from the log, while writes go on", async () => {
    expect(await slowInstall()).toHaveLength(1);
  }, 30_000);

  it("timing: runtime: the log kept for a backup catching up after a transfer is bounded (transferCatchUpBytesMax): past it, the backup gets another transfer and still catches up", async () => {
    expect((await slowInstall(100)).length).toBeGreaterThan(1);
  }, 30_000);

  it("node: a node that has applied nothing refuses a backup snapshot at once (it used to spin without yielding)", async () => {
    const network = new MemoryNetwork();
    // Alone of its three members: it never hears of a master, and applies nothing.
    const lonely = await startOne(network, 1, new MemoryVolume(), { electionMsMin: 10_000 });
    await expect(lonely.node.backupSnapshot()).rejects.toBeInstanceOf(ConflictError);
  });

  it("timing: runtime: a backup asked for a snapshot (POST /v1/snapshot) while it installs a transferred state answers with that state once installed", async () => {
    const network = new MemoryNetwork();
    const start = (id: NodeId) =>
      startOne(network, id, new MemoryVolume(), {
        snapshotEntries: 20,
        electionMsMin: id === 1 ? 100 : 10_000,
      });
    const nodes = [await start(1), await start(2)];
    const master = await masterOf(nodes);
    for (let i = 0; i < 30; i++) await master.node.propose(put(`k${i}`, `v${i}`));
    // Node 3 starts empty; making the received snapshot durable takes it 500 ms.
    let received = 0;
    const late = await startOne(network, 3, new MemoryVolume(), {
      electionMsMin: 10_000,
      wrap: (storage) =>
        Object.assign(Object.create(storage) as Storage, {
          receiveSnapshot: async (meta: SnapshotMeta) => {
            const receiver = await storage.receiveSnapshot(meta);
            return Object.assign(Object.create(receiver), {
              finish: async () => {
                received = meta.index;
                await new Promise((r) => setTimeout(r, 500));
                await receiver.finish();
              },
            });
          },
        }),
    });
    await until("node 3 installing a transferred state", () => received > 0);
    const reader = await late.node.backupSnapshot();
    expect(reader.meta.index).toBeGreaterThanOrEqual(received);
    expect(late.node.fatalError).toBeNull();
  });

  it("timing: runtime: a disk more than storagePendingBytesMax behind refuses writes as busy on the master and defers appends on a backup, which catches up once it drains", async () => {
    const network = new MemoryNetwork();
    const behind = new Map<NodeId, boolean>();
    const nodes = await Promise.all(
      ids.map((id) =>
        startOne(network, id, new MemoryVolume(), {
          wrap: (storage) =>
            Object.assign(Object.create(storage) as Storage, {
              pendingBytes: () =>
                behind.get(id) === true ? storagePendingBytesMax + 1 : storage.pendingBytes(),
            }),
        }),
      ),
    );
    const master = await masterOf(nodes);
    const [slow, other] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await master.node.propose(put("before", "v"));
    const elections = master.node.counters.elections;

    // The master's disk is behind: its writes, and writes a backup forwards, are refused.
    behind.set(master.node.id, true);
    await expect(master.node.propose(put("refused", "v"))).rejects.toBeInstanceOf(BusyError);
    await expect(other.node.propose(put("refused", "v"))).rejects.toBeInstanceOf(BusyError);
    expect(master.node.counters.busyDisk).toBe(2);
    behind.set(master.node.id, false);

    // A backup's disk is behind: it takes no entries, the other backup makes the majority.
    behind.set(slow.node.id, true);
    for (let i = 0; i < 10; i++) await master.node.propose(put(`k${i}`, "v"));
    await new Promise((r) => setTimeout(r, 300));
    expect(slow.node.counters.appendsDeferred).toBeGreaterThan(0);
    expect(slow.sm.get("k9")).toBeNull();
    expect(slow.node.role).toBe("backup");
    behind.set(slow.node.id, false);
    await until("the slow backup caught up", () => slow.sm.get("k9") !== null);
    expect(master.node.role).toBe("master");
    expect(master.node.counters.elections).toBe(elections);
  });

  it("timing: runtime: large values trigger a snapshot by their bytes, and the log behind it keeps at most snapshotKeepBytes of them", async () => {
    const network = new MemoryNetwork();
    const storages = new Map<NodeId, Storage>();
    const nodes = await Promise.all(
      ids.map((id) =>
        startOne(network, id, new MemoryVolume(), {
          // Far more entries than this test writes: only the bytes can trigger it.
          snapshotEntries: 10_000,
          snapshotBytes: 32 * 1024,
          snapshotKeepBytes: 6 * 1024,
          wrap: (storage) => {
            storages.set(id, storage);
            return storage;
          },
        }),
      ),
    );
    const master = await masterOf(nodes);
    const value = "v".repeat(4096);
    for (let i = 0; i < 12; i++) await master.node.propose(put(`k${i}`, value));
    const storage = storages.get(master.node.id)!;
    // 8 writes of 4 KiB and more pass 32 KiB: a snapshot, taken within the 12 writes.
    await until("a snapshot triggered by bytes", () => storage.snapshot().index > 0);
    const snapshotAt = storage.snapshot().index;
    expect(snapshotAt).toBeLessThan(master.node.status().lastIndex);
    await until("the log is compacted behind it", () => storage.firstIndex() > 1);
    // At most 6 KiB of entries behind it: one 4 KiB write (snapshotKeepEntries alone keeps 5).
    // A loaded machine may have seen a fail-over among the writes: its empty entry may be
    // kept too, so the writes are counted, not the entries.
    const kept = await storage.entries(storage.firstIndex(), snapshotAt + 1);
    expect(kept.filter((e) => e.data.length >= 4096).length).toBe(1);
    expect(master.sm.get("k11")!.value.byteLength).toBe(4096);
  });

  it("timing: runtime: a Ready that replaces a suffix and commits into it is stored entries first (fail-over while catching up)", async () => {
    const network = new MemoryNetwork();
    const volume = new MemoryVolume();
    // Entries 1..10 from the master of term 2, of which 3 are known committed.
    volume.hardState = { term: 2, votedFor: null, commitIndex: 3 };
    volume.entries = noops(1, 10, 2);
    const backup = await startOne(network, 1, volume, { electionMsMin: 10_000 });
    let fatal: Error | null = null;
    backup.node.on("fatal", (error) => {
      fatal = error;
    });
    // The master of term 3 holds another suffix from 6 on and has committed up to 9.
    const master = await puppet(network, 3);
    master.transport.send({
      type: "append",
      incarnation: 0,
      from: 3,
      to: 1,
      term: 3,
      prevIndex: 5,
      prevTerm: 2,
      entries: noops(6, 7, 3),
      commitIndex: 9,
    });
    await until("the backup acknowledges or stops", () => {
      if (fatal !== null) return true;
      return master.received.some((m) => m.type === "append_response" && m.success);
    });
    expect(fatal).toBeNull();
    expect(backup.node.status()).toMatchObject({ term: 3, commitIndex: 9, appliedIndex: 9 });
    await backup.node.stop();
    await master.transport.close();
    expect(volume.entries.map((e) => e.term)).toEqual([2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3]);
    expect(volume.hardState).toMatchObject({ term: 3, commitIndex: 9 });
  });

  it("timing: runtime: a second state transfer adopted while the first waits to be installed is installed after it", async () => {
    const network = new MemoryNetwork();
    let slow: StallingStorage | null = null;
    const backup = await startOne(network, 1, new MemoryVolume(), {
      electionMsMin: 10_000,
      wrap: (storage) => {
        slow = new StallingStorage(storage);
        return slow;
      },
    });
    let fatal: Error | null = null;
    backup.node.on("fatal", (error) => {
      fatal = error;
    });
    const master = await puppet(network, 3);
    const acked = (index: number) =>
      master.received.some((m) => m.type === "snapshot_ack" && m.done && m.snapshotIndex === index);
    // The backup's disk hangs on the entries of an append: its Readies wait behind them.
    slow!.stall();
    try {
      master.transport.send({
        type: "append",
        incarnation: 0,
        from: 3,
        to: 1,
        term: 2,
        prevIndex: 0,
        prevTerm: 0,
        entries: noops(1, 3, 2),
        commitIndex: 0,
      });
      await until("the append is handed to storage", () => backup.node.status().lastIndex === 3);
      // Two snapshots arrive and are adopted, the second before the first could be installed.
      const first = await kvSnapshotWith("first");
      master.transport.send(snapshotChunk(3, 1, 2, { index: 100, term: 2 }, first));
      await until("the first snapshot is adopted", () => acked(100));
      const second = await kvSnapshotWith("second");
      master.transport.send(snapshotChunk(3, 1, 2, { index: 200, term: 2 }, second));
      await until("the second snapshot is adopted", () => acked(200));
    } finally {
      slow!.resume();
    }
    await until("both are installed, or the node stops", () => {
      return fatal !== null || backup.node.status().appliedIndex === 200;
    });
    expect(fatal).toBeNull();
    expect(backup.sm.get("second")).not.toBeNull();
    expect(backup.node.status()).toMatchObject({ commitIndex: 200, appliedIndex: 200 });
    await master.transport.close();
  });

  it("timing: runtime: an assertion raised while adopting a received snapshot stops the node (not logged and dropped)", async () => {
    const network = new MemoryNetwork();
    const backup = await startOne(network, 1, new MemoryVolume(), { electionMsMin: 10_000 });
    const fatal = new Promise<Error>((resolve) => backup.node.on("fatal", resolve));
    vi.spyOn(Replica.prototype, "installSnapshot").mockImplementation(() => {
      throw new AssertionError("broken invariant while adopting a snapshot");
    });
    const master = await puppet(network, 3);
    const data = await kvSnapshotWith("k");
    master.transport.send(snapshotChunk(3, 1, 2, { index: 50, term: 2 }, data));
    const error = await Promise.race([
      fatal,
      until("the node stops", () => false, 2_000).catch(() => null),
    ]);
    expect(error).toBeInstanceOf(AssertionError);
    await expect(backup.node.propose(put("k", "v"))).rejects.toThrow(/stopped/);
    await master.transport.close();
  });

  it("timing: runtime: a snapshot not newer than the node's own is answered 'not needed' (a stale transfer is input, not a bug)", async () => {
    const network = new MemoryNetwork();
    const volume = new MemoryVolume();
    const data = await kvSnapshotWith("k");
    const meta = { index: 100, term: 2 };
    volume.snapshot = { meta, chunks: [data], crc: crc32(data), bytes: data.length };
    volume.base = meta;
    volume.hardState = { term: 2, votedFor: null, commitIndex: 100 };
    const backup = await startOne(network, 1, volume, { electionMsMin: 10_000 });
    let fatal: Error | null = null;
    backup.node.on("fatal", (error) => {
      fatal = error;
    });
    const master = await puppet(network, 3);
    master.transport.send(snapshotChunk(3, 1, 2, { index: 50, term: 2 }, data));
    const ack = await until("an answer", () =>
      master.received.find((m) => m.type === "snapshot_ack"),
    );
    expect(ack).toMatchObject({ snapshotIndex: 50, done: true, accepted: false });
    expect(fatal).toBeNull();
    await master.transport.close();
  });

  it("timing: runtime: the master keeps its role while a backup's fsync stalls for seconds (heartbeat responses do not wait for it)", async () => {
    const network = new MemoryNetwork();
    const stallable = new Map<NodeId, StallingStorage>();
    const nodes = await Promise.all(
      ids.map((id) =>
        startOne(network, id, new MemoryVolume(), {
          wrap: (storage) => {
            const slow = new StallingStorage(storage);
            stallable.set(id, slow);
            return slow;
          },
        }),
      ),
    );
    const master = await masterOf(nodes);
    await master.node.propose(put("before", "v"));
    // One backup is down; the other one's disk stalls: the master has a majority only
    // with a backup whose every fsync hangs.
    const [down, slow] = nodes.filter((n) => n !== master) as [TestNode, TestNode];
    await down.node.stop();
    const stepDowns: string[] = [];
    master.node.on("role", (event) => stepDowns.push(`${event.role}: ${event.reason}`));
    const disk = stallable.get(slow.node.id)!;
    disk.stall();
    let settled = false;
    const write = master.node.propose(put("during", "v")).then(
      () => null,
      (error: unknown) => error,
    );
    void write.finally(() => {
      settled = true;
    });
    try {
      // Many election timeouts (100-200 ms here) pass while the fsync hangs.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(stepDowns).toEqual([]);
      expect(master.node.role).toBe("master");
      // The stalled backup acknowledges no entry it has not made durable: no commit.
      expect(settled).toBe(false);
    } finally {
      disk.resume();
    }
    expect(await write).toBeNull();
    expect(master.node.role).toBe("master");
  });

  it("timing: runtime: a sync that fails while the Ready chain waits on an earlier one stops the node through fail(), never as an unhandled rejection", async () => {
    const network = new MemoryNetwork();
    const disks = new Map<NodeId, FailingStorage>();
    const nodes = await Promise.all(
      ids.map((id) =>
        startOne(network, id, new MemoryVolume(), {
          wrap: (storage) => {
            const disk = new FailingStorage(storage);
            disks.set(id, disk);
            return disk;
          },
        }),
      ),
    );
    const master = await masterOf(nodes);
    const disk = disks.get(master.node.id)!;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const fatal = new Promise<Error>((resolve) => master.node.once("fatal", resolve));
      // The first write's fsync hangs, so the chain waits on it; the second one's fails
      // at once, long before the chain gets to it (found by the whole-node simulator).
      disk.stall();
      void master.node.propose(put("a", "1")).catch(() => {});
      await until("the hanging sync", () => disk.stalled);
      disk.failing = true;
      void master.node.propose(put("b", "2")).catch(() => {});
      await until("the failed sync", () => disk.failed);
      await new Promise((resolve) => setTimeout(resolve, 50));
      disk.resume();
      expect((await fatal).message).toMatch(/EIO/);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("timing: runtime: a vote, and a heartbeat response in a new term, still wait for the fsync of that term (stalled disk)", async () => {
    const network = new MemoryNetwork();
    let disk: StallingStorage | null = null;
    await startOne(network, 1, new MemoryVolume(), {
      electionMsMin: 10_000,
      wrap: (storage) => {
        disk = new StallingStorage(storage);
        return disk;
      },
    });
    const candidate = await puppet(network, 2);
    const master = await puppet(network, 3);
    const heard = (from: { received: WireMessage[] }, type: WireMessage["type"], term: number) =>
      from.received.some((m) => m.type === type && m.term === term);
    const heartbeat = (term: number) =>
      master.transport.send({
        type: "heartbeat",
        incarnation: 0,
        from: 3,
        to: 1,
        term,
        commitIndex: 0,
        readContext: 0,
      });
    /** Sends with the disk stalled: the answer must wait for the fsync, and then come. */
    const answeredAfterFsync = async (send: () => void, answered: () => boolean) => {
      disk!.stall();
      try {
        send();
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(answered()).toBe(false);
      } finally {
        disk!.resume();
      }
      await until("the answer after the fsync", answered);
    };
    // Raft §5.2: a vote is durable before it is granted.
    await answeredAfterFsync(
      () =>
        candidate.transport.send({
          type: "vote_request",
          incarnation: 0,
          from: 2,
          to: 1,
          term: 1,
          preVote: false,
          handover: false,
          lastIndex: 0,
          lastTerm: 0,
        }),
      () => heard(candidate, "vote_response", 1),
    );
    // A heartbeat response of term 2 waits for term 2 to be durable...
    await answeredAfterFsync(
      () => heartbeat(2),
      () => heard(master, "heartbeat_response", 2),
    );
    // ...and once it is, the next one leaves at once, ahead of an acknowledgement that
    // waits for an fsync which hangs.
    disk!.stall();
    try {
      master.received.length = 0;
      master.transport.send({
        type: "append",
        incarnation: 0,
        from: 3,
        to: 1,
        term: 2,
        prevIndex: 0,
        prevTerm: 0,
        entries: noops(1, 1, 2),
        commitIndex: 0,
      });
      heartbeat(2);
      await until("a heartbeat response", () => heard(master, "heartbeat_response", 2), 1_000);
      expect(heard(master, "append_response", 2)).toBe(false);
    } finally {
      disk!.resume();
    }
    await until("the acknowledgement after the fsync", () => heard(master, "append_response", 2));
    await candidate.transport.close();
    await master.transport.close();
  });

  it("timing: metrics: role, term, indexes, lag and fail-overs are exported in Prometheus format", async () => {
    const network = new MemoryNetwork();
    const nodes = await Promise.all(ids.map((id) => startOne(network, id, new MemoryVolume())));
    const registries = new Map(nodes.map((n) => [n, createNodeMetrics(n.node)]));
    const first = await masterOf(nodes);
    await first.node.propose(put("a", "1"));
    const text = await registries.get(first)!.metrics();
    expect(text).toMatch(/baton_role\{role="master"\} 1/);
    expect(text).toMatch(/baton_role\{role="backup"\} 0/);
    expect(text).toMatch(/baton_term \d+/);
    expect(text).toMatch(/baton_commit_index [1-9]/);
    expect(text).toMatch(/baton_peer_lag_entries\{peer="\d"\} \d+/);
    expect(text).toMatch(/baton_proposals_total 1/);
    // A loaded machine may have seen a fail-over already before the first write: count from
    // what each node reports now.
    const counted = async (n: TestNode, metric: string): Promise<number> => {
      const match = new RegExp(`^${metric} (\\d+)$`, "m").exec(await registries.get(n)!.metrics());
      return Number(match?.[1] ?? Number.NaN);
    };
    const before = new Map<TestNode, [number, number]>();
    for (const n of nodes) {
      before.set(n, [
        await counted(n, "baton_failovers_total"),
        await counted(n, "baton_failover_seconds_count"),
      ]);
    }
    await first.node.stop();
    const second = await masterOf(nodes.filter((n) => n !== first));
    const [failovers, timed] = before.get(second)!;
    expect(await counted(second, "baton_failovers_total")).toBe(failovers + 1);
    expect(await counted(second, "baton_failover_seconds_count")).toBe(timed + 1);
  });

  /**
   * Starts node 1 of `ids` on an identity file holding `saved`, over a memory transport whose
   * unknown-caller handler the test calls itself and whose handshakes presented `presented`.
   */
  async function startOnIdentity(
    dir: string,
    saved: Parameters<IdentityStore["save"]>[0],
    presented: (peer: NodeId) => PresentedMember | null = () => null,
  ): Promise<(caller: UnknownCaller) => Admission> {
    const identity = await IdentityStore.open(dir, nodeFileSystem);
    await identity.save(saved);
    const inner = new MemoryNetwork().createTransport(1, ids);
    let admit: ((caller: UnknownCaller) => Admission) | null = null;
    const transport = new Proxy(inner, {
      get: (target, key) => {
        if (key === "onUnknownPeer") {
          return (handler: (caller: UnknownCaller) => Admission) => {
            admit = handler;
          };
        }
        if (key === "presentedBy") return presented;
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const config = parseNodeConfig({
      id: 1,
      peers: ids.map((i) => ({ id: i, address: `127.0.0.1:${7100 + i}` })),
    });
    const node = await BatonNode.start({
      config,
      opened: await MemoryStorage.open(new MemoryVolume()),
      transport,
      stateMachine: new KvStateMachine(),
      logger,
      identity,
    });
    running.push(node);
    expect(admit).not.toBeNull();
    return admit!;
  }

  /** Node 4 of cluster c0ffee calling as member incarnation `memberIncarnation`. */
  const caller = (memberIncarnation: number): UnknownCaller => ({
    id: 4,
    memberIncarnation,
    peerAddress: "127.0.0.1:7104",
    sameCluster: true,
    clusterUid: "c0ffee",
  });

  /** Node 1 of cluster c0ffee restarted on an identity that records node 4's incarnation `removed` as removed. */
  const startRemembering = (dir: string, removed: number) =>
    startOnIdentity(dir, {
      clusterId: "c0ffee",
      incarnation: 5,
      joinedConfig: null,
      appliedConfig: null,
      removed: [{ id: 4, incarnation: removed, peerAddress: "127.0.0.1:7104" }],
    });

  it("node: after a restart, a removed member is still told from the same id added back (the identity keeps what was removed)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-node-removed-"));
    try {
      const admit = await startRemembering(dir, 7);
      // The incarnation that was removed, restarted on its old data: still not a member.
      expect(admit(caller(7))).toEqual({
        admitted: false,
        reason: expect.stringMatching(/node 4 is not a member of this cluster/),
      });
      // Another incarnation of id 4: added back while this node was away; linked.
      expect(admit(caller(9))).toEqual({ admitted: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("node: a member removed while listed with the bootstrap incarnation 0 is linked again when it calls with an incarnation", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-node-removed-zero-"));
    try {
      const admit = await startRemembering(dir, 0);
      // A caller that names no incarnation cannot be told from the removed one.
      expect(admit(caller(0))).toMatchObject({ admitted: false });
      // Added back (whole-node seed 1684093: the new master, refused for ever before).
      expect(admit(caller(9))).toEqual({ admitted: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("node: restarted on a configuration that lists a member added after its --peers, a node admits that member when it calls", async () => {
    // Node 1 was started with --peers 1,2,3; node 4 was added through the log, and the
    // configuration node 1 saved lists it. Node 1 restarts: node 4 is in the configuration
    // it starts with but not on its command line, so nothing links it until it calls.
    const members = [...ids, 4].map((id) => ({
      id,
      incarnation: 10 + id,
      voter: true,
      peerAddress: `127.0.0.1:${7100 + id}`,
      httpUrl: "",
    }));
    const dir = mkdtempSync(join(tmpdir(), "baton-node-started-with-"));
    try {
      const admit = await startOnIdentity(dir, {
        clusterId: "c0ffee",
        incarnation: 11,
        joinedConfig: null,
        appliedConfig: { index: 7, config: members },
      });
      expect(
        admit({
          id: 4,
          memberIncarnation: 14,
          peerAddress: "127.0.0.1:7104",
          sameCluster: true,
          clusterUid: "c0ffee",
        }),
      ).toEqual({ admitted: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A voter of the test's cluster as a configuration lists it. */
  const listed = (id: NodeId, incarnation: number) => ({
    id,
    incarnation,
    voter: true,
    peerAddress: `127.0.0.1:${7100 + id}`,
    httpUrl: "",
  });
  type Listed = { readonly index: number; readonly config: ReturnType<typeof listed>[] };

  /**
   * A volume whose log holds entries 1..`lastIndex` of term 2, committed, with the config
   * entries `configs` at their indexes (no-ops elsewhere), and a snapshot at `snapshotAt`.
   */
  async function volumeWithLog(
    lastIndex: number,
    configs: readonly Listed[],
    snapshotAt: number | null,
  ): Promise<MemoryVolume> {
    const volume = new MemoryVolume();
    const { storage } = await MemoryStorage.open(volume);
    const configAt = new Map(configs.map((c) => [c.index, c.config]));
    storage.append(
      Array.from({ length: lastIndex }, (_, i) => {
        const config = configAt.get(i + 1);
        return config === undefined
          ? { index: i + 1, term: 2, kind: "noop" as const, data: new Uint8Array() }
          : {
              index: i + 1,
              term: 2,
              kind: "config" as const,
              data: encodeConfiguration(config, "c0ffee"),
            };
      }),
    );
    storage.setHardState({ term: 2, votedFor: null, commitIndex: lastIndex });
    await storage.sync();
    if (snapshotAt !== null) {
      await storage.saveSnapshot({ index: snapshotAt, term: 2 }, new KvStateMachine().snapshot());
      await storage.compact(snapshotAt);
    }
    await storage.close();
    return volume;
  }

  /** Node 1 started on `volume` with an identity whose configurations are `configs`. */
  async function startWithConfigs(
    volume: MemoryVolume,
    dir: string,
    configs: readonly Listed[],
  ): Promise<{ node: BatonNode; identity: IdentityStore }> {
    const identity = await IdentityStore.open(dir, nodeFileSystem);
    await identity.save({
      clusterId: "c0ffee",
      incarnation: 11,
      joinedConfig: null,
      appliedConfig: configs.at(-1)!,
      configs,
    });
    const node = await BatonNode.start({
      config: parseNodeConfig({
        id: 1,
        peers: ids.map((i) => ({ id: i, address: `127.0.0.1:${7100 + i}` })),
      }),
      opened: await MemoryStorage.open(volume),
      transport: new MemoryNetwork().createTransport(1, ids),
      stateMachine: new KvStateMachine(),
      logger,
      identity,
    });
    running.push(node);
    return { node, identity };
  }

  it("node: restarted, a node's snapshot carries the configuration in force at its index, not a newer one", async () => {
    // Snapshot at 30 listing 1, 2, 3; node 3 removed at 40 and added back as another
    // incarnation at 90. Sent with the configuration of 90, the snapshot made the new
    // incarnation of node 3 apply its own removal (at 40) from the log after it.
    const first = { index: 2, config: ids.map((id) => listed(id, 10 + id)) };
    const removal = { index: 40, config: [listed(1, 11), listed(2, 12)] };
    const back = { index: 90, config: [...removal.config, listed(3, 77)] };
    const volume = await volumeWithLog(90, [first, removal, back], 30);
    const dir = mkdtempSync(join(tmpdir(), "baton-node-snapshot-config-"));
    try {
      const { node } = await startWithConfigs(volume, dir, [first, removal, back]);
      const replica = node["replica"];
      expect(replica.snapshotMeta().config).toEqual(first.config);
      // The log after the snapshot still makes the newest one the one in force.
      expect(replica.members).toEqual(back.config);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("node: a configuration applied below the newest one recorded (a snapshot adopted, never installed) is kept for its index", async () => {
    // Node 1 adopted a snapshot at 90 (its configuration recorded as the newest) and
    // stopped before installing it; restarted, it applies its log, whose entry 40 changed
    // the configuration. Dropped because 90 is newer, a later snapshot at 40..89 would
    // restart with the configuration before 40.
    const first = { index: 2, config: ids.map((id) => listed(id, 10 + id)) };
    const removal = { index: 40, config: [listed(1, 11), listed(2, 12)] };
    const adopted = { index: 90, config: [...removal.config, listed(3, 77)] };
    const volume = await volumeWithLog(50, [first, removal], null);
    const dir = mkdtempSync(join(tmpdir(), "baton-node-older-config-"));
    try {
      const { identity } = await startWithConfigs(volume, dir, [first, adopted]);
      await vi.waitFor(() => {
        expect(identity.identity()?.configs?.map((c) => c.index)).toEqual([2, 40, 90]);
      });
      // The newest stays the newest.
      expect(identity.identity()?.appliedConfig).toEqual(adopted);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("node: a node that never learned its cluster id admits a new member on the word of a listed member", async () => {
    // Node 1 stopped before it learned that the entry carrying the cluster id committed;
    // node 5 was added (and made master) meanwhile. Only node 5 can tell node 1 of itself.
    const members = ids.map((id) => ({
      id,
      incarnation: 10 + id,
      voter: true,
      peerAddress: `127.0.0.1:${7100 + id}`,
      httpUrl: "",
    }));
    const saved = {
      clusterId: null,
      incarnation: 11,
      joinedConfig: null,
      appliedConfig: { index: 2, config: members },
    };
    const node5 = (clusterUid: string): UnknownCaller => ({
      id: 5,
      memberIncarnation: 55,
      peerAddress: "127.0.0.1:7105",
      sameCluster: false,
      clusterUid,
    });
    const notKnownYet = (clusterUid: string) => ({
      admitted: false,
      reason: `node 1 does not list node 5 and does not know its cluster id yet: it admits node 5 once a member it lists presents cluster id ${clusterUid}`,
    });
    const vouching = (memberIncarnation: number) => (peer: NodeId) =>
      peer === 2 ? { memberIncarnation, clusterUid: "c0ffee" } : null;
    for (const [presented, caller, answer] of [
      // Node 2, listed as incarnation 12, presented the cluster id node 5 presents: admitted.
      [vouching(12), node5("c0ffee"), { admitted: true }],
      // Another cluster's id: refused, and node 5 is told why (it need do nothing).
      [vouching(12), node5("beef"), notKnownYet("beef")],
      // The id came from an incarnation of node 2 that the configuration does not list.
      [vouching(13), node5("c0ffee"), notKnownYet("c0ffee")],
      // No cluster id presented at all: a new node started without --join.
      [
        vouching(12),
        node5(""),
        { admitted: false, reason: expect.stringMatching(/node 5 has no cluster id: add it/) },
      ],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), "baton-node-vouch-"));
      try {
        const admit = await startOnIdentity(dir, saved, presented);
        expect(admit(caller), `${caller.clusterUid}`).toEqual(answer);
      } finally {
        await Promise.all(running.splice(0).map((n) => n.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
