/**
 * One simulated node: the production core (Replica) and the product's key-value state
 * machine (KvStateMachine) wrapped in a miniature runtime that follows the same
 * obligations as the real server: stamp each command with the master's clock in the same
 * entry envelope, persist each Ready before sending its messages, apply committed entries
 * in order, answer clients from what was applied, serve reads only after ReadIndex
 * confirmed them, and snapshot and restore the state machine in its real byte format. Its
 * disk survives crashes; everything else (replica, state machine, pending requests) dies
 * with the process.
 */

import { defaultReplicaConfig, type ReplicaConfig } from "../core/config.js";
import type { Configuration } from "../core/configuration.js";
import { MEMBER_INCARNATION_MAX } from "../core/configuration.js";
import type { Prng } from "../core/prng.js";
import { type Ready, Replica } from "../core/replica.js";
import {
  decodeCommand,
  encodeCommand,
  type KvCommand,
  type KvLimits,
  type KvResult,
  KvStateMachine,
} from "../kv/index.js";
import type { Entry, NodeId } from "../protocol/messages.js";
import { unwrapCommand, wrapCommand } from "../server/entry-envelope.js";
import { SimDisk, type StoredSnapshot } from "./sim-disk.js";

/** A snapshot of the key-value state machine as its real chunks (never modified). */
export type KvChunks = readonly Uint8Array[];

export interface ClientRequest {
  readonly client: number;
  /** The history operation this request belongs to. */
  readonly opId: number;
  /** Identifies one attempt; the answer echoes it. */
  readonly attempt: number;
  readonly command?: KvCommand;
  readonly readKey?: string;
}

/**
 * `ok`: the write's or read's outcome (a read's value, a compare-and-set's or delete's
 * success, null for a put). `busy`: refused by a full exactly-once table, nothing applied.
 * `session_expired`: the session is gone, so the outcome is unknown. `retry`: not known
 * here (another master's entry took the index, or a stale duplicate).
 */
export type ClientAnswer =
  | { readonly kind: "ok"; readonly output: string | boolean | null }
  | { readonly kind: "redirect"; readonly masterHint: NodeId | null }
  | { readonly kind: "busy"; readonly retryAfterMs: number }
  | { readonly kind: "session_expired" }
  | { readonly kind: "retry" };

export interface NodeTuning {
  readonly replica: Partial<ReplicaConfig>;
  /** Snapshot every this many applied entries; 0 for never. */
  readonly snapshotEvery: number;
  /** Entries kept in the log below a snapshot, for backups slightly behind. */
  readonly keepEntries: number;
}

export interface NodeHooks {
  /** A Ready was produced; the cluster schedules its completion. */
  onReady(node: SimNode, ready: Ready, persist: boolean): void;
  answer(node: SimNode, request: ClientRequest, answer: ClientAnswer): void;
  /** About to apply a committed entry. */
  applied(node: SimNode, entry: Entry): void;
  /** Applied a command: what it decoded to, what it answered, whether it changed the store. */
  executed(
    node: SimNode,
    entry: Entry,
    command: KvCommand | null,
    result: KvResult,
    changed: boolean,
  ): void;
  /** This node's wall clock, in ms since the Unix epoch: what a master stamps commands with. */
  wallClockMs(node: SimNode): number;
}

const decoder = new TextDecoder();

export class SimNode {
  replica: Replica | null = null;
  incarnation = 0;
  readonly disk = new SimDisk<KvChunks>();
  /** Snapshots that arrived by state transfer and await adoption, by index. */
  private received = new Map<number, StoredSnapshot<KvChunks>>();
  private snapshotIndex = 0;
  kv: KvStateMachine;
  pausedUntil = 0;
  /** Recovery found a corrupt record: the node stays down for the rest of the run. */
  corrupt = false;
  /** Index of the last entry this incarnation's state machine applied. */
  appliedIndex = 0;
  private pendingWrites = new Map<number, { term: number; request: ClientRequest }>();
  private pendingReads = new Map<number, ClientRequest>();
  private readsAwaitingApply: { index: number; request: ClientRequest }[] = [];
  private nextReadId = 1;

  constructor(
    readonly id: NodeId,
    private readonly members: readonly NodeId[],
    private readonly tuning: NodeTuning,
    private readonly prng: Prng,
    private readonly hooks: NodeHooks,
    private readonly limits: KvLimits,
  ) {
    this.kv = new KvStateMachine(limits);
  }

  get up(): boolean {
    return this.replica !== null;
  }

  /**
   * `join`: the disk was wiped and the node rejoins, as with `baton start --join`. A disk
   * with no identity yet gets one: the data directory is initialised.
   */
  start(options: { readonly join?: boolean } = {}): void {
    this.incarnation++;
    const config = { ...defaultReplicaConfig(this.id, this.members), ...this.tuning.replica };
    const restored = this.disk.recover();
    if (this.disk.memberIncarnation === 0) {
      this.disk.memberIncarnation = this.prng.int(1, MEMBER_INCARNATION_MAX);
    }
    const configuration: Configuration | undefined = this.disk.joinedConfig ?? undefined;
    this.replica = new Replica(config, this.prng.fork(), restored, {
      ...options,
      incarnation: this.disk.memberIncarnation,
      ...(configuration === undefined ? {} : { configuration }),
    });
    const stored = this.disk.snapshot();
    this.kv = this.restored(stored?.state ?? null);
    this.appliedIndex = this.replica.snapshotMeta().index;
    this.snapshotIndex = this.appliedIndex;
    this.received = new Map();
    this.pendingWrites = new Map();
    this.pendingReads = new Map();
    this.readsAwaitingApply = [];
  }

  crash(): void {
    this.replica = null;
  }

  /** Hands every pending Ready to the cluster. Call after each input. */
  pump(): void {
    const replica = this.replica;
    if (replica === null) return;
    for (let n = 0; replica.hasReady(); n++) {
      // Each Ready drains the outputs that made hasReady() true; a core that keeps
      // reporting work it never hands out would spin a real runtime forever.
      if (n === 100) throw new Error(`node ${this.id}: hasReady() stays true after 100 Readies`);
      const ready = replica.ready();
      const persist =
        ready.hardState !== null || ready.entries.length > 0 || ready.snapshot !== null;
      this.hooks.onReady(this, ready, persist);
    }
  }

  /** The Ready's writes are durable (or it needed none): send, apply, acknowledge. */
  complete(ready: Ready, send: (ready: Ready) => void): void {
    const replica = this.replica!;
    send(ready);
    for (const entry of ready.committed) this.apply(entry);
    for (const read of ready.reads) this.onReadState(read.requestId, read.index);
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) replica.persisted(last.index, last.term);
    this.serveReads();
    this.maybeSnapshot();
  }

  /** A state transfer fully arrived; returns whether the core adopts it. */
  receiveSnapshot(from: NodeId, term: number, snapshot: StoredSnapshot<KvChunks>): boolean {
    const adopt = this.replica!.installSnapshot(from, term, snapshot.meta);
    if (adopt) this.received.set(snapshot.meta.index, snapshot);
    return adopt;
  }

  /** A new state machine, restored from `chunks` when there are any, as a process starts. */
  private restored(chunks: KvChunks | null): KvStateMachine {
    const kv = new KvStateMachine(this.limits);
    if (chunks !== null) kv.restoreChunks(chunks);
    return kv;
  }

  /** The Ready carrying an adopted snapshot is durable: the state continues from it. */
  adopt(index: number): void {
    const state = this.received.get(index);
    if (state === undefined)
      throw new Error(`node ${this.id}: adopted snapshot ${index} never arrived`);
    // A newer snapshot may have been adopted meanwhile; its Ready comes after this one.
    for (const i of [...this.received.keys()]) if (i <= index) this.received.delete(i);
    this.disk.installSnapshot(state);
    this.kv = this.restored(state.state);
    this.appliedIndex = index;
    this.snapshotIndex = index;
  }

  /** Takes a snapshot every `snapshotEvery` applied entries and compacts the log behind it. */
  private maybeSnapshot(): void {
    const every = this.tuning.snapshotEvery;
    if (every === 0 || this.appliedIndex - this.snapshotIndex < every) return;
    const replica = this.replica!;
    const term = replica.termAt(this.appliedIndex);
    if (term === undefined) return;
    const meta = { index: this.appliedIndex, term, config: replica.configAt(this.appliedIndex) };
    this.disk.saveSnapshot({ meta, state: this.kv.snapshotChunks() });
    this.snapshotIndex = meta.index;
    replica.compact(Math.max(replica.snapshotMeta().index, meta.index - this.tuning.keepEntries));
  }

  handleRequest(request: ClientRequest): void {
    const replica = this.replica!;
    if (request.command !== undefined) {
      const stamped = wrapCommand(this.hooks.wallClockMs(this), encodeCommand(request.command));
      const result = replica.propose(stamped);
      if (result.ok) this.pendingWrites.set(result.index, { term: result.term, request });
      else if (result.reason === "not_master")
        this.hooks.answer(this, request, { kind: "redirect", masterHint: result.masterHint });
      else this.hooks.answer(this, request, { kind: "retry" }); // busy, or a switchover
      return;
    }
    const readId = this.nextReadId++;
    const result = replica.readIndex(readId);
    if (result.ok) this.pendingReads.set(readId, request);
    else this.hooks.answer(this, request, { kind: "redirect", masterHint: result.masterHint });
  }

  private apply(entry: Entry): void {
    if (entry.index !== this.appliedIndex + 1) {
      throw new Error(`node ${this.id} applies ${entry.index} after ${this.appliedIndex}`);
    }
    this.appliedIndex = entry.index;
    this.hooks.applied(this, entry);
    const pending = this.pendingWrites.get(entry.index);
    this.pendingWrites.delete(entry.index);
    if (entry.kind !== "command") {
      if (pending !== undefined) this.hooks.answer(this, pending.request, { kind: "retry" });
      return;
    }
    const { timeMs, command } = unwrapCommand(entry.data);
    const result = this.kv.apply(command, { index: entry.index, term: entry.term, time: timeMs });
    const decoded = decodeCommand(command);
    const changed = result.ok && this.kv.revision === entry.index;
    this.hooks.executed(this, entry, decoded.ok ? decoded.command : null, result, changed);
    if (pending === undefined) return;
    // Another master's entry took this index: the request's fate is unknown here.
    const answer = pending.term === entry.term ? answerOf(pending.request, result) : RETRY;
    this.hooks.answer(this, pending.request, answer);
  }

  private onReadState(readId: number, index: number | null): void {
    const request = this.pendingReads.get(readId);
    if (request === undefined) return;
    this.pendingReads.delete(readId);
    if (index === null) {
      this.hooks.answer(this, request, { kind: "redirect", masterHint: this.replica!.masterId });
    } else {
      this.readsAwaitingApply.push({ index, request });
    }
  }

  private serveReads(): void {
    const applied = this.appliedIndex;
    const waiting = this.readsAwaitingApply;
    if (waiting.length === 0) return;
    this.readsAwaitingApply = [];
    for (const read of waiting) {
      if (read.index > applied) this.readsAwaitingApply.push(read);
      else {
        const entry = this.kv.get(read.request.readKey!);
        const output = entry === null ? null : decoder.decode(entry.value);
        this.hooks.answer(this, read.request, { kind: "ok", output });
      }
    }
  }
}

const RETRY: ClientAnswer = Object.freeze({ kind: "retry" });

/** What a client is told of its write's result, in the history's terms. */
function answerOf(request: ClientRequest, result: KvResult): ClientAnswer {
  const command = request.command!;
  if (result.ok) {
    // A transaction is a compare-and-set (store-ops.ts): whether its comparison held.
    if (result.succeeded !== undefined) return { kind: "ok", output: result.succeeded };
    const hasOutput = command.type === "delete" || command.ifRevision !== undefined;
    return { kind: "ok", output: hasOutput ? true : null };
  }
  switch (result.code) {
    case "precondition_failed":
      return { kind: "ok", output: false };
    case "not_found":
      return { kind: "ok", output: false };
    case "table_full":
      return { kind: "busy", retryAfterMs: result.retryAfterMs };
    case "session_expired":
      return { kind: "session_expired" };
    default:
      // A stale duplicate of an older request; anything else the checker reports.
      return RETRY;
  }
}
