/**
 * The whole-node simulator's watchers: clients that watch a prefix (or one key) on some
 * node, through the store's own prefix watch (`openPrefixWatch` in `src/kv`, which the HTTP
 * route serves too), as a client holds `GET /v1/watch` open. A change reaches the watcher
 * after a network delay, in order; what is in flight when the stream breaks is lost.
 *
 * A watcher leaves its node when the stream breaks (the process died or was replaced, or a
 * restore ended the history), when the node stays silent (paused) or without a master it
 * hears from (cut off) for longer than an idle timeout, and now and then for no reason (a
 * proxy closed the stream); it resumes on another node from the last revision it got, as
 * the client library does: half the watchers skip what they already have of that revision
 * themselves (the client library's way), half ask the node to (a browser's
 * `Last-Event-ID`). When every node in a row says the revision is compacted, the watcher
 * records that and starts again from the current revision (a gap it announces).
 *
 * It only records what it was told (`records`); `checkers/watches.ts` judges it.
 */

import type { Prng } from "../core/prng.js";
import { openPrefixWatch, type PrefixWatchEvent, type WatchSource } from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import { SafetyViolation } from "./checkers/safety.js";
import type { WatcherLog, WatchRecord } from "./checkers/watches.js";

/** A node as a watcher sees it now. */
export interface WatchNode {
  readonly id: NodeId;
  /** Changes whenever the process is replaced: an open stream does not survive that. */
  readonly incarnation: number;
  /** Its process runs, has started and is not paused: it accepts a new stream. */
  readonly serving: boolean;
  readonly paused: boolean;
  readonly master: boolean;
  /** It has a master it hears from (false: cut off, or an election under way). */
  readonly connected: boolean;
  /** Index applied (for the end of the run: has the watcher's node caught up). */
  applied(): number;
  readonly source: WatchSource | null;
}

export interface WatchHost {
  readonly now: number;
  setTimeout(callback: () => void, ms: number): void;
  nodes(): readonly WatchNode[];
  /** One node as a watcher sees it now (cheaper than all of them). */
  node(id: NodeId): WatchNode | undefined;
  log(line: string): void;
  /** Fails the run: a node claimed something its own store contradicts. */
  fail(error: Error): void;
  /**
   * The store's revision once the entries up to `index` are applied, by the committed
   * changes (not by any node's word): where a watch "from now" on a node that applied
   * `index` starts, less one.
   */
  revisionAt(index: number): number;
}

export interface WatcherPlan {
  readonly id: number;
  readonly prefix: string;
  /** 1: every change from the start; null: the changes after the first node's revision. */
  readonly fromRevision: number | null;
  /** Who skips what a resumed stream already delivered: the client or the node. */
  readonly skipBy: "client" | "node";
  readonly startMs: number;
}

/** A stream silent (paused node) or without a master this long is given up, ms. */
const IDLE_MS = 1000;
/** How often a watcher looks at its stream, ms. */
const CHECK_MS_MIN = 100;
const CHECK_MS_MAX = 300;
/** Reconnect delays, as the client library's. */
const RECONNECT_DELAY_MS_MIN = 50;
const RECONNECT_DELAY_MS_MAX = 1000;
/** Chance per look that the stream is closed for no reason of the node's. */
const DROP_CHANCE = 0.02;
/** Chance that the stream breaks in the middle of one command's several changes. */
const CUT_CHANCE = 0.1;

interface Stream {
  readonly serial: number;
  readonly node: NodeId;
  readonly incarnation: number;
  readonly cancel: () => void;
  /** Since when the node has been silent or cut off; null: it is not. */
  idleSince: number | null;
}

const decoder = new TextDecoder();

export class SimWatcher implements WatcherLog {
  readonly records: WatchRecord[] = [];
  readonly id: number;
  readonly prefix: string;
  fromRevision: number;
  /** Where to resume: the last revision delivered and how many of its changes. */
  private cursor: { revision: number; delivered: number } | null;
  private stream: Stream | null = null;
  private serial = 0;
  private lastNode: NodeId | null = null;
  private deliveryAt = 0;
  private inFlight = 0;
  /** The nodes that answered ERR_COMPACTED since the last watch that opened. */
  private readonly compactedBy = new Set<NodeId>();
  /** A compaction announced: the revision it could not resume from. */
  private compactedAt: number | null = null;
  private delayMs = RECONNECT_DELAY_MS_MIN;
  private stopped = false;
  private connecting = false;
  /** Streams opened, and those given up on (broken, idle or dropped). */
  opened = 0;
  moves = 0;

  constructor(
    private readonly host: WatchHost,
    private readonly prng: Prng,
    private readonly plan: WatcherPlan,
  ) {
    this.id = plan.id;
    this.prefix = plan.prefix;
    this.fromRevision = plan.fromRevision ?? 0;
    this.cursor = plan.fromRevision === null ? null : { revision: plan.fromRevision, delivered: 0 };
  }

  start(): void {
    this.host.setTimeout(() => this.connect(), this.plan.startMs);
    this.host.setTimeout(() => this.look(), this.plan.startMs + CHECK_MS_MAX);
  }

  stop(): void {
    this.stopped = true;
  }

  /** Attached to a serving node that has applied `index`, with nothing in flight. */
  caughtUp(index: number): boolean {
    const stream = this.stream;
    if (stream === null || this.inFlight > 0) return false;
    const node = this.host.node(stream.node);
    return node !== undefined && node.incarnation === stream.incarnation && node.applied() >= index;
  }

  private log(line: string): void {
    this.host.log(`watcher ${this.id} (${JSON.stringify(this.prefix)}): ${line}`);
  }

  /** Opens a stream on some serving node (the master half the time), or tries later. */
  private connect(): void {
    this.connecting = false;
    if (this.stopped || this.stream !== null) return;
    const serving = this.host.nodes().filter((n) => n.serving && n.source !== null);
    const others = serving.filter((n) => n.id !== this.lastNode);
    // After ERR_COMPACTED, a node not heard yet: it may still hold the revision.
    const unheard = others.filter((n) => !this.compactedBy.has(n.id));
    const pool = unheard.length > 0 ? unheard : others.length > 0 ? others : serving;
    if (pool.length === 0) {
      this.retry();
      return;
    }
    const master = pool.find((n) => n.master);
    const node = master !== undefined && this.prng.chance(0.5) ? master : this.prng.pick(pool);
    this.lastNode = node.id;
    this.open(node);
  }

  private open(node: WatchNode): void {
    const serial = ++this.serial;
    const resume = this.cursor;
    const byNode = this.plan.skipBy === "node";
    const request = {
      prefix: this.prefix,
      fromRevision: resume?.revision ?? this.restartRevision(node),
      skip: byNode ? (resume?.delivered ?? 0) : 0,
    };
    // The client library skips what it has of the revision it resumes from as it reads.
    const stream = { skip: byNode ? 0 : (resume?.delivered ?? 0) };
    const deliver = (events: readonly PrefixWatchEvent[]) => this.send(serial, stream, events);
    // Where the watch must start, by the simulator's own reckoning: what was asked, or the
    // change after the committed revision at the index the node applied. The watch's word
    // (and the store's) is checked, not taken: a watch that started later than this, or a
    // store whose revision ran ahead of what it applied, would skip changes unseen.
    const expectedFrom = request.fromRevision ?? this.host.revisionAt(node.applied()) + 1;
    const started = openPrefixWatch(node.source!, request, {
      events: deliver,
      end: () => this.broken(serial, `node ${node.id} ended the stream (its history started over)`),
    });
    if (started.fromRevision !== expectedFrom) {
      if (started.ok) started.cancel();
      this.host.fail(
        new SafetyViolation(
          `watcher ${this.id}: node ${node.id} started a watch from revision ${started.fromRevision}, not ${expectedFrom}`,
        ),
      );
      return;
    }
    if (!started.ok) {
      this.compacted(node, started.fromRevision, started.startRevision);
      return;
    }
    this.opened++;
    this.compactedBy.clear();
    this.delayMs = RECONNECT_DELAY_MS_MIN;
    if (this.plan.fromRevision === null && this.fromRevision === 0) {
      this.fromRevision = started.fromRevision;
    }
    if (this.compactedAt !== null) {
      this.records.push({
        kind: "compacted",
        resumeRevision: this.compactedAt,
        restartRevision: started.fromRevision,
      });
      this.compactedAt = null;
    }
    this.cursor ??= { revision: started.fromRevision, delivered: 0 };
    this.stream = {
      serial,
      node: node.id,
      incarnation: node.incarnation,
      cancel: started.cancel,
      idleSince: null,
    };
    this.log(
      `watching on node ${node.id} from revision ${started.fromRevision} (${request.skip + stream.skip} of it skipped)`,
    );
    deliver(started.backlog);
  }

  /**
   * Where a watch starts again after a compaction: the changes after now, as an
   * application does after reading the keys again; never before what the watcher already
   * got, though the node it reaches may be behind (a read after a read barrier answers
   * with a revision no older than that). Null: not after a compaction (from now).
   */
  private restartRevision(node: WatchNode): number | null {
    if (this.compactedAt === null) return null;
    return Math.max(this.host.revisionAt(node.applied()) + 1, this.compactedAt + 1);
  }

  /**
   * ERR_COMPACTED from one node: try the others; when every node that serves has said so
   * (each one, not as many answers as there are nodes: a node asked twice is one), record it and
   * start again from the current revision. The checker excuses the changes a compaction
   * skips, so the node's word is checked against its own store's history first: a watch
   * refused for a revision the history holds is a bug, not a compaction. The node answered,
   * so the next try waits the shortest reconnect delay, not a backoff grown by failures:
   * backing off to a second per node, a watcher of a five-node cluster took five seconds or
   * more to hear every node out.
   */
  private compacted(node: WatchNode, fromRevision: number, startRevision: number): void {
    const held = node.source!.watch(fromRevision, { changes: () => {}, reset: () => {} });
    if (held.ok) {
      held.cancel();
      this.host.fail(
        new SafetyViolation(
          `watcher ${this.id}: node ${node.id} answered that revision ${fromRevision} is compacted, but its history holds it`,
        ),
      );
      return;
    }
    this.compactedBy.add(node.id);
    this.delayMs = RECONNECT_DELAY_MS_MIN;
    this.log(`node ${node.id}: revision ${fromRevision} compacted (holds ${startRevision} on)`);
    // Every node that can be asked now: one down or paused is not waited for.
    const askable = this.host.nodes().filter((n) => n.serving && n.source !== null);
    if (askable.every((n) => this.compactedBy.has(n.id))) {
      this.compactedAt = fromRevision;
      this.cursor = null;
      this.compactedBy.clear();
      this.log(`every node compacted revision ${fromRevision}: starting again from now`);
    }
    this.retry();
  }

  /**
   * Sends the events of one applied command over the network, after a delay and in order
   * with the ones before; lost if the stream ends first. Now and then the connection breaks
   * in the middle of them (only some arrive), so that resumes in the middle of a revision
   * (a transaction's or a prefix delete's several changes) happen.
   */
  private send(
    serial: number,
    stream: { skip: number },
    events: readonly PrefixWatchEvent[],
  ): void {
    if (events.length === 0) return;
    const at = Math.max(this.deliveryAt, this.host.now + 0.1 + this.prng.next() * 3);
    this.deliveryAt = at;
    this.inFlight++;
    const cut =
      events.length > 1 && this.prng.chance(CUT_CHANCE)
        ? this.prng.int(1, events.length - 1)
        : null;
    this.host.setTimeout(() => {
      this.inFlight--;
      if (this.stream?.serial !== serial) return;
      for (const { change } of cut === null ? events : events.slice(0, cut)) {
        this.receive(stream, change);
      }
      if (cut !== null)
        this.broken(serial, `the stream broke after ${cut} of ${events.length} changes`);
    }, at - this.host.now);
  }

  /** One change arrives: skipped if the client already has it, else recorded. */
  private receive(stream: { skip: number }, change: PrefixWatchEvent["change"]): void {
    const cursor = this.cursor;
    if (cursor !== null && change.revision === cursor.revision && stream.skip > 0) {
      stream.skip--;
      return;
    }
    const value = change.value === null ? null : decoder.decode(change.value);
    this.records.push({
      kind: "change",
      change: { type: change.type, key: change.key, value, revision: change.revision },
    });
    this.cursor =
      cursor !== null && cursor.revision === change.revision
        ? { revision: change.revision, delivered: cursor.delivered + 1 }
        : { revision: change.revision, delivered: 1 };
  }

  /** Looks at the stream now and then: is it broken, silent, cut off, or dropped? */
  private look(): void {
    if (this.stopped) return;
    this.host.setTimeout(() => this.look(), this.prng.int(CHECK_MS_MIN, CHECK_MS_MAX));
    const stream = this.stream;
    if (stream === null) return;
    const node = this.host.node(stream.node);
    if (node === undefined || node.incarnation !== stream.incarnation || node.source === null) {
      this.broken(stream.serial, `node ${stream.node} went away`);
      return;
    }
    if (node.paused || !node.connected) {
      stream.idleSince ??= this.host.now;
      if (this.host.now - stream.idleSince >= IDLE_MS) {
        const why = node.paused ? "silent (paused)" : "without a master";
        this.broken(stream.serial, `node ${node.id} ${why} for ${IDLE_MS} ms`);
      }
      return;
    }
    stream.idleSince = null;
    if (this.prng.chance(DROP_CHANCE)) this.broken(stream.serial, "the stream was closed");
  }

  private broken(serial: number, why: string): void {
    const stream = this.stream;
    if (stream === null || stream.serial !== serial) return;
    stream.cancel();
    this.stream = null;
    this.moves++;
    this.log(`${why}; resuming from ${JSON.stringify(this.cursor)}`);
    this.retry();
  }

  private retry(): void {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    this.host.setTimeout(() => this.connect(), this.delayMs);
    this.delayMs = Math.min(this.delayMs * 2, RECONNECT_DELAY_MS_MAX);
  }
}
