/**
 * One node's replication protocol as a pure, deterministic state machine: Raft with
 * pre-vote, check-quorum, pipelined log replication, fast back-off and ReadIndex, in this
 * project's words (master, backup, candidate, term).
 *
 * Inputs are method calls: `tick()`, `step(message)`, `propose(data)`, `readIndex(id)`,
 * `persisted(index, term)` and `peerUnreachable(id)`. Outputs are collected and handed out
 * by `ready()`. The runtime's obligations for each Ready, in this order:
 *   1. persist `hardState` and `entries` (an entry at index i replaces any stored entry at
 *      index i and above) durably;
 *   2. only then send `messages` (votes and acknowledgements promise what is on disk);
 *      `messagesNow` (the master's appends and heartbeats) may be sent before step 1, and
 *      so may a heartbeat response whose term is already durable (it promises no more);
 *   3. apply `committed` entries to the state machine, in order;
 *   4. call `persisted(index, term)` with the last entry that is now durable.
 *
 * The replica owns no socket, timer, file or clock, and takes randomness only from the
 * Prng it is given. A broken invariant throws AssertionError: never continue past one.
 */

import type {
  Append,
  AppendResponse,
  Entry,
  HardState,
  Heartbeat,
  HeartbeatResponse,
  Member,
  Message,
  NodeId,
  SnapshotMeta,
  TermProbe,
  TermProbeResponse,
  TimeoutNow,
  VoteRequest,
  VoteResponse,
} from "../protocol/messages.js";
import type { Role } from "../protocol/status.js";
import { AssertionError, assert } from "../shared/assert.js";
import { type ReplicaConfig, validateReplicaConfig } from "./config.js";
import {
  applyChange,
  type ChangeRefusal,
  type Configuration,
  decodeClusterId,
  decodeConfiguration,
  encodeConfiguration,
  initialConfiguration,
  type MemberChange,
  memberOf,
} from "./configuration.js";
import { ReplicaLog } from "./log.js";
import type { Prng } from "./prng.js";
import { Progress } from "./progress.js";

/** What a replica is started from: what its storage recovered. */
export interface RestoredState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  /** The entries after the snapshot, in order. */
  readonly entries: readonly Entry[];
}

export const EMPTY_STATE: RestoredState = Object.freeze({
  hardState: Object.freeze({ term: 0, votedFor: null, commitIndex: 0 }),
  snapshot: Object.freeze({ index: 0, term: 0 }),
  entries: Object.freeze([]),
});

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; reason: "not_master"; masterHint: NodeId | null }
  | { ok: false; reason: "busy" }
  /** A switchover is under way: the master takes no new writes until it ends. */
  | { ok: false; reason: "switchover"; target: NodeId };

/**
 * What `step` made of a peer's message. A message that breaks a protocol rule (a second
 * master in this node's term, an acknowledgement past the end of its log, a message that
 * is not from a member) changes nothing: it is reported, and the runtime closes the link
 * it came on. A peer's mistake never stops this node; only this node's own invariants do.
 */
export type StepResult =
  | { readonly ok: true; readonly ignored?: undefined }
  /**
   * Dropped without effect, and no fault of the link: a message from a node that is not
   * (or no longer) a member, or from an incarnation of a member that the configuration
   * does not list (sent before that member's data directory was wiped, say).
   */
  | {
      readonly ok: true;
      readonly ignored: "not_member" | "stale_incarnation";
      readonly detail: string;
    }
  | { readonly ok: false; readonly violation: string };

const STEP_OK: StepResult = Object.freeze({ ok: true });

export type SwitchoverResult =
  | { ok: true; target: NodeId }
  | { ok: false; reason: "not_master"; masterHint: NodeId | null }
  | { ok: false; reason: "in_progress"; target: NodeId }
  | { ok: false; reason: "unknown_member" | "no_candidate" | "unreachable" | "not_voter" };

/**
 * What `changeMembers` made of a change. On success the config entry is at `index` in
 * `term`; it is in effect at once and done when committed. `in_progress`: another change
 * (or a switchover) is not finished. `not_ready`: this master has not committed an entry
 * of its own term yet (the no-op-first rule: a change may only follow one committed in
 * this term, dissertation §4.1 erratum). `not_caught_up`: the learner lags or is silent.
 * `is_master`: the master cannot remove itself (switch over first). `no_quorum`: too few
 * of the voters left after the removal answer this master.
 */
export type ChangeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; reason: "not_master"; masterHint: NodeId | null; detail: string }
  | {
      ok: false;
      reason:
        | ChangeRefusal
        | "in_progress"
        | "not_ready"
        | "not_caught_up"
        | "is_master"
        | "no_quorum";
      detail: string;
    };

export type ReadIndexResult =
  | { ok: true }
  | { ok: false; reason: "not_master"; masterHint: NodeId | null };

/**
 * A read registered with `readIndex`: once the state machine has applied `index`, a read
 * served from it is linearizable. `index` is null when the read was aborted because this
 * node stopped being master before it was confirmed.
 */
export interface ReadState {
  readonly requestId: number;
  readonly index: number | null;
}

/**
 * Facts worth a log line: every role change and why; every configuration that took
 * effect (appended, not yet committed; `index` 0 for one from a snapshot); and, once, that
 * a committed configuration no longer lists this node (the runtime stops: it was removed).
 */
export type CoreEvent =
  | RoleEvent
  | { readonly type: "config"; readonly config: Configuration; readonly index: number }
  | { readonly type: "removed"; readonly reason: string }
  /**
   * This node learned the cluster id: from a committed config entry, an adopted snapshot,
   * or the answer that let it join. The runtime makes it durable (the identity file).
   */
  | { readonly type: "cluster_id"; readonly clusterId: string; readonly source: string }
  /**
   * The bootstrap gate: this node started from an empty data directory, and the cluster
   * its peers belong to already exists and lists another incarnation of it. It must not
   * take part (it forgot what it promised); the runtime stops. Reported once.
   */
  | { readonly type: "refused"; readonly reason: string }
  /** The bootstrap gate opened: this empty node may now vote and campaign. */
  | { readonly type: "bootstrap"; readonly reason: string };

export type RoleEvent = {
  readonly type: "role";
  readonly role: Role;
  readonly term: number;
  readonly masterId: NodeId | null;
  readonly preVote: boolean;
  readonly reason: string;
  /**
   * Part of a switchover. On a backup: the old master stepped down because the backup it
   * chose ran for the role (its pending writes are in that backup's log and will be
   * committed there). On a candidate or a master: the master asked this node to take over.
   */
  readonly handover: boolean;
};

export interface Ready {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  /**
   * Send only once this Ready's hard state and entries are durable; a heartbeat response,
   * which promises only its term, may leave as soon as that term is durable.
   */
  readonly messages: readonly Message[];
  /**
   * The master's appends and heartbeats: they promise nothing about this node's disk, so
   * they may leave at once, while the master writes the same entries (Raft §10.2.1). The
   * master counts itself towards a commit only for entries `persisted` reports durable.
   */
  readonly messagesNow: readonly Message[];
  readonly committed: readonly Entry[];
  /**
   * A snapshot received by state transfer that replaces this node's log and state: the
   * runtime makes it durable and restores the state machine from it before it persists
   * this Ready's entries or applies its committed entries (which all follow it).
   */
  readonly snapshot: SnapshotMeta | null;
  /**
   * Backups that need a state transfer: the entries they miss are compacted away. The
   * runtime streams its newest snapshot to each and calls `transferFailed` if it fails.
   */
  readonly transfers: readonly NodeId[];
  readonly reads: readonly ReadState[];
  readonly events: readonly CoreEvent[];
}

interface PendingRead {
  readonly requestId: number;
  readonly index: number;
  readonly context: number;
}

export class Replica {
  readonly id: NodeId;
  private readonly config: ReplicaConfig;
  private readonly prng: Prng;
  /** Every member but this node, learners included (appends go to each). */
  private peers: readonly NodeId[] = [];
  private readonly log: ReplicaLog;
  /** This node's data directory's incarnation, in every message it sends (see Member). */
  private readonly incarnation: number;
  /**
   * The members this master bound in its term, by the index of the entry that bound them:
   * each counts for commits from that index on (commitCandidate).
   */
  private readonly boundAt = new Map<NodeId, number>();
  /** This data directory was added to a running cluster (it started from a learned configuration). */
  private readonly joinedCluster: boolean;
  /** The configuration in effect: the newest config entry in the log, committed or not. */
  private configuration: Configuration;
  /** Index of the entry that set `configuration`; 0 when it came from a snapshot or start. */
  private configIndex = 0;
  /** The configuration at the snapshot's index (what the log below it decided). */
  private snapshotConfig: Configuration;
  /** Set once a committed configuration dropped this node; reported once. */
  private removed = false;
  /**
   * Whether a configuration from the log or a snapshot has listed this data directory.
   * Until then a member added to a running cluster is replaying configurations from before
   * its addition, which do not list it: that is not a removal.
   */
  private listedOnce: boolean;
  /**
   * While a backup: the highest index this node has confirmed matches the log of the
   * master it follows in this term (a successful append or snapshot from it). A commit
   * index heard in a heartbeat is used only up to here: a heartbeat carries what the
   * master believes this node holds, and that belief may be about an earlier incarnation
   * of it, whose log this node does not have.
   */
  private confirmedIndex = 0;
  private lastConfirmTerm = 0;

  private currentTerm: number;
  private vote: NodeId | null;
  private currentRole: Role = "backup";
  private master: NodeId | null = null;
  /** While a candidate: whether this round only asks for pre-votes. */
  private preVoteRound = false;
  private readonly votes = new Map<NodeId, boolean>();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private electionTimeout = 0;
  /** Set when the transport reported the master unreachable, until the timer restarts. */
  private unreachableMaster: NodeId | null = null;
  /**
   * Set from the loss of the master's connection until a master is followed or this node
   * yields: while set, granting a pre-vote to a node ahead of this one in the take-over
   * order (a lower id) makes this node stand back instead of running too.
   */
  private takingOver = false;
  /** The term in which this node last stood back from a pre-vote (yieldPreVote), or -1. */
  private yieldedInTerm = -1;
  /**
   * While a master hands its role over (switchover): the chosen backup, the ticks since it
   * began, and whether TimeoutNow went out since the last heartbeat. No new writes are
   * taken meanwhile, so the backup can catch up with a log that stops growing.
   */
  private switchover: { readonly target: NodeId; elapsed: number; sent: boolean } | null = null;
  /** While a candidate: this election was asked for by the master (TimeoutNow). */
  private handoverElection = false;

  private readonly progress = new Map<NodeId, Progress>();
  /** Highest index handed out in `committed`: each entry is applied once per node. */
  private applied: number;
  /**
   * Backups owed an append even if it carries no entries: commit news (maybeCommit,
   * onAppendResponse, and each tick for what those missed) and a probe for an append lost
   * while idle. Commit news leaves at once, although under load the next append would
   * often carry the commit index for free: a backup answers the writes forwarded to it
   * only once it applies them, and with every client on a backup the next entries come
   * from those answers, so waiting for them cost every such write up to a tick (writes
   * through a backup 1.5 times as many a second with it, docs/benchmarks.md). The price is
   * an empty append and its acknowledgement per commit, a few percent of the master path.
   */
  private readonly appendDue = new Set<NodeId>();

  private readContext = 0;
  private readContextSent = 0;
  private readonly pendingReads: PendingRead[] = [];
  /** Reads that wait until this master has committed an entry of its own term. */
  private readonly readsAwaitingCommit: number[] = [];
  private readonly readAcks = new Map<NodeId, number>();

  private lastHardState: HardState;
  private outMessages: Message[] = [];
  private outMessagesNow: Message[] = [];
  private outReads: ReadState[] = [];
  private outTransfers: NodeId[] = [];
  private installed: SnapshotMeta | null = null;
  private outEvents: CoreEvent[] = [];

  /**
   * While true, this node lost its data and is catching up from a master: it grants no
   * vote and never campaigns (it may have voted before it lost its data, and it may lack
   * committed entries, so its vote could elect a second master or one that lacks them).
   */
  private joining: boolean;
  /** While joining: the highest commit index the master of this term announced. */
  private joinTarget = 0;
  /**
   * While joining: the peers that told this node their current term. Before it lost its
   * data this node may have helped commit entries, or voted, in terms it no longer knows;
   * a master of an older term (one that was paused, say) could then use its
   * acknowledgements to commit over entries committed later. Every such term is known to
   * the other members of that majority, and any `peers - quorum + 2` peers include one
   * of them: only once that many have answered (and their highest term is adopted) does
   * the node follow a master.
   */
  private readonly termProbeAnswers = new Set<NodeId>();
  private termProbeElapsed = 0;

  /** The cluster id: known from storage, a committed config entry, a snapshot or a welcome. */
  private clusterIdKnown: string | null;
  /** This process started from an empty data directory without a cluster id. */
  private readonly startedEmpty: boolean;
  /**
   * The bootstrap gate, while closed: this node started from an empty data directory
   * with no cluster id and no configuration learned with `--join`. It might be a brand-new
   * member of a cluster being bootstrapped, or a member whose data directory was wiped and
   * that was restarted with its old command line: the latter forgot its votes and what it
   * acknowledged, so it must not vote. It asks its peers (term probes) and neither votes,
   * campaigns nor follows a master until either a majority of the voters, itself included,
   * answered that they bootstrap too (kind "bootstrap"; `empty` holds them), or a peer
   * answered with the cluster's id and welcomed it (then it joins and catches up before
   * it votes). An answer with the id and no welcome means that the cluster knows another
   * incarnation of this member: the node is refused. Kind "rejoin" (a bare `--join`) never
   * bootstraps: it waits for a welcome.
   */
  private gate: { readonly kind: "bootstrap" | "rejoin"; readonly empty: Set<NodeId> } | null;
  private refusedReported = false;
  /**
   * Let in by the gate as a member no master ever heard from (see `onGateAnswer`): it
   * probes the cluster's term like a joining node, then votes without catching up first.
   * Kept in memory only: its log stays empty meanwhile, so a restart closes the gate again.
   */
  private welcomed = false;

  /**
   * `options.join`: the node's storage was wiped and it rejoins an existing cluster. It
   * takes effect only on empty storage (a node that still has its data has its votes)
   * and lasts, across restarts, until the node has caught up with a master.
   */
  constructor(
    config: ReplicaConfig,
    prng: Prng,
    restored: RestoredState = EMPTY_STATE,
    options: {
      readonly join?: boolean;
      /** This data directory's member incarnation; 0 for the bootstrap incarnation. */
      readonly incarnation?: number;
      /**
       * A member added to a running cluster: the configuration it learned when it joined,
       * used when neither log nor snapshot holds one.
       */
      readonly configuration?: Configuration;
      /**
       * The command line's members, with their addresses: the configuration of a node
       * that bootstrapped, until the log or a snapshot holds one. Default: `config.members`
       * without addresses.
       */
      readonly initialConfiguration?: Configuration;
      /** The cluster id the data directory holds, if any. */
      readonly clusterId?: string | null;
      /**
       * Close the bootstrap gate (see `gate`): the runtime asks for it when the data
       * directory is empty, holds no cluster id and no configuration learned with `--join`;
       * "rejoin" when the node was started with a bare `--join`. Ignored on a non-empty log.
       */
      readonly gate?: "bootstrap" | "rejoin";
    } = {},
  ) {
    this.config = validateReplicaConfig(config);
    this.id = config.id;
    this.prng = prng;
    this.incarnation = options.incarnation ?? 0;
    this.joinedCluster = options.configuration !== undefined;
    const fromStorage = restored.snapshot.config;
    const me = fromStorage === undefined ? undefined : memberOf(fromStorage, config.id);
    this.listedOnce =
      !this.joinedCluster ||
      (me !== undefined && (me.incarnation === 0 ? false : me.incarnation === options.incarnation));
    this.log = new ReplicaLog(restored.snapshot, restored.entries, restored.hardState.commitIndex);
    this.snapshotConfig =
      restored.snapshot.config ??
      options.configuration ??
      options.initialConfiguration ??
      initialConfiguration(config.members);
    this.configuration = this.snapshotConfig;
    this.peers = this.configuration.filter((m) => m.id !== this.id).map((m) => m.id);
    this.rescanConfiguration();
    this.currentTerm = restored.hardState.term;
    this.vote = restored.hardState.votedFor;
    this.applied = restored.snapshot.index;
    const empty =
      restored.hardState.term === 0 &&
      restored.snapshot.index === 0 &&
      restored.entries.length === 0;
    this.clusterIdKnown = options.clusterId ?? restored.snapshot.clusterId ?? null;
    const gated = options.gate !== undefined && empty;
    this.startedEmpty = gated;
    this.gate = gated ? { kind: options.gate!, empty: new Set() } : null;
    // A cluster of one has nobody to ask: it bootstraps alone.
    if (this.gate?.kind === "bootstrap" && this.voterIds().length === 1) this.gate = null;
    this.joining =
      restored.hardState.joining === true || (options.join === true && empty && !gated);
    this.lastHardState = restored.hardState;
    assert(this.log.lastTerm() <= this.currentTerm, "replica: log term above current term");
    this.becomeBackup(this.currentTerm, null, "started");
  }

  // ---------------------------------------------------------------- observation

  get role(): Role {
    return this.currentRole;
  }
  get term(): number {
    return this.currentTerm;
  }
  get votedFor(): NodeId | null {
    return this.vote;
  }
  get masterId(): NodeId | null {
    return this.master;
  }
  get commitIndex(): number {
    return this.log.commitIndex;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get lastIndex(): number {
    return this.log.lastIndex();
  }
  get durableIndex(): number {
    return this.log.durableIndex();
  }
  /** The configuration in effect (the newest in the log, maybe not committed yet). */
  get members(): Configuration {
    return this.configuration;
  }
  /** Whether a configuration change is in the log but not committed yet. */
  get changeInProgress(): boolean {
    return this.configIndex > this.log.commitIndex;
  }
  /** Whether the configuration lists this node, this incarnation of it, as a voter. */
  get isVoter(): boolean {
    const me = memberOf(this.configuration, this.id);
    return me?.voter === true && this.listsSelf(me);
  }
  /** The backup a switchover hands the role to, while one is under way (master only). */
  get switchoverTarget(): NodeId | null {
    return this.switchover?.target ?? null;
  }

  get isPreCandidate(): boolean {
    return this.currentRole === "candidate" && this.preVoteRound;
  }
  termAt(index: number): number | undefined {
    return this.log.termAt(index);
  }
  entryAt(index: number): Entry | undefined {
    return this.log.entry(index);
  }
  snapshotMeta(): SnapshotMeta {
    return { ...this.log.snapshot(), config: this.snapshotConfig };
  }
  /** The last index the snapshot covers, as `snapshotMeta().index` without the copy. */
  get snapshotIndex(): number {
    return this.log.snapshot().index;
  }
  /**
   * The cluster id the log holds: the newest config entry's, committed or not, else the
   * one known. A master copies it into every config entry it writes, and draws one only
   * when there is none, so the committed log never holds two.
   */
  private logClusterId(): string | null {
    for (let i = this.log.lastIndex(); i > this.log.snapshot().index; i--) {
      const entry = this.log.entry(i);
      if (entry?.kind !== "config") continue;
      const clusterId = decodeClusterId(entry.data);
      if (clusterId !== null) return clusterId;
    }
    return this.clusterIdKnown;
  }
  /** The configuration in effect at `index` (applied entries only: a snapshot's). */
  configAt(index: number): Configuration {
    for (let i = Math.min(index, this.log.lastIndex()); i > this.log.snapshot().index; i--) {
      const entry = this.log.entry(i);
      if (entry?.kind === "config") {
        const config = decodeConfiguration(entry.data);
        assert(config !== null, `replica ${this.id}: undecodable config entry ${i} in own log`);
        return config;
      }
    }
    return this.snapshotConfig;
  }
  hardState(): HardState {
    const state = {
      term: this.currentTerm,
      votedFor: this.vote,
      commitIndex: this.log.commitIndex,
    };
    return this.joining && !this.welcomed ? { ...state, joining: true } : state;
  }
  private onTermProbeResponse(m: TermProbeResponse): void {
    if (this.gate !== null) {
      this.onGateAnswer(m);
      return;
    }
    if (!this.probingTerm) return;
    if (this.welcomed && m.bound) {
      this.refuse(this.boundReason(m));
      return;
    }
    if (m.term > this.currentTerm)
      this.becomeBackup(m.term, null, `learned term ${m.term} from node ${m.from}`);
    this.termProbeAnswers.add(m.from);
    if (!this.probingTerm) {
      // This node may have voted in this term before it lost its data: count that vote as
      // cast, so that it never votes twice in it.
      if (this.vote === null) this.vote = this.id;
      if (this.welcomed) {
        // Never heard from, it holds no acknowledgement anyone counted: once it knows
        // the term (and counts its vote in it as cast) it votes like any empty member.
        this.joining = false;
        this.welcomed = false;
        this.emitRole(
          `learned the cluster's term (${this.currentTerm}) from ${this.termProbeAnswers.size} peers: now a voting member`,
        );
        return;
      }
      this.emitRole(
        `learned the cluster's term (${this.currentTerm}) from ${this.termProbeAnswers.size} peers`,
      );
    }
  }

  /** Whether this node lost its data and is still catching up (it neither votes nor campaigns). */
  get isJoining(): boolean {
    return this.joining;
  }
  /** The cluster id, once committed (or learned when this node joined); null before. */
  get clusterId(): string | null {
    return this.clusterIdKnown;
  }
  /** Whether the bootstrap gate is closed (see `gate`): this node neither votes nor campaigns. */
  get isGated(): boolean {
    return this.gate !== null;
  }
  /** Per-backup replication state, for status pages (master only; empty otherwise). */
  peerProgress(): ReadonlyMap<NodeId, Readonly<Progress>> {
    return this.progress;
  }

  // ---------------------------------------------------------------- inputs

  /** One unit of time has passed. */
  tick(): void {
    this.guard(() => {
      if (this.currentRole === "master") this.tickMaster();
      else this.tickBackup();
    });
  }

  /** An answer to this gated node's term probe (see `gate`). */
  private onGateAnswer(m: TermProbeResponse): void {
    const gate = this.gate!;
    if (m.bound) {
      this.refuse(this.boundReason(m));
      return;
    }
    if (m.clusterId !== "" && m.listed && !m.welcome) {
      // A master heard from this very incarnation, yet the directory holds no log and no
      // hard state: they were lost after it spoke (a crash before its first write reached
      // the disk, or a partial wipe that kept the identity file). It may have voted or
      // acknowledged, so it must not vote as if it never had; waiting would be forever.
      this.refuse(
        `the data directory holds the identity of node ${this.id} (incarnation ${this.incarnation}), which cluster ${m.clusterId} lists, but no log and no hard state: they were lost after this member took part, so it may have promised what it no longer remembers and must not vote. Bring it back as a new member: baton member replace ${this.id}, then start it with an empty data directory and --join <url of a member>`,
      );
      return;
    }
    if (m.clusterId !== "" && m.welcome) {
      // A member of the command line that no master ever heard from (it started late):
      // it joins the cluster that formed without it. Like a node that lost its data, it
      // first learns the cluster's term from enough peers and counts its vote in it as
      // cast (it may have voted before a disk loss nobody noticed). Started with a bare
      // --join (its operator says it lost its data), it also catches up before voting.
      this.gate = null;
      this.learnClusterId(m.clusterId, `node ${m.from} (this member was never heard from)`);
      this.joining = true;
      this.welcomed = gate.kind === "bootstrap";
      this.termProbeAnswers.clear();
      this.outEvents.push({
        type: "bootstrap",
        reason: `cluster ${m.clusterId} formed without this node; joining it (node ${m.from} welcomed it): it will not vote until it has learned the cluster's term${this.welcomed ? "" : " and caught up"}`,
      });
      return;
    }
    if (m.clusterId !== "") return;
    if (!m.bootstrapping || gate.kind !== "bootstrap") return;
    gate.empty.add(m.from);
    const voters = this.voterIds();
    const counted = voters.filter((id) => id === this.id || gate.empty.has(id)).length;
    if (counted < this.quorum()) return;
    this.gate = null;
    this.resetElectionTimer();
    this.outEvents.push({
      type: "bootstrap",
      reason: `bootstrapping a new cluster: ${counted} of ${voters.length} voters (nodes ${[...gate.empty, this.id].sort((a, b) => a - b).join(", ")}) started empty`,
    });
  }

  private boundReason(m: TermProbeResponse): string {
    const cluster = m.clusterId === "" ? "a cluster" : `cluster ${m.clusterId}`;
    return `the data directory is empty, but node ${m.from} belongs to ${cluster}, which knows another incarnation of node ${this.id} (or no longer lists it): this node forgot what it promised and must not vote. Bring it back as a new member: baton member replace ${this.id}, then start it with an empty data directory and --join <url of a member>`;
  }

  private refuse(reason: string): void {
    if (this.refusedReported) return;
    this.refusedReported = true;
    this.outEvents.push({ type: "refused", reason });
  }

  private learnClusterId(clusterId: string, source: string): void {
    if (this.clusterIdKnown === clusterId) return;
    if (this.clusterIdKnown !== null) {
      this.refuse(
        `${source} carries cluster id ${clusterId}, but this node belongs to cluster ${this.clusterIdKnown}`,
      );
      return;
    }
    this.clusterIdKnown = clusterId;
    this.outEvents.push({ type: "cluster_id", clusterId, source });
  }

  /** Whether this joining node still has to learn the cluster's term from its peers. */
  private get probingTerm(): boolean {
    if (this.gate !== null) return true;
    return this.joining && this.termProbeAnswers.size < this.termProbeQuorum();
  }

  /** Peers whose terms a joining node must know: every majority containing it meets them. */
  private termProbeQuorum(): number {
    return this.voterIds().filter((id) => id !== this.id).length - this.quorum() + 2;
  }

  /**
   * A message from a peer arrived. Returns a violation, and changes nothing, when the
   * message breaks a protocol rule (see StepResult).
   */
  step(message: Message): StepResult {
    const violation = this.violationIn(message);
    if (violation !== null) return { ok: false, violation };
    // Votes and acknowledgements count only from a member this configuration lists, and
    // only from the incarnation it lists: an answer from anyone else is dropped. Requests
    // are acted on whoever sends them (Raft does not check membership there): a learner
    // replaying an old part of the log holds an old configuration, which may not list
    // the master that sends it that log, or lists an earlier incarnation of it. Terms and
    // the log check keep requests safe; a heartbeat's commit index is used only as far
    // as this node confirmed the sender's log (see `confirmedIndex`).
    if (!isAnswer(message)) {
      this.guard(() => this.dispatch(message));
      return STEP_OK;
    }
    const member = memberOf(this.configuration, message.from);
    if (member === undefined) {
      // A removed member's acknowledgements still tell this master what it holds, so
      // that it learns of its removal; they count for nothing else.
      const leaving = this.progress.get(message.from)?.leavingSince != null;
      if (leaving && message.type === "append_response") {
        this.guard(() => this.dispatch(message));
        return STEP_OK;
      }
      return { ok: true, ignored: "not_member", detail: `node ${message.from} is not a member` };
    }
    if (!this.listsIncarnation(member, message.incarnation)) {
      return {
        ok: true,
        ignored: "stale_incarnation",
        detail: `${message.type} from node ${message.from} incarnation ${message.incarnation}, but the configuration lists incarnation ${member.incarnation}`,
      };
    }
    this.guard(() => this.dispatch(message));
    return STEP_OK;
  }

  /**
   * Whether `incarnation` may speak for `member`. A listed 0 stands for the incarnation
   * that bootstrapped the cluster (configurations from the command line): only a member
   * that was added or replaced has a drawn one, and then only that one counts.
   */
  private listsIncarnation(member: Member, incarnation: number): boolean {
    return member.incarnation === 0 || member.incarnation === incarnation;
  }

  /**
   * Whether the configuration lists this very data directory as `member`. A member added
   * to a running cluster has a drawn incarnation and is never the one a 0 stands for: a
   * configuration from before it was added, seen while it replays the log, is not its.
   */
  private listsSelf(member: Member): boolean {
    if (member.incarnation === 0) return !this.joinedCluster;
    return member.incarnation === this.incarnation;
  }

  /** The protocol rule `m` breaks before this node acts on it, or null. */
  private violationIn(m: Message): string | null {
    if (m.to !== this.id) return `addressed to node ${m.to}, not to this node`;
    if (m.from === this.id) return "claims to come from this node";
    if (!Number.isSafeInteger(m.term) || m.term < 0) return `bad term ${m.term}`;
    if (m.term !== this.currentTerm || this.currentRole === "candidate") {
      return m.type === "append" ? violationInAppend(m) : null;
    }
    const claimsMastership = m.type === "append" || m.type === "heartbeat";
    if (this.currentRole === "backup") {
      if (claimsMastership && this.master !== null && this.master !== m.from) {
        return `a second master in term ${m.term}: node ${m.from}, after node ${this.master}`;
      }
      return m.type === "append" ? violationInAppend(m) : null;
    }
    // This node is the master of m.term: nobody else may act as one in it (Raft §5.2).
    if (claimsMastership || m.type === "timeout_now") {
      return `a second master in term ${m.term}: node ${m.from} sent ${m.type}`;
    }
    if (m.type === "append_response" && m.success && m.index > this.log.lastIndex()) {
      return `acknowledged index ${m.index}, past this master's last index ${this.log.lastIndex()}`;
    }
    return null;
  }

  /** Proposes a command; the master appends it to its log. */
  propose(data: Uint8Array): ProposeResult {
    if (this.currentRole !== "master") {
      return { ok: false, reason: "not_master", masterHint: this.master };
    }
    if (this.switchover !== null) {
      return { ok: false, reason: "switchover", target: this.switchover.target };
    }
    const uncommitted = this.log.lastIndex() - this.log.commitIndex;
    if (
      uncommitted >= this.config.uncommittedEntriesMax ||
      (uncommitted > 0 &&
        this.log.uncommittedBytes() + data.length > this.config.uncommittedBytesMax)
    ) {
      return { ok: false, reason: "busy" };
    }
    const entry: Entry = {
      index: this.log.lastIndex() + 1,
      term: this.currentTerm,
      kind: "command",
      data,
    };
    this.guard(() => this.appendOwn(entry));
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Starts a switchover (dissertation §3.10): hands the master role to `target`, or, when
   * null, to the backup that holds the most of the log among those heard from lately.
   * The master stops taking new writes, keeps replicating until the target holds its last
   * index, then sends it TimeoutNow; the target runs at once and voters answer it although
   * they heard from this master a moment ago. If no new master appears within the longest
   * election timeout, the switchover is given up and writes resume here.
   */
  transferMastership(target: NodeId | null): SwitchoverResult {
    if (this.currentRole !== "master") {
      return { ok: false, reason: "not_master", masterHint: this.master };
    }
    if (this.switchover !== null) {
      return { ok: false, reason: "in_progress", target: this.switchover.target };
    }
    if (target !== null && !this.peers.includes(target)) {
      return { ok: false, reason: "unknown_member" };
    }
    if (target !== null && memberOf(this.configuration, target)?.voter !== true) {
      return { ok: false, reason: "not_voter" };
    }
    const chosen = target ?? this.mostCaughtUpPeer();
    if (chosen === null) return { ok: false, reason: "no_candidate" };
    if (!this.isRecentlyActive(chosen)) return { ok: false, reason: "unreachable" };
    this.guard(() => {
      this.switchover = { target: chosen, elapsed: 0, sent: false };
      this.maybeSendTimeoutNow();
    });
    return { ok: true, target: chosen };
  }

  /**
   * Proposes one membership change (see configuration.ts): appends a config entry that
   * takes effect at once; the change is done when that entry is committed. Nothing
   * changes when it is refused. `incarnation` of an added member must be drawn by the
   * caller (never 0): the new member learns it when it starts with `--join`.
   */
  changeMembers(change: MemberChange): ChangeResult {
    if (this.currentRole !== "master") {
      const hint = this.master === null ? "unknown" : `node ${this.master}`;
      return {
        ok: false,
        reason: "not_master",
        masterHint: this.master,
        detail: `not the master (master: ${hint})`,
      };
    }
    if (this.changeInProgress) {
      return {
        ok: false,
        reason: "in_progress",
        detail: `a membership change (entry ${this.configIndex}) is not committed yet: retry when it is`,
      };
    }
    if (this.switchover !== null) {
      return {
        ok: false,
        reason: "in_progress",
        detail: `a switchover to node ${this.switchover.target} is under way: retry when it ends`,
      };
    }
    if (this.log.termAt(this.log.commitIndex) !== this.currentTerm) {
      return {
        ok: false,
        reason: "not_ready",
        detail: "this master has not committed an entry of its term yet: retry shortly",
      };
    }
    if (change.type === "add" && (change.member.incarnation < 1 || change.member.voter)) {
      return {
        ok: false,
        reason: "bad_request",
        detail: "a new member is added as a learner with a drawn incarnation",
      };
    }
    const next = applyChange(this.configuration, change);
    if (!next.ok) return next;
    if (change.type === "promote") {
      const pr = this.progress.get(change.id);
      const lag = this.log.lastIndex() - (pr?.match ?? 0);
      if (pr === undefined || !pr.heard) {
        return {
          ok: false,
          reason: "not_caught_up",
          detail: `node ${change.id} has not answered this master yet: start it (baton start --id ${change.id} … --join <url of a member>) and wait until it has caught up`,
        };
      }
      // A learner holds at least the entry that added it once it has caught up at all.
      if (pr.match === 0) {
        return {
          ok: false,
          reason: "not_caught_up",
          detail: `node ${change.id} has not acknowledged an entry of this master yet: wait until it has caught up`,
        };
      }
      if (lag > this.config.promoteLagEntriesMax) {
        return {
          ok: false,
          reason: "not_caught_up",
          detail: `node ${change.id} is ${lag} entries behind (at most ${this.config.promoteLagEntriesMax} to be promoted): wait until it has caught up`,
        };
      }
      if (!this.isRecentlyActive(change.id)) {
        return {
          ok: false,
          reason: "not_caught_up",
          detail: `node ${change.id} has not answered lately: start it (with --join) and wait until it has caught up`,
        };
      }
    }
    if (change.type === "remove") {
      if (change.id === this.id) {
        return {
          ok: false,
          reason: "is_master",
          detail: `node ${change.id} is the master: hand the role over first (baton switchover), then remove it`,
        };
      }
      const voters = next.config.filter((m) => m.voter).map((m) => m.id);
      const alive = voters.filter((id) => id === this.id || this.isRecentlyActive(id)).length;
      if (alive < Math.floor(voters.length / 2) + 1) {
        return {
          ok: false,
          reason: "no_quorum",
          detail: `without node ${change.id}, only ${alive} of ${voters.length} voters answer this master, fewer than a majority: bring members back first`,
        };
      }
    }
    const entry: Entry = {
      index: this.log.lastIndex() + 1,
      term: this.currentTerm,
      kind: "config",
      data: encodeConfiguration(next.config, this.logClusterId()),
    };
    this.guard(() => this.appendOwn(entry));
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Registers a linearizable read (ReadIndex, dissertation §6.4). The answer arrives in a
   * later Ready's `reads`; reads that arrive together share one heartbeat round.
   */
  readIndex(requestId: number): ReadIndexResult {
    if (this.currentRole !== "master") {
      return { ok: false, reason: "not_master", masterHint: this.master };
    }
    this.guard(() => {
      if (this.log.termAt(this.log.commitIndex) !== this.currentTerm) {
        this.readsAwaitingCommit.push(requestId);
      } else {
        this.startRead(requestId);
      }
    });
    return { ok: true };
  }

  /** Storage reports every entry up to (index, term) durable. */
  persisted(index: number, term: number): void {
    this.guard(() => {
      if (this.log.markDurable(index, term) && this.currentRole === "master") this.maybeCommit();
    });
  }

  /**
   * The transport lost its connection to `peer`, or could not reach it. When that peer
   * is the master, its process is likely dead: leave its lease and ask for pre-votes at
   * once instead of waiting for the election timeout. Safety does not depend on this:
   * pre-vote and real votes still decide, and a peer that still hears the master refuses.
   */
  peerUnreachable(peer: NodeId): void {
    this.guard(() => {
      if (
        this.currentRole === "backup" &&
        peer === this.master &&
        !this.joining &&
        this.gate === null &&
        this.isVoter
      ) {
        // Every backup notices at the same moment. Asking in the order of their ids, one
        // stagger apart, lets the first finish its pre-vote and election before the next
        // one asks, so the vote is not split (a split costs a whole election timeout).
        // If the first cannot win (it is down too, or its log is behind), the next asks
        // one stagger later.
        this.master = null;
        this.electionTimeout =
          this.electionElapsed + 1 + this.takeoverRank(peer) * this.takeoverStaggerTicks();
        this.unreachableMaster = peer;
        this.takingOver = true;
      }
    });
  }

  /** This node's place among the members other than `lost`, in the order of their ids. */
  private takeoverRank(lost: NodeId): number {
    const others = this.voterIds().filter((m) => m !== lost);
    const rank = others.indexOf(this.id);
    assert(rank >= 0, `replica ${this.id}: not among its own members`);
    return rank;
  }

  /** Ticks between two backups' take-over attempts: room for a pre-vote and a vote. */
  private takeoverStaggerTicks(): number {
    return Math.max(2, Math.ceil(this.config.heartbeatTicks / 2));
  }

  /**
   * The runtime took a snapshot of the state machine covering the log up to at least
   * `index` (which must be applied): forget the entries up to `index`. Keeping some
   * entries below the snapshot lets slightly lagging backups catch up without a transfer.
   */
  compact(index: number): void {
    this.guard(() => {
      assert(index <= this.applied, `replica ${this.id}: compacting unapplied entries`);
      const term = this.log.termAt(index);
      if (index <= this.log.snapshot().index || term === undefined) return;
      this.snapshotConfig = this.configAt(index);
      this.log.compact({ index, term });
    });
  }

  /**
   * A snapshot streamed by master `from` in `term` has fully arrived. Returns true when
   * the runtime must adopt it (the next Ready carries it in `snapshot`); false when it is
   * stale or the log already holds what it covers, in which case the runtime drops it.
   */
  installSnapshot(from: NodeId, term: number, meta: SnapshotMeta): boolean {
    assert(
      meta.config === undefined || decodeConfiguration(encodeConfiguration(meta.config)) !== null,
      `replica ${this.id}: snapshot with a malformed configuration`,
    );
    let adopt = false;
    this.guard(() => {
      if (term < this.currentTerm) return;
      if (term > this.currentTerm)
        this.becomeBackup(term, from, `saw term ${term} from node ${from}`);
      if (this.probingTerm) return;
      this.followMaster(from);
      const log = this.log;
      if (meta.index <= log.commitIndex) {
        this.confirm(log.commitIndex);
        this.sendAppendResponse(from, true, log.commitIndex, 0, 0);
      } else if (log.matches(meta.index, meta.term)) {
        log.commitTo(meta.index);
        this.confirm(meta.index);
        this.sendAppendResponse(from, true, meta.index, 0, 0);
      } else {
        // Raft §7: the snapshot replaces the whole log; state continues from it.
        log.resetToSnapshot(meta);
        this.applied = meta.index;
        this.installed = meta;
        this.snapshotConfig = meta.config ?? this.snapshotConfig;
        if (meta.clusterId !== undefined) {
          this.learnClusterId(meta.clusterId, `the snapshot at index ${meta.index}`);
        }
        this.configIndex = 0;
        this.rescanConfiguration();
        this.confirm(meta.index);
        this.sendAppendResponse(from, true, meta.index, 0, 0);
        adopt = true;
      }
      this.maybeFinishJoining();
    });
    return adopt;
  }

  /**
   * A state transfer to `peer` of the snapshot at `index` finished: the backup holds it, or
   * a newer state. Replication probes from just after it at once, without entries until
   * the backup answers (see Progress.probeEmpty). The backup answers once it has installed
   * the snapshot, however long that takes (a large state), and a backup that does not hold
   * it after all (it restarted before the install was durable) answers "no", which probes
   * back and so starts another transfer. The transfer is not repeated on a timer: a slow
   * install would then never catch up with the newest snapshot.
   */
  transferDone(peer: NodeId, index: number): void {
    this.guard(() => {
      if (this.currentRole !== "master") return;
      const pr = this.progress.get(peer);
      if (pr === undefined || pr.state !== "transfer") return;
      // The snapshot sent is the newest stored one, which may be newer than the one the
      // core's log starts from (`transferIndex`): the log keeps entries behind a snapshot.
      // An older one (a transfer begun in an earlier term) is no use: probe from what the
      // backup holds, which asks for another transfer if it still needs one.
      const needed = pr.transferIndex;
      pr.becomeProbe();
      if (index >= needed) {
        assert(
          index <= this.log.lastIndex(),
          `replica ${this.id}: sent snapshot ${index} is past the log's end ${this.log.lastIndex()}`,
        );
        pr.next = Math.max(pr.match + 1, index + 1);
        pr.probeEmpty = true;
      }
      this.appendDue.add(peer);
    });
  }

  /** A state transfer to `peer` failed or timed out; replication will try again. */
  transferFailed(peer: NodeId): void {
    this.guard(() => {
      const pr = this.progress.get(peer);
      if (pr !== undefined && pr.state === "transfer") pr.becomeProbe();
    });
  }

  /** Starts an election now (tests, and a planned switchover's target). */
  campaign(): void {
    this.guard(() => {
      if (this.currentRole !== "master" && !this.joining && this.gate === null && this.isVoter)
        this.startElection("asked to campaign");
    });
  }

  /** Whether `ready()` would hand out anything. */
  hasReady(): boolean {
    return (
      this.outMessages.length > 0 ||
      this.outMessagesNow.length > 0 ||
      this.outReads.length > 0 ||
      this.outTransfers.length > 0 ||
      this.installed !== null ||
      this.outEvents.length > 0 ||
      (!this.removed && this.isRemovedByCommit()) ||
      this.applied < this.log.commitIndex ||
      this.log.hasUnpersisted() ||
      this.appendDue.size > 0 ||
      this.readContext > this.readContextSent ||
      !sameHardState(this.lastHardState, this.hardState()) ||
      (this.currentRole === "master" && this.hasAppendsToSend())
    );
  }

  /** Everything the runtime must now do; see the file comment for the order. */
  ready(): Ready {
    this.guard(() => this.flushMaster());
    this.maybeReportRemoved();
    const hardState = this.hardState();
    const changed = !sameHardState(hardState, this.lastHardState);
    this.lastHardState = hardState;
    const committed: Entry[] = [];
    while (this.applied < this.log.commitIndex) {
      const entry = this.log.entry(this.applied + 1);
      assert(
        entry !== undefined,
        `replica ${this.id}: committed entry ${this.applied + 1} missing`,
      );
      committed.push(entry);
      this.applied++;
      if (entry.kind === "config") {
        const clusterId = decodeClusterId(entry.data);
        if (clusterId !== null) this.learnClusterId(clusterId, `committed entry ${entry.index}`);
      }
    }
    const ready: Ready = {
      hardState: changed ? hardState : null,
      entries: this.log.takeUnpersisted(),
      messages: this.outMessages,
      messagesNow: this.outMessagesNow,
      committed,
      snapshot: this.installed,
      transfers: this.outTransfers,
      reads: this.outReads,
      events: this.outEvents,
    };
    this.outMessages = [];
    this.outMessagesNow = [];
    this.outReads = [];
    this.outTransfers = [];
    this.installed = null;
    this.outEvents = [];
    return ready;
  }

  // ---------------------------------------------------------------- time

  private tickMaster(): void {
    this.heartbeatElapsed++;
    // A master's electionElapsed counts its ticks in office; backups' answers are stamped
    // with it (Progress.lastActive).
    this.electionElapsed++;
    if (this.config.checkQuorum && !this.quorumActive()) {
      this.becomeBackup(this.currentTerm, null, "check-quorum: no contact with a majority");
      return;
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat(this.readContext);
      if (this.switchover !== null) this.switchover.sent = false; // TimeoutNow may be lost
    }
    if (this.switchover !== null) {
      if (++this.switchover.elapsed >= this.config.electionTicksMax) {
        // The target did not take over in time (it is slow, or it crashed): writes resume.
        this.switchover = null;
      } else {
        this.maybeSendTimeoutNow();
      }
    }
    const commit = this.log.commitIndex;
    for (const [peer, pr] of this.progress) {
      if (pr.commitSent < Math.min(commit, pr.match)) this.appendDue.add(peer);
    }
    this.maybeBindIncarnations();
    this.pruneLeaving();
  }

  /**
   * Stops replicating to a removed member once it holds the entry that removed it and has
   * been told that entry is committed (it then stops on its own), or after a few election
   * timeouts (it is down, or cut off: its operator stops it).
   */
  private pruneLeaving(): void {
    for (const [peer, pr] of this.progress) {
      if (pr.leavingSince === null) continue;
      const told =
        this.configIndex <= this.log.commitIndex &&
        pr.match >= this.configIndex &&
        pr.commitSent >= this.configIndex;
      const given = this.electionElapsed - pr.leavingSince > 4 * this.config.electionTicksMax;
      if (!told && !given) continue;
      this.progress.delete(peer);
      this.appendDue.delete(peer);
    }
  }

  /**
   * A configuration from the command line lists every member with incarnation 0 (any).
   * As soon as it has heard from such a member, this master writes down the incarnation
   * it answered with, so that from then on a
   * message from any other incarnation of that member (a wiped data directory, say) is
   * ignored. Members not heard from yet are bound later. With `drawClusterId`, the same
   * entry carries the cluster id, drawn here when the log holds none (the first master of
   * a cluster that bootstrapped, or of one upgraded from a version without cluster ids):
   * one config entry through the log, so every member ends with the same id, no race.
   */
  private maybeBindIncarnations(): void {
    const { bindIncarnations, drawClusterId } = this.config;
    if (!bindIncarnations && !drawClusterId) return;
    if (this.switchover !== null) return;
    const heardFrom = (m: Member): number =>
      m.id === this.id ? this.incarnation : (this.progress.get(m.id)?.incarnation ?? 0);
    const binds = (m: Member): boolean =>
      bindIncarnations && m.incarnation === 0 && heardFrom(m) !== 0;
    const toBind = this.configuration.some(binds);
    // A member listed with 0 counts for no commit until it is bound (maybeCommit), so its
    // binding waits neither for this master's first commit (at a cluster's start nothing
    // would ever commit) nor for a change in flight (the binding keeps that change's
    // voters: only the incarnations it accepts narrow). A cluster id alone waits for
    // both, as a membership change does.
    if (
      !toBind &&
      (this.changeInProgress || this.log.termAt(this.log.commitIndex) !== this.currentTerm)
    ) {
      return;
    }
    // Only a member to bind or a missing cluster id changes anything, and a known cluster
    // id means the log's is there too: then the scan of the log is skipped. It runs every
    // tick of a master, and it walks the log back to the snapshot (a few percent of a
    // core when it was not skipped).
    if (this.clusterIdKnown !== null && !toBind) return;
    let clusterId = this.logClusterId();
    let changed = false;
    if (clusterId === null && drawClusterId) {
      clusterId = this.drawClusterId();
      changed = true;
    }
    const index = this.log.lastIndex() + 1;
    const config = this.configuration.map((m) => {
      if (!binds(m)) return m;
      changed = true;
      this.boundAt.set(m.id, index);
      return Object.freeze({ ...m, incarnation: heardFrom(m) });
    });
    if (!changed) return;
    this.appendOwn({
      index,
      term: this.currentTerm,
      kind: "config",
      data: encodeConfiguration(config, clusterId),
    });
  }

  /** A new cluster id: this data directory's incarnation and 64 bits from the Prng, in hex. */
  private drawClusterId(): string {
    const hex = (n: number, digits: number) => n.toString(16).padStart(digits, "0");
    const random = hex(this.prng.nextUint32(), 8) + hex(this.prng.nextUint32(), 8);
    return `${hex(this.incarnation, 12)}${random}`;
  }

  private tickBackup(): void {
    if (this.probingTerm) this.sendTermProbes();
    this.electionElapsed++;
    if (this.electionElapsed < this.electionTimeout) return;
    if (this.joining || this.gate !== null || !this.isVoter) {
      // Not a voter (yet): forget a silent master and keep waiting for one to call.
      this.master = null;
      this.resetElectionTimer();
      return;
    }
    const lost = this.unreachableMaster;
    if (this.currentRole === "candidate") this.startElection("election round timed out");
    else if (lost !== null) this.startElection(`lost connection to master ${lost}`);
    else this.startElection("no heartbeat from a master");
  }

  // ---------------------------------------------------------------- role changes

  private becomeBackup(
    term: number,
    master: NodeId | null,
    reason: string,
    handover = false,
  ): void {
    assert(term >= this.currentTerm, "replica: term going backwards");
    const wasMaster = this.currentRole === "master";
    if (term > this.currentTerm) {
      this.currentTerm = term;
      this.vote = null;
      this.joinTarget = 0;
    }
    const changed = this.currentRole !== "backup" || this.master !== master;
    if (this.master !== master || term !== this.lastConfirmTerm) this.confirmedIndex = 0;
    this.lastConfirmTerm = term;
    this.currentRole = "backup";
    this.preVoteRound = false;
    this.handoverElection = false;
    this.switchover = null;
    this.master = master;
    this.progress.clear();
    this.appendDue.clear();
    // Appends due are for backups of a master; a master stepping down has none to give
    // (commit news left set kept hasReady() true forever: seed 118).
    this.resetElectionTimer();
    if (wasMaster) this.abortReads();
    if (changed) this.emitRole(reason, handover);
  }

  private startElection(reason: string): void {
    if (this.config.preVote) this.becomePreCandidate(reason);
    else this.becomeCandidate(reason);
  }

  private becomePreCandidate(reason: string): void {
    assert(this.currentRole !== "master", "replica: master cannot become pre-candidate");
    // A pre-candidate changes neither its term nor its vote (dissertation §9.6).
    this.currentRole = "candidate";
    this.preVoteRound = true;
    this.handoverElection = false;
    this.master = null;
    this.votes.clear();
    this.resetElectionTimer();
    this.emitRole(reason);
    this.requestVotes(true);
  }

  private becomeCandidate(reason: string, handover = false): void {
    assert(this.currentRole !== "master", "replica: master cannot become candidate");
    this.handoverElection = handover;
    this.currentTerm++;
    this.vote = this.id;
    this.currentRole = "candidate";
    this.preVoteRound = false;
    this.master = null;
    this.votes.clear();
    this.resetElectionTimer();
    this.emitRole(reason, handover);
    this.requestVotes(false);
  }

  private becomeMaster(): void {
    assert(
      this.currentRole === "candidate" && !this.preVoteRound,
      "replica: master without election",
    );
    assert(this.isVoter, `replica ${this.id}: a non-voter won an election`);
    assert(this.vote === this.id, "replica: master did not vote for itself");
    this.currentRole = "master";
    this.master = this.id;
    this.takingOver = false;
    this.boundAt.clear();
    const handover = this.handoverElection;
    this.handoverElection = false;
    this.heartbeatElapsed = 0;
    this.electionElapsed = 0;
    this.readAcks.clear();
    for (const peer of this.peers) {
      this.progress.set(peer, this.newProgress(peer));
    }
    this.emitRole(handover ? "won the switchover's election" : "won the election", handover);
    // Raft §8: a new master commits an entry of its own term to learn what is committed.
    this.appendOwn({
      index: this.log.lastIndex() + 1,
      term: this.currentTerm,
      kind: "noop",
      data: EMPTY,
    });
  }

  private newProgress(peer: NodeId): Progress {
    const pr = new Progress(this.log.lastIndex() + 1);
    pr.listedIncarnation = memberOf(this.configuration, peer)?.incarnation ?? 0;
    // A member just added has not had the chance to answer: count it as heard from now.
    pr.lastActive = this.electionElapsed;
    return pr;
  }

  private resetElectionTimer(): void {
    this.unreachableMaster = null;
    this.electionElapsed = 0;
    this.electionTimeout = this.prng.int(
      this.config.electionTicksMin,
      this.config.electionTicksMax,
    );
  }

  private emitRole(reason: string, handover = false): void {
    this.outEvents.push({
      type: "role",
      role: this.currentRole,
      term: this.currentTerm,
      masterId: this.master,
      preVote: this.preVoteRound,
      reason,
      handover,
    });
  }

  // ---------------------------------------------------------------- messages

  private dispatch(m: Message): void {
    if (m.type === "term_probe") {
      // Answered whatever the terms: the prober only learns, it changes nothing here.
      // Only a node that holds the cluster's log (not gated, not catching up) speaks for
      // what the configuration says of the asker.
      const listed = memberOf(this.configuration, m.from);
      const holdsLog = this.gate === null && !this.joining;
      const informed = this.clusterIdKnown !== null && holdsLog;
      this.send<TermProbeResponse>({
        type: "term_probe_response",
        from: this.id,
        to: m.from,
        term: this.currentTerm,
        clusterId: this.clusterIdKnown ?? "",
        // Not once it holds entries: a master formed the cluster (its id may not have
        // reached this node committed yet), and an empty directory must not count it as
        // one that starts empty too.
        bootstrapping:
          this.startedEmpty &&
          this.clusterIdKnown === null &&
          !this.joining &&
          this.log.lastIndex() === 0,
        welcome: informed && listed?.incarnation === 0,
        // A binding in its log refuses another incarnation before this node learns that
        // the cluster id committed: the binding may be all that tells the asker's wiped
        // directory from the member a master counted (commitCandidate).
        bound:
          (holdsLog &&
            listed !== undefined &&
            listed.incarnation !== 0 &&
            listed.incarnation !== m.incarnation) ||
          (informed && listed === undefined),
        listed: informed && listed !== undefined && listed.incarnation === m.incarnation,
      });
      return;
    }
    if (m.type === "term_probe_response") return this.onTermProbeResponse(m);
    // Heard from: an answer to this master's appends or heartbeats, which only a node that
    // follows it gives. A node in its bootstrap gate ignores those, but refuses a vote of
    // the same term; taken from that late refusal, its incarnation was bound, and the gate
    // read the binding as the sign of a member that lost its data after it took part, and
    // refused to start (whole-node seed 4114821: two members refused so, of five).
    if (
      this.currentRole === "master" &&
      m.term === this.currentTerm &&
      (m.type === "append_response" || m.type === "heartbeat_response")
    ) {
      const pr = this.progress.get(m.from);
      if (pr !== undefined) {
        pr.heard = true;
        if (pr.incarnation === 0) pr.incarnation = m.incarnation;
      }
    }
    if (m.term > this.currentTerm) {
      if (!this.acceptHigherTerm(m)) return;
    } else if (m.term < this.currentTerm) {
      this.answerLowerTerm(m);
      return;
    }
    // A joining node that does not know the cluster's term yet follows no master: it
    // might be a stale one that this node's acknowledgements would help commit.
    if (this.probingTerm && (m.type === "append" || m.type === "heartbeat")) return;
    switch (m.type) {
      case "vote_request":
        return this.onVoteRequest(m);
      case "vote_response":
        return this.onVoteResponse(m);
      case "append":
        return this.onAppend(m);
      case "append_response":
        return this.onAppendResponse(m);
      case "heartbeat":
        return this.onHeartbeat(m);
      case "heartbeat_response":
        return this.onHeartbeatResponse(m);
      case "timeout_now":
        return this.onTimeoutNow(m);
    }
  }

  /** Returns false when the message must be ignored. */
  private acceptHigherTerm(m: Message): boolean {
    if (m.type === "vote_request") {
      // Check-quorum lease: while we hear from a live master (or are one: check-quorum
      // deposes a master that lost its majority), a disrupting candidate is ignored
      // outright (dissertation §4.2.3).
      // A switchover's election is the master's own wish (dissertation §3.10): no lease.
      const inLease =
        this.config.checkQuorum &&
        !m.handover &&
        this.master !== null &&
        (this.currentRole === "master" || this.electionElapsed < this.config.electionTicksMin);
      if (inLease) return false;
      if (m.preVote) return true;
    }
    if (m.type === "vote_response" && m.preVote && m.granted) return true;
    const master = m.type === "append" || m.type === "heartbeat" ? m.from : null;
    // Any message of a newer term from the switchover's target: its vote request may have
    // been lost, and the first this master hears of the new term is the target's append.
    // Its writes then complete under the target (they are in its log) rather than being
    // failed as indeterminate.
    const handedOver =
      this.switchover !== null &&
      this.switchover.target === m.from &&
      (m.type !== "vote_request" || m.handover);
    this.becomeBackup(
      m.term,
      master,
      handedOver
        ? `switchover: handed the master role to node ${m.from}`
        : `saw term ${m.term} from node ${m.from}`,
      handedOver,
    );
    return true;
  }

  private answerLowerTerm(m: Message): void {
    const guarded = this.config.checkQuorum || this.config.preVote;
    if (guarded && (m.type === "append" || m.type === "heartbeat")) {
      // A stale master learns of the newer term from this rejection and steps down;
      // without it, a node stuck at a higher term could never be heard (etcd #5451-style).
      this.send<AppendResponse>({
        type: "append_response",
        from: this.id,
        to: m.from,
        term: this.currentTerm,
        success: false,
        index: 0,
        hintIndex: 0,
        hintTerm: 0,
      });
    } else if (m.type === "vote_request" && m.preVote) {
      this.sendVoteResponse(m.from, this.currentTerm, true, false);
    }
  }

  private onVoteRequest(m: VoteRequest): void {
    // A node answers whatever its own configuration says of it (dissertation §4.1): a
    // member promoted in an entry it has not received yet must still be able to vote, and
    // a candidate counts only the votes its configuration lists, of listed incarnations.
    const canVote =
      !this.joining &&
      this.gate === null &&
      (this.vote === m.from ||
        (this.vote === null && this.master === null) ||
        (m.preVote && m.term > this.currentTerm));
    // Raft §5.4.1: vote only for a candidate whose log is at least as up to date.
    const granted = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);
    if (granted && !m.preVote) {
      this.vote = m.from;
      this.electionElapsed = 0;
    }
    this.sendVoteResponse(m.from, granted ? m.term : this.currentTerm, m.preVote, granted);
    if (granted && m.preVote && m.from < this.id) {
      if (this.takingOver) this.yieldTakeover(m.from);
      else this.yieldPreVote(m.from);
    }
  }

  /**
   * Two backups whose election timeouts ran out together (a master gone silent, no
   * connection lost to tell them) grant each other's pre-votes, then split the real vote,
   * which costs another whole election timeout. A pre-candidate that has just granted the
   * pre-vote of a node with a lower id stands back instead, so one of the two goes on, and
   * the one that stood back grants its real vote. Once per term, so that a node that keeps
   * asking and never wins (one-way cut off) cannot keep this one from standing itself.
   */
  private yieldPreVote(lower: NodeId): void {
    if (this.currentRole !== "candidate" || !this.preVoteRound) return;
    if (this.yieldedInTerm === this.currentTerm) return;
    this.yieldedInTerm = this.currentTerm;
    this.becomeBackup(
      this.currentTerm,
      null,
      `stood back for node ${lower}, which asked for pre-votes at the same time`,
    );
  }

  /**
   * Every backup that lost the dead master's connection asks in the order of their ids;
   * when load delays the one ahead, both may ask at once, grant each other's pre-votes
   * and split the real vote, which costs a whole election timeout. Having just endorsed a
   * node ahead in that order, this one stands back for one election timeout instead. It
   * yields once per lost master, so a node that keeps asking cannot keep it waiting.
   */
  private yieldTakeover(ahead: NodeId): void {
    this.takingOver = false;
    if (this.currentRole === "candidate" && this.preVoteRound) {
      this.becomeBackup(
        this.currentTerm,
        null,
        `stood back for node ${ahead}, ahead in the take-over order`,
      );
    } else if (this.currentRole === "backup") {
      this.resetElectionTimer();
    }
  }

  private onVoteResponse(m: VoteResponse): void {
    if (this.currentRole !== "candidate" || m.preVote !== this.preVoteRound) return;
    // A granted pre-vote carries the term it was asked for; an older round's is stale.
    if (m.preVote && m.granted && m.term !== this.currentTerm + 1) return;
    this.votes.set(m.from, m.granted);
    let granted = 1;
    let rejected = 0;
    // Only the votes of members the configuration in effect lists as voters count (a
    // learner's or a removed member's answer is no vote).
    const voters = this.voterIds();
    for (const [from, g] of this.votes) {
      if (!voters.includes(from)) continue;
      if (g) granted++;
      else rejected++;
    }
    if (granted >= this.quorum()) {
      if (this.preVoteRound) this.becomeCandidate("won the pre-vote");
      else this.becomeMaster();
    } else if (rejected >= this.quorum()) {
      this.becomeBackup(
        this.currentTerm,
        null,
        this.preVoteRound ? "lost the pre-vote" : "lost the election",
      );
    }
  }

  private onAppend(m: Append): void {
    this.followMaster(m.from);
    this.joinTarget = Math.max(this.joinTarget, m.commitIndex);
    this.appendFrom(m);
    this.maybeFinishJoining();
  }

  /** Entries up to `index` are known to match the log of the master this node follows. */
  private confirm(index: number): void {
    this.confirmedIndex = Math.max(this.confirmedIndex, index);
  }

  private appendFrom(m: Append): void {
    const log = this.log;
    if (m.prevIndex < log.commitIndex) {
      this.confirm(log.commitIndex);
      this.sendAppendResponse(m.from, true, log.commitIndex, 0, 0);
      return;
    }
    if (log.matches(m.prevIndex, m.prevTerm)) {
      const touchesConfig =
        this.configIndex > m.prevIndex || m.entries.some((e) => e.kind === "config");
      const last = log.merge(m.prevIndex, m.entries);
      if (touchesConfig) this.rescanConfiguration();
      log.commitTo(Math.min(m.commitIndex, last));
      this.confirm(last);
      this.sendAppendResponse(m.from, true, last, 0, 0);
      return;
    }
    const hintIndex = log.lastIndexWithTermAtMost(
      Math.min(m.prevIndex, log.lastIndex()),
      m.prevTerm,
    );
    this.sendAppendResponse(m.from, false, m.prevIndex, hintIndex, log.termAt(hintIndex) ?? 0);
  }

  private onHeartbeat(m: Heartbeat): void {
    this.followMaster(m.from);
    this.joinTarget = Math.max(this.joinTarget, m.commitIndex);
    this.maybeFinishJoining();
    // The master sends at most what it believes this backup holds. That belief may be
    // about an earlier incarnation of this node (its data directory was wiped), and this
    // log may hold another master's entries at those indexes: commit only what this node
    // confirmed matches this master's log.
    const last = this.log.lastIndex();
    this.log.commitTo(Math.min(m.commitIndex, this.confirmedIndex));
    if (m.commitIndex > this.confirmedIndex && m.commitIndex > this.log.commitIndex) {
      // Tell the master this backup cannot vouch for what it acknowledged, so that it
      // starts over from what is confirmed.
      const hint = Math.min(this.confirmedIndex, last);
      this.sendAppendResponse(m.from, false, m.commitIndex, hint, this.log.termAt(hint) ?? 0);
    }
    this.send<HeartbeatResponse>({
      type: "heartbeat_response",
      from: this.id,
      to: m.from,
      term: this.currentTerm,
      readContext: m.readContext,
    });
  }

  /** Asks every peer that has not answered for its term, once per heartbeat interval. */
  private sendTermProbes(): void {
    if (this.termProbeElapsed++ % this.config.heartbeatTicks !== 0) return;
    for (const peer of this.peers) {
      if (this.termProbeAnswers.has(peer)) continue;
      this.send<TermProbe>({ type: "term_probe", from: this.id, to: peer, term: this.currentTerm });
    }
  }

  /** A master of our term spoke: be its backup. */
  private followMaster(from: NodeId): void {
    assert(
      this.currentRole !== "master",
      `two masters in term ${this.currentTerm}: ${this.id} and ${from}`,
    );
    if (this.currentRole === "candidate" || this.master !== from) {
      this.becomeBackup(
        this.currentTerm,
        from,
        `master ${from} is in charge of term ${this.currentTerm}`,
      );
    }
    assert(this.master === from, "replica: two masters in one term");
    this.electionElapsed = 0;
    this.unreachableMaster = null;
    this.takingOver = false;
    // A joining node records the master of this term as its vote, so that it never
    // votes for anyone else in this term, whatever it did before it lost its data.
    if (this.joining && this.vote === null) this.vote = from;
  }

  /**
   * A joining node becomes a voter once it holds an entry of the current master's term
   * (so, by leader completeness and log matching, every entry committed before this term)
   * and every index up to the commit index that master announced (so every entry
   * committed in this term so far).
   */
  private maybeFinishJoining(): void {
    if (!this.joining || this.master === null) return;
    const log = this.log;
    if (log.lastTerm() !== this.currentTerm || log.lastIndex() < this.joinTarget) return;
    assert(this.vote !== null, `replica ${this.id}: joined without recording a vote in its term`);
    this.joining = false;
    this.emitRole(`caught up with master ${this.master}: now a voting member`);
  }

  private onAppendResponse(m: AppendResponse): void {
    if (this.currentRole !== "master") return;
    const pr = this.progress.get(m.from)!;
    pr.lastActive = this.electionElapsed;
    if (m.success) {
      assert(m.index <= this.log.lastIndex(), "replica: backup matched beyond the master's log");
      const news = pr.acknowledge(m.index);
      if (this.switchover?.target === m.from) this.maybeSendTimeoutNow();
      if (pr.state === "transfer" && pr.match >= pr.transferIndex) pr.becomeProbe();
      if (pr.state === "probe" && pr.probeEmpty && m.index < pr.next - 1) {
        // An answer to an append sent before the state transfer: the backup may still be
        // installing the state, and the probe waits for its answer from after it.
        if (news) this.maybeCommit();
        return;
      }
      if (!news && pr.state !== "probe") return;
      if (pr.state === "probe") pr.becomeReplicate();
      this.maybeCommit();
      // A backup that now holds committed entries it has not been told of hears of them at
      // once (maybeCommit tells every backup when the commit index moves; this one may
      // have answered after the majority did).
      if (pr.commitSent < Math.min(this.log.commitIndex, pr.match)) this.appendDue.add(m.from);
      return;
    }
    // The backup answers the probe after its state transfer: it has installed the state
    // (an answer to an earlier append changes nothing).
    if (m.index === pr.next - 1) pr.probeEmpty = false;
    const hint = this.log.lastIndexWithTermAtMost(m.hintIndex, m.hintTerm);
    pr.reject(m.index, hint, m.hintIndex);
  }

  private onHeartbeatResponse(m: HeartbeatResponse): void {
    if (this.currentRole !== "master") return;
    const pr = this.progress.get(m.from)!;
    pr.lastActive = this.electionElapsed;
    pr.probeSent = false;
    // A full pipeline may hold a lost append: let one more through, whose gap the backup
    // will reject, which restarts probing (etcd frees the oldest slot the same way).
    if (pr.state === "replicate" && pr.isPaused(this.config.inflightMax)) pr.inflight.shift();
    // An append may have been lost while idle: an empty one makes the backup say so.
    if (pr.match < this.log.lastIndex()) this.appendDue.add(m.from);
    if (m.readContext > 0) this.acknowledgeRead(m.from, m.readContext);
  }

  /** The master asked this backup to take over now (switchover). */
  private onTimeoutNow(m: TimeoutNow): void {
    if (this.currentRole !== "backup" || this.master !== m.from || this.joining) return;
    // A TimeoutNow can arrive long after it was sent (the switchover lapsed meanwhile), once
    // this node's configuration no longer lists it as a voter: a non-voter never runs.
    if (!this.isVoter) return;
    this.becomeCandidate(`switchover: master ${m.from} handed over`, true);
  }

  // ---------------------------------------------------------------- master work

  /** Sends TimeoutNow once the switchover's target holds the whole log. */
  private maybeSendTimeoutNow(): void {
    const switchover = this.switchover;
    if (switchover === null || switchover.sent) return;
    const pr = this.progress.get(switchover.target);
    if (pr === undefined || pr.match < this.log.lastIndex()) return;
    switchover.sent = true;
    this.send<TimeoutNow>({
      type: "timeout_now",
      from: this.id,
      to: switchover.target,
      term: this.currentTerm,
    });
  }

  /** The peer heard from lately that holds the most of the log, lowest id first. */
  private mostCaughtUpPeer(): NodeId | null {
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const [peer, pr] of [...this.progress].sort((a, b) => a[0] - b[0])) {
      if (memberOf(this.configuration, peer)?.voter !== true) continue;
      if (!this.isRecentlyActive(peer) || pr.match <= bestMatch) continue;
      best = peer;
      bestMatch = pr.match;
    }
    return best;
  }

  /** Whether `peer` answered this master within the shortest election timeout. */
  isRecentlyActive(peer: NodeId): boolean {
    const pr = this.progress.get(peer);
    return pr !== undefined && this.electionElapsed - pr.lastActive < this.config.electionTicksMin;
  }

  /**
   * The highest index a majority of the voters holds, counting only the acknowledgements
   * that may count. A member listed with incarnation 0 that has one of its own (this
   * master included) counts for no commit until it is bound, and then only for a commit
   * at or after the entry that bound it (boundAt): a peer that lists it with 0 welcomes any
   * empty directory of that id as a member no master ever counted, so counted before its
   * binding was on a majority, then wiped and started again with its old command line, it
   * could vote with an empty log and elect a node without the entries it acknowledged. A
   * commit that counts it holds its binding on a majority, which a wiped directory's term
   * probe meets (onTermProbeResponse). A node without an identity (incarnation 0) can be
   * neither bound nor told apart from its wiped self, and counts as it always did.
   */
  private commitCandidate(): number {
    const bind = this.config.bindIncarnations;
    const me = bind ? memberOf(this.configuration, this.id) : undefined;
    const ids: NodeId[] = [this.id];
    const held: number[] = [
      bind && me?.incarnation === 0 && this.incarnation !== 0 ? 0 : this.log.durableIndex(),
    ];
    for (const [peer, pr] of this.progress) {
      const member = memberOf(this.configuration, peer);
      if (member?.voter !== true) continue;
      ids.push(peer);
      held.push(bind && member.incarnation === 0 && pr.incarnation !== 0 ? 0 : pr.match);
    }
    const nth = this.quorum() - 1;
    const candidateOf = (): number => held.slice().sort((a, b) => b - a)[nth] ?? 0;
    // A binding at or below the commit index no longer matters: a recount could only lower
    // a candidate that is below that binding, so below the commit index, and no commit
    // follows from it either way. Bindings are few and short-lived; the common case skips
    // the recount.
    const commitIndex = this.log.commitIndex;
    for (const [id, at] of this.boundAt) if (at <= commitIndex) this.boundAt.delete(id);
    let candidate = candidateOf();
    if (this.boundAt.size === 0) return candidate;
    for (;;) {
      let dropped = false;
      for (let i = 0; i < ids.length; i++) {
        const bound = this.boundAt.get(ids[i]!);
        const index = held[i]!;
        if (bound === undefined || bound <= candidate || index < candidate || index === 0) {
          continue;
        }
        held[i] = 0;
        dropped = true;
      }
      if (!dropped) return candidate;
      candidate = candidateOf();
    }
  }

  private appendOwn(entry: Entry): void {
    assert(this.currentRole === "master", "replica: only a master appends its own entries");
    this.log.append([entry]);
    if (entry.kind === "config") this.rescanConfiguration();
  }

  /** Commits what a majority of the voters holds; returns whether the commit index moved. */
  private maybeCommit(): boolean {
    const candidate = this.commitCandidate();
    // Raft §5.4.2 (figure 8): only an entry of the current term is committed by counting.
    if (this.log.termAt(candidate) !== this.currentTerm) return false;
    if (!this.log.commitTo(candidate)) return false;
    // The news leaves now, not with the next entries or tick (etcd broadcasts an append on
    // commit too): a backup applies, and answers the writes forwarded to it, only once it
    // hears of the commit, and the next entries may come only from those very answers.
    for (const [peer, pr] of this.progress) {
      if (pr.commitSent < Math.min(candidate, pr.match)) this.appendDue.add(peer);
    }
    if (this.readsAwaitingCommit.length > 0) {
      const waiting = this.readsAwaitingCommit.splice(0);
      for (const requestId of waiting) this.startRead(requestId);
    }
    return true;
  }

  private hasAppendsToSend(): boolean {
    for (const pr of this.progress.values()) {
      if (pr.next <= this.log.lastIndex() && !pr.isPaused(this.config.inflightMax)) return true;
    }
    return false;
  }

  /** Sends what is due: new entries, commit news, and a heartbeat for new reads. */
  private flushMaster(): void {
    if (this.currentRole !== "master") return;
    for (const [peer, pr] of this.progress) {
      let sent = false;
      while (pr.next <= this.log.lastIndex() && !pr.isPaused(this.config.inflightMax)) {
        this.sendAppend(peer, pr);
        sent = true;
      }
      const due = this.appendDue.has(peer);
      if (due && !sent && !pr.isPaused(this.config.inflightMax)) this.sendAppend(peer, pr);
    }
    this.appendDue.clear();
    if (this.readContext > this.readContextSent) {
      this.readContextSent = this.readContext;
      this.broadcastHeartbeat(this.readContext);
    }
  }

  private sendAppend(peer: NodeId, pr: Progress): void {
    if (pr.state === "probe" && pr.probeEmpty && pr.next - 1 < this.log.snapshot().index) {
      // The backup has not answered since it was sent a state, which it may still be
      // installing, and the log after that state is compacted away meanwhile: probe at
      // the log's start, which it answers once installed ("no", and so a new transfer),
      // rather than sending it another state now to pile up behind the first.
      pr.next = this.log.snapshot().index + 1;
    }
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.termAt(prevIndex);
    if (prevTerm === undefined) {
      // The entries this backup needs are compacted away: it needs a state transfer.
      assert(prevIndex < this.log.snapshot().index, `replica: entry ${prevIndex} missing`);
      pr.becomeTransfer(this.log.snapshot().index);
      this.outTransfers.push(peer);
      return;
    }
    const entries =
      pr.state === "probe" && pr.probeEmpty
        ? []
        : this.log.slice(
            pr.next,
            this.log.lastIndex(),
            this.config.appendEntriesMax,
            this.config.appendBytesMax,
          );
    this.send<Append>({
      type: "append",
      from: this.id,
      to: peer,
      term: this.currentTerm,
      prevIndex,
      prevTerm,
      entries,
      commitIndex: this.log.commitIndex,
    });
    pr.commitSent = this.log.commitIndex;
    pr.sent(prevIndex + entries.length, entries.length);
  }

  private broadcastHeartbeat(readContext: number): void {
    for (const [peer, pr] of this.progress) {
      this.send<Heartbeat>({
        type: "heartbeat",
        from: this.id,
        to: peer,
        term: this.currentTerm,
        commitIndex: Math.min(pr.match, this.log.commitIndex),
        readContext,
      });
      pr.commitSent = Math.max(pr.commitSent, Math.min(pr.match, this.log.commitIndex));
    }
  }

  /**
   * Whether a majority (this master included) answered within the check-quorum window.
   * The window is shorter than the shortest election timeout by a heartbeat interval and a
   * tick: a backup that last heard this master at time t cannot start an election before
   * t + electionTicksMin, and this master heard its answer about when it was sent, so a
   * master cut off from its majority steps down (and stops serving) before a new master
   * can be elected. Counted in ticks, not wall time: a master whose event loop stalled
   * does not step down on resuming just because its clock moved.
   */
  private quorumActive(): boolean {
    const window = Math.max(1, this.config.electionTicksMin - this.config.heartbeatTicks - 1);
    let active = 1;
    for (const [peer, pr] of this.progress) {
      if (memberOf(this.configuration, peer)?.voter !== true) continue;
      if (this.electionElapsed - pr.lastActive <= window) active++;
    }
    return active >= this.quorum();
  }

  private quorum(): number {
    return Math.floor(this.voterIds().length / 2) + 1;
  }

  /** The voters of the configuration in effect, in the order of their ids. */
  private voterIds(): NodeId[] {
    return this.configuration.filter((m) => m.voter).map((m) => m.id);
  }

  /**
   * Makes the newest config entry in the log (or the snapshot's configuration) the one
   * in effect (dissertation §4.1: a server uses the latest configuration in its log,
   * committed or not, and falls back to the previous one when that entry is removed).
   */
  private rescanConfiguration(): void {
    let config = this.snapshotConfig;
    let index = 0;
    for (let i = this.log.lastIndex(); i > this.log.snapshot().index; i--) {
      const entry = this.log.entry(i);
      if (entry?.kind !== "config") continue;
      const decoded = decodeConfiguration(entry.data);
      assert(decoded !== null, `replica ${this.id}: undecodable config entry ${i} in own log`);
      config = decoded;
      index = i;
      break;
    }
    const changed = config !== this.configuration || index !== this.configIndex;
    this.configuration = config;
    this.configIndex = index;
    if (!this.listedOnce && (index > 0 || this.installed !== null)) {
      const me = memberOf(config, this.id);
      if (me !== undefined && this.listsSelf(me)) this.listedOnce = true;
    }
    this.peers = config.filter((m) => m.id !== this.id).map((m) => m.id);
    if (!changed) return;
    this.outEvents.push({ type: "config", config, index });
    if (this.currentRole === "master") {
      for (const peer of [...this.progress.keys()]) {
        const listed = memberOf(config, peer);
        const pr = this.progress.get(peer)!;
        // A member listed again after its removal, or with another incarnation, is another
        // data directory: what this master knew of the old one (what it holds, that it
        // answered) is not true of the new one, so start over. Only writing down the
        // incarnation of the very directory that answered (binding) keeps what is known.
        const bound = pr.listedIncarnation === 0 && pr.incarnation === listed?.incarnation;
        const rebound =
          listed !== undefined &&
          (pr.leavingSince !== null || (listed.incarnation !== pr.listedIncarnation && !bound));
        if (listed === undefined && !rebound) {
          // Removed: told of it through the log, see `pruneLeaving`.
          pr.leavingSince ??= this.electionElapsed;
          this.readAcks.delete(peer);
        } else if (rebound) {
          this.progress.delete(peer);
          this.readAcks.delete(peer);
          this.appendDue.delete(peer);
        } else {
          pr.leavingSince = null;
          pr.listedIncarnation = listed.incarnation;
        }
      }
      for (const peer of this.peers) {
        if (!this.progress.has(peer)) this.progress.set(peer, this.newProgress(peer));
      }
      if (this.switchover !== null && !this.peers.includes(this.switchover.target)) {
        this.switchover = null;
      }
      this.maybeCommit();
    }
  }

  /** Whether a committed configuration no longer lists this node (this incarnation). */
  private isRemovedByCommit(): boolean {
    if (!this.listedOnce) return false;
    if (this.configIndex === 0 || this.configIndex > this.log.commitIndex) return false;
    const me = memberOf(this.configuration, this.id);
    return me === undefined || !this.listsSelf(me);
  }

  private maybeReportRemoved(): void {
    if (this.removed || !this.isRemovedByCommit()) return;
    this.removed = true;
    const me = memberOf(this.configuration, this.id);
    this.outEvents.push({
      type: "removed",
      reason:
        me === undefined
          ? `the configuration committed at index ${this.configIndex} no longer lists node ${this.id}`
          : `the configuration committed at index ${this.configIndex} lists node ${this.id} with incarnation ${me.incarnation}, not this data directory's ${this.incarnation}`,
    });
  }

  // ---------------------------------------------------------------- reads

  private startRead(requestId: number): void {
    this.readContext++;
    this.pendingReads.push({ requestId, index: this.log.commitIndex, context: this.readContext });
    this.releaseReads();
  }

  private acknowledgeRead(from: NodeId, context: number): void {
    if (context > (this.readAcks.get(from) ?? 0)) this.readAcks.set(from, context);
    this.releaseReads();
  }

  /** Releases, oldest first, every read that a majority has confirmed our mastership for. */
  private releaseReads(): void {
    while (this.pendingReads.length > 0) {
      const read = this.pendingReads[0]!;
      let acks = 1;
      for (const [peer, acked] of this.readAcks) {
        if (acked >= read.context && memberOf(this.configuration, peer)?.voter === true) acks++;
      }
      if (acks < this.quorum()) return;
      this.pendingReads.shift();
      this.outReads.push({ requestId: read.requestId, index: read.index });
    }
  }

  private abortReads(): void {
    for (const read of this.pendingReads)
      this.outReads.push({ requestId: read.requestId, index: null });
    for (const requestId of this.readsAwaitingCommit)
      this.outReads.push({ requestId, index: null });
    this.pendingReads.length = 0;
    this.readsAwaitingCommit.length = 0;
    this.readAcks.clear();
    this.readContextSent = this.readContext;
  }

  // ---------------------------------------------------------------- helpers

  private requestVotes(preVote: boolean): void {
    const term = preVote ? this.currentTerm + 1 : this.currentTerm;
    if (this.quorum() === 1) {
      if (preVote) this.becomeCandidate("won the pre-vote");
      else this.becomeMaster();
      return;
    }
    for (const peer of this.voterIds()) {
      if (peer === this.id) continue;
      this.send<VoteRequest>({
        type: "vote_request",
        from: this.id,
        to: peer,
        term,
        preVote,
        handover: !preVote && this.handoverElection,
        lastIndex: this.log.lastIndex(),
        lastTerm: this.log.lastTerm(),
      });
    }
  }

  private sendVoteResponse(to: NodeId, term: number, preVote: boolean, granted: boolean): void {
    this.send<VoteResponse>({ type: "vote_response", from: this.id, to, term, preVote, granted });
  }

  private sendAppendResponse(
    to: NodeId,
    success: boolean,
    index: number,
    hintIndex: number,
    hintTerm: number,
  ): void {
    this.send<AppendResponse>({
      type: "append_response",
      from: this.id,
      to,
      term: this.currentTerm,
      success,
      index,
      hintIndex,
      hintTerm,
    });
  }

  private send<M extends Message>(unsigned: Omit<M, "incarnation">): void {
    const message = { ...unsigned, incarnation: this.incarnation } as unknown as Message;
    if (message.type === "append" || message.type === "heartbeat")
      this.outMessagesNow.push(message);
    else this.outMessages.push(message);
  }

  private guard(body: () => void): void {
    try {
      body();
    } finally {
      this.checkInvariants();
    }
  }

  private checkInvariants(): void {
    // Runs after every input: each message is built only when its invariant is broken.
    const log = this.log;
    this.invariant(this.applied <= log.commitIndex, "applied beyond commit");
    this.invariant(log.commitIndex <= log.lastIndex(), "commit beyond last index");
    this.invariant(log.durableIndex() <= log.lastIndex(), "durable beyond last index");
    this.invariant(log.lastTerm() <= this.currentTerm, "log term above current term");
    if (this.currentRole === "master") {
      this.invariant(this.master === this.id, "master does not know itself as master");
      this.invariant(this.vote === this.id, "master without its own vote");
      this.invariant(this.isVoter, "master is not a voter of its configuration");
      for (const peer of this.peers) {
        if (!this.progress.has(peer)) this.invariant(false, `no progress for member ${peer}`);
      }
      for (const pr of this.progress.values()) {
        this.invariant(pr.match <= log.lastIndex(), "backup match beyond log");
        this.invariant(pr.next > pr.match, "next not after match");
      }
      if (this.switchover !== null) {
        this.invariant(this.switchover.target !== this.id, "switchover to itself");
      }
    } else {
      this.invariant(this.switchover === null, "non-master hands over");
      this.invariant(this.progress.size === 0, "non-master tracks progress");
      this.invariant(this.pendingReads.length === 0, "non-master holds reads");
    }
  }

  private invariant(holds: boolean, what: string): void {
    if (!holds) throw new AssertionError(`replica ${this.id}: ${what}`);
  }
}

const EMPTY = new Uint8Array(0);

/** Votes and acknowledgements: what a sender's membership decides the worth of. */
function isAnswer(m: Message): boolean {
  return (
    m.type === "vote_response" ||
    m.type === "append_response" ||
    m.type === "heartbeat_response" ||
    m.type === "term_probe_response"
  );
}

/**
 * Term and vote must be durable before messages go out; the commit index is only a hint
 * for recovery, so a change of it alone does not force a synchronous write.
 */
function sameHardState(a: HardState, b: HardState): boolean {
  return (
    a.term === b.term && a.votedFor === b.votedFor && (a.joining === true) === (b.joining === true)
  );
}

/** An append whose entries could not come from a master of its term, or null. */
function violationInAppend(m: Append): string | null {
  if (m.prevTerm > m.term) return `prevTerm ${m.prevTerm} above the message's term ${m.term}`;
  let previous = m.prevTerm;
  for (const entry of m.entries) {
    if (entry.term > m.term) return `entry ${entry.index} of term ${entry.term} in term ${m.term}`;
    if (entry.kind === "config" && decodeConfiguration(entry.data) === null)
      return `entry ${entry.index}: a malformed configuration`;
    if (entry.term < previous) return `entry ${entry.index}: terms go backwards in the log`;
    previous = entry.term;
  }
  return null;
}
