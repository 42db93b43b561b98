/**
 * One simulated node: the production core (Replica) wrapped in a miniature runtime that
 * follows the same obligations as the real server: persist each Ready before sending its
 * messages, apply committed entries in order, answer clients from what was applied, and
 * serve reads only after ReadIndex confirmed them. Its disk survives crashes; everything
 * else (replica, state machine, pending requests) dies with the process.
 */

import { defaultReplicaConfig, type ReplicaConfig } from "../core/config.js";
import type { Prng } from "../core/prng.js";
import { type Ready, Replica } from "../core/replica.js";
import type { Entry, NodeId } from "../protocol/messages.js";
import { SimDisk, type StoredSnapshot } from "./sim-disk.js";
import { decodeCommand, encodeCommand, type SimCommand, SimKv } from "./sim-kv.js";

export interface ClientRequest {
  readonly client: number;
  /** The history operation this request belongs to. */
  readonly opId: number;
  /** Identifies one attempt; the answer echoes it. */
  readonly attempt: number;
  readonly command?: SimCommand;
  readonly readKey?: string;
}

export type ClientAnswer =
  | { readonly kind: "ok"; readonly output: string | boolean | null }
  | { readonly kind: "redirect"; readonly masterHint: NodeId | null }
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
  applied(node: SimNode, entry: Entry): void;
}

export class SimNode {
  replica: Replica | null = null;
  incarnation = 0;
  readonly disk = new SimDisk<SimKv>();
  /** Snapshots that arrived by state transfer and await adoption, by index. */
  private received = new Map<number, StoredSnapshot<SimKv>>();
  private snapshotIndex = 0;
  kv = new SimKv();
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
  ) {}

  get up(): boolean {
    return this.replica !== null;
  }

  /** `join`: the disk was wiped and the node rejoins, as with `baton start --join`. */
  start(options: { readonly join?: boolean } = {}): void {
    this.incarnation++;
    const config = { ...defaultReplicaConfig(this.id, this.members), ...this.tuning.replica };
    const restored = this.disk.recover();
    this.replica = new Replica(config, this.prng.fork(), restored, options);
    const stored = this.disk.snapshot();
    this.kv = stored === null ? new SimKv() : stored.state.clone();
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
  receiveSnapshot(from: NodeId, term: number, snapshot: StoredSnapshot<SimKv>): boolean {
    const adopt = this.replica!.installSnapshot(from, term, snapshot.meta);
    if (adopt)
      this.received.set(snapshot.meta.index, {
        meta: snapshot.meta,
        state: snapshot.state.clone(),
      });
    return adopt;
  }

  /** The Ready carrying an adopted snapshot is durable: the state continues from it. */
  adopt(index: number): void {
    const state = this.received.get(index);
    if (state === undefined)
      throw new Error(`node ${this.id}: adopted snapshot ${index} never arrived`);
    // A newer snapshot may have been adopted meanwhile; its Ready comes after this one.
    for (const i of [...this.received.keys()]) if (i <= index) this.received.delete(i);
    this.disk.installSnapshot({
      meta: state.meta,
      state: state.state.clone(),
    });
    this.kv = state.state;
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
    const meta = { index: this.appliedIndex, term };
    this.disk.saveSnapshot({ meta, state: this.kv.clone() });
    this.snapshotIndex = meta.index;
    replica.compact(Math.max(replica.snapshotMeta().index, meta.index - this.tuning.keepEntries));
  }

  handleRequest(request: ClientRequest): void {
    const replica = this.replica!;
    if (request.command !== undefined) {
      const result = replica.propose(encodeCommand(request.command));
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
    const result = this.kv.apply(decodeCommand(entry.data));
    if (pending === undefined) return;
    if (pending.term !== entry.term || !result.ok) {
      // Another master's entry took this index: the request's fate is unknown here.
      this.hooks.answer(this, pending.request, { kind: "retry" });
    } else {
      this.hooks.answer(this, pending.request, { kind: "ok", output: result.output });
    }
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
      else
        this.hooks.answer(this, read.request, {
          kind: "ok",
          output: this.kv.get(read.request.readKey!),
        });
    }
  }
}
