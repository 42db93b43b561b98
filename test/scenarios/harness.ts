/**
 * A step-by-step harness for core scenarios: a handful of replicas, a network that only
 * moves messages when told to, partitions, crashes that keep what was persisted, and a
 * text trace of what each node did. Scenario scripts (test/scenarios/*.txt) drive it;
 * unit tests may drive it directly.
 *
 * Storage here is synchronous: a Ready's writes are durable before its messages leave.
 */

import { defaultReplicaConfig, type ReplicaConfig } from "../../src/core/config.js";
import type { Configuration, MemberChange } from "../../src/core/configuration.js";
import { Prng } from "../../src/core/prng.js";
import { EMPTY_STATE, type ReadState, Replica } from "../../src/core/replica.js";
import type {
  Entry,
  HardState,
  Message,
  NodeId,
  SnapshotMeta,
} from "../../src/protocol/messages.js";

interface Disk {
  hardState: HardState;
  entries: Entry[];
  /** The data directory's member incarnation (0 without identities). */
  incarnation: number;
  /** The configuration a node added with `--join` learned when it joined. */
  joinedConfig: Configuration | null;
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
  /**
   * With identities, every data directory has a member incarnation (node id * 10 + the
   * how-manyth directory of that node it is: 11, 12, ...) and the first configuration
   * lists each node's first one, as a bootstrapped cluster's does once bound.
   */
  private identities = false;
  private readonly generations = new Map<NodeId, number>();
  private bootConfig: SnapshotMeta = EMPTY_STATE.snapshot;

  /**
   * `identities`: see above; `bound` false lists every member with incarnation 0, as a
   * configuration from the command line does, although each directory has its own.
   */
  addNodes(
    count: number,
    overrides: Partial<ReplicaConfig> = {},
    identities = false,
    bound = true,
  ): void {
    const ids = Array.from({ length: count }, (_, i) => i + 1);
    this.identities = identities;
    if (identities) {
      this.bootConfig = {
        index: 0,
        term: 0,
        config: ids.map((id) => ({
          id,
          incarnation: bound ? id * 10 + 1 : 0,
          voter: true,
          peerAddress: `n${id}:7000`,
          httpUrl: `http://n${id}:8000`,
        })),
      };
    }
    for (const id of ids) {
      const config = { ...defaultReplicaConfig(id, ids), ...overrides, id, members: ids };
      this.configs.set(id, config);
      this.disks.set(id, this.emptyDisk(id));
      this.start(id);
    }
  }

  private emptyDisk(id: NodeId): Disk {
    const generation = (this.generations.get(id) ?? 0) + 1;
    this.generations.set(id, generation);
    return {
      hardState: EMPTY_STATE.hardState,
      entries: [],
      incarnation: this.identities ? id * 10 + generation : 0,
      joinedConfig: null,
    };
  }

  /** The incarnation node `id`'s data directory has now. */
  incarnationOf(id: NodeId): number {
    return this.disks.get(id)!.incarnation;
  }

  private start(id: NodeId, options: { readonly join?: boolean } = {}): void {
    const disk = this.disks.get(id)!;
    // As the runtime does: a member added with --join starts from the configuration it
    // learned (no snapshot holds one yet), not from the bootstrap configuration.
    const restored = {
      hardState: disk.hardState,
      snapshot: disk.joinedConfig === null ? this.bootConfig : { index: 0, term: 0 },
      entries: [...disk.entries],
    };
    this.nodes.set(
      id,
      new Replica(this.configs.get(id)!, new Prng(this.seed++), restored, {
        ...options,
        incarnation: disk.incarnation,
        ...(disk.joinedConfig === null ? {} : { configuration: disk.joinedConfig }),
      }),
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
        if (e.type === "role") {
          this.out.push(
            `${id} became ${e.preVote ? "pre-candidate" : e.role} at term ${e.term} (${e.reason})`,
          );
        } else if (e.type === "removed") {
          this.out.push(`${id} removed: ${e.reason}`);
        }
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
      if (!this.nodes.has(m.to)) continue; // added, not started yet
      if (!this.released.has(m) && this.holdRules.some((rule) => rule(m))) {
        this.held.push(m);
        continue;
      }
      const result = this.nodes.get(m.to)!.step(m);
      if (!result.ok)
        this.out.push(`${m.to} refused ${m.type} from ${m.from}: ${result.violation}`);
      else if (result.ignored !== undefined) this.ignored.push(`${m.to}: ${result.detail}`);
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

  /** Messages a node ignored (not a member, or a stale incarnation), in order. */
  readonly ignored: string[] = [];

  /** Messages taken out of the network by `hold`, to be delivered late by `release`. */
  held: Message[] = [];

  /** Takes the queued messages that `filter` picks out of the network for now. */
  hold(filter: (m: Message) => boolean): number {
    const kept = this.queue.filter((m) => !filter(m));
    const taken = this.queue.filter(filter);
    this.queue = kept;
    this.held.push(...taken);
    return taken.length;
  }

  /** Messages that `holdWhere` rules pick are held instead of delivered, until cleared. */
  private holdRules: ((m: Message) => boolean)[] = [];

  holdWhere(rule: (m: Message) => boolean): void {
    this.holdRules.push(rule);
  }

  clearHoldRules(): void {
    this.holdRules = [];
  }

  /** Messages put back by `release`: hold rules no longer apply to them. */
  private readonly released = new WeakSet<Message>();

  /** Puts held messages (those `filter` picks, or all) back into the network. */
  release(filter: (m: Message) => boolean = () => true): void {
    const back = this.held.filter(filter);
    for (const m of back) this.released.add(m);
    this.queue.push(...back);
    this.held = this.held.filter((m) => !filter(m));
  }

  /** Asks master `id` for a membership change; returns its answer as text. */
  change(id: NodeId, change: MemberChange): string {
    const r = this.node(id).changeMembers(change);
    const text = r.ok ? `${id} logged the change at ${r.index}` : `${id} refused: ${r.reason}`;
    this.out.push(text);
    this.process(id);
    return text;
  }

  /**
   * Adds node `id` as a learner through master `via`: its data directory is fresh, with a
   * new incarnation, and it starts knowing the configuration (as `--join` learns it).
   */
  addLearner(via: NodeId, id: NodeId): string {
    if (!this.configs.has(id)) {
      const ids = [...this.configs.keys(), id];
      this.configs.set(id, { ...this.configs.get(via)!, id, members: ids });
    }
    if (!this.disks.has(id) || this.nodes.has(id)) this.disks.set(id, this.emptyDisk(id));
    const incarnation = this.disks.get(id)!.incarnation;
    const text = this.change(via, {
      type: "add",
      member: {
        id,
        incarnation,
        voter: false,
        peerAddress: `n${id}:7000.${incarnation}`,
        httpUrl: "",
      },
    });
    return text;
  }

  /** Starts a node added by `addLearner`, with the configuration master `via` has. */
  join(id: NodeId, via: NodeId): void {
    const disk = this.disks.get(id)!;
    disk.joinedConfig = this.node(via).members;
    this.down.delete(id);
    this.start(id);
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

  /** Restores the link between `a` and `b`, both ways. */
  healLink(a: NodeId, b: NodeId): void {
    this.cut.delete(`${a}->${b}`);
    this.cut.delete(`${b}->${a}`);
  }

  crash(id: NodeId): void {
    this.down.add(id);
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Crashes a node and empties its disk, as an operator wiping its data directory. */
  wipe(id: NodeId, options: { readonly keepIdentity?: boolean } = {}): void {
    this.crash(id);
    const old = this.disks.get(id)!;
    const fresh = this.emptyDisk(id);
    // The negative control: a directory emptied of its log and hard state that keeps its
    // identity, so that it speaks with its old incarnation as if it had never voted.
    if (options.keepIdentity === true) fresh.incarnation = old.incarnation;
    this.disks.set(id, fresh);
  }

  /** Restarts a node; `join` as `baton start --join` does after its data was wiped. */
  restart(id: NodeId, options: { readonly join?: boolean } = {}): void {
    this.down.delete(id);
    this.start(id, options);
  }

  status(id: NodeId): string {
    if (this.down.has(id)) return `${id}: down`;
    const r = this.node(id);
    const joining = r.isJoining ? " (joining)" : !r.isVoter && this.identities ? " (learner)" : "";
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
