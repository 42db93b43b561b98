/**
 * The node runtime: wires the pure core to real time, real storage, a real transport and
 * the application's state machine. It owns the only timer and the only event loop work of
 * a node; the core decides, this file carries out, in the order the core demands:
 *
 *   master's appends leave at once → hard state and entries are written and synced →
 *   the Ready's other messages leave → committed entries are applied in order →
 *   the core is told what is durable.
 *
 * Readies are handled in order through one promise chain, so entries are applied in log
 * order and messages never overtake the writes they promise. A storage failure stops the
 * node (it never guesses): `fatal` fires and every pending request fails.
 */

import { randomInt } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { defaultReplicaConfig } from "../core/config.js";
import { Prng } from "../core/prng.js";
import { type CoreEvent, type Ready, Replica } from "../core/replica.js";
import type { Entry, Message, NodeId, SnapshotMeta } from "../protocol/messages.js";
import type { MemberStatus, NodeStatus, Role } from "../protocol/status.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import {
  BusyError,
  ClusterError,
  IndeterminateError,
  NoMasterError,
  NotMasterError,
  ShuttingDownError,
  StorageFailedError,
  TimeoutError,
} from "../shared/errors.js";
import type { StateMachine } from "../shared/state-machine.js";
import type { OpenedStorage, Storage } from "../storage/storage.js";
import type { Transport } from "../transport/transport.js";
import { unwrapCommand, wrapCommand } from "./entry-envelope.js";
import type { NodeConfig } from "./node-config.js";
import { StateTransfer, type TransferProgress } from "./state-transfer.js";

interface PendingProposal {
  readonly term: number;
  /** performance.now() when proposed, for the proposal latency metric. */
  readonly startedAt: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** Entries read to size a backup's lag in bytes; beyond it the size is scaled up. */
const LAG_SCAN_ENTRIES_MAX = 4096;

interface PendingRead {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
  index: number | null;
}

/** A fail-over as this node saw it, when it became master. */
export interface FailoverEvent {
  readonly term: number;
  readonly previousMaster: NodeId | null;
  /** From the last message of the previous master to this node serving as master, ms. */
  readonly durationMs: number | null;
}

/** A connection to a peer came up or went down (the transport's evidence, as it comes). */
export interface PeerEvent {
  readonly peer: NodeId;
  readonly up: boolean;
  readonly reason: string | null;
}

export interface NodeEvents {
  role: [CoreEvent];
  failover: [FailoverEvent];
  fatal: [Error];
  applied: [number];
  peer: [PeerEvent];
  /** A proposal of this node was applied: milliseconds from propose to applied. */
  proposal: [number];
}

export interface BatonNodeDeps {
  readonly config: NodeConfig;
  readonly opened: OpenedStorage;
  readonly transport: Transport;
  readonly stateMachine: StateMachine;
  readonly logger: Logger;
}

export class BatonNode extends EventEmitter<NodeEvents> {
  readonly id: NodeId;
  readonly config: NodeConfig;
  private readonly replica: Replica;
  private readonly storage: Storage;
  private readonly transport: Transport;
  private readonly sm: StateMachine;
  private readonly log: Logger;
  private readonly transfer: StateTransfer;

  private timer: NodeJS.Timeout | null = null;
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();
  /** While a received snapshot is being installed, later Readies wait in the chain. */
  private installing = 0;
  /** The newest term known durable (a Ready that set it finished its fsync). */
  private durableTerm: number;
  private stopped = false;
  private failure: Error | null = null;

  private readonly proposals = new Map<number, PendingProposal>();
  private readonly reads = new Map<number, PendingRead>();
  private readonly readsByIndex: PendingRead[] = [];
  private nextReadId = 1;
  private appliedIndex: number;
  private snapshotIndex: number;
  private snapshotting = false;
  private readonly lastHeard = new Map<NodeId, number>();
  private lastMasterContact: { id: NodeId; at: number } | null = null;
  private roleSince = Date.now();
  /** Counters for metrics. */
  readonly counters = { proposals: 0, elections: 0, failovers: 0, appliedEntries: 0 };

  private constructor(deps: BatonNodeDeps, replica: Replica, appliedIndex: number) {
    super();
    this.config = deps.config;
    this.id = deps.config.id;
    this.replica = replica;
    this.storage = deps.opened.storage;
    this.transport = deps.transport;
    this.sm = deps.stateMachine;
    this.log = deps.logger;
    this.appliedIndex = appliedIndex;
    this.snapshotIndex = appliedIndex;
    this.durableTerm = deps.opened.hardState.term;
    this.transfer = new StateTransfer({
      id: this.id,
      storage: this.storage,
      transport: this.transport,
      logger: this.log,
      chunkBytes: this.config.transferChunkBytes,
      stallMs: this.config.transferStallMs,
      term: () => this.replica.term,
      onSent: (peer, ok) => this.onTransferSent(peer, ok),
      onReceived: (from, term, meta) => this.onTransferReceived(from, term, meta),
      onFatal: (error) => this.fail(error),
    });
  }

  /**
   * Starts a node on opened storage: restores the state machine from the newest snapshot,
   * builds the core from what storage recovered, then starts the transport and the timer.
   */
  static async start(deps: BatonNodeDeps): Promise<BatonNode> {
    const { config, opened, logger } = deps;
    for (const warning of opened.warnings) logger.warn({ event: "recovery" }, warning);
    const reader = opened.storage.readSnapshot();
    if (reader !== null) {
      await deps.stateMachine.restore(reader.chunks());
      logger.info(
        { event: "recovery", snapshotIndex: reader.meta.index },
        "state restored from snapshot",
      );
    }
    const ticks = (ms: number): number => Math.max(1, Math.round(ms / config.tickMs));
    const replicaConfig = {
      ...defaultReplicaConfig(
        config.id,
        config.peers.map((p) => p.id),
      ),
      heartbeatTicks: ticks(config.heartbeatMs),
      electionTicksMin: ticks(config.electionMsMin),
      electionTicksMax: ticks(config.electionMsMax),
    };
    const replica = new Replica(replicaConfig, new Prng(randomInt(2 ** 31)), opened, {
      join: config.join,
    });
    if (replica.isJoining) {
      logger.warn(
        { event: "joining" },
        "this node lost its data and is rejoining: it will not vote or campaign until a master has caught it up",
      );
    } else if (config.join) {
      logger.warn(
        { event: "joining", term: opened.hardState.term, lastIndex: replica.lastIndex },
        "--join ignored: the data directory holds this node's state; --join is for a node whose data was wiped",
      );
    }
    const node = new BatonNode(deps, replica, opened.snapshot.index);
    logger.info(
      {
        event: "start",
        term: opened.hardState.term,
        lastIndex: replica.lastIndex,
        commitIndex: replica.commitIndex,
      },
      `node ${config.id} starting as backup`,
    );
    node.wire();
    await deps.transport.start();
    node.timer = setInterval(() => node.onTick(), config.tickMs);
    node.schedule();
    return node;
  }

  private wire(): void {
    this.transport.onMessage((message) => {
      if (this.stopped) return;
      if (this.transfer.handles(message)) {
        this.transfer.onMessage(message);
        return;
      }
      const m = message as Message;
      this.lastHeard.set(m.from, Date.now());
      if ((m.type === "append" || m.type === "heartbeat") && m.term >= this.replica.term) {
        this.lastMasterContact = { id: m.from, at: Date.now() };
      }
      this.replica.step(m);
      this.schedule();
    });
    this.transport.onPeerUp((peer) => {
      if (!this.stopped) this.emit("peer", { peer, up: true, reason: null });
    });
    this.transport.onPeerDown((peer, reason) => {
      if (this.stopped) return;
      this.emit("peer", { peer, up: false, reason });
      this.transfer.peerDown(peer);
      if (reason === "refused" || reason === "lost" || reason === "closed") {
        this.log.info({ event: "peer_down", peer, reason }, `connection to node ${peer} ${reason}`);
        this.replica.peerUnreachable(peer);
        this.schedule();
      }
    });
  }

  // ---------------------------------------------------------------- requests

  /**
   * Proposes `command` and resolves with the state machine's result once it is applied.
   * Throws NotMasterError (with a hint), BusyError, TimeoutError (the command may still
   * be applied), NoMasterError when a new master replaced it before it committed.
   */
  propose(command: Uint8Array): Promise<unknown> {
    this.checkRunning();
    const result = this.replica.propose(wrapCommand(Date.now(), command));
    if (!result.ok) {
      if (result.reason === "busy") throw new BusyError();
      throw new NotMasterError(result.masterHint);
    }
    this.counters.proposals++;
    this.schedule();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proposals.delete(result.index);
        reject(
          new TimeoutError(
            `the write did not commit within ${this.config.requestTimeoutMs} ms; it may still be applied`,
          ),
        );
      }, this.config.requestTimeoutMs);
      const startedAt = performance.now();
      this.proposals.set(result.index, { term: result.term, startedAt, resolve, reject, timer });
    });
  }

  /**
   * Resolves once this node's state machine reflects every write acknowledged before the
   * call (ReadIndex): a read made right after is linearizable. Master only.
   */
  readBarrier(): Promise<void> {
    this.checkRunning();
    const id = this.nextReadId++;
    const registered = this.replica.readIndex(id);
    if (!registered.ok) throw new NotMasterError(registered.masterHint);
    this.schedule();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(id);
        reject(
          new TimeoutError(
            `the read could not be confirmed within ${this.config.requestTimeoutMs} ms`,
          ),
        );
      }, this.config.requestTimeoutMs);
      this.reads.set(id, { resolve, reject, timer, index: null });
    });
  }

  get role(): Role {
    return this.replica.role;
  }

  get masterId(): NodeId | null {
    return this.replica.masterId;
  }

  /** The write-ahead log's counters, when the node runs on disk. */
  walStats(): { readonly fdatasyncs: number; readonly batches: number } | null {
    const storage = this.storage as Storage & {
      walStats?: () => { fdatasyncs: number; batches: number };
    };
    return storage.walStats?.() ?? null;
  }

  /**
   * Calls `observer` with the seconds each fdatasync of the write-ahead log took, when the
   * node runs on disk (the storage keeps no metrics library; this is its only hook).
   */
  observeWalSyncs(observer: (seconds: number) => void): void {
    const storage = this.storage as Storage & {
      observeSyncs?: (observer: (seconds: number) => void) => void;
    };
    storage.observeSyncs?.(observer);
  }

  /**
   * Fault injection (demos, --allow-fault-injection only): drops every message to and
   * from peers while `on`, as a network partition would; the connections stay up.
   * Returns false when the transport cannot do it.
   */
  setPartitioned(on: boolean): boolean {
    const transport = this.transport as Transport & { setPartitioned?: (on: boolean) => void };
    if (transport.setPartitioned === undefined) return false;
    transport.setPartitioned(on);
    this.log.warn({ event: "fault", partitioned: on }, on ? "partitioned by request" : "healed");
    return true;
  }

  /** Current state transfers, for status pages. */
  transfers(): TransferProgress[] {
    return this.transfer.progress();
  }

  status(): NodeStatus {
    const r = this.replica;
    const now = Date.now();
    const progress = r.peerProgress();
    const peerStats = this.transport.stats().peers;
    const members: MemberStatus[] = this.config.peers.map((peer) => {
      const self = peer.id === this.id;
      const pr = progress.get(peer.id);
      const stats = peerStats.find((p) => p.peer === peer.id);
      const heard = this.lastHeard.get(peer.id);
      return {
        id: peer.id,
        address: peer.address,
        httpUrl: self
          ? this.httpUrlOf(peer.id)
          : (this.transport.peerInfo(peer.id)?.httpUrl ?? null),
        role: self
          ? r.role
          : peer.id === r.masterId
            ? "master"
            : r.role === "master"
              ? "backup"
              : "unknown",
        connected: self ? true : (stats?.connected ?? false),
        matchIndex: self && r.role === "master" ? r.lastIndex : (pr?.match ?? null),
        lag:
          self && r.role === "master"
            ? 0
            : pr === undefined
              ? null
              : Math.max(0, r.lastIndex - pr.match),
        lastContactMs: self ? 0 : heard === undefined ? null : now - heard,
        lagBytes:
          self && r.role === "master" ? 0 : pr === undefined ? null : this.bytesAfter(pr.match),
      };
    });
    return {
      id: this.id,
      role: r.role,
      term: r.term,
      master: r.masterId,
      commitIndex: r.commitIndex,
      appliedIndex: this.appliedIndex,
      lastIndex: r.lastIndex,
      members,
    };
  }

  /**
   * Bytes of command data in the log after `index`, for a backup's lag: counted over the
   * newest LAG_SCAN_ENTRIES_MAX entries and scaled up beyond, so a status stays cheap. Null
   * when some of those entries were compacted away.
   */
  private bytesAfter(index: number): number | null {
    const last = this.replica.lastIndex;
    const behind = last - index;
    if (behind <= 0) return 0;
    const scanned = Math.min(behind, LAG_SCAN_ENTRIES_MAX);
    let bytes = 0;
    for (let i = last - scanned + 1; i <= last; i++) {
      const entry = this.replica.entryAt(i);
      if (entry === undefined) return null;
      bytes += entry.data.length;
    }
    if (behind > scanned && this.replica.entryAt(index + 1) === undefined) return null;
    return Math.round((bytes * behind) / scanned);
  }

  /** HTTP base URL advertised by `id` (this node's own from its config). */
  httpUrlOf(id: NodeId): string | null {
    if (id === this.id) return this.config.http === null ? null : `http://${this.config.http}`;
    return this.transport.peerInfo(id)?.httpUrl ?? null;
  }

  /** How long this node has held its current role, in ms. */
  roleAgeMs(): number {
    return Date.now() - this.roleSince;
  }

  /** Stops timers and the transport, finishes the chain, closes storage. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.failPending(new ShuttingDownError());
    this.transfer.close();
    await this.transport.close();
    await this.chain.catch(() => {});
    await this.storage.close().catch((error: unknown) => {
      rethrowIfBug(error);
      this.log.error({ event: "stop", err: error }, "closing storage failed");
    });
    this.log.info({ event: "stop" }, `node ${this.id} stopped`);
  }

  // ---------------------------------------------------------------- the loop

  private onTick(): void {
    if (this.stopped) return;
    this.replica.tick();
    this.schedule();
  }

  /** Drains the core once per event-loop turn, so that inputs of one turn batch together. */
  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.stopped) return;
    try {
      for (let n = 0; this.replica.hasReady(); n++) {
        // Each Ready drains what made hasReady() true; if it does not, the core has a bug,
        // and stopping with a clear message beats spinning forever.
        assert(n < 10_000, `node ${this.id}: the core keeps reporting work it never hands out`);
        this.handle(this.replica.ready());
      }
    } catch (error) {
      this.fail(error);
    }
  }

  private handle(ready: Ready): void {
    for (const event of ready.events) this.onRoleEvent(event);
    this.sendAll(ready.messagesNow);
    const messages = this.sendUnbound(ready.messages);
    for (const peer of ready.transfers) this.transfer.start(peer);
    if (ready.snapshot !== null || this.installing > 0) {
      // Everything after a snapshot install waits for it, in order.
      this.installing++;
      this.enqueue(async () => {
        try {
          if (ready.snapshot !== null) await this.adoptSnapshot(ready.snapshot);
          this.write(ready);
          await this.storage.sync();
        } finally {
          this.installing--;
        }
        this.finish(ready, messages);
      });
      return;
    }
    const synced = this.write(ready) ? this.storage.sync() : null;
    this.enqueue(async () => {
      if (synced !== null) await synced;
      this.finish(ready, messages);
    });
  }

  /**
   * Sends the Ready's heartbeat responses at once and returns its other messages, which
   * wait for the Ready's writes. A heartbeat response promises nothing about this node's
   * log, only its term: once that term is durable, it need not wait behind fsyncs or a
   * snapshot restore, and a backup with a slow disk still counts for the master's
   * check-quorum. Acknowledgements of entries and votes wait for their fsync.
   */
  private sendUnbound(messages: readonly Message[]): Message[] {
    const waiting: Message[] = [];
    for (const message of messages) {
      const unbound = message.type === "heartbeat_response" && message.term <= this.durableTerm;
      if (unbound) this.transport.send(message);
      else waiting.push(message);
    }
    return waiting;
  }

  /**
   * Hands the Ready's entries, then its hard state, to storage; returns whether a sync is
   * due. The Ready's commit index may cover its own entries, which may replace a suffix:
   * given first, it would cover the entries being replaced. It is the Ready's, not the
   * core's current one, which may run ahead of what this Ready gives storage.
   */
  private write(ready: Ready): boolean {
    if (ready.entries.length > 0) this.storage.append(ready.entries);
    if (ready.hardState !== null) {
      const commitIndex = Math.max(
        ready.hardState.commitIndex,
        this.storage.hardState().commitIndex,
      );
      this.storage.setHardState({ ...ready.hardState, commitIndex });
    }
    return ready.hardState !== null || ready.entries.length > 0;
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((error: unknown) => this.fail(error));
  }

  /** The Ready is durable: send what it promised (`messages`), apply, and tell the core. */
  private finish(ready: Ready, messages: readonly Message[]): void {
    if (this.stopped) return;
    if (ready.hardState !== null)
      this.durableTerm = Math.max(this.durableTerm, ready.hardState.term);
    this.sendAll(messages);
    this.apply(ready.committed);
    for (const read of ready.reads) this.onReadState(read.requestId, read.index);
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) this.replica.persisted(last.index, last.term);
    this.serveReads();
    this.maybeSnapshot();
    this.schedule();
  }

  private sendAll(messages: readonly Message[]): void {
    for (const message of messages) this.transport.send(message);
  }

  private apply(entries: readonly Entry[]): void {
    for (const entry of entries) {
      assert(
        entry.index === this.appliedIndex + 1,
        `node ${this.id}: applying ${entry.index} after ${this.appliedIndex}`,
      );
      this.appliedIndex = entry.index;
      this.counters.appliedEntries++;
      const pending = this.proposals.get(entry.index);
      if (pending !== undefined) this.proposals.delete(entry.index);
      if (entry.kind !== "command") {
        this.settleReplaced(pending, entry);
        continue;
      }
      const { timeMs, command } = unwrapCommand(entry.data);
      const result = this.sm.apply(command, { index: entry.index, term: entry.term, time: timeMs });
      if (pending === undefined) continue;
      if (pending.term !== entry.term) {
        this.settleReplaced(pending, entry);
      } else {
        clearTimeout(pending.timer);
        pending.resolve(result);
        this.emit("proposal", performance.now() - pending.startedAt);
      }
    }
    if (entries.length > 0) this.emit("applied", this.appliedIndex);
  }

  /** Another master's entry took the index of our proposal: it was never applied. */
  private settleReplaced(pending: PendingProposal | undefined, entry: Entry): void {
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    pending.reject(
      new NoMasterError(
        200,
        `the write was not applied: a new master (term ${entry.term}) took over before it committed; retry`,
      ),
    );
  }

  // ---------------------------------------------------------------- reads

  private onReadState(requestId: number, index: number | null): void {
    const read = this.reads.get(requestId);
    if (read === undefined) return;
    this.reads.delete(requestId);
    if (index === null) {
      clearTimeout(read.timer);
      read.reject(new NotMasterError(this.replica.masterId));
      return;
    }
    read.index = index;
    this.readsByIndex.push(read);
  }

  private serveReads(): void {
    if (this.readsByIndex.length === 0) return;
    const waiting = this.readsByIndex.splice(0);
    for (const read of waiting) {
      if (read.index! > this.appliedIndex) {
        this.readsByIndex.push(read);
      } else {
        clearTimeout(read.timer);
        read.resolve();
      }
    }
  }

  // ---------------------------------------------------------------- snapshots

  /** Snapshots the state machine every `snapshotEntries` applied entries. */
  private maybeSnapshot(): void {
    if (this.snapshotting || this.appliedIndex - this.snapshotIndex < this.config.snapshotEntries)
      return;
    const term = this.replica.termAt(this.appliedIndex);
    if (term === undefined) return;
    const meta: SnapshotMeta = { index: this.appliedIndex, term };
    this.snapshotting = true;
    const started = Date.now();
    // Storage refuses to snapshot beyond the commit index it knows: tell it (lazily written).
    // The applied index, not the core's commit index: that one may cover entries storage
    // has not been given yet, while the old entries at those indexes are still there.
    const hard = this.storage.hardState();
    if (hard.commitIndex < this.appliedIndex) {
      this.storage.setHardState({ ...hard, commitIndex: this.appliedIndex });
    }
    // The state machine's snapshot is consistent as of this call; applying may go on.
    const chunks = this.sm.snapshot();
    this.storage
      .saveSnapshot(meta, chunks)
      .then(async () => {
        this.snapshotIndex = meta.index;
        const keep = Math.max(
          this.replica.snapshotMeta().index,
          meta.index - this.config.snapshotKeepEntries,
        );
        this.replica.compact(keep);
        await this.storage.compact(keep);
        this.log.info(
          { event: "snapshot", index: meta.index, ms: Date.now() - started },
          `snapshot at ${meta.index}`,
        );
      })
      .catch((error: unknown) => this.fail(error))
      .finally(() => {
        this.snapshotting = false;
      });
  }

  private onTransferSent(peer: NodeId, ok: boolean): void {
    if (ok) {
      // The backup's answer moves the core on; should that answer be lost, probe again.
      setTimeout(() => this.onTransferSent(peer, false), 2 * this.config.electionMsMax).unref();
      return;
    }
    if (this.stopped) return;
    this.replica.transferFailed(peer);
    this.schedule();
  }

  /** A snapshot fully arrived from master `from`: the core decides whether to adopt it. */
  private onTransferReceived(from: NodeId, term: number, meta: SnapshotMeta): boolean {
    if (this.stopped) return false;
    const adopt = this.replica.installSnapshot(from, term, meta);
    this.schedule();
    return adopt;
  }

  private async adoptSnapshot(meta: SnapshotMeta): Promise<void> {
    const started = Date.now();
    await this.transfer.finishReceived(meta);
    const reader = this.storage.readSnapshot();
    assert(
      reader !== null && reader.meta.index === meta.index,
      "adopted snapshot is not the newest",
    );
    await this.sm.restore(reader.chunks());
    this.appliedIndex = meta.index;
    this.snapshotIndex = meta.index;
    this.log.info(
      {
        event: "state_transfer",
        index: meta.index,
        bytes: reader.dataBytes,
        ms: Date.now() - started,
      },
      `state transfer complete: state restored at index ${meta.index}`,
    );
  }

  // ---------------------------------------------------------------- roles

  private onRoleEvent(event: CoreEvent): void {
    this.roleSince = Date.now();
    const fields = {
      event: "role",
      role: event.role,
      term: event.term,
      master: event.masterId,
      reason: event.reason,
    };
    if (event.role === "master") {
      this.counters.elections++;
      const previous = this.lastMasterContact;
      const durationMs = previous === null ? null : Date.now() - previous.at;
      const failover: FailoverEvent = {
        term: event.term,
        previousMaster: previous?.id ?? null,
        durationMs,
      };
      if (previous !== null && previous.id !== this.id) this.counters.failovers++;
      this.log.info(
        { ...fields, previousMaster: failover.previousMaster, failoverMs: durationMs },
        previous === null
          ? `became master of term ${event.term}`
          : `fail-over: became master of term ${event.term}, ${durationMs} ms after last hearing from master ${previous.id}`,
      );
      this.lastMasterContact = { id: this.id, at: Date.now() };
      this.emit("failover", failover);
    } else {
      this.log.info(
        fields,
        `became ${event.preVote ? "pre-candidate" : event.role} in term ${event.term}: ${event.reason}`,
      );
    }
    if (event.role !== "master") {
      this.abortReadsOnStepDown();
      this.abandonProposalsOnStepDown(event.term);
    }
    this.emit("role", event);
  }

  /**
   * A master that lost its role cannot tell whether its pending writes will commit: the
   * new master may hold them, or not. Their callers learn it now (ERR_INDETERMINATE, to
   * be retried with the same idempotency key, elsewhere) rather than at their deadline:
   * a master cut off from its majority would otherwise hold every write it took until
   * the request timed out.
   */
  private abandonProposalsOnStepDown(term: number): void {
    if (this.proposals.size === 0) return;
    const error = new IndeterminateError(
      `this node stopped being the master (term ${term}) before the write committed; it may still be applied by the new master: retry with the same Idempotency-Key`,
    );
    for (const p of this.proposals.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.proposals.clear();
  }

  private abortReadsOnStepDown(): void {
    for (const read of this.readsByIndex.splice(0)) {
      clearTimeout(read.timer);
      read.reject(new NotMasterError(this.replica.masterId));
    }
  }

  // ---------------------------------------------------------------- failure

  private checkRunning(): void {
    if (this.failure !== null)
      throw new StorageFailedError(
        `the node stopped after a storage failure: ${this.failure.message}`,
      );
    if (this.stopped) throw new ShuttingDownError();
  }

  private fail(error: unknown): void {
    if (this.failure !== null) return;
    const err = error instanceof Error ? error : new Error(String(error));
    this.failure = err;
    this.log.fatal({ event: "fatal", err }, `node ${this.id} must stop: ${err.message}`);
    this.failPending(err instanceof ClusterError ? err : new StorageFailedError(err.message));
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.emit("fatal", err);
  }

  private failPending(error: Error): void {
    for (const p of this.proposals.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.proposals.clear();
    for (const r of [...this.reads.values(), ...this.readsByIndex]) {
      clearTimeout(r.timer);
      r.reject(error);
    }
    this.reads.clear();
    this.readsByIndex.length = 0;
  }
}
