/**
 * A step-by-step harness for core scenarios: a handful of replicas, a network that only
 * moves messages when told to, partitions, crashes that keep what was persisted, and a
 * text trace of what each node did. Scenario scripts (test/scenarios/*.txt) drive it;
 * unit tests may drive it directly.
 *
 * Storage here is synchronous: a Ready's writes are durable before its messages leave.
 */

import { defaultReplicaConfig, type ReplicaConfig } from "../../src/core/config.js";
import { Prng } from "../../src/core/prng.js";
import { EMPTY_STATE, type ReadState, Replica } from "../../src/core/replica.js";
import type { Entry, HardState, Message, NodeId } from "../../src/protocol/messages.js";

interface Disk {
  hardState: HardState;
  entries: Entry[];
}

export class Harness {
  readonly nodes = new Map<NodeId, Replica>();
  readonly disks = new Map<NodeId, Disk>();
  readonly applied = new Map<NodeId, Entry[]>();
  readonly reads = new Map<NodeId, ReadState[]>();
  /** Messages sent and not yet delivered, in order. */
  queue: Message[] = [];
  private readonly cut = new Set<string>();
  private readonly down = new Set<NodeId>();
  private readonly configs = new Map<NodeId, ReplicaConfig>();
  readonly out: string[] = [];
  private seed = 1;

  addNodes(count: number, overrides: Partial<ReplicaConfig> = {}): void {
    const ids = Array.from({ length: count }, (_, i) => i + 1);
    for (const id of ids) {
      const config = { ...defaultReplicaConfig(id, ids), ...overrides, id, members: ids };
      this.configs.set(id, config);
      this.disks.set(id, { hardState: EMPTY_STATE.hardState, entries: [] });
      this.start(id);
    }
  }

  private start(id: NodeId, options: { readonly join?: boolean } = {}): void {
    const disk = this.disks.get(id)!;
    const restored = {
      hardState: disk.hardState,
      snapshot: EMPTY_STATE.snapshot,
      entries: [...disk.entries],
    };
    this.nodes.set(
      id,
      new Replica(this.configs.get(id)!, new Prng(this.seed++), restored, options),
    );
    this.applied.set(id, []);
    this.reads.set(id, []);
    this.process(id);
  }

  node(id: NodeId): Replica {
    const replica = this.nodes.get(id);
    if (replica === undefined || this.down.has(id)) throw new Error(`node ${id} is not running`);
    return replica;
  }

  /** Persists, queues messages and applies for one node's pending Readies. */
  process(id: NodeId): void {
    if (this.down.has(id)) return;
    const replica = this.nodes.get(id)!;
    while (replica.hasReady()) {
      const ready = replica.ready();
      for (const e of ready.events) {
        this.out.push(
          `${id} became ${e.preVote ? "pre-candidate" : e.role} at term ${e.term} (${e.reason})`,
        );
      }
      const disk = this.disks.get(id)!;
      if (ready.hardState !== null) disk.hardState = ready.hardState;
      const first = ready.entries[0];
      if (first !== undefined) {
        disk.entries.length = first.index - 1;
        disk.entries.push(...ready.entries);
      }
      disk.hardState = { ...disk.hardState, commitIndex: replica.commitIndex };
      this.queue.push(...ready.messagesNow, ...ready.messages);
      this.applied.get(id)!.push(...ready.committed);
      this.reads.get(id)!.push(...ready.reads);
      const last = ready.entries[ready.entries.length - 1];
      if (last !== undefined) replica.persisted(last.index, last.term);
    }
  }

  /** Delivers every queued message (to `to` only, when given) once; returns how many. */
  deliver(to?: NodeId, filter?: (m: Message) => boolean): number {
    const now = this.queue;
    this.queue = [];
    let delivered = 0;
    for (const m of now) {
      if ((to !== undefined && m.to !== to) || (filter !== undefined && !filter(m))) {
        this.queue.push(m);
        continue;
      }
      if (this.down.has(m.to) || this.cut.has(`${m.from}->${m.to}`)) continue;
      const result = this.nodes.get(m.to)!.step(m);
      if (!result.ok)
        this.out.push(`${m.to} refused ${m.type} from ${m.from}: ${result.violation}`);
      delivered++;
      this.process(m.to);
    }
    return delivered;
  }

  /** Delivers and processes until no message moves. */
  stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      for (const id of this.nodes.keys()) this.process(id);
      if (this.deliver() === 0 && this.queue.length === 0) return;
    }
    throw new Error("harness: no quiescence after 1000 rounds");
  }

  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i++) {
      this.node(id).tick();
      this.process(id);
    }
  }

  /** Nodes whose clock stands still (a paused process): `tick-all` skips them. */
  readonly frozen = new Set<NodeId>();

  /** Ticks every running node `count` times, delivering messages between ticks. */
  tickAll(count: number): void {
    for (let i = 0; i < count; i++) {
      for (const id of this.nodes.keys()) {
        if (!this.down.has(id) && !this.frozen.has(id)) this.tick(id);
      }
      this.stabilize();
    }
  }

  campaign(id: NodeId): void {
    this.node(id).campaign();
    this.process(id);
  }

  propose(id: NodeId, text: string): void {
    const result = this.node(id).propose(new TextEncoder().encode(text));
    this.out.push(
      result.ok
        ? `${id} proposed "${text}" at ${result.index}`
        : `${id} refused "${text}": ${result.reason}`,
    );
    this.process(id);
  }

  partition(groups: NodeId[][]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.cut.add(`${x}->${y}`);
      }
    }
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}->${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  crash(id: NodeId): void {
    this.down.add(id);
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Crashes a node and empties its disk, as an operator wiping its data directory. */
  wipe(id: NodeId): void {
    this.crash(id);
    this.disks.set(id, { hardState: EMPTY_STATE.hardState, entries: [] });
  }

  /** Restarts a node; `join` as `baton start --join` does after its data was wiped. */
  restart(id: NodeId, options: { readonly join?: boolean } = {}): void {
    this.down.delete(id);
    this.start(id, options);
  }

  status(id: NodeId): string {
    if (this.down.has(id)) return `${id}: down`;
    const r = this.node(id);
    const joining = r.isJoining ? " (joining)" : "";
    return `${id}: ${r.role}${joining} term ${r.term} master ${r.masterId ?? "-"} commit ${r.commitIndex} last ${r.lastIndex}`;
  }

  logOf(id: NodeId): string {
    const r = this.nodes.get(id)!;
    const parts: string[] = [];
    for (let i = 1; i <= r.lastIndex; i++) {
      const e = r.entryAt(i)!;
      parts.push(
        e.kind === "noop" ? `${i}:${e.term}` : `${i}:${e.term}:${new TextDecoder().decode(e.data)}`,
      );
    }
    return `${id} log: ${parts.join(" ") || "(empty)"}`;
  }
}
