import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { fastNodeConfig } from "../../harness/memory-node.js";
import { EventFeed } from "../http/event-feed.js";
import { encodeCommand, KvStateMachine } from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import { BatonNode } from "../server/node.js";
import { MemoryStorage, MemoryVolume } from "../storage/memory-storage.js";
import { MemoryNetwork } from "../transport/memory-transport.js";
import { connectNodeEvents } from "./node-events.js";
import { createNodeMetrics } from "./node-metrics.js";

/** Three in-process nodes on the in-memory transport and storage, with short timers. */

const logger = pino({ level: "silent" });
const ids: NodeId[] = [1, 2, 3];
let running: BatonNode[] = [];
let disconnects: (() => void)[] = [];

afterEach(async () => {
  for (const disconnect of disconnects) disconnect();
  await Promise.all(running.map((n) => n.stop()));
  running = [];
  disconnects = [];
});

async function startCluster(network: MemoryNetwork): Promise<BatonNode[]> {
  return Promise.all(
    ids.map(async (id) => {
      const config = fastNodeConfig(id, ids);
      const opened = await MemoryStorage.open(new MemoryVolume());
      const transport = network.createTransport(id, ids);
      const stateMachine = new KvStateMachine();
      const node = await BatonNode.start({ config, opened, transport, stateMachine, logger });
      running.push(node);
      return node;
    }),
  );
}

async function until<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const put = (key: string) =>
  encodeCommand({ type: "put", key, value: new TextEncoder().encode("v") });

describe("node metrics", () => {
  it("metrics: the process metrics are made once and shared: a stopped node's registry holds no observer that keeps it", async () => {
    const [a, b] = await startCluster(new MemoryNetwork());
    const first = createNodeMetrics(a!);
    const second = createNodeMetrics(b!);
    const name = "process_cpu_user_seconds_total";
    // One metric object (and one GC observer behind it) for every node of the process:
    // before, each registry started its own, which held the registry and its node for good.
    expect(first.getSingleMetric(name)).toBeDefined();
    expect(first.getSingleMetric(name)).toBe(second.getSingleMetric(name));
    expect(first.getSingleMetric("baton_term")).not.toBe(second.getSingleMetric("baton_term"));
    expect(await first.metrics()).toContain("nodejs_heap_size_used_bytes");
  });

  it("timing: metrics: proposal latency, lag in bytes, peer contact and step-downs are exported", async () => {
    const nodes = await startCluster(new MemoryNetwork());
    const feeds = new Map(nodes.map((node) => [node, new EventFeed(node.id)]));
    for (const [node, feed] of feeds) disconnects.push(connectNodeEvents(node, feed));
    const registries = new Map(
      nodes.map((node) => [node, createNodeMetrics(node, feeds.get(node))]),
    );
    const master = await until("a master", () => nodes.find((n) => n.role === "master"));
    for (let i = 0; i < 3; i++) await master.propose(put(`k${i}`));
    const text = await registries.get(master)!.metrics();
    expect(text).toMatch(/baton_proposals_total 3/);
    expect(text).toMatch(/baton_proposal_duration_seconds_count 3/);
    expect(text).toMatch(/baton_peer_lag_bytes\{peer="\d"\} \d+/);
    expect(text).toMatch(/baton_peer_last_contact_seconds\{peer="\d"\} [\d.e-]+/);
    expect(text).toMatch(/baton_peer_connected\{peer="\d"\} 1/);
    expect(text).toMatch(/baton_master_id [123]/);
    expect(text).toMatch(/baton_wal_fsync_duration_seconds_count 0/);
    expect(text).toMatch(/process_cpu_seconds_total/);
    // One status snapshot per scrape: every gauge of a scrape reads the same numbers.
    await new Promise((resolve) => setImmediate(resolve));
    let calls = 0;
    const status = master.status.bind(master);
    master.status = () => {
      calls++;
      return status();
    };
    await registries.get(master)!.metrics();
    expect(calls).toBe(1);

    // The master stops; a backup takes over, and its feed has the fail-over.
    await master.stop();
    const others = nodes.filter((n) => n !== master);
    const second = await until("a new master", () => others.find((n) => n.role === "master"));
    const after = await registries.get(second)!.metrics();
    expect(after).toMatch(/baton_elections_started_total [1-9]/);
    expect(after).toMatch(/baton_failovers_total 1/);
    const events = feeds.get(second)!.recentEvents();
    expect(events.map((e) => e.type)).toContain("failover");
    expect(events.find((e) => e.type === "failover")).toMatchObject({
      previousMaster: master.id,
      term: second.status().term,
    });
  });

  it("timing: events: the target of a switchover reports it, naming the master that handed over, and counts it as a switchover, not a fail-over", async () => {
    const nodes = await startCluster(new MemoryNetwork());
    const registries = new Map(nodes.map((n) => [n, createNodeMetrics(n)]));
    const feeds = new Map(nodes.map((node) => [node, new EventFeed(node.id)]));
    for (const [node, feed] of feeds) disconnects.push(connectNodeEvents(node, feed));
    const master = await until("a master", () => nodes.find((n) => n.role === "master"));
    await master.propose(put("k"));
    const target = nodes.find((n) => n !== master)!;
    await until("the target caught up", () =>
      target.status().appliedIndex >= master.status().commitIndex ? true : undefined,
    );
    const outcome = await master.switchover(target.id);
    expect(outcome.master).toBe(target.id);
    const events = feeds.get(target)!.recentEvents();
    expect(events.find((e) => e.type === "switchover")).toMatchObject({
      previousMaster: master.id,
      term: outcome.term,
    });
    expect(events.map((e) => e.type)).not.toContain("failover");
    const metrics = await registries.get(target)!.metrics();
    expect(metrics).toMatch(/baton_switchovers_total 1/);
    expect(metrics).toMatch(/baton_failovers_total 0/);
  });

  it("timing: metrics: event-loop delay is a histogram of tick delays and their max per scrape", async () => {
    const nodes = await startCluster(new MemoryNetwork());
    const node = nodes[0]!;
    const registry = createNodeMetrics(node);
    // Some ticks of the node's own timer (every 5 ms here).
    await new Promise((resolve) => setTimeout(resolve, 50));
    // A stall of 400 ms, as the tick timer would report it on resuming.
    node.emit("tickDelay", 400);
    const first = await registry.metrics();
    expect(first).toMatch(/baton_event_loop_delay_seconds_bucket\{le="0.5"\} [1-9]/);
    expect(first).toMatch(/baton_event_loop_delay_seconds_count [1-9]\d*/);
    expect(first).toMatch(/^baton_event_loop_delay_max_seconds 0.4$/m);
    // The max covers the time since the previous scrape only.
    const second = await registry.metrics();
    const max = Number(/^baton_event_loop_delay_max_seconds (\S+)$/m.exec(second)?.[1]);
    expect(max).toBeLessThan(0.4);
  });
});
