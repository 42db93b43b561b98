/**
 * The simulated cluster: nodes, network, clients and the nemesis, driven by one seeded
 * generator over a virtual clock. Every event (a tick, a message, a disk write finishing,
 * a client request, a fault) is taken from one agenda in time order, the safety checker
 * runs after every step a node takes, and the exactly-once checker sees every command
 * every node applies. Nothing here reads the real clock: each node's wall clock, which a
 * master stamps into the log, is the virtual clock plus the node's skew and clock jumps.
 */

import { MEMBER_INCARNATION_MAX } from "../core/configuration.js";
import { Prng } from "../core/prng.js";
import type { Ready } from "../core/replica.js";
import type { Message, NodeId } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { ExactlyOnceChecker } from "./checkers/exactly-once.js";
import type { HistoryOp } from "./checkers/linearizability.js";
import { SafetyChecker } from "./checkers/safety.js";
import { EventQueue } from "./event-queue.js";
import type { NemesisKind, Scenario } from "./scenario.js";
import { SimCorruptionError, type StoredSnapshot } from "./sim-disk.js";
import { NO_FAULTS, SimNetwork } from "./sim-network.js";
import {
  type ClientAnswer,
  type ClientRequest,
  type KvChunks,
  type NodeHooks,
  SimNode,
} from "./sim-node.js";
import { type ClientAction, DEFAULT_CLIENT_TIMINGS, SimClient } from "./workload.js";

type SimEvent =
  | { type: "tick"; node: NodeId; incarnation: number }
  | { type: "deliver"; message: Message }
  | { type: "complete"; node: NodeId; incarnation: number; ready: Ready }
  | { type: "request"; node: NodeId; request: ClientRequest }
  | { type: "answer"; request: ClientRequest; answer: ClientAnswer; from: NodeId }
  | { type: "client_timeout"; client: number; attempt: number }
  | { type: "client_next"; client: number }
  | { type: "unreachable"; node: NodeId; peer: NodeId }
  | { type: "restart"; node: NodeId }
  | { type: "resume"; node: NodeId }
  | { type: "heal_link"; from: NodeId; to: NodeId }
  | { type: "cut_link"; from: NodeId; to: NodeId }
  | { type: "nemesis" }
  | { type: "operator" }
  | { type: "transfer"; from: NodeId; to: NodeId; term: number; snapshot: StoredSnapshot<KvChunks> }
  | { type: "transfer_timeout"; node: NodeId; incarnation: number; peer: NodeId };

export interface ClusterStats {
  elections: number;
  failovers: number;
  crashes: number;
  restarts: number;
  pauses: number;
  partitions: number;
  tornWrites: number;
  transfers: number;
  corruptionsDetected: number;
  wipes: number;
  /** Members removed and added back (each replacement of a wiped node counts too). */
  memberChanges: number;
  clockJumps: number;
  faults: Record<string, number>;
}

/** Where the simulated wall clocks start: virtual time 0 is this many ms after the epoch. */
const WALL_CLOCK_EPOCH_MS = 1_700_000_000_000;

export class SimCluster {
  now = 0;
  readonly prng: Prng;
  readonly network: SimNetwork;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly checker = new SafetyChecker();
  readonly exactlyOnce = new ExactlyOnceChecker();
  readonly history: HistoryOp[] = [];
  readonly trace: string[] = [];
  readonly stats: ClusterStats = {
    elections: 0,
    failovers: 0,
    crashes: 0,
    restarts: 0,
    pauses: 0,
    partitions: 0,
    tornWrites: 0,
    transfers: 0,
    corruptionsDetected: 0,
    wipes: 0,
    memberChanges: 0,
    clockJumps: 0,
    faults: {},
  };
  /** Each node's wall clock minus the virtual clock, in ms: skew, then clock jumps. */
  private readonly clockOffsetMs = new Map<NodeId, number>();
  private readonly agenda = new EventQueue<SimEvent>();
  private readonly clients: SimClient[] = [];
  private readonly diskBusyUntil = new Map<NodeId, number>();
  private readonly buffered = new Map<NodeId, SimEvent[]>();
  /** The node whose inputs are being fed in one batch (no Ready taken in between). */
  private batching: NodeId | null = null;
  /** Per node, the Readies whose writes were started and have not completed, oldest first. */
  private readonly writesInFlight = new Map<NodeId, Ready[]>();
  private opIds = 0;
  private faultsActive = true;
  private workloadActive = true;
  private lastMaster: NodeId | null = null;
  /** The term each node was last seen master in. */
  private readonly masterTerms = new Map<NodeId, number>();
  /**
   * The operator's replacement of one member, one step at a time, each through the
   * master and each committed before the next (see `onOperator`): remove it, stop and
   * wipe it (when it was still running), add it back as a learner with a new
   * incarnation, start its empty data directory with what `--join` learns, promote it.
   */
  private replacement: {
    readonly id: NodeId;
    phase: "remove" | "stop" | "add" | "start" | "promote";
    incarnation: number;
    notBefore: number;
  } | null = null;

  constructor(
    readonly scenario: Scenario,
    private readonly tracing = false,
  ) {
    this.prng = new Prng(scenario.seed);
    this.network = new SimNetwork(this.prng.fork());
    this.network.faults = scenario.network;
    const ids = Array.from({ length: scenario.nodeCount }, (_, i) => i + 1);
    for (const id of ids) {
      const tuning = {
        replica: {
          appendEntriesMax: scenario.appendEntriesMax,
          inflightMax: scenario.inflightMax,
          bindIncarnations: scenario.bindIncarnations,
        },
        snapshotEvery: scenario.snapshotEvery,
        keepEntries: scenario.keepEntries,
      };
      this.clockOffsetMs.set(id, scenario.clockSkewMs[id - 1]!);
      const hooks: NodeHooks = {
        onReady: (n, ready, persist) => this.onReady(n, ready, persist),
        answer: (n, request, answer) => this.sendAnswer(n.id, request, answer),
        applied: (n, entry) => this.checker.applied(n.id, entry),
        executed: (n, entry, command, result, changed) =>
          this.exactlyOnce.applied(n.id, entry.index, command, result, changed),
        wallClockMs: (n) => WALL_CLOCK_EPOCH_MS + this.now + this.clockOffsetMs.get(n.id)!,
      };
      const node = new SimNode(id, ids, tuning, this.prng.fork(), hooks, scenario.kvLimits);
      this.nodes.set(id, node);
      this.startNode(node);
    }
    for (let c = 1; c <= scenario.clientCount; c++) {
      const client = new SimClient(
        c,
        ids,
        scenario.keys,
        this.prng.fork(),
        DEFAULT_CLIENT_TIMINGS,
        this.history,
        () => ++this.opIds,
        {
          // Chosen by number, not by a draw, so that the generator's other draws stay put.
          sessions:
            scenario.sessionClients === "all" ||
            (scenario.sessionClients === "even" && c % 2 === 0),
          deleteShare: scenario.deleteShare,
          revisionOf: (key, value) => this.exactlyOnce.revisionOf(key, value),
        },
      );
      this.clients.push(client);
      this.agenda.push(this.prng.next() * 50, { type: "client_next", client: c });
    }
    this.agenda.push(scenario.nemesisEveryMs, { type: "nemesis" });
  }

  log(line: string): void {
    if (this.tracing) this.trace.push(`${this.now.toFixed(1).padStart(8)}ms  ${line}`);
  }

  /** Runs events until virtual time `until` (or the agenda runs dry). */
  runUntil(until: number): void {
    for (;;) {
      const time = this.agenda.peekTime();
      if (time === undefined || time > until) break;
      const item = this.agenda.pop()!;
      this.now = item.time;
      this.handle(item.event);
    }
    this.now = Math.max(this.now, until);
  }

  /** Ends the fault phase: heals the network, restarts and resumes every node. */
  healAll(): void {
    this.faultsActive = false;
    this.network.healAll();
    this.network.faults = NO_FAULTS;
    for (const node of this.nodes.values()) {
      if (!node.up) this.restart(node);
      if (node.pausedUntil > this.now) this.resume(node);
    }
    this.log("nemesis: healed everything");
  }

  stopWorkload(): void {
    this.workloadActive = false;
  }

  get clientsBusy(): boolean {
    return this.clients.some((c) => c.busy);
  }

  /** The node every up node agrees is master, if any. */
  agreedMaster(): SimNode | null {
    const up = [...this.nodes.values()].filter((n) => n.up);
    const master = up.find((n) => n.replica!.role === "master");
    if (master === undefined) return null;
    const term = master.replica!.term;
    const agree = up.every((n) => n.replica!.term === term && n.replica!.masterId === master.id);
    return agree ? master : null;
  }

  // ---------------------------------------------------------------- events

  private handle(event: SimEvent): void {
    switch (event.type) {
      case "tick":
        return this.onTick(event.node, event.incarnation);
      case "deliver":
        return this.onDeliver(event);
      case "complete":
        return this.onComplete(event.node, event.incarnation, event.ready);
      case "request":
        return this.atNode(event.node, event, (node) => node.handleRequest(event.request));
      case "answer":
        return this.onClientActions(
          event.request.client,
          this.client(event.request.client).onAnswer(
            this.now,
            event.request,
            event.answer,
            event.from,
          ),
        );
      case "client_timeout":
        return this.onClientActions(
          event.client,
          this.client(event.client).onTimeout(this.now, event.attempt),
        );
      case "client_next":
        if (this.workloadActive)
          this.onClientActions(event.client, this.client(event.client).begin(this.now));
        return;
      case "unreachable":
        return this.atNode(event.node, event, (node) => node.replica!.peerUnreachable(event.peer));
      case "restart":
        return this.restart(this.nodes.get(event.node)!);
      case "resume":
        return this.resume(this.nodes.get(event.node)!);
      case "heal_link":
        return this.network.healLink(event.from, event.to);
      case "cut_link":
        if (this.faultsActive) this.network.cutLink(event.from, event.to);
        return;
      case "nemesis":
        return this.onNemesis();
      case "operator":
        return this.onOperator();
      case "transfer":
        if (this.network.isCut(event.from, event.to)) return;
        return this.atNode(event.to, event, (node) => {
          if (node.receiveSnapshot(event.from, event.term, event.snapshot)) {
            this.stats.transfers++;
            this.log(
              `node ${node.id}: adopts snapshot ${event.snapshot.meta.index} from node ${event.from}`,
            );
          }
        });
      case "transfer_timeout": {
        const node = this.nodes.get(event.node)!;
        if (node.incarnation !== event.incarnation || !node.up) return;
        return this.atNode(event.node, event, (n) => n.replica!.transferFailed(event.peer));
      }
    }
  }

  /** Runs `body` on an up, running node; buffers the event while it is paused. */
  private atNode(id: NodeId, event: SimEvent, body: (node: SimNode) => void): void {
    const node = this.nodes.get(id)!;
    if (!node.up) return;
    if (node.pausedUntil > this.now) {
      this.buffered.get(id)!.push(event);
      return;
    }
    body(node);
    if (this.batching !== id) this.afterStep(node);
  }

  private afterStep(node: SimNode): void {
    const replica = node.replica!;
    node.pump();
    this.checker.check(node.id, replica);
    const term = replica.role === "master" ? replica.term : 0;
    if (term !== 0 && this.masterTerms.get(node.id) !== term) {
      this.masterTerms.set(node.id, term);
      this.onNewMaster(node);
    }
  }

  private onNewMaster(node: SimNode): void {
    this.stats.elections++;
    if (this.lastMaster !== null && this.lastMaster !== node.id) this.stats.failovers++;
    this.lastMaster = node.id;
  }

  private onTick(id: NodeId, incarnation: number): void {
    const node = this.nodes.get(id)!;
    if (node.incarnation !== incarnation || !node.up) return;
    this.agenda.push(this.now + this.scenario.tickMs[id - 1]!, {
      type: "tick",
      node: id,
      incarnation,
    });
    if (node.pausedUntil > this.now) return; // A paused process does not see time pass.
    node.replica!.tick();
    this.afterStep(node);
  }

  private onDeliver(event: SimEvent & { type: "deliver" }): void {
    const message = event.message;
    if (this.network.isCut(message.from, message.to)) return;
    this.atNode(message.to, event, (node) => {
      // Every simulated peer is honest: a message that breaks a rule is a protocol bug.
      const result = node.replica!.step(message);
      if (!result.ok) {
        assert(
          false,
          `node ${message.to} refused ${message.type} from ${message.from}: ${result.violation}`,
        );
      }
    });
  }

  private onReady(node: SimNode, ready: Ready, persist: boolean): void {
    for (const event of ready.events) {
      if (event.type !== "role") continue;
      this.log(
        `node ${node.id}: ${event.role}${event.preVote ? " (pre-vote)" : ""} term ${event.term} — ${event.reason}`,
      );
    }
    this.sendMessages(ready.messagesNow);
    ready = this.sendUnbound(node, ready);
    for (const peer of ready.transfers) this.startTransfer(node, peer);
    const busy = Math.max(this.now, this.diskBusyUntil.get(node.id) ?? 0);
    const s = this.scenario;
    const done = persist
      ? busy + s.diskMsMin + this.prng.next() * (s.diskMsMax - s.diskMsMin)
      : busy;
    this.diskBusyUntil.set(node.id, done);
    if (persist) this.writesInFlight.get(node.id)!.push(ready);
    this.agenda.push(done, {
      type: "complete",
      node: node.id,
      incarnation: node.incarnation,
      ready,
    });
  }

  /**
   * As the runtime does (src/server/node.ts, sendUnbound): a heartbeat response whose term
   * is already durable leaves at once instead of behind the node's pending disk writes;
   * the Ready returned holds the messages that still wait for them.
   */
  private sendUnbound(node: SimNode, ready: Ready): Ready {
    const durableTerm = node.disk.durableTerm;
    const leaves = (m: Message) => m.type === "heartbeat_response" && m.term <= durableTerm;
    // Most Readies hold none: look before building a new list.
    if (!ready.messages.some(leaves)) return ready;
    const now = ready.messages.filter(leaves);
    this.sendMessages(now);
    return { ...ready, messages: ready.messages.filter((m) => !now.includes(m)) };
  }

  private onComplete(id: NodeId, incarnation: number, ready: Ready): void {
    const node = this.nodes.get(id)!;
    if (node.incarnation !== incarnation || !node.up) return;
    if (ready.hardState !== null || ready.entries.length > 0 || ready.snapshot !== null) {
      const first = this.writesInFlight.get(id)!.shift();
      if (first !== ready) throw new Error(`node ${id}: disk writes completed out of order`);
      // An adopted snapshot lands before the entries that follow it.
      if (ready.snapshot !== null) node.adopt(ready.snapshot.index);
      node.disk.write({
        hardState: ready.hardState,
        entries: ready.entries,
        commitIndex: node.replica!.commitIndex,
      });
    }
    node.complete(ready, (r) => this.sendMessages(r.messages));
    this.afterStep(node);
  }

  /** Streams the node's newest snapshot to `peer` (one message in the simulator). */
  private startTransfer(node: SimNode, peer: NodeId): void {
    const snapshot = node.disk.snapshot();
    const replica = node.replica!;
    this.log(`node ${node.id}: state transfer of snapshot ${snapshot?.meta.index} to node ${peer}`);
    const timeout = this.now + 300 + this.prng.next() * 300;
    this.agenda.push(timeout, {
      type: "transfer_timeout",
      node: node.id,
      incarnation: node.incarnation,
      peer,
    });
    if (snapshot === null) return;
    for (const delay of this.network.plan(node.id, peer)) {
      const event = {
        type: "transfer",
        from: node.id,
        to: peer,
        term: replica.term,
        snapshot,
      } as const;
      this.agenda.push(this.now + delay + 5, event);
    }
  }

  private sendMessages(messages: readonly Message[]): void {
    for (const message of messages) {
      for (const delay of this.network.plan(message.from, message.to)) {
        this.agenda.push(this.now + delay, { type: "deliver", message });
      }
    }
  }

  private sendAnswer(from: NodeId, request: ClientRequest, answer: ClientAnswer): void {
    this.agenda.push(this.now + 0.2 + this.prng.next(), { type: "answer", request, answer, from });
  }

  private client(id: number): SimClient {
    return this.clients[id - 1]!;
  }

  private onClientActions(client: number, actions: ClientAction[]): void {
    for (const action of actions) {
      if (action.kind === "send") {
        const at = this.now + action.delayMs + 0.2 + this.prng.next();
        this.agenda.push(at, { type: "request", node: action.to, request: action.request });
      } else if (action.kind === "timeout") {
        this.agenda.push(this.now + action.afterMs, {
          type: "client_timeout",
          client,
          attempt: action.attempt,
        });
      } else {
        this.agenda.push(this.now + action.afterMs, { type: "client_next", client });
      }
    }
  }

  // ---------------------------------------------------------------- node lifecycle

  private startNode(node: SimNode, options: { readonly join?: boolean } = {}): void {
    node.start(options);
    this.buffered.set(node.id, []);
    this.writesInFlight.set(node.id, []);
    this.checker.restarted(node.id, node.incarnation);
    this.diskBusyUntil.set(node.id, this.now);
    const first = this.now + this.prng.next() * this.scenario.tickMs[node.id - 1]!;
    this.agenda.push(first, { type: "tick", node: node.id, incarnation: node.incarnation });
    this.afterStep(node);
  }

  /**
   * Every node's disk finishes nothing new for `ms`: writes started from now on complete
   * after it, as when one shared disk (or a busy host's journal) holds every fsync back.
   * The processes run on and the network is untouched.
   */
  stallDisks(ms: number): void {
    for (const node of this.nodes.values()) {
      const busy = this.diskBusyUntil.get(node.id) ?? this.now;
      this.diskBusyUntil.set(node.id, Math.max(busy, this.now + ms));
    }
    this.log(`nemesis: every disk stalls for ${ms.toFixed(0)}ms`);
  }

  crash(node: SimNode): void {
    if (!node.up) return;
    this.stats.crashes++;
    this.tearInFlightWrite(node);
    node.crash();
    node.pausedUntil = 0;
    this.buffered.set(node.id, []);
    this.log(`nemesis: crash node ${node.id}`);
    // A dead process's connections close: its peers notice at once.
    for (const peer of this.nodes.values()) {
      if (peer.id !== node.id && !this.network.isCut(node.id, peer.id)) {
        this.agenda.push(this.now + 0.5 + this.prng.next(), {
          type: "unreachable",
          node: peer.id,
          peer: node.id,
        });
      }
    }
  }

  /** The write under way when the process died may be partly on disk. */
  private tearInFlightWrite(node: SimNode): void {
    // Writes complete in order, so the first pending one is the one under way; any
    // later ones never started. The simulator learns of them from the agenda.
    if (!this.prng.chance(this.scenario.tornWrite)) return;
    const pending = this.pendingWrite(node);
    if (pending === undefined || pending.entries.length === 0 || pending.snapshot !== null) return;
    const hardStateLands = pending.hardState === null || this.prng.chance(0.5);
    const keep = hardStateLands ? this.prng.int(0, pending.entries.length - 1) : 0;
    if (!hardStateLands) return;
    node.disk.write(
      { hardState: pending.hardState, entries: pending.entries, commitIndex: 0 },
      keep,
    );
    this.stats.tornWrites++;
    this.log(
      `disk: node ${node.id} tore its last write, ${keep} of ${pending.entries.length} entries landed`,
    );
  }

  private pendingWrite(node: SimNode): Ready | undefined {
    return this.writesInFlight.get(node.id)?.[0];
  }

  private restart(node: SimNode): void {
    if (node.up || node.corrupt) return;
    // A member being replaced is started by the operator, once it was added back.
    if (this.awaitingOperator(node)) return;
    this.stats.restarts++;
    this.log(`nemesis: restart node ${node.id} (disk holds ${node.disk.lastIndex} entries)`);
    try {
      // A wiped node's operator keeps `--join` on its command line: a node that crashed
      // before its joining state reached the disk must not come back as a voter that
      // forgot its promises (seed 113069). The flag is ignored once the disk holds state.
      this.startNode(node, { join: node.disk.wiped });
    } catch (error) {
      if (!(error instanceof SimCorruptionError)) throw error;
      // Detected, never applied: the node refuses to start, as the real one does, and
      // stays down (its operator would wipe it).
      node.corrupt = true;
      node.crash();
      this.stats.corruptionsDetected++;
      this.log(`disk: node ${node.id} refuses to start: ${error.message}`);
    }
  }

  /**
   * Flips a bit on one node's disk. One node at a time loses data (by a flip or a wipe),
   * and only once the previous one has been repaired, so a majority always holds every
   * committed entry: losing more is beyond what any replication protocol survives.
   */
  private flipBit(): void {
    if (this.dataLossUnrepaired()) return;
    const node = this.prng.pick([...this.nodes.values()]);
    const index = node.disk.flipBit((count) => this.prng.int(0, count - 1));
    if (index === null) return;
    this.log(`nemesis: flip a bit in node ${node.id}'s record of entry ${index}`);
    // The damage is found when the node next starts: crash it so that it does.
    this.crash(node);
    this.agenda.push(this.now + 50 + this.prng.next() * 500, { type: "restart", node: node.id });
  }

  /** Some node's data is damaged, wiped and not yet caught up, or refused to start. */
  private dataLossUnrepaired(): boolean {
    return (
      this.replacement !== null ||
      [...this.nodes.values()].some((n) => n.disk.flipped > 0 || this.isJoining(n) || n.corrupt)
    );
  }

  /** Whether `node` is out of the cluster until the operator starts it again. */
  private awaitingOperator(node: SimNode): boolean {
    const r = this.replacement;
    if (r === null || r.id !== node.id || r.phase === "promote") return false;
    // While a running member is being removed it restarts as usual; a wiped one waits.
    return r.phase !== "remove" || node.disk.wiped;
  }

  /** Wiped and not caught up yet; the replica knows before its first write reaches the disk. */
  private isJoining(node: SimNode): boolean {
    return node.disk.joining || node.replica?.isJoining === true;
  }

  /**
   * An operator wipes a node's data directory and restarts it with `--join`: the node
   * that refused to start with a corrupt record if there is one, else any node.
   */
  private wipe(): void {
    const nodes = [...this.nodes.values()];
    const corrupt = nodes.find((n) => n.corrupt);
    if (corrupt === undefined && this.dataLossUnrepaired()) return;
    if (this.replacement !== null) return;
    if (nodes.some((n) => this.isJoining(n))) return;
    const node = corrupt ?? this.prng.pick(nodes);
    this.crash(node);
    node.corrupt = false;
    this.stats.wipes++;
    if (this.scenario.negativeControl === "keep_identity") {
      // The deliberate bug: the emptied directory keeps its identity, and the node comes
      // back as the member it was, with no memory of its votes and acknowledgements.
      node.disk.wipe({ keepIdentity: true });
      node.disk.wiped = false;
      this.log(
        `nemesis: wipe node ${node.id}'s data directory, keeping its identity (negative control)`,
      );
      this.startNode(node);
      return;
    }
    node.disk.wipe();
    this.log(`nemesis: wipe node ${node.id}'s data directory: the operator replaces the member`);
    this.beginReplacement(node.id, "remove");
  }

  /**
   * The operator removes a running member, stops it and wipes its directory, and later
   * adds it back as a new member: shrinking and growing the cluster, one step at a time.
   */
  private memberCycle(): void {
    if (this.replacement !== null || this.dataLossUnrepaired()) return;
    const nodes = [...this.nodes.values()];
    if (nodes.some((n) => this.isJoining(n) || !n.up)) return;
    const node = this.prng.pick(nodes);
    this.log(`nemesis: the operator removes node ${node.id}, to add it back later`);
    this.beginReplacement(node.id, "remove");
  }

  private beginReplacement(id: NodeId, phase: "remove"): void {
    this.replacement = { id, phase, incarnation: 0, notBefore: this.now };
    this.agenda.push(this.now + 20 + this.prng.next() * 100, { type: "operator" });
  }

  /**
   * One step of the operator's replacement, retried until it is done: every change goes
   * to the master (a refusal, a lost master or a change not committed yet is waited out),
   * and a phase ends only when the master's configuration shows it and no change is in
   * flight, which on that master means it is committed.
   */
  private onOperator(): void {
    const r = this.replacement;
    if (r === null) return;
    const next = (minMs: number, maxMs: number) =>
      this.agenda.push(this.now + minMs + this.prng.next() * (maxMs - minMs), {
        type: "operator",
      });
    if (this.now < r.notBefore) return next(r.notBefore - this.now, r.notBefore - this.now + 1);
    const node = this.nodes.get(r.id)!;
    const master = [...this.nodes.values()].find(
      (n) => n.up && n.pausedUntil <= this.now && n.replica!.role === "master",
    );
    if (r.phase === "stop") {
      if (node.up) this.crash(node);
      node.disk.wipe();
      node.disk.wiped = false;
      node.corrupt = false;
      this.log(`operator: node ${node.id} stopped and its data directory wiped`);
      r.phase = "add";
      r.notBefore = this.now + (this.faultsActive ? 200 + this.prng.next() * 1500 : 0);
      return next(20, 60);
    }
    if (master === undefined) return next(50, 150);
    const replica = master.replica!;
    const settled = !replica.changeInProgress;
    const listed = replica.members.find((m) => m.id === r.id);
    switch (r.phase) {
      case "remove": {
        if (listed === undefined) {
          if (!settled) return next(20, 80);
          this.stats.memberChanges++;
          this.log(`operator: node ${r.id} removed (master ${master.id})`);
          r.phase = node.disk.wiped ? "add" : "stop";
          if (node.disk.wiped) node.disk.wiped = false;
          return next(20, 60);
        }
        if (master.id === r.id) {
          const handed = replica.transferMastership(null);
          this.log(
            `operator: node ${r.id} is the master: switchover ${handed.ok ? `to ${handed.target}` : `refused (${handed.reason})`}`,
          );
          this.afterStep(master);
          return next(100, 300);
        }
        const result = replica.changeMembers({ type: "remove", id: r.id });
        this.log(
          `operator: remove node ${r.id} at master ${master.id}: ${result.ok ? `logged at ${result.index}` : result.detail}`,
        );
        this.afterStep(master);
        return next(30, 150);
      }
      case "add": {
        if (listed !== undefined && listed.incarnation === r.incarnation) {
          if (!settled) return next(20, 80);
          // The new member's empty directory, initialised with what `--join` learns.
          node.disk.memberIncarnation = r.incarnation;
          node.disk.joinedConfig = replica.members;
          r.phase = "start";
          return next(10, 50);
        }
        if (listed !== undefined) return next(50, 150); // Not removed on this master yet.
        r.incarnation = this.prng.int(1, MEMBER_INCARNATION_MAX);
        const result = replica.changeMembers({
          type: "add",
          member: {
            id: r.id,
            incarnation: r.incarnation,
            voter: false,
            peerAddress: `sim-${r.id}:${r.incarnation}`,
            httpUrl: "",
          },
        });
        this.log(
          `operator: add node ${r.id} as a learner (incarnation ${r.incarnation}) at master ${master.id}: ${result.ok ? `logged at ${result.index}` : result.detail}`,
        );
        this.afterStep(master);
        return next(30, 150);
      }
      case "start": {
        if (!node.up) {
          this.log(`operator: start node ${r.id} with --join`);
          this.startNode(node);
        }
        r.phase = "promote";
        return next(50, 200);
      }
      case "promote": {
        if (listed?.voter === true && listed.incarnation === r.incarnation) {
          if (!settled) return next(20, 80);
          this.stats.memberChanges++;
          this.log(`operator: node ${r.id} is a voter again (master ${master.id})`);
          this.replacement = null;
          return;
        }
        if (listed === undefined || listed.incarnation !== r.incarnation) {
          // Removed again meanwhile (never by this operator): start over.
          r.phase = "add";
          return next(50, 150);
        }
        const result = replica.changeMembers({ type: "promote", id: r.id });
        this.log(
          `operator: promote node ${r.id} at master ${master.id}: ${result.ok ? `logged at ${result.index}` : result.detail}`,
        );
        this.afterStep(master);
        return next(30, 150);
      }
    }
  }

  private pause(node: SimNode, ms: number): void {
    if (!node.up || node.pausedUntil > this.now) return;
    this.stats.pauses++;
    node.pausedUntil = this.now + ms;
    this.log(`nemesis: pause node ${node.id} for ${ms.toFixed(0)}ms`);
    this.agenda.push(node.pausedUntil, { type: "resume", node: node.id });
  }

  private resume(node: SimNode): void {
    if (node.pausedUntil === 0) return;
    node.pausedUntil = 0;
    const events = this.buffered.get(node.id) ?? [];
    this.buffered.set(node.id, []);
    // A resumed process reads everything that waited for it in one turn of its event
    // loop, before it takes a Ready: so does the simulator, then it pumps once.
    this.batching = node.id;
    try {
      for (const event of events) this.handle(event);
    } finally {
      this.batching = null;
    }
    if (node.up) this.afterStep(node);
  }

  // ---------------------------------------------------------------- nemesis

  private onNemesis(): void {
    if (!this.faultsActive) return;
    const s = this.scenario;
    this.agenda.push(this.now + this.prng.next() * 2 * s.nemesisEveryMs, { type: "nemesis" });
    const kind = this.pickNemesis();
    if (kind === null) return;
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
    this.act(kind);
  }

  private pickNemesis(): NemesisKind | null {
    const weights = Object.entries(this.scenario.nemesis) as [NemesisKind, number][];
    const total = weights.reduce((sum, [, w]) => sum + w, 0);
    if (total === 0) return null;
    let roll = this.prng.next() * total;
    for (const [kind, weight] of weights) {
      roll -= weight;
      if (roll < 0) return kind;
    }
    return null;
  }

  private act(kind: NemesisKind): void {
    const ids = [...this.nodes.keys()];
    const master = [...this.nodes.values()].find((n) => n.up && n.replica!.role === "master");
    const later = (min: number, max: number): number =>
      this.now + min + this.prng.next() * (max - min);
    switch (kind) {
      case "crash":
      case "crash_master": {
        const node =
          kind === "crash_master" && master !== undefined
            ? master
            : this.nodes.get(this.prng.pick(ids))!;
        this.crash(node);
        this.agenda.push(later(50, 2000), { type: "restart", node: node.id });
        return;
      }
      case "pause":
        return this.pause(this.nodes.get(this.prng.pick(ids))!, 100 + this.prng.next() * 2500);
      case "isolate_master": {
        if (master === undefined) return;
        this.partition(
          [master.id],
          ids.filter((i) => i !== master.id),
        );
        return;
      }
      case "split": {
        const shuffled = [...ids].sort(() => this.prng.next() - 0.5);
        const cut = this.prng.int(1, Math.floor(ids.length / 2));
        this.partition(shuffled.slice(0, cut), shuffled.slice(cut));
        return;
      }
      case "one_way": {
        const from = this.prng.pick(ids);
        const to = this.prng.pick(ids.filter((i) => i !== from));
        this.stats.partitions++;
        this.network.cutLink(from, to);
        this.log(`nemesis: cut link ${from} -> ${to} (one way)`);
        this.agenda.push(later(200, 3000), { type: "heal_link", from, to });
        return;
      }
      case "flap":
        return this.flap(ids);
      case "unreachable": {
        const node = this.prng.pick(ids);
        const peer = this.prng.pick(ids.filter((i) => i !== node));
        this.log(`nemesis: node ${node} is told node ${peer} is unreachable`);
        this.agenda.push(this.now, { type: "unreachable", node, peer });
        return;
      }
      case "clock_jump":
        return this.jumpClock(master?.id ?? null, ids);
      case "switchover":
        return this.switchover(master, ids);
      case "flip_bit":
        return this.flipBit();
      case "wipe":
        return this.wipe();
      case "member_cycle":
        return this.memberCycle();
      case "heal":
        this.network.healAll();
        this.log("nemesis: heal the network");
        return;
    }
  }

  /**
   * Asks the master to hand its role over (an operator's switchover, or a SIGTERM on the
   * master): to a random other member, or to the best-placed backup. Writes keep flowing;
   * the new master must hold everything the old one acknowledged.
   */
  private switchover(master: SimNode | undefined, ids: NodeId[]): void {
    if (master === undefined) return;
    const others = ids.filter((i) => i !== master.id);
    const target = this.prng.chance(0.5) ? null : this.prng.pick(others);
    const result = master.replica!.transferMastership(target);
    this.log(
      `nemesis: switchover from master ${master.id} to ${target ?? "the best-placed backup"}: ${
        result.ok ? `handing over to ${result.target}` : `refused (${result.reason})`
      }`,
    );
    this.afterStep(master);
  }

  /**
   * Steps a node's wall clock (the master's half the time): an hour or ten minutes either
   * way, as a bad NTP step or an operator does, or back to where it started. Only what
   * masters stamp into the log sees it; ticks and timeouts run on the virtual clock.
   */
  private jumpClock(master: NodeId | null, ids: NodeId[]): void {
    const node = master !== null && this.prng.chance(0.5) ? master : this.prng.pick(ids);
    const before = this.clockOffsetMs.get(node)!;
    const skew = this.scenario.clockSkewMs[node - 1]!;
    const after = this.prng.pick([
      before + 3_600_000,
      before - 3_600_000,
      before + 600_000,
      before - 600_000,
      skew,
    ]);
    this.clockOffsetMs.set(node, after);
    this.stats.clockJumps++;
    this.log(`nemesis: node ${node}'s clock jumps by ${after - before} ms`);
  }

  private partition(a: NodeId[], b: NodeId[]): void {
    this.stats.partitions++;
    this.network.partition(a, b);
    this.log(`nemesis: partition [${a.join(",")}] | [${b.join(",")}]`);
    // Some resets reach the ends at once, as with a firewall that rejects.
    for (const x of a) {
      for (const y of b) {
        if (this.prng.chance(0.5))
          this.agenda.push(this.now + 1, { type: "unreachable", node: x, peer: y });
        if (this.prng.chance(0.5))
          this.agenda.push(this.now + 1, { type: "unreachable", node: y, peer: x });
      }
    }
  }

  /** A link that goes down and up repeatedly for a while, each flap resetting the connection. */
  private flap(ids: NodeId[]): void {
    const a = this.prng.pick(ids);
    const b = this.prng.pick(ids.filter((i) => i !== a));
    this.log(`nemesis: flap link ${a} <-> ${b}`);
    let t = this.now;
    const end = this.now + 500 + this.prng.next() * 2500;
    while (t < end) {
      const down = 5 + this.prng.next() * 80;
      const up = 5 + this.prng.next() * 150;
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        this.agenda.push(t, { type: "cut_link", from, to });
        this.agenda.push(t + down, { type: "heal_link", from, to });
      }
      this.agenda.push(t + 0.5, { type: "unreachable", node: a, peer: b });
      this.agenda.push(t + 0.5, { type: "unreachable", node: b, peer: a });
      t += down + up;
    }
  }
}
