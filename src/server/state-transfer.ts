/**
 * State transfer: the master streams its newest snapshot to a backup that is missing the
 * entries it needs (or is brand new), in bounded chunks with a small window of chunks in
 * flight, so neither side ever holds the whole snapshot in memory and replication to the
 * other backups goes on meanwhile. The backup writes the chunks into storage's snapshot
 * receiver, checks the checksum at the end, and asks the core whether to adopt it. When
 * the state machine can (`beginRestore`), the backup also reads the state out of the
 * chunks as they arrive, so that adopting a large snapshot does not read it all again.
 *
 * The backup takes chunks strictly in order and answers each with the offset it expects
 * next. The master keeps the chunks in flight until they are acknowledged: a chunk that
 * went missing (a full send queue drops it; the simulator's network loses and reorders
 * messages) is sent again from the gap the answers show, so a gigabyte is not started
 * over for one lost mebibyte. A backup that hears nothing of a transfer for two stall
 * times drops it with the state it read so far (its master failed over, or it caught up
 * from the log) rather than holding up to a whole state until the next transfer.
 *
 * It never decides anything about the log: the core asks for transfers and decides on
 * adoption. Progress (bytes sent / total) is visible through `progress()` and the log.
 * A failed transfer is logged and retried; a bug (an AssertionError, from the core or
 * storage) is never logged and dropped: it goes to `onFatal`, which stops the node. So
 * does a failure to read this node's own snapshot (its checksum, checked before the last
 * chunk goes out, or an I/O error): the file will not get better by sending it again, and
 * the node could not restart from it either.
 */

import type { Logger } from "pino";
import {
  type Configuration,
  decodeClusterId,
  decodeConfiguration,
  encodeConfiguration,
} from "../core/configuration.js";
import type {
  NodeId,
  SnapshotAck,
  SnapshotChunk,
  SnapshotMeta,
  WireMessage,
} from "../protocol/messages.js";
import { AssertionError, assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";
import type { IncrementalRestore } from "../shared/state-machine.js";
import { StorageError } from "../storage/errors.js";
import type { SnapshotReceiver, Storage } from "../storage/storage.js";
import type { Transport } from "../transport/transport.js";

/** Chunks in flight per transfer. */
const WINDOW = 4;
/** The shortest wait before a resend that made no progress is sent again, ms. */
const RESEND_WAIT_MS_MIN = 100;
/** Wait before reporting a failed transfer, so that a retry does not spin. */
const RETRY_DELAY_MS = 500;
/** The resend wait doubles at most this many times while nothing moves (see armRetry). */
const RESEND_DOUBLINGS_MAX = 4;

export interface TransferProgress {
  readonly peer: NodeId;
  readonly direction: "sending" | "receiving";
  readonly snapshotIndex: number;
  readonly bytes: number;
  readonly totalBytes: number;
  readonly startedAt: number;
}

export interface StateTransferDeps {
  readonly id: NodeId;
  readonly storage: Storage;
  readonly transport: Transport;
  readonly logger: Logger;
  /** Time and the stall and retry timers. */
  readonly clock: Clock;
  readonly chunkBytes: number;
  readonly stallMs: number;
  readonly term: () => number;
  /** The configuration in effect at a snapshot's index, sent with it. */
  readonly configAt: (index: number) => Configuration;
  /** The cluster id this node knows (committed), sent along with a snapshot; null: none. */
  readonly clusterId: () => string | null;
  /**
   * A transfer to `peer` of the snapshot at `snapshotIndex` ended: ok when the backup
   * adopted it or already had the state (it may still be installing it), else it failed.
   */
  readonly onSent: (peer: NodeId, ok: boolean, snapshotIndex: number) => void;
  /**
   * A snapshot fully arrived and failed its checksum (asked again): the sender's disk
   * damaged it (its own check should have stopped it first) or the chunks were mixed up.
   */
  readonly onChecksumFailed: () => void;
  /** A snapshot fully arrived; returns whether the core adopts it. */
  readonly onReceived: (from: NodeId, term: number, meta: SnapshotMeta) => boolean;
  /**
   * A bug surfaced during a transfer, or this node's own snapshot could not be read (its
   * disk damaged it): the node must stop.
   */
  readonly onFatal: (error: AssertionError | StorageError) => void;
  /** The state machine's `beginRestore`, when it has one. */
  readonly beginRestore?: (() => IncrementalRestore) | undefined;
}

interface Outgoing {
  readonly peer: NodeId;
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  readonly crc32: number;
  readonly term: number;
  readonly iterator: AsyncIterator<Uint8Array>;
  readonly startedAt: number;
  /** Bytes read from the snapshot but not yet sent. */
  buffer: Uint8Array;
  sentBytes: number;
  ackedBytes: number;
  /** Chunks sent and not yet acknowledged, in offset order: what a resend sends again. */
  unacked: { readonly offset: number; readonly data: Uint8Array }[];
  /** The offset the window was last sent again from, so that each gap costs one resend. */
  resentFrom: number;
  /** Chunks sent more than once, for the log. */
  resentChunks: number;
  /** Sends the unacknowledged chunks again when nothing moved the transfer on (armRetry). */
  retry: Timer | null;
  /** Resends by armRetry's timer since the backup last acknowledged new bytes. */
  idleResends: number;
  /** When the backup last acknowledged new bytes, and the smoothed time between two such. */
  progressAt: number;
  progressIntervalMs: number;
  reading: boolean;
  /** The reader reached its end, where the snapshot's checksum is checked. */
  readToEnd: boolean;
  stall: Timer;
  lastLoggedTenth: number;
}

interface Incoming {
  readonly from: NodeId;
  /** The newest term a chunk of it came in: the term the core is told it was sent in. */
  term: number;
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  readonly crc32: number;
  readonly startedAt: number;
  receiver: Promise<SnapshotReceiver>;
  /** Chunks are written strictly one after another. */
  queue: Promise<void>;
  received: number;
  /**
   * Where the bytes of the chunks queued so far reach without a gap: a chunk that ends
   * before it holds nothing new (a resent window), and is not queued with its bytes while
   * a write waits on a stalled disk.
   */
  queuedEnd: number;
  /** An answer to a copy of queued bytes waits in the queue (one is enough). */
  answerQueued: boolean;
  done: boolean;
  /** The state read from the chunks so far; null without one or once it failed. */
  restore: IncrementalRestore | null;
  /** A chunk is being written (the idle timer waits for it). */
  writing: boolean;
  /** Fires when no chunk came for INCOMING_IDLE_STALLS stall times (armIdle). */
  idle: Timer | null;
}

/**
 * A session that receives no chunk for this many of the master's stall times is dropped
 * with what it holds (the state read so far, the partial file). The master starts a
 * stalled transfer over after one stall time, which begins a new session anyway; a session
 * idle for two has no master left to finish it (it failed over, or the node caught up
 * from the log), and would otherwise keep up to a whole state in memory until the next
 * transfer, which may never come.
 */
const INCOMING_IDLE_STALLS = 2;

const NO_BYTES = new Uint8Array(0);

/** A received snapshot the core adopted, waiting to be installed. */
interface Adopted {
  readonly receiver: SnapshotReceiver;
  readonly restore: IncrementalRestore | null;
}

export class StateTransfer {
  private readonly outgoing = new Map<NodeId, Outgoing>();
  private incoming: Incoming | null = null;
  /**
   * Received snapshots the core adopted, by index, each waiting for the runtime to install
   * it (in the order adopted). A newer one may be adopted while an older one waits.
   */
  private readonly adopted = new Map<number, Adopted>();
  /**
   * Adopted snapshots `finishReceived` is making durable: out of `adopted`, and not yet
   * storage's newest (see heldIndex).
   */
  private readonly finishing = new Set<number>();
  /** Receivers being dropped (their temporary files removed), for `close` to wait for. */
  private readonly discarding = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly deps: StateTransferDeps) {}

  handles(message: WireMessage): boolean {
    return message.type === "snapshot_chunk" || message.type === "snapshot_ack";
  }

  onMessage(message: WireMessage): void {
    if (message.type === "snapshot_chunk") this.onChunk(message);
    else if (message.type === "snapshot_ack") this.onAck(message);
  }

  progress(): TransferProgress[] {
    const out: TransferProgress[] = [...this.outgoing.values()].map((o) => ({
      peer: o.peer,
      direction: "sending",
      snapshotIndex: o.meta.index,
      bytes: o.ackedBytes,
      totalBytes: o.totalBytes,
      startedAt: o.startedAt,
    }));
    const i = this.incoming;
    if (i !== null && !i.done) {
      out.push({
        peer: i.from,
        direction: "receiving",
        snapshotIndex: i.meta.index,
        bytes: i.received,
        totalBytes: i.totalBytes,
        startedAt: i.startedAt,
      });
    }
    return out;
  }

  // ---------------------------------------------------------------- sending

  /** Starts streaming the newest snapshot to `peer` (the core asked for it). */
  start(peer: NodeId): void {
    if (this.closed) return;
    const running = this.outgoing.get(peer);
    if (running !== undefined) {
      if (running.term === this.deps.term()) return;
      // Sent in an earlier term of this node's (it lost the master role and won it back):
      // the backup drops those chunks unanswered, so it would only end by stalling. The
      // core asks for this one now; the old one ends here, without a failure to report.
      this.end(running, "a newer term began");
    }
    const reader = this.deps.storage.readSnapshot();
    if (reader === null) {
      this.deps.logger.error(
        { event: "state_transfer", peer },
        "a state transfer is needed but there is no snapshot",
      );
      this.failLater(peer, 0);
      return;
    }
    const out: Outgoing = {
      peer,
      meta: reader.meta,
      totalBytes: reader.dataBytes,
      crc32: reader.dataCrc32,
      term: this.deps.term(),
      iterator: reader.chunks()[Symbol.asyncIterator](),
      startedAt: this.deps.clock.wallMs(),
      buffer: new Uint8Array(0),
      sentBytes: 0,
      ackedBytes: 0,
      unacked: [],
      resentFrom: -1,
      resentChunks: 0,
      retry: null,
      idleResends: 0,
      progressAt: this.deps.clock.monotonicMs(),
      progressIntervalMs: 0,
      reading: false,
      readToEnd: false,
      stall: this.deps.clock.setTimeout(() => this.onStall(peer), this.deps.stallMs),
      lastLoggedTenth: -1,
    };
    this.outgoing.set(peer, out);
    this.deps.logger.info(
      { event: "state_transfer", peer, index: out.meta.index, totalBytes: out.totalBytes },
      `state transfer to node ${peer} started: snapshot ${out.meta.index}, ${out.totalBytes} bytes`,
    );
    void this.pump(out);
  }

  /** Sends chunks while the window has room. */
  private async pump(out: Outgoing): Promise<void> {
    if (out.reading) return;
    out.reading = true;
    try {
      while (
        this.outgoing.get(out.peer) === out &&
        out.sentBytes - out.ackedBytes < WINDOW * this.deps.chunkBytes
      ) {
        if (out.sentBytes >= out.totalBytes && out.totalBytes > 0) break;
        const chunk = await this.nextChunk(out);
        if (this.outgoing.get(out.peer) !== out) return;
        if (out.sentBytes + chunk.length <= out.ackedBytes && chunk.length > 0) {
          // The backup holds these bytes already: it kept its session from a transfer of
          // the same snapshot that this node gave up, and answered with how far it got.
          // Sent, they would only be answered with that offset again, which reads as a gap.
          out.sentBytes += chunk.length;
          continue;
        }
        this.sendChunk(out, chunk);
        if (out.sentBytes >= out.totalBytes) break;
      }
    } catch (error) {
      if (this.isBug(error)) return;
      if (error instanceof StorageError) {
        // This node's own snapshot is damaged or unreadable: sent again, it would fail the
        // same way for every backup that needs it (and the backup's checksum at the end
        // would only say so after the whole snapshot went over). The node stops, naming the
        // file; a restart refuses the same file, and the operator rejoins the machine.
        // (A transfer replaced meanwhile by one of a newer term is that one's to end.)
        if (this.outgoing.get(out.peer) === out) this.end(out, "snapshot unreadable");
        this.deps.onFatal(error);
        return;
      }
      this.deps.logger.error(
        { event: "state_transfer", peer: out.peer, err: error },
        "reading the snapshot failed",
      );
      this.abort(out.peer, "snapshot unreadable");
    } finally {
      out.reading = false;
    }
  }

  private async nextChunk(out: Outgoing): Promise<Uint8Array> {
    const size = this.deps.chunkBytes;
    while (out.buffer.length < size && out.sentBytes + out.buffer.length < out.totalBytes) {
      const next = await out.iterator.next();
      if (next.done === true) break;
      if (out.buffer.length === 0) {
        // Storage hands out a fresh buffer per read, never reused: no need to copy it.
        out.buffer = next.value;
        continue;
      }
      const merged = new Uint8Array(out.buffer.length + next.value.length);
      merged.set(out.buffer);
      merged.set(next.value, out.buffer.length);
      out.buffer = merged;
    }
    if (!out.readToEnd && out.sentBytes + out.buffer.length >= out.totalBytes) {
      // Every byte is read: one more step takes the reader past the trailer, where it checks
      // the checksum (it throws when the file fails it). The last chunk goes out only after:
      // the backup would find the damage too, but only after receiving everything.
      for (;;) {
        const next = await out.iterator.next();
        if (next.done === true) break;
        assert(
          next.value.length === 0,
          `snapshot ${out.meta.index}: the reader yields more than its ${out.totalBytes} bytes`,
        );
      }
      out.readToEnd = true;
    }
    const chunk = out.buffer.subarray(0, size);
    out.buffer = out.buffer.subarray(chunk.length);
    return chunk;
  }

  private sendChunk(out: Outgoing, data: Uint8Array): void {
    out.unacked.push({ offset: out.sentBytes, data });
    if (out.retry === null) this.armRetry(out);
    this.transmit(out, out.sentBytes, data);
    out.sentBytes += data.length;
  }

  private transmit(out: Outgoing, offset: number, data: Uint8Array): void {
    const message: SnapshotChunk = {
      type: "snapshot_chunk",
      from: this.deps.id,
      to: out.peer,
      term: out.term,
      snapshotIndex: out.meta.index,
      snapshotTerm: out.meta.term,
      offset,
      totalBytes: out.totalBytes,
      crc32: out.crc32,
      // A view: the bytes are never changed, and the transport encodes them at once.
      data,
      config: encodeConfiguration(this.deps.configAt(out.meta.index), this.deps.clusterId()),
    };
    this.deps.transport.send(message);
  }

  /**
   * Sends the unacknowledged chunks again from `from`, the offset the backup expects next
   * (it skips a chunk that arrives ahead of a missing one). False when the window's first
   * chunk does not hold that offset: the transfer cannot go on.
   */
  private resend(out: Outgoing, from: number): boolean {
    const first = out.unacked[0];
    if (first === undefined || first.offset > from) return false;
    // A zero-byte snapshot's only chunk is empty, and holds the offset 0 all the same.
    if (first.data.length > 0 && first.offset + first.data.length <= from) return false;
    out.resentFrom = from;
    out.resentChunks += out.unacked.length;
    for (const chunk of out.unacked) this.transmit(out, chunk.offset, chunk.data);
    this.armRetry(out);
    return true;
  }

  /**
   * While chunks are unacknowledged, sends them again when nothing moved the transfer on
   * for twice the time the window takes to drain (at least RESEND_WAIT_MS_MIN): the last
   * chunk of a burst, or a resent one, may be lost with no later chunk to reveal the gap
   * (TCP's retransmission timeout, roughly). Progress re-arms it.
   */
  private armRetry(out: Outgoing): void {
    this.clearRetry(out);
    if (out.unacked.length === 0) return;
    // Doubled for each resend that moved nothing: a backup whose disk stalls answers
    // nothing for seconds, and a window every 100 ms is only more bytes to hold.
    const waitMs =
      Math.max(RESEND_WAIT_MS_MIN, 2 * WINDOW * out.progressIntervalMs) *
      2 ** Math.min(out.idleResends, RESEND_DOUBLINGS_MAX);
    out.retry = this.deps.clock.setTimeout(() => {
      out.retry = null;
      if (this.outgoing.get(out.peer) !== out || out.unacked.length === 0) return;
      out.idleResends++;
      if (!this.resend(out, out.ackedBytes)) this.abort(out.peer, "chunks lost");
    }, waitMs);
  }

  private clearRetry(out: Outgoing): void {
    if (out.retry === null) return;
    this.deps.clock.clearTimeout(out.retry);
    out.retry = null;
  }

  /** Nothing moved the transfer on for `stallMs`, resends included: it starts over. */
  private onStall(peer: NodeId): void {
    this.abort(peer, "no progress");
  }

  private onAck(ack: SnapshotAck): void {
    const out = this.outgoing.get(ack.from);
    if (out === undefined || ack.snapshotIndex !== out.meta.index) return;
    if (!ack.done && ack.nextOffset > out.totalBytes) {
      // Past the end of this snapshot: the backup holds another one under this index.
      this.abort(out.peer, "the backup holds other bytes for this snapshot");
      return;
    }
    if (!ack.done && ack.nextOffset === 0 && out.ackedBytes > 0) {
      // The backup has no session for this snapshot any more (its checksum failed, or it
      // dropped the session): it asks for the whole snapshot again.
      this.abort(out.peer, "the backup asked for it from the start");
      return;
    }
    if (!ack.done && ack.nextOffset < out.ackedBytes) return; // overtaken by a later answer
    if (!ack.done && ack.nextOffset === out.ackedBytes && out.sentBytes > ack.nextOffset) {
      // The backup skipped a chunk that came ahead of a missing one (a send queue dropped
      // it, or the network reordered): send the window again from the gap, once per gap;
      // the answers to the other chunks after it say the same and change nothing.
      if (ack.nextOffset !== out.resentFrom && !this.resend(out, ack.nextOffset)) {
        this.abort(out.peer, "chunks lost");
      }
      return;
    }
    if (ack.nextOffset > out.ackedBytes || ack.done) {
      // Progress: only that holds off the stall timer (answers that repeat an offset are
      // no sign the transfer moves).
      out.stall.refresh();
      const now = this.deps.clock.monotonicMs();
      out.progressIntervalMs = 0.8 * out.progressIntervalMs + 0.2 * (now - out.progressAt);
      out.progressAt = now;
    }
    if (ack.nextOffset > out.ackedBytes) {
      out.ackedBytes = ack.nextOffset;
      out.idleResends = 0;
      while (out.unacked.length > 0) {
        const first = out.unacked[0]!;
        if (first.offset + first.data.length > out.ackedBytes) break;
        out.unacked.shift();
      }
      this.armRetry(out);
    }
    this.logProgress(out);
    if (ack.done) {
      this.deps.clock.clearTimeout(out.stall);
      this.clearRetry(out);
      this.outgoing.delete(out.peer);
      void out.iterator.return?.();
      const seconds = (this.deps.clock.wallMs() - out.startedAt) / 1000;
      this.deps.logger.info(
        {
          event: "state_transfer",
          peer: out.peer,
          index: out.meta.index,
          bytes: out.totalBytes,
          seconds,
          accepted: ack.accepted,
          resentChunks: out.resentChunks,
        },
        `state transfer to node ${out.peer} ${ack.accepted ? "finished" : "not needed"}: ${out.totalBytes} bytes in ${seconds.toFixed(2)} s${out.resentChunks === 0 ? "" : `, ${out.resentChunks} chunks sent again`}`,
      );
      this.deps.onSent(out.peer, true, out.meta.index);
      return;
    }
    void this.pump(out);
  }

  private logProgress(out: Outgoing): void {
    const tenth = out.totalBytes === 0 ? 10 : Math.floor((out.ackedBytes * 10) / out.totalBytes);
    if (tenth <= out.lastLoggedTenth) return;
    out.lastLoggedTenth = tenth;
    this.deps.logger.info(
      {
        event: "state_transfer_progress",
        peer: out.peer,
        bytes: out.ackedBytes,
        totalBytes: out.totalBytes,
      },
      `state transfer to node ${out.peer}: ${tenth * 10}%`,
    );
  }

  private abort(peer: NodeId, reason: string): void {
    const out = this.outgoing.get(peer);
    if (out === undefined) return;
    this.end(out, reason);
    this.failLater(peer, out.meta.index);
  }

  /** Stops sending `out` (its timers, its reader) and logs why. */
  private end(out: Outgoing, reason: string): void {
    this.deps.clock.clearTimeout(out.stall);
    this.clearRetry(out);
    this.outgoing.delete(out.peer);
    void out.iterator.return?.();
    this.deps.logger.warn(
      { event: "state_transfer", peer: out.peer, reason },
      `state transfer to node ${out.peer} aborted: ${reason}`,
    );
  }

  private failLater(peer: NodeId, snapshotIndex: number): void {
    this.deps.clock
      .setTimeout(() => {
        if (!this.closed) this.deps.onSent(peer, false, snapshotIndex);
      }, RETRY_DELAY_MS)
      .unref();
  }

  /** The connection to `peer` dropped: a transfer to it starts over. */
  peerDown(peer: NodeId): void {
    if (this.outgoing.has(peer)) this.abort(peer, "connection lost");
  }

  // ---------------------------------------------------------------- receiving

  private onChunk(chunk: SnapshotChunk): void {
    if (chunk.term < this.deps.term()) return;
    if (chunk.snapshotIndex <= this.heldIndex()) {
      // Not newer than the state this node holds or is installing (a retry that crossed an
      // install, say, or the master's next transfer of a snapshot adopted here whose answer
      // was lost): storage cannot receive it, or would only throw it away at its end, and
      // the master learns it was not needed. The core still answers the master with how far
      // its log reaches: the master's replication of this node waits for that answer, and
      // if the one to the install was lost it would otherwise send this very snapshot again
      // and again. It refuses it (see heldIndex), so nothing is adopted without its bytes.
      const meta = { index: chunk.snapshotIndex, term: chunk.snapshotTerm };
      const adopt = this.deps.onReceived(chunk.from, chunk.term, meta);
      assert(!adopt, `adopted snapshot ${meta.index}, not newer than the one held or installing`);
      this.ack(chunk, chunk.totalBytes, true, false);
      return;
    }
    let session = this.incoming;
    // The same snapshot from the same node (also resent in a later term, by the same
    // master re-elected): size and checksum too, since a node wiped and rejoined could
    // send other bytes under the same index.
    const same =
      session !== null &&
      session.from === chunk.from &&
      session.meta.index === chunk.snapshotIndex &&
      session.meta.term === chunk.snapshotTerm &&
      session.totalBytes === chunk.totalBytes &&
      session.crc32 === chunk.crc32 &&
      !session.done;
    if (!same) {
      if (chunk.offset !== 0) {
        this.ack(chunk, 0, false, false);
        return;
      }
      session = this.begin(chunk);
    }
    const s = session!;
    this.armIdle(s);
    // The core is told the term of the transfer that finished it: one from an earlier term
    // would be refused as stale, and the whole snapshot sent again.
    s.term = Math.max(s.term, chunk.term);
    const end = chunk.offset + chunk.data.length;
    if (end <= s.queuedEnd && chunk.data.length > 0) {
      // Bytes it has, or will have once the queue is written: no need to keep them. It is
      // answered (the answer to the first copy may have been lost), after the writes
      // before it, once however many copies come meanwhile.
      if (!s.answerQueued) {
        s.answerQueued = true;
        const header = { ...chunk, data: NO_BYTES };
        s.queue = s.queue.then(() => {
          s.answerQueued = false;
          if (!s.done && this.incoming === s) this.ack(header, s.received, false, false);
        });
      }
      return;
    }
    if (chunk.offset <= s.queuedEnd) s.queuedEnd = Math.max(s.queuedEnd, end);
    s.queue = s.queue
      .then(() => this.writeChunk(s, chunk))
      .catch((error: unknown) => {
        this.endIncoming(s);
        if (this.isBug(error)) return;
        this.deps.logger.error(
          { event: "state_transfer", from: s.from, err: error },
          "receiving a snapshot failed",
        );
        this.discard(s.receiver);
      });
  }

  /**
   * The newest snapshot this node holds or is installing: storage's newest, or one the core
   * adopted that waits for its install or is being made durable (storage has it only once
   * `finish` is done; until then a transfer of it, or of an older one, began a whole new
   * session, received to be thrown away). The core adopts a snapshot only beyond its
   * commit index, and the adoption raises that index to the snapshot's, which it never
   * lowers: the core refuses anything at or below this, so answering "not needed" early
   * turns away nothing it would adopt. A snapshot leaves `finishing` once its install
   * ended, failed too: then only storage's newest (and the core) say what the node holds,
   * and a node whose install failed is not kept from a snapshot it still needs.
   */
  private heldIndex(): number {
    let held = this.deps.storage.snapshot().index;
    for (const index of this.adopted.keys()) held = Math.max(held, index);
    for (const index of this.finishing) held = Math.max(held, index);
    return held;
  }

  private begin(chunk: SnapshotChunk): Incoming {
    const old = this.incoming;
    if (old !== null && !old.done) {
      this.discard(old.receiver);
      this.endIncoming(old);
    }
    // A configuration that does not decode is left out: the snapshot then keeps the one
    // this node had, as a snapshot written before configurations were sent along did.
    const config = decodeConfiguration(chunk.config);
    const clusterId = decodeClusterId(chunk.config);
    const meta = {
      index: chunk.snapshotIndex,
      term: chunk.snapshotTerm,
      ...(config === null ? {} : { config }),
      ...(clusterId === null ? {} : { clusterId }),
    };
    const session: Incoming = {
      from: chunk.from,
      term: chunk.term,
      meta,
      totalBytes: chunk.totalBytes,
      crc32: chunk.crc32,
      startedAt: this.deps.clock.wallMs(),
      receiver: this.deps.storage.receiveSnapshot(meta),
      queue: Promise.resolve(),
      received: 0,
      queuedEnd: 0,
      answerQueued: false,
      done: false,
      restore: this.deps.beginRestore?.() ?? null,
      writing: false,
      idle: null,
    };
    this.incoming = session;
    this.deps.logger.info(
      {
        event: "state_transfer",
        from: chunk.from,
        index: meta.index,
        totalBytes: chunk.totalBytes,
      },
      `receiving snapshot ${meta.index} from node ${chunk.from}: ${chunk.totalBytes} bytes`,
    );
    return session;
  }

  private async writeChunk(s: Incoming, chunk: SnapshotChunk): Promise<void> {
    if (s.done || this.incoming !== s) return;
    const receiver = await s.receiver;
    const before = receiver.receivedBytes;
    const end = chunk.offset + chunk.data.length;
    const writing = receiver.write(chunk.offset, chunk.data);
    // Handled below; this only keeps a failure from counting as unhandled should the
    // restore throw a bug first.
    writing.catch(() => undefined);
    // The restore reads the new bytes while the file takes them (the write runs off the
    // event loop); should the write fail, the session ends and its restore with it.
    if (chunk.offset <= before && end > before) {
      this.feedRestore(s, chunk.data.subarray(before - chunk.offset));
    }
    s.writing = true;
    try {
      s.received = await writing;
    } finally {
      s.writing = false;
    }
    // Dropped while the write was under way: what it held is gone already.
    if (s.done) return;
    this.armIdle(s);
    assert(
      s.received === Math.max(before, chunk.offset <= before ? end : before),
      "the snapshot receiver wrote other bytes than the restore read",
    );
    if (s.received < s.totalBytes) {
      this.ack(chunk, s.received, false, false);
      return;
    }
    // The session ends here: what the restore read goes with the adoption, or nowhere (a
    // whole state must not stay in memory until the next transfer begins).
    const restore = s.restore;
    this.endIncoming(s);
    if (receiver.dataCrc32 !== s.crc32) {
      this.deps.logger.error(
        { event: "state_transfer", from: s.from },
        "received snapshot fails its checksum; asking again",
      );
      this.deps.onChecksumFailed();
      await receiver.abort();
      this.ack(chunk, 0, false, false);
      return;
    }
    const adopt = this.deps.onReceived(s.from, s.term, s.meta);
    if (adopt) {
      // The core adopts a snapshot only beyond its commit index, which an adoption raises.
      assert(!this.adopted.has(s.meta.index), `snapshot ${s.meta.index} adopted twice`);
      this.adopted.set(s.meta.index, { receiver, restore });
    } else await receiver.abort();
    this.ack(chunk, s.received, true, adopt);
  }

  /**
   * Hands the bytes being written to the restore reading them. Bytes it cannot read are
   * the snapshot's problem, not this node's: the restore is dropped, and the state is read
   * from the file should the snapshot be adopted (which then fails the same way).
   */
  private feedRestore(s: Incoming, bytes: Uint8Array): void {
    if (s.restore === null) return;
    try {
      s.restore.push(bytes);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      s.restore = null;
      this.deps.logger.warn(
        { event: "state_transfer", from: s.from, index: s.meta.index, err: error },
        "the snapshot being received does not read as a state; it will be read again from disk if adopted",
      );
    }
  }

  /** (Re)starts the timer that drops `s` should no chunk come for a while. */
  private armIdle(s: Incoming): void {
    if (s.idle !== null) this.deps.clock.clearTimeout(s.idle);
    s.idle = null;
    if (s.done || this.closed) return;
    s.idle = this.deps.clock.setTimeout(
      () => this.onIdle(s),
      INCOMING_IDLE_STALLS * this.deps.stallMs,
    );
  }

  private onIdle(s: Incoming): void {
    s.idle = null;
    if (s.done || this.incoming !== s || this.closed) return;
    // A write that takes this long is the disk's stall, not the master's: wait for it.
    if (s.writing) {
      this.armIdle(s);
      return;
    }
    this.deps.logger.warn(
      {
        event: "state_transfer",
        from: s.from,
        index: s.meta.index,
        receivedBytes: s.received,
        totalBytes: s.totalBytes,
      },
      `dropped snapshot ${s.meta.index} from node ${s.from} after ${s.received} of ${s.totalBytes} bytes: no chunk for ${INCOMING_IDLE_STALLS * this.deps.stallMs} ms`,
    );
    this.discard(s.receiver);
    this.endIncoming(s);
  }

  /** `s` received its last chunk, failed or was dropped: it holds nothing more. */
  private endIncoming(s: Incoming): void {
    s.done = true;
    s.restore = null;
    if (s.idle !== null) this.deps.clock.clearTimeout(s.idle);
    s.idle = null;
  }

  private ack(chunk: SnapshotChunk, nextOffset: number, done: boolean, accepted: boolean): void {
    const ack: SnapshotAck = {
      type: "snapshot_ack",
      from: this.deps.id,
      to: chunk.from,
      term: this.deps.term(),
      snapshotIndex: chunk.snapshotIndex,
      nextOffset,
      done,
      accepted,
    };
    this.deps.transport.send(ack);
  }

  /**
   * Makes the adopted snapshot at `meta` durable (the core's Ready says so), and returns
   * the restore that read its state as it arrived, for the runtime to install, or null
   * when the state must be read from storage. Readies come in the order of adoption, so
   * an older snapshot still waiting here was superseded before the core handed it out: it
   * is dropped.
   */
  async finishReceived(meta: SnapshotMeta): Promise<IncrementalRestore | null> {
    const adopted = this.adopted.get(meta.index);
    assert(
      adopted !== undefined,
      `state transfer: snapshot ${meta.index} adopted but not received`,
    );
    this.adopted.delete(meta.index);
    for (const [index, older] of this.adopted) {
      if (index > meta.index) continue;
      this.adopted.delete(index);
      this.discard(Promise.resolve(older.receiver));
    }
    // Held until storage has it as its newest (see heldIndex), or the install failed.
    this.finishing.add(meta.index);
    try {
      await adopted.receiver.finish();
    } finally {
      this.finishing.delete(meta.index);
    }
    return adopted.restore;
  }

  /**
   * Stops sending and receiving, and resolves once what was being received is dropped: its
   * temporary files are removed (a file's removal waits for a write under way on it, as
   * closing a file does). Temporary file
   * names are unique only within one storage instance (a counter that starts over when
   * storage is opened again), so a node restarted in the same process, receiving the same
   * snapshot, could otherwise have its new file removed by this node's late removal (or
   * storage's recovery fail on a file removed under it). Never rejects: a removal that
   * fails is logged (recovery removes the file at the next start), a bug goes to onFatal.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const peer of [...this.outgoing.keys()]) {
      const out = this.outgoing.get(peer)!;
      this.deps.clock.clearTimeout(out.stall);
      this.clearRetry(out);
      void out.iterator.return?.();
    }
    this.outgoing.clear();
    const incoming = this.incoming;
    if (incoming !== null && !incoming.done) {
      this.discard(incoming.receiver);
      this.endIncoming(incoming);
    }
    for (const { receiver } of this.adopted.values()) this.discard(Promise.resolve(receiver));
    this.adopted.clear();
    // Not the write under way: a disk that hangs would hang the stop with it. Dropping its
    // receiver closes the file under it; the write then fails, and drops nothing more.
    while (this.discarding.size > 0) await Promise.allSettled([...this.discarding]);
  }

  /**
   * Drops what a receiver holds (its temporary file), tracked until done for `close`. A
   * failure to do so changes nothing (recovery removes temporary files), unless it is a bug.
   */
  private discard(receiver: Promise<SnapshotReceiver>): void {
    const dropping = receiver
      .then((r) => r.abort())
      .catch((error: unknown) => {
        if (this.isBug(error)) return;
        this.deps.logger.warn(
          { event: "state_transfer", err: error },
          "dropping a received snapshot failed; its temporary file is removed at the next start",
        );
      });
    this.discarding.add(dropping);
    void dropping.finally(() => this.discarding.delete(dropping));
  }

  /** Hands a bug to `onFatal` and says so; other failures are the caller's to handle. */
  private isBug(error: unknown): boolean {
    if (!(error instanceof AssertionError)) return false;
    this.deps.onFatal(error);
    return true;
  }
}
