/**
 * The bootstrap gate and the cluster id at the core: an empty data directory votes only
 * once a majority of the voters (itself included) said they start empty too, or once the
 * cluster welcomed it as a member no master ever heard from; an empty directory that the
 * cluster knows by another incarnation (a wiped member restarted with its old command
 * line) is refused and never votes. The first master draws the cluster id and commits it
 * through the log, so every member ends with the same one.
 */

import { describe, expect, it } from "vitest";
import type { Entry, Message, NodeId } from "../protocol/messages.js";
import { defaultReplicaConfig } from "./config.js";
import { decodeClusterId, encodeConfiguration, initialConfiguration } from "./configuration.js";
import { Prng } from "./prng.js";
import { type CoreEvent, EMPTY_STATE, Replica, type RestoredState } from "./replica.js";

interface NodeOptions {
  readonly gate?: "bootstrap" | "rejoin";
  readonly incarnation: number;
  readonly restored?: RestoredState;
}

/** Replicas over a network that delivers everything, with storage that is always durable. */
class Net {
  readonly nodes = new Map<NodeId, Replica>();
  readonly events = new Map<NodeId, CoreEvent[]>();
  /** Vote grants each node sent, by (term, candidate). */
  readonly grants = new Map<NodeId, string[]>();
  readonly cut = new Set<NodeId>();
  /** Messages lost on the way while it returns true. */
  drop: (m: Message) => boolean = () => false;
  private queue: Message[] = [];

  constructor(
    readonly ids: readonly NodeId[],
    private readonly bindIncarnations = true,
  ) {}

  start(id: NodeId, options: NodeOptions): Replica {
    const config = {
      ...defaultReplicaConfig(id, this.ids),
      bindIncarnations: this.bindIncarnations,
      drawClusterId: true,
    };
    const replica = new Replica(config, new Prng(id * 7919), options.restored ?? EMPTY_STATE, {
      incarnation: options.incarnation,
      ...(options.gate === undefined ? {} : { gate: options.gate }),
    });
    this.nodes.set(id, replica);
    this.events.set(id, []);
    this.grants.set(id, this.grants.get(id) ?? []);
    this.drain(id);
    return replica;
  }

  stop(id: NodeId): void {
    this.nodes.delete(id);
  }

  node(id: NodeId): Replica {
    return this.nodes.get(id)!;
  }

  private drain(id: NodeId): void {
    const replica = this.nodes.get(id)!;
    while (replica.hasReady()) {
      const ready = replica.ready();
      this.events.get(id)!.push(...ready.events);
      for (const m of [...ready.messagesNow, ...ready.messages]) {
        if (m.type === "vote_response" && m.granted && !m.preVote) {
          this.grants.get(id)!.push(`term ${m.term} to ${m.to}`);
        }
        this.queue.push(m);
      }
      const last = ready.entries[ready.entries.length - 1];
      if (last !== undefined) replica.persisted(last.index, last.term);
    }
  }

  /** Ticks every running node `ticks` times, delivering everything after each tick. */
  run(ticks: number): void {
    for (let t = 0; t < ticks; t++) {
      for (const id of this.nodes.keys()) {
        this.nodes.get(id)!.tick();
        this.drain(id);
      }
      this.deliver();
    }
  }

  /** Ticks node `id` alone, then delivers. */
  tickOne(id: NodeId): void {
    this.nodes.get(id)!.tick();
    this.drain(id);
    this.deliver();
  }

  /** Delivers what is on its way (and what that sends), with no tick. */
  deliver(): void {
    for (let round = 0; round < 100 && this.queue.length > 0; round++) {
      const now = this.queue;
      this.queue = [];
      for (const m of now) {
        const to = this.nodes.get(m.to);
        if (to === undefined || this.cut.has(m.to) || this.cut.has(m.from)) continue;
        if (this.drop(m)) continue;
        to.step(m);
        this.drain(m.to);
      }
    }
  }

  masters(): NodeId[] {
    return [...this.nodes].filter(([, r]) => r.role === "master").map(([id]) => id);
  }

  eventsOf(id: NodeId, type: CoreEvent["type"]): CoreEvent[] {
    return this.events.get(id)!.filter((e) => e.type === type);
  }
}

const IDS = [1, 2, 3] as const;

/** Three empty nodes that bootstrap together, run until the cluster id is everywhere. */
function bootstrapped(): Net {
  const net = new Net(IDS);
  for (const id of IDS) net.start(id, { gate: "bootstrap", incarnation: id * 10 + 1 });
  net.run(400);
  return net;
}

describe("bootstrap gate", () => {
  it("bootstrap: three empty nodes wait for each other, elect one master and all hold one cluster id", () => {
    const net = new Net(IDS);
    for (const id of IDS) net.start(id, { gate: "bootstrap", incarnation: id * 10 + 1 });
    // Alone (nobody answers its term probes), an empty node neither campaigns nor votes.
    net.cut.add(1).add(2).add(3);
    net.run(300);
    for (const id of IDS) {
      expect(net.node(id).isGated).toBe(true);
      expect(net.node(id).term).toBe(0);
    }
    net.cut.clear();
    net.run(400);
    expect(net.masters()).toHaveLength(1);
    const ids = IDS.map((id) => net.node(id).clusterId);
    expect(ids[0]).toMatch(/^[0-9a-f]{28}$/);
    expect(new Set(ids).size).toBe(1);
    for (const id of IDS) {
      expect(net.eventsOf(id, "bootstrap")).toHaveLength(1);
      expect(net.eventsOf(id, "refused")).toEqual([]);
      // Every member's incarnation is written down, with the id, in the configuration.
      expect(net.node(id).members.map((m) => m.incarnation)).toEqual([11, 21, 31]);
    }
  });

  it("bootstrap: an empty node opens its gate with a majority of the voters, itself included (one peer down)", () => {
    const net = new Net(IDS);
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    net.start(2, { gate: "bootstrap", incarnation: 21 });
    net.run(400);
    expect(net.masters()).toHaveLength(1);
    expect(net.node(1).clusterId).not.toBeNull();
    expect(net.node(2).clusterId).toBe(net.node(1).clusterId);
  });

  it("bootstrap: a gated node grants no vote (its peer already bootstrapped without it)", () => {
    const net = new Net(IDS);
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    // Node 2 holds state (upgraded, say) and campaigns; node 1 hears only from it and
    // node 2 does not start empty, so node 1's gate stays closed.
    const entries: Entry[] = [{ index: 1, term: 1, kind: "noop", data: new Uint8Array() }];
    net.start(2, {
      incarnation: 21,
      restored: {
        hardState: { term: 1, votedFor: null, commitIndex: 1 },
        snapshot: { index: 0, term: 0 },
        entries,
      },
    });
    net.run(400);
    expect(net.node(1).isGated).toBe(true);
    expect(net.grants.get(1)).toEqual([]);
    expect(net.masters()).toEqual([]);
  });

  it("refusal: an empty node restarted with its old command line is refused once the cluster bound its old incarnation, and never votes", () => {
    const net = bootstrapped();
    const clusterId = net.node(1).clusterId;
    const victim = IDS.find((id) => net.node(id).role !== "master")!;
    net.stop(victim);
    const grantsBefore = net.grants.get(victim)!.length;
    net.start(victim, { gate: "bootstrap", incarnation: victim * 10 + 2 });
    net.run(200);
    const refused = net.eventsOf(victim, "refused");
    expect(refused).toHaveLength(1);
    expect((refused[0] as { reason: string }).reason).toMatch(
      new RegExp(`cluster ${clusterId}.*baton member replace ${victim}.*--join`),
    );
    expect(net.node(victim).isGated).toBe(true);
    expect(net.grants.get(victim)!.length).toBe(grantsBefore);
    expect(net.node(victim).clusterId).toBeNull();
  });

  it("refusal: a directory that kept its identity but lost its log and hard state is refused, not left waiting (the cluster lists that very incarnation)", () => {
    // A crash before the first write reached the disk, after a master heard from the node,
    // or a partial wipe that kept the identity file: the same incarnation, nothing else.
    const net = bootstrapped();
    const victim = IDS.find((id) => net.node(id).role !== "master")!;
    net.stop(victim);
    const grantsBefore = net.grants.get(victim)!.length;
    net.start(victim, { gate: "bootstrap", incarnation: victim * 10 + 1 });
    net.run(200);
    const refused = net.eventsOf(victim, "refused");
    expect(refused).toHaveLength(1);
    expect((refused[0] as { reason: string }).reason).toMatch(
      new RegExp(`no log and no hard state.*baton member replace ${victim}`),
    );
    expect(net.node(victim).isGated).toBe(true);
    expect(net.grants.get(victim)!.length).toBe(grantsBefore);
  });

  it("refusal: a bare --join on an empty directory is refused the same way once bound", () => {
    const net = bootstrapped();
    const victim = IDS.find((id) => net.node(id).role !== "master")!;
    net.stop(victim);
    net.start(victim, { gate: "rejoin", incarnation: victim * 10 + 2 });
    net.run(200);
    expect(net.eventsOf(victim, "refused")).toHaveLength(1);
  });

  it("late member: a node of the command line that started after the others bootstrapped is welcomed and catches up before it votes", () => {
    const net = new Net(IDS);
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    net.start(2, { gate: "bootstrap", incarnation: 21 });
    net.run(400);
    const clusterId = net.node(1).clusterId;
    expect(clusterId).not.toBeNull();
    // Nobody ever heard from node 3: the configuration lists it with incarnation 0.
    expect(net.node(1).members.find((m) => m.id === 3)?.incarnation).toBe(0);
    net.start(3, { gate: "bootstrap", incarnation: 31 });
    net.run(400);
    expect(net.eventsOf(3, "refused")).toEqual([]);
    expect(net.node(3).clusterId).toBe(clusterId);
    expect(net.node(3).isGated).toBe(false);
    expect(net.node(3).isJoining).toBe(false);
    expect(net.node(3).commitIndex).toBe(net.node(1).commitIndex);
    // Now it is known by its incarnation, like the others.
    expect(net.node(1).members.find((m) => m.id === 3)?.incarnation).toBe(31);
  });

  it("late member: a refusal of the master's vote from a node in its bootstrap gate does not bind it (it would then refuse to start, as one that lost its data)", () => {
    const net = new Net(IDS);
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    net.start(2, { gate: "bootstrap", incarnation: 21 });
    net.run(400);
    const [master] = net.masters();
    expect(master).toBeDefined();
    const term = net.node(master!).term;
    // Node 3, gated, refused the master's vote in its term; the answer arrives late.
    net.node(master!).step({
      type: "vote_response",
      from: 3,
      to: master!,
      term,
      incarnation: 31,
      preVote: false,
      granted: false,
    } as Message);
    net.run(50);
    expect(net.node(master!).members.find((m) => m.id === 3)?.incarnation).toBe(0);
    net.start(3, { gate: "bootstrap", incarnation: 31 });
    net.run(400);
    expect(net.eventsOf(3, "refused")).toEqual([]);
    expect(net.node(3).isGated).toBe(false);
    expect(net.node(1).members.find((m) => m.id === 3)?.incarnation).toBe(31);
  });

  it("late member: once it knows the cluster's term it votes before it has caught up (a wiped member that is still catching up cannot, so the cluster needs it)", () => {
    // Without bound incarnations (the whole-node simulator's setting), a wiped member
    // restarted with a bare --join is welcomed too, and catches up before it votes.
    const net = new Net(IDS, false);
    net.start(2, { gate: "bootstrap", incarnation: 21 });
    net.start(3, { gate: "bootstrap", incarnation: 31 });
    net.run(400);
    const master = net.masters()[0]!;
    const wiped = master === 2 ? 3 : 2;
    net.stop(wiped);
    net.start(wiped, { gate: "rejoin", incarnation: wiped * 10 + 2 });
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    // Nothing reaches node 1 from the master but term probe answers: it cannot catch up.
    net.drop = (m) => m.to === 1 && m.from === master && m.type !== "term_probe_response";
    net.run(100);
    expect(net.node(1).isGated).toBe(false);
    expect(net.node(1).isJoining).toBe(false);
    expect(net.node(1).lastIndex).toBe(0);
    expect(net.node(1).hardState().joining).toBeUndefined();
    // It counts its vote in the term it learned as cast.
    expect(net.node(1).votedFor).not.toBeNull();
    expect(net.eventsOf(1, "refused")).toEqual([]);
  });

  it("late member: its acknowledgements count for no commit until the master has bound it (wiped before that and started again, its empty log's vote would elect a node without them)", () => {
    const ids = [1, 2, 3, 4, 5];
    const net = new Net(ids);
    for (const id of [1, 2, 4, 5]) net.start(id, { gate: "bootstrap", incarnation: id * 10 + 1 });
    net.run(400);
    const master = net.masters()[0]!;
    expect(master).toBeDefined();
    expect(net.node(master).members.find((m) => m.id === 3)?.incarnation).toBe(0);
    // Node 3 starts late and is welcomed (the others list it with 0); the master has not
    // heard from it yet.
    net.start(3, { gate: "bootstrap", incarnation: 31 });
    for (let t = 0; t < 400 && (net.node(3).isGated || net.node(3).isJoining); t++) net.tickOne(3);
    expect(net.node(3).isJoining).toBe(false);
    // An entry reaches the master, node 3 (as it catches up) and one more node; the other
    // two fall behind. The master hears from node 3 and counts its acknowledgements in the
    // same turn; it writes node 3's incarnation down only at its next tick.
    const [ahead, ...behind] = ids.filter((id) => id !== master && id !== 3) as [
      NodeId,
      NodeId,
      NodeId,
    ];
    net.drop = (m) => behind.includes(m.to) || behind.includes(m.from);
    expect(net.node(master).propose(new TextEncoder().encode("x")).ok).toBe(true);
    const x = net.node(master).lastIndex;
    for (let t = 0; t < 400 && net.node(3).lastIndex < x; t++) net.tickOne(master);
    expect(net.node(3).lastIndex).toBeGreaterThanOrEqual(x);
    // At its next tick the master binds node 3; that entry never leaves it.
    net.drop = () => true;
    net.tickOne(master);
    expect(net.node(master).members.find((m) => m.id === 3)?.incarnation).toBe(31);
    const committed = net.node(master).commitIndex;
    const entries = (r: Replica, upTo: number): string[] =>
      Array.from({ length: upTo }, (_, i) => {
        const e = r.entryAt(i + 1);
        return e === undefined ? "none" : `${e.term}/${e.kind}/${new TextDecoder().decode(e.data)}`;
      });
    const committedEntries = entries(net.node(master), committed);
    // The master crashes; node 3's directory is wiped and it starts again with its old
    // command line. The node that holds x answers term probes, but its votes are lost
    // (and it is never elected). The others list 3 with 0.
    net.stop(master);
    net.stop(3);
    net.start(3, { gate: "bootstrap", incarnation: 32 });
    net.drop = (m) =>
      (m.from === ahead || m.to === ahead) &&
      m.type !== "term_probe" &&
      m.type !== "term_probe_response";
    net.run(600);
    const now = net.masters().filter((id) => id !== ahead);
    expect(now).toHaveLength(1);
    // Whatever the old master committed, the new one holds (x among it only if committed).
    expect(entries(net.node(now[0]!), committed)).toEqual(committedEntries);
  });

  it("single node: a cluster of one bootstraps alone", () => {
    const net = new Net([1]);
    net.start(1, { gate: "bootstrap", incarnation: 11 });
    net.run(200);
    expect(net.masters()).toEqual([1]);
    expect(net.node(1).clusterId).not.toBeNull();
  });

  it("upgrade: nodes with state and no cluster id get one from the master through the log", () => {
    const net = new Net(IDS);
    const entries: Entry[] = [{ index: 1, term: 1, kind: "noop", data: new Uint8Array() }];
    for (const id of IDS) {
      net.start(id, {
        incarnation: id * 10 + 1,
        restored: {
          hardState: { term: 1, votedFor: null, commitIndex: 1 },
          snapshot: { index: 0, term: 0 },
          entries,
        },
      });
    }
    net.run(400);
    const ids = new Set(IDS.map((id) => net.node(id).clusterId));
    expect(ids.size).toBe(1);
    expect([...ids][0]).not.toBeNull();
  });
});

describe("configuration: cluster id", () => {
  it("configuration: a config entry carries the cluster id, and one without it decodes as before", () => {
    const members = initialConfiguration([1, 2, 3]);
    expect(decodeClusterId(encodeConfiguration(members, "abc"))).toBe("abc");
    expect(decodeClusterId(encodeConfiguration(members))).toBeNull();
    // A malformed id makes the whole entry malformed.
    const bad = new TextEncoder().encode(JSON.stringify({ clusterId: "", members: [] }));
    expect(decodeClusterId(bad)).toBeNull();
  });
});
