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
import {
  type Configuration,
  decodeConfiguration,
  initialConfiguration,
  type MemberChange,
} from "../core/configuration.js";
import { Prng } from "../core/prng.js";
import { type CoreEvent, type Ready, Replica, type RoleEvent } from "../core/replica.js";
import type {
  Entry,
  ForwardProposal,
  ForwardProposalResponse,
  ForwardRead,
  ForwardSwitchover,
  ForwardSwitchoverResponse,
  Message,
  NodeId,
  SnapshotMeta,
  WireMessage,
} from "../protocol/messages.js";
import type { MemberStatus, NodeStatus, Role } from "../protocol/status.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import { type Clock, realClock, type Timer } from "../shared/clock.js";
import {
  BusyError,
  ClusterError,
  ConflictError,
  IndeterminateError,
  InvalidInputError,
  NoMasterError,
  NotMasterError,
  RETRY_ADVICE,
  ShuttingDownError,
  StorageFailedError,
  SwitchoverFailedError,
  TimeoutError,
  TooLargeError,
} from "../shared/errors.js";
import { type HealthAnswer, type HealthCheck, healthAnswer } from "../shared/health.js";
import type { StateMachine } from "../shared/state-machine.js";
import {
  configAt,
  configsAfter,
  type DataIdentity,
  type IdentityStore,
  removedAfter,
  sameConfigs,
} from "../storage/identity-store.js";
import { storagePendingBytesMax } from "../storage/limits.js";
import type { OpenedStorage, SnapshotReader, Storage } from "../storage/storage.js";
import { parseAddress } from "../transport/address.js";
import {
  ADMITTED,
  type Admission,
  notAMember,
  type Transport,
  type UnknownCaller,
} from "../transport/transport.js";
import { unwrapCommand, wrapCommand } from "./entry-envelope.js";
import { FORWARDS_IN_FLIGHT_MAX, type ForwardCounters, Forwarder } from "./forwarder.js";
import { advertisedHttpUrl, type NodeConfig } from "./node-config.js";
import { StateTransfer, type TransferProgress } from "./state-transfer.js";

interface PendingProposal {
  readonly term: number;
  /** The clock's monotonic time when proposed, for the proposal latency metric. */
  readonly startedAt: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: Timer;
}

/**
 * Forwarded proposals of each backup whose answers a master remembers, to answer a copy
 * of one as its original was (see forwardAnswers). A copy trails its original by about one
 * network delay, in which a backup sends at most FORWARDS_IN_FLIGHT_MAX others: fewer kept,
 * a copy could find its original's answer gone and be proposed a second time. About ten
 * megabytes per backup that forwarded that many (a small answer each).
 */
const FORWARD_ANSWERS_KEPT = FORWARDS_IN_FLIGHT_MAX;

/** A master's answer to one forwarded proposal. */
type ForwardAnswer = Pick<ForwardProposalResponse, "outcome" | "index" | "entryTerm">;

/** Forwarded switchovers of each backup whose answers a master remembers. */
const SWITCHOVER_ANSWERS_KEPT = 64;

/**
 * Keeps `answer` as the one given to `peer`'s request `requestId`, with at most `kept` of
 * each peer's newest (the oldest goes first).
 */
function keepAnswer<A>(
  answers: Map<NodeId, Map<number, A>>,
  peer: NodeId,
  requestId: number,
  answer: A,
  kept: number,
): void {
  let ofPeer = answers.get(peer);
  if (ofPeer === undefined) {
    ofPeer = new Map();
    answers.set(peer, ofPeer);
  }
  ofPeer.set(requestId, answer);
  if (ofPeer.size > kept) ofPeer.delete(ofPeer.keys().next().value as number);
}

/** Entries read to size a backup's lag in bytes; beyond it the size is scaled up. */
const LAG_SCAN_ENTRIES_MAX = 4096;

/**
 * The largest command `propose` takes, in bytes. A log entry travels whole in one peer
 * frame (16 MiB at most) with its envelope and the append around it; a larger command
 * would be stored on the master and then dropped on every link, stalling every write
 * after it. Half the frame leaves room for all of that.
 */
export const COMMAND_BYTES_MAX = 8 * 1024 * 1024;

/**
 * Most entries a master keeps, past its usual compaction, for a backup catching up after
 * a state transfer (see installWaitFloor; the bytes are `transferCatchUpBytesMax`).
 */
const INSTALL_HOLD_ENTRIES_MAX = 1_000_000;

interface PendingRead {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: Timer;
  index: number | null;
}

/** Where the master role went: the answer of a switchover. */
export interface SwitchoverOutcome {
  readonly master: NodeId;
  readonly term: number;
}

/** A switchover this node asked for, waiting to see a new master in a newer term. */
interface PendingSwitchover {
  readonly startTerm: number;
  readonly previousMaster: NodeId;
  /** The backup that must take over; null until the master has chosen one. */
  target: NodeId | null;
  readonly requestId: number;
  readonly resolve: (outcome: SwitchoverOutcome) => void;
  readonly reject: (error: Error) => void;
  readonly timer: Timer;
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

/** A role change, as `node.on("role", ({ role, term, masterId }) => …)` receives it. */
export type { RoleEvent };

export interface NodeEvents {
  /**
   * This node's role or the master it follows changed: `role`, `term`, `masterId` (null
   * while none is known), `reason` in words, `preVote` (a pre-candidate, not yet asking
   * for votes for real) and `handover` (part of a switchover).
   */
  role: [RoleEvent];
  failover: [FailoverEvent];
  fatal: [Error];
  applied: [number];
  peer: [PeerEvent];
  /** A proposal of this node was applied: milliseconds from propose to applied. */
  proposal: [number];
  /**
   * The tick timer fired: milliseconds it ran late, beyond `tickMs` after the previous
   * tick (the event loop was busy, or the process did not get a CPU). The protocol counts
   * ticks, so a late tick is time its clocks did not see.
   */
  tickDelay: [number];
}

export interface BatonNodeDeps {
  readonly config: NodeConfig;
  readonly opened: OpenedStorage;
  readonly transport: Transport;
  readonly stateMachine: StateMachine;
  readonly logger: Logger;
  /**
   * The data directory's member incarnation, in every vote and acknowledgement this node
   * sends (see src/storage/identity-store.ts); 0 for a node without one (memory storage).
   */
  readonly incarnation?: number;
  /**
   * Where the newest committed configuration is kept (src/storage/identity-store.ts), so
   * that one compacted into a snapshot survives a restart; null with memory storage.
   */
  readonly identity?: IdentityStore | null;
  /** Time and timers; the simulator passes its virtual clock. @default realClock */
  readonly clock?: Clock;
  /** Seeds the core's election jitter, so a simulated run replays. @default a random seed */
  readonly seed?: number;
}

/** A membership change this node proposed, settled when its entry is applied. */
interface PendingChange {
  readonly term: number;
  readonly resolve: (outcome: MemberChangeOutcome) => void;
  readonly reject: (error: Error) => void;
  readonly timer: Timer;
}

/** What a committed membership change answers: the members after it. */
export interface MemberChangeOutcome {
  readonly index: number;
  readonly members: Configuration;
}

/**
 * One node of a cluster. `R` is what the state machine's `apply` returns, which `propose`
 * resolves with (createNode infers it from the state machine).
 */
export class BatonNode<R = unknown> extends EventEmitter<NodeEvents> {
  readonly id: NodeId;
  /** This data directory's member incarnation (see BatonNodeDeps.incarnation). */
  readonly incarnation: number;
  private readonly identityStore: IdentityStore | null;
  readonly config: NodeConfig;
  private readonly replica: Replica;
  private readonly storage: Storage;
  private readonly transport: Transport;
  private readonly sm: StateMachine;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly transfer: StateTransfer;
  private readonly forwarder: Forwarder;
  /**
   * The answer given to each of the last FORWARD_ANSWERS_KEPT forwarded proposals of each
   * backup, by request id (oldest first). A copy of a forward that arrives after its
   * original (a network that delivers a message twice: the simulator's does, TCP never
   * does) gets the very same answer and is never proposed: otherwise a copy refused while
   * the original was proposed told the backup "not applied" of a write that was, and a
   * copy that arrived after a refusal was proposed although the backup had said "not
   * applied". A backup sends each request id once (see Forwarder).
   */
  private readonly forwardAnswers = new Map<NodeId, Map<number, ForwardAnswer>>();
  /** The answers to backups' forwarded switchovers, kept as forwardAnswers are. */
  private readonly switchoverAnswers = new Map<
    NodeId,
    Map<number, Pick<ForwardSwitchoverResponse, "outcome" | "target">>
  >();
  /** Read-index requests of backups, by the core's read id: answered once confirmed. */
  private readonly peerReads = new Map<
    number,
    { readonly peer: NodeId; readonly requestId: number }
  >();
  /**
   * Peers the transport can send to now. A forward is sent only to a connected master: a
   * forward queued for a peer that is down might be delivered long after its caller was
   * told anything, so it is held instead, and a held forward provably was not applied.
   */
  private readonly connected = new Set<NodeId>();
  private readonly switchovers = new Set<PendingSwitchover>();

  private timer: Timer | null = null;
  /** The clock's monotonic time of the previous tick, for its lateness. */
  private lastTickAt: number | null = null;
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();
  /** While a received snapshot is being installed, later Readies wait in the chain. */
  private installing = 0;
  /** Snapshot installs queued in the chain that have not begun. */
  private installsQueued = 0;
  /** Settles once the newest snapshot install queued in the chain has run. */
  private lastInstall: Promise<void> = Promise.resolve();
  /** Backups sent a snapshot (by its index) that they may still be installing. */
  private readonly installWaits = new Map<NodeId, number>();
  /** The newest term known durable (a Ready that set it finished its fsync). */
  private durableTerm: number;
  private stopped = false;
  private failure: Error | null = null;

  private readonly proposals = new Map<number, PendingProposal>();
  private readonly reads = new Map<number, PendingRead>();
  /** Callers of waitForMaster, until this node knows a master or stops. */
  private readonly masterWaiters = new Set<{
    readonly resolve: (master: NodeId) => void;
    readonly reject: (error: Error) => void;
    readonly timer: Timer;
  }>();
  private readonly readsByIndex: PendingRead[] = [];
  /**
   * Ids of reads and switchovers this process asks for, also sent to the master. They
   * start at a random point in each process: a master may still hold a request of this
   * node's previous process and answer it after the restart, and that answer must not
   * match a request of this one (a read would be served at an old index).
   */
  private nextReadId: number;
  private appliedIndex: number;
  private snapshotIndex: number;
  /** Saves of the identity file queued and not yet settled (see maybeSnapshot). */
  private identitySavesPending = 0;
  /** Bytes of the commands applied since the newest snapshot was taken or installed. */
  private bytesSinceSnapshot = 0;
  private snapshotting = false;
  /** Settles when the snapshot under way (if any) is stored, or failed the node. */
  private snapshotDone: Promise<void> = Promise.resolve();
  private readonly lastHeard = new Map<NodeId, number>();
  private lastMasterContact: { id: NodeId; at: number } | null = null;
  private roleSince: number;
  /** Counters for metrics. */
  readonly counters = {
    proposals: 0,
    elections: 0,
    failovers: 0,
    /** Times this node became master because the master handed the role over. */
    switchovers: 0,
    /** Peer messages that broke a protocol rule; each closed the link it came on. */
    peerViolations: 0,
    /**
     * Votes and acknowledgements dropped because the configuration does not list their
     * sender, or lists another incarnation of it (a wiped data directory, say).
     */
    ignoredAnswers: 0,
    /**
     * Copies of forwarded proposals that arrived after their original (a network that
     * delivers a message twice), answered as the original was and not proposed again.
     */
    forwardCopies: 0,
    /** Appends from the master dropped while the disk was too far behind (sent again). */
    appendsDeferred: 0,
    /** Writes refused as busy while the disk was too far behind. */
    busyDisk: 0,
    appliedEntries: 0,
    /**
     * Snapshots received by state transfer that failed their checksum (asked for again):
     * a sender's damaged disk, or a bug. Nonzero deserves a look.
     */
    snapshotChecksumFailures: 0,
  };

  private constructor(deps: BatonNodeDeps, replica: Replica, appliedIndex: number) {
    super();
    const requestIdBase = new Prng(((deps.seed ?? 0) ^ 0x7f4a7c15) >>> 0).int(1, 2 ** 40);
    this.nextReadId = requestIdBase;
    this.config = deps.config;
    this.id = deps.config.id;
    for (const p of deps.config.peers) if (p.id !== this.id) this.linkedPeers.add(p.id);
    this.incarnation = deps.incarnation ?? 0;
    this.identityStore = deps.identity ?? null;
    this.replica = replica;
    this.storage = deps.opened.storage;
    this.transport = deps.transport;
    this.sm = deps.stateMachine;
    this.log = deps.logger;
    this.clock = deps.clock ?? realClock;
    this.roleSince = this.clock.wallMs();
    this.appliedIndex = appliedIndex;
    this.snapshotIndex = appliedIndex;
    this.durableTerm = deps.opened.hardState.term;
    this.transfer = new StateTransfer({
      id: this.id,
      storage: this.storage,
      transport: this.transport,
      logger: this.log,
      clock: this.clock,
      chunkBytes: this.config.transferChunkBytes,
      stallMs: this.config.transferStallMs,
      term: () => this.replica.term,
      configAt: (index) => this.replica.configAt(index),
      clusterId: () => this.replica.clusterId,
      onSent: (peer, ok, snapshotIndex) => this.onTransferSent(peer, ok, snapshotIndex),
      onChecksumFailed: () => {
        this.counters.snapshotChecksumFailures++;
      },
      onReceived: (from, term, meta) => this.onTransferReceived(from, term, meta),
      onFatal: (error) => this.fail(error),
      beginRestore: this.sm.beginRestore?.bind(this.sm),
    });
    // The configuration the node starts with: a later one (a snapshot by state transfer)
    // may drop a member without this node ever applying its removal, and the link it then
    // forgets must still name the incarnation removed (see maybeForgetPeers).
    for (const member of replica.members) {
      if (member.id === this.id) continue;
      this.startedWith.set(member.id, {
        incarnation: member.incarnation,
        address: this.addressOf(member),
      });
    }
    // The members the committed configurations removed, as the identity file kept them: a
    // restarted node whose configuration no longer lists a member still knows which
    // incarnation was removed, and so admits that id when it comes back as another (see
    // admit) rather than refusing every incarnation of it.
    // So does a member the last committed configuration this node saved lists, and the
    // newest one in its log no longer does: restarted before it applied that member's
    // removal, the node would otherwise not know which incarnation the log removed, and
    // once it forgot the link it would refuse every incarnation of that id, the one added
    // back included, even as master (see maybeForgetPeers).
    const saved = deps.identity?.identity() ?? null;
    for (const member of [
      ...(saved?.joinedConfig ?? []),
      ...(saved?.appliedConfig?.config ?? []),
    ]) {
      if (member.id === this.id || replica.members.some((m) => m.id === member.id)) continue;
      this.lastListed.set(member.id, {
        incarnation: member.incarnation,
        address: this.addressOf(member),
      });
    }
    for (const gone of saved?.removed ?? []) {
      if (replica.members.some((m) => m.id === gone.id)) continue;
      const address = this.addressOf(gone);
      const known = { incarnation: gone.incarnation, address };
      this.lastListed.set(gone.id, known);
      // A peer of the command line is linked now and departs once the link is forgotten
      // (maybeForgetPeers); any other already has.
      if (address !== "" && this.config.peers.every((p) => p.id !== gone.id)) {
        this.departed.set(gone.id, known);
      }
    }
    // The address the members know this node by: the command line's, or the one the
    // configuration it joined with records.
    const ownAddress =
      this.config.peers.find((p) => p.id === this.id)?.address ??
      replica.members.find((m) => m.id === this.id)?.peerAddress ??
      "";
    this.transport.setMemberIdentity?.({ incarnation: this.incarnation, peerAddress: ownAddress });
    this.transport.onUnknownPeer?.((caller) => this.admit(caller));
    this.forwarder = new Forwarder({
      id: this.id,
      firstRequestId: requestIdBase,
      logger: this.log,
      clock: this.clock,
      requestTimeoutMs: this.config.requestTimeoutMs,
      role: () => this.replica.role,
      acceptsWrites: () => this.replica.switchoverTarget === null,
      masterId: () => this.replica.masterId,
      term: () => this.replica.term,
      appliedIndex: () => this.appliedIndex,
      sendProposal: (to, requestId, data) =>
        this.connected.has(to) &&
        this.sendForward({ type: "forward_proposal", ...this.envelope(to), requestId, data }),
      sendRead: (to, requestId) =>
        this.connected.has(to) &&
        this.sendForward({ type: "forward_read", ...this.envelope(to), requestId }),
      proposeLocally: (data) => this.propose(data),
      readLocally: () => this.readBarrier(),
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
      bindIncarnations: config.bindIncarnations,
      drawClusterId: true,
    };
    const identity = deps.identity?.identity() ?? null;
    // A stored snapshot holds no configuration: the identity's, in force at the snapshot's
    // index, stands in for it; any config entry after the snapshot is still in the log, and
    // the newest one there takes effect. Not the newest committed one: the node would send
    // the snapshot to a backup with a configuration of a later index, and the backup apply
    // the entries in between over it (a member removed and added back read its removal as
    // its own). An identity that does not know it (written before it was kept) gives the
    // newest committed one, as before.
    const snapshotConfig =
      identity === null
        ? null
        : (configAt(identity, opened.snapshot.index) ?? identity.appliedConfig?.config ?? null);
    const restored =
      snapshotConfig === null
        ? opened
        : { ...opened, snapshot: { ...opened.snapshot, config: snapshotConfig } };
    const joined = identity?.joinedConfig ?? null;
    const seed = deps.seed ?? randomInt(2 ** 31);
    const replica = new Replica(replicaConfig, new Prng(seed), restored, {
      join: config.join,
      incarnation: deps.incarnation ?? 0,
      initialConfiguration: initialConfiguration(
        config.peers.map((p) => p.id),
        new Map(config.peers.map((p) => [p.id, { peerAddress: p.address, httpUrl: "" }])),
      ),
      ...(joined === null ? {} : { configuration: joined }),
      clusterId: identity?.clusterId ?? null,
      // An empty data directory with no cluster id and nothing learned with --join waits
      // for its peers before it votes (the bootstrap gate, see Replica). Memory storage
      // (tests, embedding without a data directory) has no identity and is not gated.
      ...(identity === null || joined !== null
        ? {}
        : { gate: config.join ? "rejoin" : "bootstrap" }),
    });
    if (replica.isGated) {
      logger.info(
        { event: "bootstrap", gate: config.join ? "rejoin" : "bootstrap" },
        config.join
          ? "empty data directory started with a bare --join: asking the peers whether the cluster welcomes this member"
          : "empty data directory: asking the peers whether they start empty too before voting (bootstrap)",
      );
    }
    if (replica.isJoining) {
      logger.warn(
        { event: "joining" },
        "this node lost its data and is rejoining: it will not vote or campaign until a master has caught it up",
      );
    } else if (config.join && !replica.isGated) {
      logger.warn(
        { event: "joining", term: opened.hardState.term, lastIndex: replica.lastIndex },
        "--join ignored: the data directory holds this node's state; --join is for a node whose data was wiped",
      );
    }
    if (replica.clusterId !== null) deps.transport.setClusterUid?.(replica.clusterId);
    const node = new BatonNode({ ...deps, seed }, replica, opened.snapshot.index);
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
    node.timer = node.clock.setInterval(() => node.onTick(), config.tickMs);
    node.schedule();
    return node;
  }

  private wire(): void {
    this.transport.onMessage((message) => {
      if (this.stopped) return;
      if (this.onForwardMessage(message)) return;
      if (this.transfer.handles(message)) {
        this.transfer.onMessage(message);
        return;
      }
      const m = message as Message;
      if (m.type === "append" && m.entries.length > 0 && this.diskBehind()) {
        // The disk is too far behind: the master sends these entries again (its pipeline
        // waits for them), and heartbeats still keep this node a backup meanwhile.
        this.counters.appendsDeferred++;
        return;
      }
      const fromMaster =
        (m.type === "append" || m.type === "heartbeat") && m.term >= this.replica.term;
      const stepped = this.replica.step(m);
      if (!stepped.ok) {
        // A peer's mistake (or a forgery) is input: close its link, never this node.
        this.counters.peerViolations++;
        this.transport.closePeerConnection(m.from, `${m.type}: ${stepped.violation}`);
        return;
      }
      if (stepped.ignored !== undefined) {
        this.counters.ignoredAnswers++;
        this.logIgnored(m.from, stepped.ignored, stepped.detail);
        return;
      }
      this.lastHeard.set(m.from, this.clock.wallMs());
      if (fromMaster) this.lastMasterContact = { id: m.from, at: this.clock.wallMs() };
      this.schedule();
    });
    this.transport.onPeerUp((peer) => {
      if (this.stopped) return;
      this.connected.add(peer);
      this.emit("peer", { peer, up: true, reason: null });
      if (this.forwarder.inFlight > 0) this.forwarder.poll();
    });
    this.transport.onPeerDown((peer, reason) => {
      if (this.stopped) return;
      this.connected.delete(peer);
      this.emit("peer", { peer, up: false, reason });
      this.transfer.peerDown(peer);
      if (reason === "refused" || reason === "lost" || reason === "closed") {
        this.log.info({ event: "peer_down", peer, reason }, `connection to node ${peer} ${reason}`);
        this.replica.peerUnreachable(peer);
        this.schedule();
      }
    });
  }

  /** When each sender's ignored answers were last logged: one line a second at most. */
  private readonly ignoredLoggedAt = new Map<NodeId, number>();

  private logIgnored(from: NodeId, reason: string, detail: string): void {
    const now = this.clock.wallMs();
    if (now - (this.ignoredLoggedAt.get(from) ?? 0) < 1000) return;
    this.ignoredLoggedAt.set(from, now);
    this.log.warn(
      { event: "ignored_answer", peer: from, reason },
      `ignored an answer from node ${from}: ${detail}`,
    );
  }

  // ---------------------------------------------------------------- requests

  /**
   * Proposes `command` and resolves with the state machine's result once it is applied. On
   * a backup the command is forwarded to the master over the peer link (see Forwarder),
   * and the result is this node's own application of it. Throws BusyError, TimeoutError
   * (the command may still be applied), NoMasterError (it was not applied: no master, or
   * a new master replaced it before it committed), IndeterminateError (a forwarded
   * command whose master was lost before it answered), ShuttingDownError and
   * StorageFailedError (the node stopped), TooLargeError (a command over
   * COMMAND_BYTES_MAX, never proposed). Every one of them is a rejection of the returned
   * promise, never a synchronous throw: a caller needs one error path, not two.
   */
  propose(command: Uint8Array): Promise<R> {
    return rejectingThrows(() => this.proposeNow(command)) as Promise<R>;
  }

  private proposeNow(command: Uint8Array): Promise<unknown> {
    this.checkRunning();
    // From JavaScript anything may come: a string forwarded by a backup broke the peer
    // link it went on, and null or an ArrayBuffer failed with a TypeError or RangeError.
    if (!(command instanceof Uint8Array)) {
      throw new InvalidInputError(
        "command",
        "must be a Uint8Array (encode a string with new TextEncoder().encode(text))",
      );
    }
    if (command.byteLength > COMMAND_BYTES_MAX) {
      throw new TooLargeError("command", COMMAND_BYTES_MAX, command.byteLength);
    }
    if (this.replica.role !== "master") return this.forwarder.propose(command);
    if (this.diskBehind()) {
      this.counters.busyDisk++;
      throw new BusyError();
    }
    const result = this.replica.propose(wrapCommand(this.clock.wallMs(), command));
    if (!result.ok) {
      if (result.reason === "busy") throw new BusyError();
      return this.forwarder.propose(command); // stepped down in this very turn
    }
    this.counters.proposals++;
    this.schedule();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        // Only this proposal: another may have taken its index since (below).
        if (this.proposals.get(result.index)?.timer === timer) this.proposals.delete(result.index);
        reject(
          new TimeoutError(
            `the write did not commit within ${this.config.requestTimeoutMs} ms; it may still be applied`,
          ),
        );
      }, this.config.requestTimeoutMs);
      // A write this node proposed at the same index in an earlier term, kept through a
      // switchover, is no longer in its own log; whether a later master commits it cannot
      // be known here.
      const replaced = this.proposals.get(result.index);
      if (replaced !== undefined) {
        this.clock.clearTimeout(replaced.timer);
        replaced.reject(
          new IndeterminateError(
            `this node proposed another write at index ${result.index} in term ${result.term}; the earlier one may still be applied by another master`,
          ),
        );
      }
      const startedAt = this.clock.monotonicMs();
      this.proposals.set(result.index, { term: result.term, startedAt, resolve, reject, timer });
    });
  }

  /**
   * Resolves with the master's id once this node knows a master (itself, or another it
   * heard from in its current term): right after start, before the first election has
   * ended, a proposal is held for a master only briefly (FORWARD_HOLD_MS) and then fails
   * with NoMasterError, so a program that proposes at once waits here first. Rejects with
   * TimeoutError after `timeoutMs` (default: the request timeout), ShuttingDownError or
   * StorageFailedError when the node stops. A master may still be lost after this
   * resolves: a proposal's own errors say what became of it.
   */
  waitForMaster(options: { readonly timeoutMs?: number } = {}): Promise<NodeId> {
    return rejectingThrows(() => {
      this.checkRunning();
      const known = this.replica.masterId;
      if (known !== null) return Promise.resolve(known);
      const timeoutMs = options.timeoutMs ?? this.config.requestTimeoutMs;
      return new Promise<NodeId>((resolve, reject) => {
        const waiter = {
          resolve,
          reject,
          timer: this.clock.setTimeout(() => {
            this.masterWaiters.delete(waiter);
            reject(new TimeoutError(`no master was known within ${timeoutMs} ms`));
          }, timeoutMs),
        };
        this.masterWaiters.add(waiter);
      });
    });
  }

  /** Tells the callers of waitForMaster of the master this node knows now, if any. */
  private settleMasterWaiters(): void {
    if (this.masterWaiters.size === 0) return;
    const master = this.replica.masterId;
    if (master === null) return;
    for (const waiter of this.masterWaiters) {
      this.clock.clearTimeout(waiter.timer);
      waiter.resolve(master);
    }
    this.masterWaiters.clear();
  }

  /**
   * Resolves once this node's state machine reflects every write acknowledged before the
   * call (ReadIndex): a read made right after is linearizable. On a backup the master
   * confirms a read index and this node waits until it has applied it (a follower read).
   * Rejects (never throws) with TimeoutError, NoMasterError, BusyError, ShuttingDownError
   * or StorageFailedError.
   */
  readBarrier(): Promise<void> {
    return rejectingThrows(() => this.readBarrierNow());
  }

  private readBarrierNow(): Promise<void> {
    this.checkRunning();
    if (this.replica.role !== "master") return this.forwarder.read();
    const id = this.nextReadId++;
    const registered = this.replica.readIndex(id);
    if (!registered.ok) return this.forwarder.read();
    this.schedule();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
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

  /**
   * Hands the master role to backup `to`, or to the best-placed backup when null
   * (switchover): the master stops taking new writes, brings that backup up to its last
   * index and tells it to run at once. Resolves once this node sees the new master in a
   * newer term. Called on a backup, it asks the master. Writes pending at the old master
   * are not failed: they are in the new master's log and complete there.
   * Throws InvalidInputError (`to` is not a member), ConflictError (a switchover is under
   * way; the target or every backup is unreachable), NoMasterError (no master to ask),
   * SwitchoverFailedError (no new master in time: the old one serves on), TimeoutError
   * (asked of a backup: the master did not answer in time, and may still hand over), each
   * as a rejection of the returned promise.
   */
  switchover(to: NodeId | null = null): Promise<SwitchoverOutcome> {
    return rejectingThrows(() => this.switchoverNow(to));
  }

  private switchoverNow(to: NodeId | null): Promise<SwitchoverOutcome> {
    this.checkRunning();
    const master = this.replica.masterId;
    if (to !== null && to === master) {
      return Promise.resolve({ master: to, term: this.replica.term });
    }
    if (to !== null && !this.replica.members.some((m) => m.id === to)) {
      throw new InvalidInputError("to", `node ${to} is not a member of this cluster`);
    }
    if (master === null) throw new NoMasterError(200, "no master to hand over from: retry");
    return new Promise((resolve, reject) => {
      const waitMs = 3 * this.config.electionMsMax;
      const pending: PendingSwitchover = {
        startTerm: this.replica.term,
        previousMaster: master,
        target: to,
        requestId: this.nextReadId++,
        resolve,
        reject,
        timer: this.clock.setTimeout(() => {
          this.switchovers.delete(pending);
          // Asked of this master, the hand-over is over: it serves on. Forwarded to another,
          // the request may still be on its way (a link that dropped keeps its queue and
          // sends it when it comes back): that master may yet hand over.
          reject(
            master === this.id
              ? new SwitchoverFailedError(
                  `no new master took over within ${waitMs} ms; master ${master} serves on`,
                )
              : new TimeoutError(
                  `master ${master} did not answer the switchover within ${waitMs} ms; it may still hand over`,
                ),
          );
        }, waitMs),
      };
      this.switchovers.add(pending);
      if (master === this.id) {
        this.startSwitchover(pending, to);
      } else if (
        !this.connected.has(master) ||
        !this.sendForward({
          type: "forward_switchover",
          ...this.envelope(master),
          requestId: pending.requestId,
          target: to ?? 0,
        })
      ) {
        this.settleSwitchover(pending, new NoMasterError(200, `master ${master} is unreachable`));
      }
    });
  }

  get role(): Role {
    return this.replica.role;
  }

  /**
   * The answer to a load balancer's health check (`live`, `master`, `backup`), exactly as a
   * `baton start` node's `/health`, `/health/master` and `/health/backup` give it: for a
   * program that serves HTTP with its own framework (see `healthHandler`).
   */
  health(check: HealthCheck = "live"): HealthAnswer {
    return healthAnswer(this.id, this.status(), check, this.stoppedReason);
  }

  /** Why the node no longer runs (its fatal error, or a stop under way), or null. */
  get stoppedReason(): string | null {
    if (this.failure !== null) return this.failure.message;
    return this.stopped ? "it is shutting down" : null;
  }

  get masterId(): NodeId | null {
    return this.replica.masterId;
  }

  /** The current term, as `status().term` gives it without building the whole status. */
  get term(): number {
    return this.replica.term;
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

  /** Forwards this node made as a backup, and how they ended (for metrics). */
  get forwardCounters(): Readonly<ForwardCounters> {
    return this.forwarder.counters;
  }

  /**
   * On a master, hands the role to the best-placed backup before a planned stop; never
   * throws (a failure is logged and the caller stops anyway). On a backup, does nothing.
   */
  async handOver(): Promise<void> {
    const voters = this.replica.members.filter((m) => m.voter).length;
    if (this.stopped || this.replica.role !== "master" || voters < 2) return;
    try {
      const outcome = await this.switchover(null);
      this.log.info(
        { event: "shutdown", master: outcome.master, term: outcome.term },
        `handed the master role to node ${outcome.master} before stopping`,
      );
    } catch (error) {
      this.log.warn(
        { event: "shutdown", err: error },
        `could not hand the master role over before stopping: ${(error as Error).message}`,
      );
    }
  }

  /** Current state transfers, for status pages. */
  transfers(): TransferProgress[] {
    return this.transfer.progress();
  }

  /** The cluster id, once this node knows it (committed, or learned when it joined). */
  get clusterId(): string | null {
    return this.replica.clusterId;
  }

  status(): NodeStatus {
    const r = this.replica;
    const now = this.clock.wallMs();
    const progress = r.peerProgress();
    const peerStats = this.transport.stats().peers;
    // The configuration in effect decides who the members are; an address from the
    // command line wins over the one a configuration recorded.
    const listed = r.members.map((m) => ({
      id: m.id,
      address: this.addressOf(m),
    }));
    const members: MemberStatus[] = listed.map((peer) => {
      const self = peer.id === this.id;
      const pr = progress.get(peer.id);
      const stats = peerStats.find((p) => p.peer === peer.id);
      const heard = this.lastHeard.get(peer.id);
      return {
        id: peer.id,
        address: peer.address,
        httpUrl: self
          ? this.httpUrlOf(peer.id)
          : (this.transport.peerInfo(peer.id)?.httpUrl ??
            (r.members.find((m) => m.id === peer.id)?.httpUrl || null)),
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
        voter: r.members.find((m) => m.id === peer.id)?.voter ?? false,
        incarnation: r.members.find((m) => m.id === peer.id)?.incarnation ?? 0,
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
      incarnation: this.incarnation,
      clusterId: r.clusterId,
      changeInProgress: r.changeInProgress,
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
    if (id === this.id) return advertisedHttpUrl(this.config);
    return this.transport.peerInfo(id)?.httpUrl ?? null;
  }

  /** How long this node has held its current role, in ms. */
  roleAgeMs(): number {
    return this.clock.wallMs() - this.roleSince;
  }

  /**
   * Stops timers and the transport, finishes the chain, closes storage. Idempotent. With
   * `handOver`, a master first hands its role to the best-placed backup (switchover), so
   * that a planned restart costs the cluster no fail-over; if that fails, it stops anyway.
   */
  stop(options: { readonly handOver?: boolean } = {}): Promise<void> {
    // Every call resolves once the node has stopped: a second caller (a signal handler and
    // the program's own shutdown) must not go on while the directory is still locked. The
    // first call's options hold: a later one cannot add a hand-over to a stop under way.
    this.stopping ??= this.stopOnce(options);
    return this.stopping;
  }

  private stopping: Promise<void> | null = null;

  private async stopOnce(options: { readonly handOver?: boolean }): Promise<void> {
    if (options.handOver === true && !this.stopped) await this.handOver();
    // After a fatal error the node is stopped but still holds its sockets and files.
    this.stopped = true;
    if (this.timer !== null) this.clock.clearInterval(this.timer);
    this.failPending(new ShuttingDownError());
    const transferClosed = this.transfer.close();
    await this.transport.close();
    await this.chain.catch(() => {});
    // A snapshot being written, and the identity file behind it, finish before storage
    // closes: closing under them would fail them (a fatal error after the stop) and leave
    // the directory to a half-written snapshot once the lock is released. Not after a fatal
    // error: the disk may be what hangs, and the process must still exit for its supervisor.
    if (this.failure === null) {
      await this.snapshotDone;
      await this.identitySaved.catch(() => {});
      // So is a received snapshot's temporary file, dropped: its name comes back with the
      // next storage opened on the directory, in this process too.
      await transferClosed;
    }
    await this.storage.close().catch((error: unknown) => {
      rethrowIfBug(error);
      this.log.error({ event: "stop", err: error }, "closing storage failed");
    });
    this.log.info({ event: "stop" }, `node ${this.id} stopped`);
  }

  // ---------------------------------------------------------------- the loop

  private onTick(): void {
    if (this.stopped) return;
    const now = this.clock.monotonicMs();
    if (this.lastTickAt !== null) {
      this.emit("tickDelay", Math.max(0, now - this.lastTickAt - this.config.tickMs));
    }
    this.lastTickAt = now;
    this.replica.tick();
    this.maybeForgetPeers();
    if (this.forwarder.inFlight > 0) this.forwarder.poll();
    this.settleMasterWaiters();
    this.schedule();
  }

  /** Drains the core once per event-loop turn, so that inputs of one turn batch together. */
  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    this.clock.setImmediate(() => {
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
      this.checkSwitchovers();
    } catch (error) {
      this.fail(error);
    }
  }

  private handle(ready: Ready): void {
    for (const event of ready.events) this.onCoreEvent(event);
    this.sendAll(ready.messagesNow);
    const messages = this.sendUnbound(ready.messages);
    for (const peer of ready.transfers) this.transfer.start(peer);
    if (ready.snapshot !== null || this.installing > 0) {
      // Everything after a snapshot install waits for it, in order: its writes are handed
      // to storage only after the install. Each such step hands its writes over and queues
      // its finish (after its fsync) behind the steps already queued, without waiting for
      // the fsync itself: the Readies queued during a long install go to storage at once
      // after it, and the ones after them take the usual path again. Waiting for each
      // fsync here kept a node under load on this path, an fsync per Ready, for good.
      this.installing++;
      if (ready.snapshot !== null) this.installsQueued++;
      this.enqueue(async () => {
        if (ready.snapshot !== null) this.installsQueued--;
        try {
          // A node that failed or is stopping installs nothing more (a snapshot made
          // durable after a failed identity save would restart with an older configuration).
          if (this.stopped) return;
          if (ready.snapshot !== null && !(await this.adoptSnapshot(ready.snapshot))) return;
          this.write(ready);
        } finally {
          this.installing--;
        }
        const synced = this.storage.sync();
        if (this.installsQueued > 0) {
          // Another install waits in the chain: this Ready's finish (its entries applied)
          // must come before it, not after the state it installs.
          await synced;
          this.finish(ready, messages);
          return;
        }
        // Awaited in its own step, maybe after others failed; fail() hears of it there.
        synced.catch(() => {});
        this.enqueue(async () => {
          await synced;
          this.finish(ready, messages);
        });
      });
      if (ready.snapshot !== null) this.lastInstall = this.chain;
      return;
    }
    const synced = this.write(ready) ? this.storage.sync() : null;
    // The chain awaits it in turn, maybe long after it failed; fail() hears of it there.
    // Until then its failure must not count as unhandled: Node would exit on it at once.
    synced?.catch(() => {});
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

  /**
   * The state machine's `apply`, whose exception stops the node with a message that says
   * so (an assertion of Baton's own passes through as it is). Every node applies the same
   * entry and stops at it, and again after a restart: `apply` must not throw.
   */
  private applyCommand(
    entry: Entry,
    command: Uint8Array,
    timeMs: number,
    pending: PendingProposal | undefined,
  ): unknown {
    try {
      return this.sm.apply(command, { index: entry.index, term: entry.term, time: timeMs });
    } catch (error) {
      rethrowIfBug(error);
      const message = `the state machine's apply threw at log index ${entry.index} (${error instanceof Error ? error.message : String(error)}); apply must never throw: every node applies this entry and stops at it, again after a restart`;
      if (pending !== undefined) {
        this.clock.clearTimeout(pending.timer);
        pending.reject(new StorageFailedError(`the node stopped: ${message}`));
      }
      throw new Error(message, { cause: error });
    }
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
      if (entry.kind === "config") this.onConfigApplied(entry);
      if (entry.kind !== "command") {
        this.settleReplaced(pending, entry);
        this.forwarder.onApplied(entry, undefined);
        continue;
      }
      this.bytesSinceSnapshot += entry.data.length;
      const { timeMs, command } = unwrapCommand(entry.data);
      const result = this.applyCommand(entry, command, timeMs, pending);
      this.forwarder.onApplied(entry, result);
      if (pending === undefined) continue;
      if (pending.term !== entry.term) {
        this.settleReplaced(pending, entry);
      } else {
        this.clock.clearTimeout(pending.timer);
        pending.resolve(result);
        this.emit("proposal", this.clock.monotonicMs() - pending.startedAt);
      }
    }
    if (entries.length > 0) {
      this.forwarder.serveReads();
      this.emit("applied", this.appliedIndex);
    }
  }

  /** Another master's entry took the index of our proposal: it was never applied. */
  private settleReplaced(pending: PendingProposal | undefined, entry: Entry): void {
    if (pending === undefined) return;
    this.clock.clearTimeout(pending.timer);
    pending.reject(
      new NoMasterError(
        200,
        `the write was not applied: a new master (term ${entry.term}) took over before it committed; retry`,
      ),
    );
  }

  // ---------------------------------------------------------------- reads

  private onReadState(requestId: number, index: number | null): void {
    const peerRead = this.peerReads.get(requestId);
    if (peerRead !== undefined) {
      this.peerReads.delete(requestId);
      this.sendForward({
        type: "forward_read_response",
        ...this.envelope(peerRead.peer),
        requestId: peerRead.requestId,
        ok: index !== null,
        index: index ?? 0,
      });
      return;
    }
    const read = this.reads.get(requestId);
    if (read === undefined) return;
    this.reads.delete(requestId);
    if (index === null) {
      this.clock.clearTimeout(read.timer);
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
        this.clock.clearTimeout(read.timer);
        read.resolve();
      }
    }
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Snapshots the state machine every `snapshotEntries` applied entries, at this node's own
   * phase (see `snapshotDue`), or sooner once the commands applied since the last snapshot
   * hold `snapshotBytes`.
   */
  private maybeSnapshot(): void {
    // A stored snapshot does not hold the configuration or the cluster id: the identity
    // file does, and a restart reads the log only after the snapshot. So no snapshot is
    // taken while a save of the identity file is under way (it may cover entries the
    // snapshot would); it is taken at a later Ready, once the identity file holds them.
    if (this.snapshotting || this.identitySavesPending > 0) return;
    const { snapshotEntries, snapshotBytes } = this.config;
    if (
      !snapshotDue(this.appliedIndex, this.snapshotIndex, snapshotEntries, this.id) &&
      this.bytesSinceSnapshot < snapshotBytes
    )
      return;
    void this.snapshotNow();
  }

  /**
   * Where to compact the log behind a snapshot at `index`: keeps at most
   * `snapshotKeepEntries` entries and at most `snapshotKeepBytes` bytes of them.
   */
  private compactionPoint(index: number): number {
    const floor = Math.max(
      this.replica.snapshotMeta().index,
      index - this.config.snapshotKeepEntries,
    );
    let bytes = 0;
    let point = index;
    while (point > floor) {
      const entry = this.replica.entryAt(point);
      if (entry === undefined) break;
      bytes += entry.data.length;
      if (bytes > this.config.snapshotKeepBytes) break;
      point--;
    }
    return point;
  }

  /**
   * A consistent snapshot of everything this node has applied, for a backup of the cluster
   * (`POST /v1/snapshot`): waits for a snapshot under way, takes one at the applied index
   * unless the newest stored one covers it, and returns a reader of it, checksum included.
   * For one that holds every acknowledged write, call it on the master after `readBarrier()`.
   */
  async backupSnapshot(): Promise<SnapshotReader> {
    for (;;) {
      this.checkRunning();
      // A state transfer the core adopted replaces the state, and the applied index only
      // once it is installed: a snapshot taken before would be of a log the core no longer
      // holds (on a node with no snapshot yet, nothing at all). The core's log starts past
      // the applied index from the adoption on; the install is queued a moment later.
      if (this.replica.snapshotMeta().index > this.appliedIndex) {
        await this.lastInstall;
        await new Promise<void>((resolve) => this.clock.setImmediate(resolve));
        continue;
      }
      if (this.snapshotting) {
        await this.snapshotDone;
        continue;
      }
      // The identity file must hold what the entries the snapshot covers carried
      // (maybeSnapshot).
      await this.identitySaved;
      this.checkRunning();
      if (this.snapshotting || this.replica.snapshotMeta().index > this.appliedIndex) continue;
      const wanted = this.appliedIndex;
      if (this.snapshotIndex < wanted) await this.snapshotNow();
      this.checkRunning();
      const reader = this.storage.readSnapshot();
      if (reader !== null && reader.meta.index >= wanted) return reader;
      if (wanted === 0) {
        throw new ConflictError(
          "this node has applied nothing yet, so there is no state to snapshot: retry once it has caught up",
        );
      }
      // An install adopted while the snapshot was being taken: try again after it.
      await new Promise<void>((resolve) => this.clock.setImmediate(resolve));
    }
  }

  /** Snapshots the state machine at the applied index and compacts the log behind it. */
  private snapshotNow(): Promise<void> {
    const term = this.replica.termAt(this.appliedIndex);
    if (term === undefined) return Promise.resolve();
    const meta: SnapshotMeta = { index: this.appliedIndex, term };
    this.snapshotting = true;
    this.bytesSinceSnapshot = 0;
    const started = this.clock.wallMs();
    // Storage refuses to snapshot beyond the commit index it knows: tell it (lazily written).
    // The applied index, not the core's commit index: that one may cover entries storage
    // has not been given yet, while the old entries at those indexes are still there.
    const hard = this.storage.hardState();
    if (hard.commitIndex < this.appliedIndex) {
      this.storage.setHardState({ ...hard, commitIndex: this.appliedIndex });
    }
    // The state machine's snapshot is consistent as of this call; applying may go on, and
    // does whenever the state machine pauses to let the event loop run.
    const chunks = this.sm.snapshot({
      pause: () => new Promise<void>((resolve) => this.clock.setImmediate(resolve)),
    });
    this.snapshotDone = this.storage
      .saveSnapshot(meta, chunks)
      .then(async () => {
        // A state transfer may have installed a newer snapshot while this one was written.
        this.snapshotIndex = Math.max(this.snapshotIndex, meta.index);
        // A backup being sent an older snapshot needs the entries after it once it has
        // installed it: compacting them away would send it the newest one all over again
        // (a large state could chase the log like this for as long as writes go on).
        // So does one that received it and is still installing it.
        const sending = this.transfer
          .progress()
          .filter((t) => t.direction === "sending")
          .map((t) => t.snapshotIndex);
        const installing = this.installWaitFloor();
        if (installing !== null) sending.push(installing);
        const keep = Math.max(
          this.replica.snapshotMeta().index,
          Math.min(this.compactionPoint(meta.index), ...sending),
        );
        // A configuration entry compacted away must already be in the identity file. A
        // save that failed stops the node (fail) and settles the chain all the same: the
        // log must then stay, or the restart would take the configuration the identity
        // file still holds, older than the one compacted away, for the current one.
        await this.identitySaved;
        if (this.failure !== null) return;
        this.replica.compact(keep);
        // A transfer the core adopted may still wait in the chain to be installed: storage
        // compacts only up to the snapshot it holds.
        await this.storage.compact(Math.min(keep, this.storage.snapshot().index));
        this.log.info(
          { event: "snapshot", index: meta.index, ms: this.clock.wallMs() - started },
          `snapshot at ${meta.index}`,
        );
      })
      .catch((error: unknown) => this.fail(error))
      .finally(() => {
        this.snapshotting = false;
      });
    return this.snapshotDone;
  }

  /** Whether the disk is too far behind to take more entries (storagePendingBytesMax). */
  private diskBehind(): boolean {
    return this.storage.pendingBytes() > storagePendingBytesMax;
  }

  private onTransferSent(peer: NodeId, ok: boolean, snapshotIndex: number): void {
    if (this.stopped) return;
    if (ok) {
      // The core probes from after the snapshot; the backup answers once it has installed
      // it. Until then the entries after it stay (see installWaitFloor).
      this.installWaits.set(peer, snapshotIndex);
      this.replica.transferDone(peer, snapshotIndex);
    } else {
      this.replica.transferFailed(peer);
    }
    this.schedule();
  }

  /**
   * Where the log must stay for backups that received a state transfer and have not caught
   * up since, or null. Such a backup installs the snapshot (a large state takes a while),
   * then works through the entries written meanwhile: compacted away before it holds them,
   * it would need the newest snapshot all over again, and a slow install would never catch
   * up. So the log is kept from the snapshot, then from what the backup holds, until the
   * backup is within `snapshotKeepEntries` of the end, while it answers this master, and
   * up to INSTALL_HOLD_ENTRIES_MAX entries and `transferCatchUpBytesMax` bytes (a backup
   * whose disk cannot keep up gets another transfer rather than the master's memory).
   */
  private installWaitFloor(): number | null {
    let floor: number | null = null;
    const progress = this.replica.peerProgress();
    const last = this.replica.lastIndex;
    for (const [peer, index] of this.installWaits) {
      const pr = progress.get(peer);
      const behind =
        this.replica.role === "master" &&
        pr !== undefined &&
        (pr.state === "probe" || pr.state === "replicate") &&
        last - pr.match > this.config.snapshotKeepEntries &&
        this.replica.isRecentlyActive(peer);
      if (!behind) {
        this.installWaits.delete(peer);
        continue;
      }
      const from = Math.max(index, pr.match);
      if (!this.withinInstallHold(from)) {
        this.installWaits.delete(peer);
        this.log.warn(
          { event: "state_transfer", peer, index: from },
          `node ${peer} is still too far behind after its state transfer (more than ${INSTALL_HOLD_ENTRIES_MAX} entries or ${this.config.transferCatchUpBytesMax} bytes): the log after ${from} is no longer kept for it, and it will get another transfer`,
        );
        continue;
      }
      floor = floor === null ? from : Math.min(floor, from);
    }
    return floor;
  }

  /** Whether the entries after `from` are within the install hold's bounds. */
  private withinInstallHold(from: number): boolean {
    const last = this.replica.lastIndex;
    if (last - from > INSTALL_HOLD_ENTRIES_MAX) return false;
    let bytes = 0;
    for (let index = from + 1; index <= last; index++) {
      bytes += this.replica.entryAt(index)?.data.length ?? 0;
      if (bytes > this.config.transferCatchUpBytesMax) return false;
    }
    return true;
  }

  /** A snapshot fully arrived from master `from`: the core decides whether to adopt it. */
  private onTransferReceived(from: NodeId, term: number, meta: SnapshotMeta): boolean {
    if (this.stopped) return false;
    const adopt = this.replica.installSnapshot(from, term, meta);
    this.schedule();
    return adopt;
  }

  /** Installs a received snapshot; false, installing nothing, once the node has stopped. */
  private async adoptSnapshot(meta: SnapshotMeta): Promise<boolean> {
    const started = this.clock.wallMs();
    // The snapshot replaces the log up to its index, config entries included: its
    // configuration must stand in for theirs at the next start, or the node restarts with
    // the one it applied last before the transfer (a learner promoted meanwhile stays a
    // learner to it for good). So the identity file holds it before the snapshot is
    // durable: saved after, a crash in between restarted the node on the new snapshot with
    // the old configuration (whole-node seed 655582). Saved before, a crash in between
    // leaves the old snapshot and log, whose own config entries take effect over it, and
    // a committed configuration at an index the log has not reached yet.
    if (meta.config !== undefined) {
      this.saveAppliedConfig(meta.index, meta.config);
      await this.identitySaved;
      // A failed save stops the node (fail) and settles the chain all the same: the
      // snapshot must then not become durable without the configuration it carries.
      if (this.stopped) return false;
    }
    const restore = await this.transfer.finishReceived(meta);
    const durable = this.clock.wallMs();
    const reader = this.storage.readSnapshot();
    assert(
      reader !== null && reader.meta.index === meta.index,
      "adopted snapshot is not the newest",
    );
    // The state was read from the chunks as they came, unless the state machine cannot do
    // that: then from the file, now that it is durable.
    if (restore !== null) restore.install();
    else {
      await this.sm.restore(reader.chunks());
      // A state machine that reads snapshots as they arrive drops that read only when the
      // bytes do not read as a state; the same bytes, checksummed on both ends, just did.
      assert(
        this.sm.beginRestore === undefined,
        `the state of snapshot ${meta.index} read as it arrived failed, and read from the file it did not`,
      );
    }
    this.appliedIndex = meta.index;
    this.snapshotIndex = meta.index;
    this.bytesSinceSnapshot = 0;
    this.forwarder.onSnapshotAdopted(meta.index);
    this.log.info(
      {
        event: "state_transfer",
        index: meta.index,
        bytes: reader.dataBytes,
        ms: this.clock.wallMs() - started,
        durableMs: durable - started,
        readAsReceived: restore !== null,
      },
      `state transfer complete: state restored at index ${meta.index}`,
    );
    return true;
  }

  // ---------------------------------------------------------------- roles

  private onCoreEvent(event: CoreEvent): void {
    if (event.type === "role") return this.onRoleEvent(event);
    if (event.type === "cluster_id") return this.onClusterId(event.clusterId, event.source);
    if (event.type === "bootstrap") {
      this.log.info({ event: "bootstrap" }, event.reason);
      return;
    }
    if (event.type === "refused") {
      this.log.error(
        { event: "refused", reason: event.reason },
        `refusing to start: ${event.reason}`,
      );
      this.clock.setImmediate(() => this.fail(new BootstrapRefusedError(this.id, event.reason)));
      return;
    }
    if (event.type === "config") {
      for (const member of event.config) {
        if (member.id === this.id) continue;
        // The command line's address wins over the one the configuration recorded.
        const address = this.addressOf(member);
        this.lastListed.set(member.id, { incarnation: member.incarnation, address });
        this.departed.delete(member.id);
        if (this.linkedPeers.has(member.id) || address === "") continue;
        this.link(member.id, address);
      }
      this.log.info(
        {
          event: "config",
          index: event.index,
          members: event.config.map((m) => ({
            id: m.id,
            voter: m.voter,
            incarnation: m.incarnation,
          })),
        },
        `configuration${event.index === 0 ? "" : ` of entry ${event.index}`} in effect: ${event.config.map((m) => `${m.id}${m.voter ? "" : " (learner)"}`).join(", ")}`,
      );
      return;
    }
    this.log.warn(
      { event: "removed", reason: event.reason },
      `removed from the cluster: ${event.reason}`,
    );
    // A removed member stops: it must not campaign, and nothing it does counts.
    this.clock.setImmediate(() =>
      this.fail(new Error(`node ${this.id} was removed from the cluster: ${event.reason}`)),
    );
  }

  /** The peers the transport has: the command line's, then every member a configuration listed. */
  private readonly linkedPeers = new Set<NodeId>();
  /** When each linked peer was first seen no longer listed nor replicated to. */
  private readonly forgettableSince = new Map<NodeId, number>();
  /**
   * Each member of the configuration this node started with, as it listed them. Kept apart
   * from `lastListed`, whose members admit() refuses as known: one of these that is not
   * linked yet (added after the command line's peers) is admitted when it calls.
   */
  private readonly startedWith = new Map<NodeId, { incarnation: number; address: string }>();
  /** Each member as the newest configuration that listed it did: incarnation, address. */
  private readonly lastListed = new Map<NodeId, { incarnation: number; address: string }>();
  /** The peers whose links were forgotten, as last listed (see admit). */
  private readonly departed = new Map<NodeId, { incarnation: number; address: string }>();

  /**
   * Forgets the link to each peer that the configuration no longer lists, once that
   * configuration is committed and (on the master) the removed member is no longer
   * replicated to, so that the transport stops redialling a removed node. Only a voter
   * does it: a learner replaying old configurations from the log would forget members
   * that are still there (the master among them). The link goes only an election timeout
   * after that: the master stops replicating to a removed member as soon as it has *sent*
   * it the news of its removal, and closing the link at once could drop that last message
   * with the link, leaving the removed node running and unaware.
   */
  private maybeForgetPeers(): void {
    const r = this.replica;
    if (r.changeInProgress || !r.isVoter || r.isJoining) return;
    const progress = r.peerProgress();
    const now = this.clock.monotonicMs();
    for (const id of this.linkedPeers) {
      if (r.members.some((m) => m.id === id) || progress.has(id) || r.masterId === id) {
        this.forgettableSince.delete(id);
        continue;
      }
      const since = this.forgettableSince.get(id);
      if (since === undefined) this.forgettableSince.set(id, now);
      if (since === undefined || now - since < this.config.electionMsMax) continue;
      this.forgettableSince.delete(id);
      this.linkedPeers.delete(id);
      // A member this node knew (listed, or on its command line) departed; one it linked
      // to unlisted (see admit) stays a stranger, which it may admit again.
      const listed = this.lastListed.get(id) ?? this.startedWith.get(id);
      const address = listed?.address ?? this.config.peers.find((p) => p.id === id)?.address;
      if (address !== undefined && address !== "") {
        this.departed.set(id, { incarnation: listed?.incarnation ?? 0, address });
      }
      this.transport.removePeer(id);
      this.connected.delete(id);
      this.forwardAnswers.delete(id);
      this.switchoverAnswers.delete(id);
      this.log.info(
        { event: "peer_removed", peer: id },
        `forgot the link to node ${id}: the committed configuration no longer lists it`,
      );
    }
  }
  /**
   * A node that is not a peer calls (or, in the simulator, sends). This node may be behind
   * on the log, and the caller a member added since, maybe the master it must follow to
   * learn that (etcd's "remotes" serve the same end).
   *
   * A member whose link this node forgot is linked again when it calls with a member
   * incarnation other than the one the configuration that listed it last named: it was
   * removed and added back under its id (a replaced machine). The incarnation that was
   * removed stays refused, as does any when the removed one is not known (the bootstrap
   * incarnation, 0), so that a removed member restarted with its old data is still told
   * that it is not a member. An id this node never knew is linked when its handshake
   * presents this node's cluster id and a peer address to answer on. A node stopped before
   * it learned that the entry carrying the cluster id committed does not know the id: it
   * takes the word of a member its configuration lists, whose handshake presented that
   * incarnation and the caller's cluster id (without it, such a node never admitted a
   * master added while it was away, and could not learn of it from anyone else).
   */
  private admit(caller: UnknownCaller): Admission {
    const { id, memberIncarnation: incarnation } = caller;
    const refuse = (reason: string): Admission => ({ admitted: false, reason });
    if (this.stopped) return refuse(`node ${this.id} is stopping`);
    const gone = this.departed.get(id);
    if (gone !== undefined) {
      // A member removed while the configuration still listed it with the bootstrap
      // incarnation 0 (never heard from by a master) may come back under any new one: a
      // caller with an incarnation is linked again, or a voter cut off during the
      // replacement would refuse its master for ever (whole-node seed 1684093). What a
      // removed process could do with the link, the core refuses: it is not a member.
      if (incarnation === 0 || incarnation === gone.incarnation) {
        return refuse(notAMember(id));
      }
      this.departed.delete(id);
      this.link(id, gone.address);
      this.log.info(
        { event: "peer_readmitted", peer: id, incarnation, removed: gone.incarnation },
        `linked to node ${id} again: it calls as member incarnation ${incarnation}, not the removed ${gone.incarnation}, so it was added back while this node was behind on the log`,
      );
      return ADMITTED;
    }
    if (id === this.id) return refuse(`node ${id} is this node: two nodes were given one id`);
    const known = this.lastListed.has(id) || this.config.peers.some((p) => p.id === id);
    if (known) return refuse(notAMember(id));
    if (!caller.sameCluster) {
      if (caller.clusterUid === "") {
        return refuse(
          `node ${this.id} does not list node ${id}, and node ${id} has no cluster id: add it with baton member add, then start it with --join <URL of a member>`,
        );
      }
      const own = this.replica.clusterId;
      if (own !== null) {
        return refuse(`node ${id} presents cluster id ${caller.clusterUid}, not ${own}`);
      }
      if (!this.vouchedFor(caller.clusterUid)) {
        // Not the caller's fault: this node was stopped before it learned that the entry
        // carrying the cluster id committed, and no member it lists has vouched for the id
        // yet. The caller need not do anything: a member's handshake will (see vouchedFor).
        return refuse(
          `node ${this.id} does not list node ${id} and does not know its cluster id yet: it admits node ${id} once a member it lists presents cluster id ${caller.clusterUid}`,
        );
      }
    }
    const address = caller.peerAddress;
    if (address === null || !parseAddress(address).ok) {
      return refuse(
        `node ${id} names no peer address that node ${this.id} could answer on (${JSON.stringify(address ?? "")})`,
      );
    }
    this.link(id, address);
    this.log.info(
      { event: "peer_admitted", peer: id, incarnation, address },
      `linked to node ${id} at ${address}: no configuration this node applied lists it, but it calls from this cluster, so it was added while this node was behind on the log`,
    );
    return ADMITTED;
  }

  /**
   * Whether a member that this node's configuration lists presented `clusterUid` in its
   * handshake under the member incarnation the configuration names: that member learned the
   * id from a committed entry or from the cluster it joined, so it is this cluster's.
   */
  private vouchedFor(clusterUid: string): boolean {
    if (clusterUid === "") return false;
    return this.replica.members.some((m) => {
      if (m.id === this.id || m.incarnation === 0) return false;
      const presented = this.transport.presentedBy?.(m.id) ?? null;
      return presented?.memberIncarnation === m.incarnation && presented.clusterUid === clusterUid;
    });
  }

  /** A member's peer address: the command line's, else the one its configuration recorded. */
  private addressOf(member: { readonly id: NodeId; readonly peerAddress: string }): string {
    return this.config.peers.find((p) => p.id === member.id)?.address ?? member.peerAddress;
  }

  private link(id: NodeId, address: string): void {
    this.linkedPeers.add(id);
    this.transport.addPeer({ id, address });
  }

  private readonly pendingChanges = new Map<number, PendingChange>();
  /** Resolves when the newest committed configuration is in the identity file. */
  private identitySaved: Promise<void> = Promise.resolve();

  /**
   * The core learned the cluster id: the handshake carries it from now on, and it goes
   * into the identity file (after any configuration queued before it).
   */
  private onClusterId(clusterId: string, source: string): void {
    this.transport.setClusterUid?.(clusterId);
    this.log.info({ event: "cluster_id", clusterId }, `cluster id ${clusterId} (from ${source})`);
    this.saveIdentity((current) =>
      current.clusterId === clusterId ? null : { ...current, clusterId },
    );
  }

  /**
   * Keeps a committed configuration in the identity file: among those that stand in for a
   * snapshot's at the next start (snapshots on disk do not carry one; configAt picks the
   * one in force at the snapshot's index), and as the newest unless a newer one is there.
   */
  private saveAppliedConfig(index: number, config: Configuration): void {
    this.saveIdentity((current) => {
      // Every committed configuration joins `configs`, older than the newest one too: a
      // node that adopted a snapshot and stopped before it was installed recorded that
      // snapshot's configuration as the newest, and applies the entries below it again.
      // Storage's snapshot, not one being written or installed: until that one is durable,
      // a restart starts from this one.
      const kept =
        current.configs ?? (current.appliedConfig === null ? [] : [current.appliedConfig]);
      const configs = configsAfter(kept, { index, config }, this.storage.snapshot().index);
      if ((current.appliedConfig?.index ?? 0) > index) {
        return current.configs !== undefined && sameConfigs(current.configs, configs)
          ? null
          : { ...current, configs };
      }
      return {
        ...current,
        appliedConfig: { index, config },
        configs,
        removed: removedAfter(current.removed ?? [], current.appliedConfig?.config ?? [], config),
      };
    });
  }

  /**
   * Queues a change of the identity file behind the ones before it (`change` returns the
   * new identity, or null to keep it); a failed save stops the node. While one is queued
   * no snapshot starts (maybeSnapshot).
   */
  private saveIdentity(change: (current: DataIdentity) => DataIdentity | null): void {
    const store = this.identityStore;
    if (store === null) return;
    this.identitySavesPending++;
    this.identitySaved = this.identitySaved
      .then(() => {
        const current = store.identity();
        assert(current !== null, `node ${this.id}: a data directory without its identity`);
        const next = change(current);
        return next === null ? undefined : store.save(next);
      })
      .catch((error: unknown) => this.fail(error))
      .finally(() => {
        this.identitySavesPending--;
      });
  }

  /** A config entry was applied (it is committed): keep it, settle its proposer. */
  private onConfigApplied(entry: Entry): void {
    const config = decodeConfiguration(entry.data);
    assert(
      config !== null,
      `node ${this.id}: committed config entry ${entry.index} does not decode`,
    );
    this.saveAppliedConfig(entry.index, config);
    const pending = this.pendingChanges.get(entry.index);
    if (pending === undefined) return;
    this.pendingChanges.delete(entry.index);
    this.clock.clearTimeout(pending.timer);
    if (pending.term === entry.term) pending.resolve({ index: entry.index, members: config });
    else
      pending.reject(
        new ConflictError("the change was lost in a fail-over: check the members and retry"),
      );
  }

  /**
   * An add that is already done: the master's committed configuration lists the same id
   * as a learner with the same addresses (a retried `baton member add`, whose first answer
   * was lost). It is answered like the first one, without a second entry; any other
   * addition of an existing id is refused by the core.
   */
  private alreadyAdded(change: MemberChange): MemberChangeOutcome | null {
    const r = this.replica;
    if (change.type !== "add" || r.role !== "master" || r.changeInProgress) return null;
    const listed = r.members.find((m) => m.id === change.member.id);
    const same =
      listed !== undefined &&
      !listed.voter &&
      listed.peerAddress === change.member.peerAddress &&
      listed.httpUrl === change.member.httpUrl;
    return same ? { index: r.commitIndex, members: r.members } : null;
  }

  /** The configuration in effect (the newest in the log) and whether it is committed. */
  members(): { readonly members: Configuration; readonly changeInProgress: boolean } {
    return { members: this.replica.members, changeInProgress: this.replica.changeInProgress };
  }

  /**
   * Proposes one membership change on the master and answers once it is committed.
   * Refusals name what to do: ConflictError for a change in flight or a state that does
   * not allow it, InvalidInputError for bad input, NotMasterError on a backup; each as a
   * rejection of the returned promise, never thrown.
   */
  changeMembers(change: MemberChange): Promise<MemberChangeOutcome> {
    const deadline = this.clock.monotonicMs() + this.config.electionMsMax;
    return rejectingThrows(() => this.changeMembersBy(change, deadline));
  }

  /**
   * The core refuses a change while another is in flight (a change, or a switchover) and
   * on a master that has not committed an entry of its term yet (its no-op and, in a new
   * cluster, its first configuration entry, a round trip away). Both pass by themselves,
   * so the change is tried again every tick until `deadline` (an election timeout) rather
   * than refused to a caller who would only have to retry it.
   */
  private changeMembersBy(change: MemberChange, deadline: number): Promise<MemberChangeOutcome> {
    this.checkRunning();
    const done = this.alreadyAdded(change);
    if (done !== null) return Promise.resolve(done);
    const result = this.replica.changeMembers(change);
    this.schedule();
    const passing =
      !result.ok && (result.reason === "not_ready" || result.reason === "in_progress");
    if (passing && this.clock.monotonicMs() < deadline) {
      return new Promise((resolve, reject) => {
        this.clock.setTimeout(() => {
          rejectingThrows(() => this.changeMembersBy(change, deadline)).then(resolve, reject);
        }, this.config.tickMs);
      });
    }
    if (!result.ok) {
      switch (result.reason) {
        case "not_master":
          throw new NotMasterError(result.masterHint);
        case "bad_request":
        case "unknown_member":
        case "exists":
          throw new InvalidInputError(change.type === "add" ? "body" : "id", result.detail);
        default:
          throw new ConflictError(result.detail);
      }
    }
    return new Promise((resolve, reject) => {
      const waitMs = 10 * this.config.electionMsMax;
      const timer = this.clock.setTimeout(() => {
        this.pendingChanges.delete(result.index);
        reject(
          new NoMasterError(
            500,
            `the change at index ${result.index} was not committed within ${waitMs} ms: check the members before retrying`,
          ),
        );
      }, waitMs);
      this.pendingChanges.set(result.index, { term: result.term, resolve, reject, timer });
    });
  }

  private onRoleEvent(event: RoleEvent): void {
    this.roleSince = this.clock.wallMs();
    const fields = {
      event: "role",
      role: event.role,
      term: event.term,
      master: event.masterId,
      reason: event.reason,
    };
    if (event.role === "master" && event.handover) {
      this.counters.switchovers++;
      const previous = this.lastMasterContact?.id ?? null;
      this.lastMasterContact = { id: this.id, at: this.clock.wallMs() };
      this.log.info(
        { ...fields, switchover: true, previousMaster: previous },
        `switchover: became master of term ${event.term}, handed over by master ${previous ?? "unknown"}`,
      );
    } else if (event.role === "master") {
      this.counters.elections++;
      const previous = this.lastMasterContact;
      const durationMs = previous === null ? null : this.clock.wallMs() - previous.at;
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
      this.lastMasterContact = { id: this.id, at: this.clock.wallMs() };
      this.emit("failover", failover);
    } else {
      this.log.info(
        fields,
        `became ${event.preVote ? "pre-candidate" : event.role} in term ${event.term}: ${event.reason}`,
      );
    }
    if (event.role !== "master") {
      this.abortReadsOnStepDown();
      // A switchover's target holds every pending write (the master took no new ones
      // once it began, and sent TimeoutNow only when the target had its last index): they
      // complete under the new master, and apply() settles them by their entries' terms.
      if (!event.handover) this.abandonProposalsOnStepDown(event.term);
    }
    this.emit("role", event);
    this.settleMasterWaiters();
    this.checkSwitchovers();
    if (this.forwarder.inFlight > 0) this.forwarder.poll();
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
    // Events are handled after the core moved on: a node may already be master again by
    // then (a one-member cluster steps up within one tick, and a held forward was proposed
    // there before this event of its candidacy was drained). Writes of the mastership it
    // holds now are in its log and settle by their entries; only earlier ones are in doubt.
    const masterTerm = this.replica.role === "master" ? this.replica.term : null;
    const error = new IndeterminateError(
      `this node stopped being the master (term ${term}) before the write committed; it may still be applied by the new master: ${RETRY_ADVICE}`,
    );
    for (const [index, p] of [...this.proposals]) {
      if (p.term === masterTerm) continue;
      this.clock.clearTimeout(p.timer);
      p.reject(error);
      this.proposals.delete(index);
    }
  }

  private abortReadsOnStepDown(): void {
    for (const read of this.readsByIndex.splice(0)) {
      this.clock.clearTimeout(read.timer);
      read.reject(new NotMasterError(this.replica.masterId));
    }
  }

  // ---------------------------------------------------------------- failure

  /** The error that stopped the node (a `fatal` event was emitted with it), or null. */
  get fatalError(): Error | null {
    return this.failure;
  }

  private checkRunning(): void {
    if (this.failure !== null) {
      throw this.failure instanceof ClusterError
        ? this.failure
        : new StorageFailedError(`the node stopped: ${this.failure.message}`);
    }
    if (this.stopped) throw new ShuttingDownError();
  }

  private fail(error: unknown): void {
    if (this.failure !== null) return;
    const err = error instanceof Error ? error : new Error(String(error));
    this.failure = err;
    this.log.fatal({ event: "fatal", err }, `node ${this.id} must stop: ${err.message}`);
    this.failPending(
      err instanceof ClusterError
        ? err
        : new StorageFailedError(`the node stopped: ${err.message}`),
    );
    this.stopped = true;
    if (this.timer !== null) this.clock.clearInterval(this.timer);
    this.emit("fatal", err);
  }

  /**
   * Settles everything waiting on this node, which stops (`error` says why). What is known
   * not to have taken effect fails with `error`; a write already in the log (this node's
   * own proposals) or sent to the master (forwards) may still be applied by the next
   * master, so its caller hears ERR_INDETERMINATE: told "shutting down" of a write the new
   * master then applied, a caller that retried it elsewhere applied it twice.
   */
  private failPending(error: Error): void {
    if (this.proposals.size > 0) {
      const inDoubt = new IndeterminateError(
        `this node stopped (${error.message}) before the write committed; it may still be applied by the next master: ${RETRY_ADVICE}`,
      );
      for (const p of this.proposals.values()) {
        this.clock.clearTimeout(p.timer);
        p.reject(inDoubt);
      }
    }
    this.proposals.clear();
    for (const r of [...this.reads.values(), ...this.readsByIndex]) {
      this.clock.clearTimeout(r.timer);
      r.reject(error);
    }
    this.reads.clear();
    this.readsByIndex.length = 0;
    this.peerReads.clear();
    this.forwarder.failAll(error, `this node stopped (${error.message})`);
    for (const change of this.pendingChanges.values()) {
      this.clock.clearTimeout(change.timer);
      change.reject(error);
    }
    this.pendingChanges.clear();
    for (const pending of [...this.switchovers]) this.settleSwitchover(pending, error);
    for (const waiter of this.masterWaiters) {
      this.clock.clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.masterWaiters.clear();
  }

  // ---------------------------------------------------------------- forwarding

  /** Handles a forward_* message; false for any other message. */
  private onForwardMessage(message: WireMessage): boolean {
    switch (message.type) {
      case "forward_proposal":
        this.onForwardProposal(message);
        return true;
      case "forward_read":
        this.onForwardRead(message);
        return true;
      case "forward_proposal_response":
        this.forwarder.onProposalResponse(message);
        return true;
      case "forward_read_response":
        this.forwarder.onReadResponse(message);
        return true;
      case "forward_switchover":
        this.onForwardSwitchover(message);
        return true;
      case "forward_switchover_response":
        this.onForwardSwitchoverResponse(message);
        return true;
      default:
        return false;
    }
  }

  /**
   * A backup forwarded a command: propose it as this node's own and say where it went.
   * The backup learns the result by applying the entry, so nothing else is kept here.
   */
  private onForwardProposal(message: ForwardProposal): void {
    const { from, requestId } = message;
    const given = this.forwardAnswers.get(from)?.get(requestId);
    if (given !== undefined) {
      this.counters.forwardCopies++;
      this.sendForwardAnswer(from, requestId, given);
      return;
    }
    const answer = this.proposeForwarded(message);
    keepAnswer(this.forwardAnswers, from, requestId, answer, FORWARD_ANSWERS_KEPT);
    this.sendForwardAnswer(from, requestId, answer);
  }

  /** Proposes a backup's forwarded command, or says why not. */
  private proposeForwarded(message: ForwardProposal): ForwardAnswer {
    const refused = (outcome: "not_master" | "busy"): ForwardAnswer => ({
      outcome,
      index: 0,
      entryTerm: 0,
    });
    if (this.replica.role !== "master") return refused("not_master");
    if (message.data.byteLength > COMMAND_BYTES_MAX) {
      // A peer's command no honest backup sends (its own propose refuses it): in the log,
      // the append carrying it would be over every link's frame limit, and no backup
      // would get another entry. Refused as not proposed.
      this.log.warn(
        { event: "forward_refused", peer: message.from, bytes: message.data.byteLength },
        `refused a command of ${message.data.byteLength} bytes forwarded by node ${message.from}: over ${COMMAND_BYTES_MAX}`,
      );
      return refused("busy");
    }
    if (this.diskBehind()) {
      this.counters.busyDisk++;
      return refused("busy");
    }
    const result = this.replica.propose(wrapCommand(this.clock.wallMs(), message.data));
    if (!result.ok) return refused(result.reason === "busy" ? "busy" : "not_master");
    this.counters.proposals++;
    this.schedule();
    return { outcome: "proposed", index: result.index, entryTerm: result.term };
  }

  private sendForwardAnswer(to: NodeId, requestId: number, answer: ForwardAnswer): void {
    this.sendForward({
      type: "forward_proposal_response",
      ...this.envelope(to),
      requestId,
      ...answer,
    });
  }

  /** A backup asks for a read index: confirm mastership, then answer with the index. */
  private onForwardRead(message: ForwardRead): void {
    const id = this.nextReadId++;
    const registered = this.replica.role === "master" ? this.replica.readIndex(id) : null;
    if (registered === null || !registered.ok) {
      this.sendForward({
        type: "forward_read_response",
        ...this.envelope(message.from),
        requestId: message.requestId,
        ok: false,
        index: 0,
      });
      return;
    }
    this.peerReads.set(id, { peer: message.from, requestId: message.requestId });
    this.schedule();
  }

  /** Asks the core for a switchover on behalf of `pending` and settles refusals. */
  private startSwitchover(pending: PendingSwitchover, to: NodeId | null): void {
    const result = this.replica.transferMastership(to);
    this.schedule();
    if (result.ok) {
      pending.target = result.target;
      this.log.info(
        { event: "switchover", target: result.target, term: this.replica.term },
        `switchover: handing the master role to node ${result.target}`,
      );
      return;
    }
    this.settleSwitchover(pending, switchoverRefusal(result.reason, to));
  }

  private onForwardSwitchover(message: ForwardSwitchover): void {
    const { from, requestId } = message;
    // A copy of a request (see forwardAnswers) gets its original's answer: started a second
    // time, or refused as "already under way" or "not the master" once the first had made
    // another node master, it would tell the backup a hand-over failed that did not.
    let answer = this.switchoverAnswers.get(from)?.get(requestId);
    if (answer === undefined) {
      const to = message.target === 0 ? null : message.target;
      const result =
        this.replica.role === "master"
          ? this.replica.transferMastership(to)
          : ({ ok: false, reason: "not_master" } as const);
      this.schedule();
      answer = {
        outcome: result.ok ? "started" : result.reason,
        target: result.ok ? result.target : 0,
      };
      keepAnswer(this.switchoverAnswers, from, requestId, answer, SWITCHOVER_ANSWERS_KEPT);
    }
    this.sendForward({
      type: "forward_switchover_response",
      ...this.envelope(from),
      requestId,
      ...answer,
    });
  }

  private onForwardSwitchoverResponse(message: ForwardSwitchoverResponse): void {
    for (const pending of this.switchovers) {
      if (pending.requestId !== message.requestId) continue;
      if (message.outcome === "started") {
        pending.target = message.target;
        this.checkSwitchovers();
      } else {
        this.settleSwitchover(pending, switchoverRefusal(message.outcome, pending.target));
      }
      return;
    }
  }

  /** Settles the switchovers that a new master (or an abandoned hand-over) decided. */
  private checkSwitchovers(): void {
    if (this.switchovers.size === 0) return;
    const master = this.replica.masterId;
    const term = this.replica.term;
    for (const pending of this.switchovers) {
      if (master !== null && term > pending.startTerm && master !== pending.previousMaster) {
        if (pending.target === null || pending.target === master) {
          this.switchovers.delete(pending);
          this.clock.clearTimeout(pending.timer);
          pending.resolve({ master, term });
        } else {
          this.settleSwitchover(
            pending,
            new SwitchoverFailedError(`node ${master} took over instead of node ${pending.target}`),
          );
        }
      } else if (
        pending.previousMaster === this.id &&
        this.replica.role === "master" &&
        this.replica.switchoverTarget === null &&
        pending.target !== null
      ) {
        this.settleSwitchover(
          pending,
          new SwitchoverFailedError(
            `node ${pending.target} did not take over in time; this node serves on as master`,
          ),
        );
      }
    }
  }

  private settleSwitchover(pending: PendingSwitchover, error: Error): void {
    this.switchovers.delete(pending);
    this.clock.clearTimeout(pending.timer);
    pending.reject(error);
  }

  private envelope(to: NodeId): { from: NodeId; to: NodeId; term: number } {
    return { from: this.id, to, term: this.replica.term };
  }

  private sendForward(message: WireMessage): boolean {
    return this.transport.send(message).queued;
  }
}

/** The error a refused switchover is answered with. */
function switchoverRefusal(reason: string, to: NodeId | null): Error {
  switch (reason) {
    case "in_progress":
      return new ConflictError("a switchover is already under way; wait for it to finish");
    case "unknown_member":
      return new InvalidInputError("to", `node ${to} is not a member of this cluster`);
    case "no_candidate":
      return new ConflictError("no backup has answered the master lately: none can take over");
    case "unreachable":
      return new ConflictError(
        `node ${to} has not answered the master lately: start it, or choose another backup`,
      );
    case "not_voter":
      return new ConflictError(
        `node ${to} is a learner: promote it once it has caught up (baton member promote ${to}), or choose a voter`,
      );
    default:
      return new NoMasterError(200, "the node asked is not the master (any more): retry");
  }
}

/**
 * Runs `start` and hands back its promise; an error it throws before it has one (the node
 * stopped, a full forwarding queue) becomes a rejection instead, so that the public methods
 * fail one way only. A bug still throws: it must stop the process, not be awaited away.
 */
function rejectingThrows<T>(start: () => Promise<T>): Promise<T> {
  try {
    return start();
  } catch (error) {
    rethrowIfBug(error);
    return Promise.reject(error);
  }
}

/**
 * The bootstrap gate refused this node: its data directory is empty, and the cluster its
 * peers belong to lists another incarnation of it. The message says how to bring it back
 * (`baton member replace`, then `--join`).
 */
export class BootstrapRefusedError extends Error {
  readonly code = "ERR_BOOTSTRAP_REFUSED";
  constructor(
    readonly nodeId: NodeId,
    readonly reason: string,
  ) {
    super(`node ${nodeId} refused to start: ${reason}`);
    this.name = "BootstrapRefusedError";
  }
}

/**
 * Whether node `id`, whose newest snapshot is at `snapshotIndex`, takes one at
 * `appliedIndex`: once it has applied an index of its own phase (one in every `entries`,
 * offset by the id times the golden ratio, so that members' phases lie apart whatever
 * their ids), and at least half of `entries` since its snapshot. Every member taking its
 * snapshot at the same index made them all busy at the same moment: a commit then waited
 * for the slowest of them, and a master could lose touch with both of its backups at once.
 * In a steady run a node snapshots every `entries` entries, the same as without phases.
 */
export function snapshotDue(
  appliedIndex: number,
  snapshotIndex: number,
  entries: number,
  id: NodeId,
): boolean {
  const since = appliedIndex - snapshotIndex;
  if (since < Math.ceil(entries / 2)) return false;
  const phase = Math.floor(((id * GOLDEN_RATIO_FRACTION) % 1) * entries);
  return (
    Math.floor((appliedIndex - phase) / entries) > Math.floor((snapshotIndex - phase) / entries)
  );
}

const GOLDEN_RATIO_FRACTION = 0.6180339887498949;
