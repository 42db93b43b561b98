import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createNodeMetrics } from "../app/node-metrics.js";
import { encodeCommand, type KvResult, KvStateMachine } from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import {
  ConflictError,
  IndeterminateError,
  InvalidInputError,
  NoMasterError,
} from "../shared/errors.js";
import { MemoryStorage, MemoryVolume } from "../storage/memory-storage.js";
import { MemoryNetwork } from "../transport/memory-transport.js";
import { FORWARD_HOLD_MS } from "./forwarder.js";
import { BatonNode } from "./node.js";
import { parseNodeConfig } from "./node-config.js";

/**
 * The runtime in-process: real timers (short ones), the in-memory transport and storage,
 * the key-value state machine. Real processes and TCP are covered in test/integration.
 */

const logger = pino({ level: process.env.BATON_TEST_LOG ?? "silent" });
const ids: NodeId[] = [1, 2, 3];
let running: BatonNode[] = [];

afterEach(async () => {
  await Promise.all(running.map((n) => n.stop()));
  running = [];
});

interface TestNode {
  node: BatonNode;
  sm: KvStateMachine;
  volume: MemoryVolume;
}

async function startOne(
  network: MemoryNetwork,
  id: NodeId,
  volume: MemoryVolume,
  snapshotEntries = 10_000,
): Promise<TestNode> {
  const config = parseNodeConfig({
    id,
    peers: ids.map((i) => ({ id: i, address: `127.0.0.1:${7100 + i}` })),
    tickMs: 5,
    heartbeatMs: 20,
    electionMsMin: 100,
    electionMsMax: 200,
    snapshotEntries,
    snapshotKeepEntries: 5,
    transferChunkBytes: 1024,
  });
  const sm = new KvStateMachine();
  const opened = await MemoryStorage.open(volume);
  const transport = network.createTransport(id, ids);
  const node = await BatonNode.start({ config, opened, transport, stateMachine: sm, logger });
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

function put(key: string, value: string) {
  return encodeCommand({ type: "put", key, value: new TextEncoder().encode(value) });
}

async function masterOf(nodes: TestNode[]): Promise<TestNode> {
  return until("a master", () => nodes.find((n) => n.node.role === "master"));
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
    await until("every backup connected", () =>
      nodes.every((n) => n.node.status().members.every((m) => m.connected)),
    );
    // Asked of backup a, to make backup b the master.
    const outcome = await a.node.switchover(b.node.id);
    expect(outcome.master).toBe(b.node.id);
    expect(b.node.role).toBe("master");
    expect(() => b.node.switchover(9)).toThrow(InvalidInputError);
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
    expect(error?.message).toMatch(/retry with the same Idempotency-Key/);
    expect(master.node.role).not.toBe("master");
  });

  it("timing: runtime: a wiped backup catches up by state transfer after the log was compacted", async () => {
    const network = new MemoryNetwork();
    const volumes = ids.map(() => new MemoryVolume());
    const nodes = await Promise.all(ids.map((id, i) => startOne(network, id, volumes[i]!, 20)));
    const master = await masterOf(nodes);
    const victim = nodes.find((n) => n !== master)!;
    await victim.node.stop();
    running = running.filter((n) => n !== victim.node);
    const big = "x".repeat(3000);
    for (let i = 0; i < 100; i++) await master.node.propose(put(`k${i}`, `${big}${i}`));
    await until("the master compacts", () => master.node.status().lastIndex > 100);
    // The victim comes back with nothing: only a state transfer can bring it up to date.
    const fresh = await startOne(network, victim.node.id, new MemoryVolume(), 20);
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
    await first.node.stop();
    const second = await masterOf(nodes.filter((n) => n !== first));
    const after = await registries.get(second)!.metrics();
    expect(after).toMatch(/baton_failovers_total 1/);
    expect(after).toMatch(/baton_failover_seconds_count 1/);
  });
});
