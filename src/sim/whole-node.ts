/**
 * The whole-node simulator: the production node (`startNode` → `BatonNode` with its
 * `StateTransfer` and `Forwarder`, `DiskStorage` with its write-ahead log, hard-state file,
 * snapshot store and recovery, and the key-value state machine) runs unchanged, several
 * nodes in one process, over the simulated file system (`sim-fs.ts`), the simulated
 * network (`sim-transport.ts`) and virtual time (`sim-clock.ts`), all from one seed.
 *
 * One agenda drives everything; after each callback the runner lets every promise
 * reaction it caused run before it takes the next, so the async runtime interleaves
 * exactly as the seed says and a run replays byte for byte. No real timer, immediate or
 * file or socket operation may be created while the simulated nodes run: `LeakWatch`
 * notices them and fails the run.
 *
 * The nemesis crashes nodes (the disk keeps what POSIX lets a crash keep), isolates and
 * splits them, cuts single directions, flips a stored bit and crashes the node (it must
 * refuse to start; its operator then wipes it and replaces the member), fails an
 * fdatasync with EIO (the node must stop; it restarts over what reached the disk), steps
 * wall clocks, asks for switchovers, cycles members out and in through the operator
 * (`whole-node-operator.ts`, which also replaces every node whose data was lost), duplicates
 * messages, and heals. Clients put, delete, compare-and-set, run transactions over two
 * keys, read ranges, delete by prefix and hold leases (`whole-node-store.ts`), some of them
 * with a session and its sequence numbers; watchers follow a prefix from node to node
 * (`whole-node-watch.ts`). The checkers are the simulator's own: at most one master per
 * term after every step, every node applies the same command (and makes the same changes)
 * at each index, exactly-once on every application (`checkers/exactly-once.ts`), leases
 * never end early (`checkers/leases.ts`), range reads never see half a transaction
 * (`checkers/range-atomicity.ts`), a node stops or refuses to start on a storage error
 * only when a fault injected into its disk explains it (`checkers/storage-errors.ts`),
 * and at the end a master, answered clients, replicas with
 * equal state and one configuration, watchers that got every committed change of their
 * prefix once and in order (`checkers/watches.ts`), and a linearizable history
 * (`checkers/linearizability.ts`).
 */

import pino, { type Logger } from "pino";
import { Prng } from "../core/prng.js";
import {
  decodeCommand,
  defaultKvLimits,
  encodeCommand,
  type KvChange,
  type KvCommand,
  type KvLimits,
  type KvResult,
  KvStateMachine,
  type WatchSource,
} from "../kv/index.js";
import type { NodeId } from "../protocol/messages.js";
import { type JoinedIdentity, startNode } from "../server/create-node.js";
import { forceNewCluster, type RecoveryPlan } from "../server/force-new-cluster.js";
import type { BatonNode } from "../server/node.js";
import { defaultNodeConfig, parseNodeConfig } from "../server/node-config.js";
import { AssertionError, assert } from "../shared/assert.js";
import type {
  ApplyContext,
  IncrementalRestore,
  SnapshotOptions,
  StateMachine,
} from "../shared/state-machine.js";
import type { LockHost } from "../storage/dir-lock.js";
import { StorageError } from "../storage/errors.js";
import { checkAcknowledged } from "./checkers/acknowledged.js";
import { ExactlyOnceChecker, writeName } from "./checkers/exactly-once.js";
import { LeaseChecker } from "./checkers/leases.js";
import { checkLinearizable, type HistoryOp, type KvOp } from "./checkers/linearizability.js";
import { RangeAtomicityChecker } from "./checkers/range-atomicity.js";
import { notApplied, SWITCHOVER_REFUSALS, unexpectedRefusal } from "./checkers/refusals.js";
import { checkRevisionOrder } from "./checkers/revision-order.js";
import { SafetyViolation } from "./checkers/safety.js";
import { describeStrikes, explainedByStrikes } from "./checkers/storage-errors.js";
import { CommittedChanges, checkWatcher } from "./checkers/watches.js";
import { LeakWatch } from "./leak-watch.js";
import type { RunResult } from "./run.js";
import { SimClock, SimScheduler } from "./sim-clock.js";
import { SimFileSystem, type SimFsFaults } from "./sim-fs.js";
import { SimNet, type SimNetFaults, SimTransport } from "./sim-transport.js";
import { putsOf } from "./store-ops.js";
import { MemberOperator } from "./whole-node-operator.js";
import {
  holdLeases,
  KEY_PREFIX,
  LEASE_TICK_MS,
  StoreClient,
  type WriteTags,
} from "./whole-node-store.js";
import { SimWatcher, type WatcherPlan, type WatchNode } from "./whole-node-watch.js";

export interface WholeNodeOptions {
  readonly trace?: boolean;
  /** Virtual ms of faults before the network heals. @default 6000 */
  readonly faultPhaseMs?: number;
  /** Called after every step, inside the leak detector (tests of the simulator itself). */
  readonly onStep?: (now: number) => void;
  /**
   * A deliberate operator mistake the checkers must catch: `no_join`, a node whose data
   * was lost is restarted empty, as the member it was, without --join or a replacement;
   * `stale_survivor` (with `forcedRecovery`), the voter whose log is the least up to date
   * is the one recovered by force.
   */
  readonly negativeControl?: "no_join" | "stale_survivor";
  /**
   * Lose a majority once during the faults: every node stops, the operator runs
   * `baton recover`'s dry run on each disk, recovers by force the voter whose log is the
   * most up to date (it holds every committed entry), and brings the others back on
   * empty disks (member add, --join, promote) while the faults go on.
   */
  readonly forcedRecovery?: boolean;
  /**
   * A healthy cluster under slowness only: no crash, partition, loss or damage, only slow
   * fsyncs (stalls of up to seconds), network delay with jitter, and pauses, one at a
   * time: of one backup or of every node at once (a stalled machine) for up to 2.6 s, of
   * the master for less than it takes a backup to miss it (see `calmMasterPauseMsMax`). A second election
   * after the first master fails the run: none of this may depose a live master.
   * @default false
   */
  readonly calm?: boolean;
  /**
   * Every node's election timeout range, ms (`baton start --election-ms`): how a timing
   * other than the default fares, above all in a calm run.
   * @default the node's default
   */
  readonly electionMs?: { readonly min: number; readonly max: number };
}

/** Decodes the values lease holders put (`lease <id>`), for the lease checker. */
const leaseValueDecoder = new TextDecoder();

/**
 * The longest pause of the master that no backup may take for its loss: the shortest
 * election timeout, less a heartbeat interval (the last heartbeat before the pause went
 * out up to one interval earlier), the network's largest delay and two ticks (a backup
 * counts whole ticks, and the master's first heartbeat after the pause waits for a tick).
 */
export function calmMasterPauseMsMax(
  delayMsMax: number,
  electionMsMin = defaultNodeConfig().electionMsMin,
): number {
  const { heartbeatMs, tickMs } = defaultNodeConfig();
  return Math.floor(electionMsMin - heartbeatMs - delayMsMax - 2 * tickMs);
}

/**
 * A seed's scenario made calm (see WholeNodeOptions.calm): the same cluster and workload,
 * a network that delays but neither loses nor duplicates, and disks whose fsyncs stall
 * more often.
 */
function calmScenario(scenario: WholeNodeScenario, seed: number): WholeNodeScenario {
  const prng = new Prng(seed ^ 0x5be0cd19);
  return {
    ...scenario,
    net: { ...scenario.net, delayMsMax: 0.2 + prng.next() * 10, lossChance: 0 },
    duplicateChance: 0,
    disk: { ...scenario.disk, stallChance: prng.pick([0.002, 0.01, 0.03]) },
  };
}

/** Where the simulated wall clocks start: virtual time 0 is this many ms after the epoch. */
const WALL_CLOCK_EPOCH_MS = 1_700_000_000_000;
/** A client gives up on an operation after this long, leaving it indeterminate. */
const CLIENT_DEADLINE_MS = 4000;
/** Bytes at the end of the newest log segment the bit-flip nemesis spares (its last records). */
const TAIL_BYTES_SPARED = 512;
/** One attempt of a client on one node, before it tries another. */
const ATTEMPT_MS = 1000;

/** What a seed decides. */
export interface WholeNodeScenario {
  readonly nodeCount: number;
  readonly clientCount: number;
  readonly keys: readonly string[];
  readonly net: SimNetFaults;
  readonly disk: SimFsFaults;
  readonly snapshotEntries: number;
  /** A state transfer without progress for this long starts over, ms. */
  readonly transferStallMs: number;
  /** Log segment size and how often the commit hint is written lazily. */
  readonly walSegmentBytes: number;
  readonly commitIndexPersistIntervalEntries: number;
  readonly snapshotKeepEntries: number;
  readonly nemesisMsMean: number;
  readonly faultPhaseMs: number;
  /** The key-value store's limits: the defaults, or small tables that fill (a seed in four). */
  readonly kvLimits: KvLimits;
  /** Chance that the network delivers a message twice (the copy later, out of order). */
  readonly duplicateChance: number;
  /** Clients that hold leases (grant, attach a key, keep alive, revoke or let expire). */
  readonly leaseHolders: number;
  /** Watchers of a prefix or a key (`whole-node-watch.ts`). */
  readonly watchers: readonly WatcherPlan[];
  /** Clients 1..sessionClients tag their writes with a session and its sequence number. */
  readonly sessionClients: number;
  /** Session-tagged writes carry no idempotency key: the session alone keeps them once. */
  readonly sessionsOnly: boolean;
  /** Bytes per state-transfer chunk. */
  readonly transferChunkBytes: number;
  /**
   * Chance that a state transfer's first chunk, sent while the faults last, sets off a
   * fault aimed at that transfer (`midTransferFault`); 0 for a seed in three.
   */
  readonly midTransferFaultChance: number;
}

export function makeWholeNodeScenario(seed: number, faultPhaseMs = 6000): WholeNodeScenario {
  const prng = new Prng(seed ^ 0x3c6ef372);
  const syncMsMin = 0.1 + prng.next() * 2;
  const nodeCount = prng.chance(0.75) ? 3 : 5;
  const clientCount = prng.int(1, 4);
  return {
    nodeCount,
    clientCount,
    keys: Array.from({ length: prng.int(1, 3) }, (_, i) => `k${i}`),
    net: { delayMsMin: 0.1, delayMsMax: 0.2 + prng.next() * 8, lossChance: prng.next() * 0.05 },
    disk: {
      opMsMax: prng.int(0, 1),
      syncMsMin,
      syncMsMax: syncMsMin + prng.next() * 6,
      stallChance: prng.pick([0, 0, 0.002, 0.01]),
      stallMsMax: prng.int(500, 3000),
      eioChance: 0,
      readErrorChance: 0,
      capacityBytes: Number.MAX_SAFE_INTEGER,
    },
    snapshotEntries: prng.pick([10, 40, 200, 10_000]),
    transferStallMs: prng.int(1000, 3000),
    walSegmentBytes: prng.pick([4096, 16_384, 65_536, 67_108_864]),
    commitIndexPersistIntervalEntries: prng.pick([1, 7, 100, 10_000]),
    snapshotKeepEntries: prng.int(0, 50),
    nemesisMsMean: prng.int(150, 1000),
    faultPhaseMs,
    ...laterDraws(prng, clientCount),
  };
}

/**
 * What seeds draw beyond the first scenario, drawn after it so that the earlier draws stay
 * put: small exactly-once tables (8 to 128 idempotency keys, 10 to 20 s windows) for a seed
 * in four, message duplication, and lease holders.
 */
function laterDraws(prng: Prng, clientCount: number) {
  const small = prng.chance(0.25);
  const idempotencyKeyCountMax = prng.int(8, 128);
  const idempotencyWindowMs = prng.int(10_000, 20_000);
  const limits = small
    ? { ...defaultKvLimits(), idempotencyKeyCountMax, idempotencyWindowMs }
    : defaultKvLimits();
  const duplicateChance = prng.pick([0, 0, 0.01, 0.05]);
  const leaseHolders = prng.pick([0, 1, 2]);
  // Drawn after the above, so that those stay put: watchers, a short watch history for a
  // seed in four (so that watchers meet ERR_COMPACTED), and session-tagged clients.
  const watchers = Array.from({ length: prng.int(0, 3) }, (_, i) => watcherPlan(prng, i + 1));
  const shortHistory = prng.chance(0.25);
  const watchHistoryCountMax = prng.int(4, 64);
  const kvLimits = shortHistory ? { ...limits, watchHistoryCountMax } : limits;
  const sessionClients = prng.chance(0.5) ? prng.int(1, clientCount) : 0;
  const sessionsOnly = prng.chance(0.5);
  // Drawn last: the size of a state transfer's chunks. A simulated store's snapshot is a
  // few kilobytes, which the runtime's default (1 MiB) sends as one chunk; small chunks
  // give the window, the acknowledgements and lost or duplicated chunks their turn.
  const transferChunkBytes = prng.pick([64, 512, 4096, 1024 * 1024]);
  // Drawn after that: a transfer of a few kilobytes lasts milliseconds, which the nemesis's
  // faults, hundreds of milliseconds apart, almost never meet; aimed faults do.
  const midTransferFaultChance = prng.pick([0, 0.3, 0.8]);
  return {
    kvLimits,
    duplicateChance,
    leaseHolders,
    watchers,
    sessionClients,
    sessionsOnly,
    transferChunkBytes,
    midTransferFaultChance,
  };
}

/** One watcher: of every key (lease keys too), of the workload's keys, or of one key. */
function watcherPlan(prng: Prng, id: number): WatcherPlan {
  return {
    id,
    prefix: prng.pick(["", KEY_PREFIX, `${KEY_PREFIX}0`]),
    fromRevision: prng.chance(0.5) ? 1 : null,
    skipBy: prng.chance(0.5) ? "client" : "node",
    startMs: prng.int(0, 3000),
  };
}

type ProcState = "down" | "starting" | "up" | "broken";

/**
 * Whether a command changed the store itself at its index, not only a lease that expired
 * there (an expiry deletes the lease's keys at whatever index log time passes its end, a
 * retry answered from the idempotency table included). Lease commands other than a put
 * count as changing nothing, which leaves their retries to the same-answer rule.
 */
function changedItself(command: KvCommand | null, changes: readonly KvChange[]): boolean {
  if (command === null) return changes.length > 0;
  const touched = (key: string, type: KvChange["type"]) =>
    changes.some((c) => c.key === key && c.type === type);
  switch (command.type) {
    case "put":
      return touched(command.key, "put");
    case "delete":
      return touched(command.key, "delete");
    case "delete_range":
      return changes.some((c) => c.type === "delete" && c.key.startsWith(command.prefix));
    case "txn":
      return [...command.success, ...command.failure].some((op) => touched(op.key, op.type));
    default:
      return false;
  }
}

/** One simulated machine: its disk outlives the processes that run on it. */
interface Proc {
  readonly id: NodeId;
  fs: SimFileSystem;
  clock: SimClock;
  transport: SimTransport | null;
  node: BatonNode | null;
  sm: WatchedKv | null;
  incarnation: number;
  state: ProcState;
  /** Started with --join (after its disk was wiped); kept on the command line from then on. */
  join: boolean;
  /** The nemesis damaged this disk (a bit flip, a read error) since it was last wiped. */
  flipped: boolean;
  pid: number;
  /** Stopped by the operator during a replacement: only the operator starts it again. */
  awaitingOperator: boolean;
  /** What `--join <url>` learned for this data directory; kept on the command line. */
  joined: JoinedIdentity | null;
  /**
   * A process on this data directory granted a vote or acknowledged entries (it does so
   * only once they are durable): the directory then holds a term and cannot lose its log
   * and hard state but by a wipe.
   */
  promised: boolean;
}

/** The product's state machine, with every application shown to the checkers. */
class WatchedKv implements StateMachine<KvResult> {
  readonly kv: KvStateMachine;

  constructor(
    private readonly node: NodeId,
    private readonly run: WholeNodeRun,
    limits: KvLimits,
  ) {
    this.kv = new KvStateMachine(limits);
  }

  /** The changes of the command being applied, as the store's watch history reports them. */
  private changes: KvChange[] = [];
  private watching = false;

  apply(command: Uint8Array, context: ApplyContext): KvResult {
    if (!this.watching) this.watch();
    this.changes = [];
    const result = this.kv.apply(command, context);
    this.run.onApplied(this.node, command, context, result, this.changes, this.kv);
    return result;
  }

  /** Listens to every change from now on (a restore ends the subscription; renewed here). */
  private watch(): void {
    const started = this.kv.watch(this.kv.revision + 1, {
      changes: (changes) => this.changes.push(...changes),
      reset: () => {
        this.watching = false;
      },
    });
    this.watching = started.ok;
  }

  /** The store's revision and change history, for a watcher's stream on this node. */
  readonly source: WatchSource = {
    revision: () => this.kv.revision,
    watch: (fromRevision, listener) => this.kv.watch(fromRevision, listener),
  };

  snapshot(options?: SnapshotOptions): AsyncIterable<Uint8Array> {
    return this.kv.snapshot(options);
  }

  restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    this.run.onRestore(this.node);
    return this.kv.restore(chunks);
  }

  beginRestore(): IncrementalRestore {
    const restore = this.kv.beginRestore();
    return {
      push: (chunk) => restore.push(chunk),
      install: () => {
        this.run.onRestore(this.node);
        restore.install();
      },
    };
  }
}

class WholeNodeRun {
  readonly scheduler = new SimScheduler();
  readonly prng: Prng;
  /**
   * The choices of faults added after the regression seeds were found (a snapshot flipped
   * under a running node): drawn apart from `prng`, so that a seed whose run never makes
   * one replays as it did before they existed.
   */
  private readonly laterFaults: Prng;
  /** The world's own clock: the network, the clients and the nemesis; never killed. */
  readonly world: SimClock;
  readonly net: SimNet;
  readonly procs: Proc[] = [];
  readonly history: HistoryOp[] = [];
  readonly exactlyOnce = new ExactlyOnceChecker();
  readonly rangeAtomicity = new RangeAtomicityChecker();
  readonly leases = new LeaseChecker();
  /** What every node applied, change by change: the history watchers are judged against. */
  readonly committed = new CommittedChanges();
  readonly watchers: SimWatcher[] = [];
  readonly watchStats = { delivered: 0, compactions: 0, excused: 0 };
  readonly trace: string[] = [];
  readonly faults: Record<string, number> = {};
  /** Per log index: "term:bytes" of the command the first node applied there. */
  private readonly appliedAt = new Map<number, string>();
  private readonly masters = new Map<number, NodeId>();
  private nextOpId = 1;
  clientsRunning = true;
  /** A lease tick proposed by the ticker and not yet answered. */
  private ticking = false;
  private busyClients = 0;
  crashes = 0;
  corruptionsDetected = 0;
  /** Bits flipped in a running node's newest snapshot (flipNewestSnapshot). */
  latentSnapshotFlips = 0;
  /** Running nodes that stopped on reading their own damaged snapshot (to send it). */
  ownSnapshotDamageStops = 0;
  wipes = 0;
  elections = 0;
  /** Who last stood for election and why, for a calm run's verdict. */
  private lastCandidacy = "none";
  /**
   * A calm run's first election (see `calmSettled`): when the latest master was elected
   * and when anyone last stood for election (a pre-vote included), virtual ms.
   */
  private masterSince: number | null = null;
  private candidacyAt = Number.NEGATIVE_INFINITY;
  /** When the first election settled, once it has (calm runs). */
  private settledAt: number | null = null;
  failovers = 0;
  transfers = 0;
  clockJumps = 0;
  /** Crashes of a process alone: its machine, and the page cache with it, stayed up. */
  processCrashes = 0;
  /** Processes asked to stop (SIGTERM), half of them handing the master role over. */
  gracefulStops = 0;
  /** Writes sent again under a new idempotency key after a refusal that said "not applied". */
  rekeyed = 0;
  /**
   * When each forward wall-clock jump was made (virtual ms), on any node: each may move log
   * time on by up to one clamped step.
   */
  readonly forwardJumpsAt: number[] = [];
  /** What the revision-order checker checked, once it has run. */
  revisionOrder: { readonly reads: number; readonly writes: number } | null = null;
  faultsActive = true;
  readonly operator: MemberOperator;
  /** Each process clock's wall offset when it started (its skew), for a jump back. */
  private readonly skewOf = new WeakMap<SimClock, number>();

  constructor(
    readonly seed: number,
    readonly scenario: WholeNodeScenario,
    readonly tracing: boolean,
    readonly options: WholeNodeOptions = {},
  ) {
    this.prng = new Prng(seed);
    this.laterFaults = new Prng((seed ^ 0x2545f491) >>> 0);
    const run = this;
    this.world = new SimClock(this.scheduler, WALL_CLOCK_EPOCH_MS);
    this.net = new SimNet(this.world, new Prng(seed ^ 0x1b873593), {
      ...scenario.net,
      duplicateChance: scenario.duplicateChance,
    });
    this.operator = new MemberOperator({
      procs: this.procs,
      prng: this.prng,
      world: this.world,
      get now() {
        return run.scheduler.now;
      },
      get faultsActive() {
        return run.faultsActive;
      },
      log: (line) => this.log(line),
      stopAndWipe: (proc) => this.stopAndWipe(proc as Proc),
      startJoined: (proc) => this.start(proc as Proc),
      fail: (error) => this.scheduler.fail(error),
    });
    for (let id = 1; id <= scenario.nodeCount; id++) {
      const clock = this.newClock();
      this.procs.push({
        id,
        fs: new SimFileSystem(new Prng(seed * 31 + id), clock, scenario.disk),
        clock,
        transport: null,
        node: null,
        sm: null,
        incarnation: 0,
        state: "down",
        join: false,
        flipped: false,
        pid: 0,
        awaitingOperator: false,
        joined: null,
        promised: false,
      });
    }
  }

  log(line: string): void {
    if (this.tracing) this.trace.push(`${this.scheduler.now.toFixed(3).padStart(10)} ${line}`);
  }

  count(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  private newClock(): SimClock {
    // Each process's wall clock is skewed by up to 2 s, as a master stamps it into the log.
    const clock = new SimClock(this.scheduler, WALL_CLOCK_EPOCH_MS + this.prng.int(-2000, 2000));
    this.skewOf.set(clock, clock.wallOffsetMs);
    return clock;
  }

  // ---------------------------------------------------------------- processes

  start(proc: Proc): void {
    assert(proc.state === "down", `node ${proc.id} started while ${proc.state}`);
    const incarnation = ++proc.incarnation;
    proc.state = "starting";
    proc.pid = proc.id * 1000 + incarnation;
    const ids = this.procs.map((p) => p.id);
    const transport = new SimTransport(this.net, proc.id, ids);
    transport.onSend = (message) => {
      if (
        (message.type === "vote_response" && message.granted && !message.preVote) ||
        (message.type === "append_response" && message.success && message.index > 0)
      ) {
        proc.promised = true;
      }
      if (message.type === "snapshot_chunk" && message.offset === 0) {
        this.maybeMidTransferFault(proc, message.to);
      }
    };
    const sm = new WatchedKv(proc.id, this, this.scenario.kvLimits);
    proc.transport = transport;
    proc.sm = sm;
    const config = parseNodeConfig({
      id: proc.id,
      peers: ids.map((id) => ({ id, address: `10.0.0.${id}:7100` })),
      listen: `10.0.0.${proc.id}:7100`,
      dataDir: `/data/n${proc.id}`,
      snapshotEntries: this.scenario.snapshotEntries,
      snapshotKeepEntries: this.scenario.snapshotKeepEntries,
      requestTimeoutMs: 2000,
      // A transfer whose chunk was lost restarts after this long (TCP would have resent
      // it; the simulated network loses messages inside a connection).
      transferStallMs: this.scenario.transferStallMs,
      transferChunkBytes: this.scenario.transferChunkBytes,
      join: proc.join,
      ...(this.options.electionMs === undefined
        ? {}
        : {
            electionMsMin: this.options.electionMs.min,
            electionMsMax: this.options.electionMs.max,
          }),
    });
    const lockHost: LockHost = {
      pid: proc.pid,
      isRunning: (pid) => this.procs.some((p) => p.pid === pid && p.state !== "down"),
      held: new Set(),
    };
    this.log(`node ${proc.id} starting (incarnation ${incarnation}${proc.join ? ", --join" : ""})`);
    startNode(
      config,
      sm,
      this.logger(proc.id),
      transport,
      {
        clock: proc.clock,
        fs: proc.fs,
        lockHost,
        seed: this.prng.nextUint32(),
        storage: {
          walSegmentBytes: this.scenario.walSegmentBytes,
          commitIndexPersistIntervalEntries: this.scenario.commitIndexPersistIntervalEntries,
        },
      },
      proc.joined,
    ).then(
      (node) => this.onStarted(proc, incarnation, node),
      (error: unknown) => this.onStartFailed(proc, incarnation, error),
    );
  }

  private onStarted(proc: Proc, incarnation: number, node: BatonNode): void {
    if (proc.incarnation !== incarnation || proc.state !== "starting") return;
    proc.node = node;
    proc.state = "up";
    this.log(`node ${proc.id} up`);
    node.on("fatal", (error) => {
      if (proc.incarnation !== incarnation) return;
      if (this.operator.replacing(proc) && /was removed from the cluster/.test(error.message)) {
        // A removed member stops itself, as it must; its operator empties it and adds it back.
        this.log(`node ${proc.id} stopped: ${error.message}`);
        proc.awaitingOperator = true;
        this.crash(proc, "removed");
        return;
      }
      if (
        (error as { code?: string }).code === "ERR_BOOTSTRAP_REFUSED" &&
        /no log and no hard state/.test(error.message)
      ) {
        // Crashed before its first write reached the disk, after a master heard from it:
        // it refuses to vote on a directory that holds only its identity, and says to
        // replace it, which its operator does. Not a directory that had promised anything:
        // what it promised was durable, and only a wipe takes that.
        if (proc.promised) {
          this.scheduler.fail(
            new SafetyViolation(
              `node ${proc.id} lost its log and hard state without a wipe, after it had granted a vote or acknowledged entries (durable before it sent them): ${error.message.slice(0, 120)}`,
            ),
          );
          return;
        }
        this.log(`node ${proc.id} stopped: ${error.message.slice(0, 160)}`);
        this.crash(proc, "refused");
        proc.state = "broken";
        this.world.setTimeout(() => this.wipe(proc), this.prng.int(200, 1500));
        return;
      }
      // A storage failure that an injected fault explains stops the process, as it must;
      // it is restarted like a crashed one. Any other storage failure is a bug of the
      // storage layer, and anything else (an assertion, a checker's verdict raised inside
      // an apply) a bug the node would only have logged on its way out: the run fails.
      if (!(error instanceof StorageError)) {
        this.scheduler.fail(error);
        return;
      }
      if (!explainedByStrikes(error, proc.fs.strikes)) {
        this.scheduler.fail(
          new SafetyViolation(
            `node ${proc.id} stopped on ${error.code}, which no fault injected into its disk since it started explains (${describeStrikes(proc.fs.strikes)}): ${error.message}`,
          ),
        );
        return;
      }
      if (error.code === "ERR_SNAPSHOT_CORRUPT") this.ownSnapshotDamageStops++;
      this.log(`node ${proc.id} stopped: ${error.message}`);
      this.crash(proc, "fatal");
    });
    node.on("role", (event) => {
      if (event.role === "master") this.elections++;
      if (event.role !== "backup") this.calmSettled();
      if (event.role === "candidate") {
        this.lastCandidacy = `node ${proc.id}: ${event.reason}`;
        this.candidacyAt = this.scheduler.now;
      }
      if (event.role === "master") {
        if (this.options.calm === true && this.settledAt !== null) {
          this.scheduler.fail(
            new SafetyViolation(
              `calm: node ${proc.id} became master in term ${event.term}, an election after the first one settled at ${Math.round(this.settledAt)} ms, with no crash or partition (the candidacy: ${this.lastCandidacy})`,
            ),
          );
        }
        this.masterSince = this.scheduler.now;
      }
    });
    node.on("failover", (event) => {
      if (event.previousMaster !== null && event.previousMaster !== proc.id) this.failovers++;
    });
  }

  /**
   * Whether the first election has settled: a master was elected and nobody has stood for
   * election since, for the longest election timeout. Candidacies before that are the
   * first election (at a start, two candidates may run at once, and the one that loses
   * may depose the winner of an earlier term a few ms after it won: etcd does the same);
   * a calm run fails on any master elected after it.
   */
  private calmSettled(): boolean {
    if (this.settledAt === null && this.masterSince !== null) {
      const quietSince = Math.max(this.masterSince, this.candidacyAt);
      const settleMs = this.options.electionMs?.max ?? defaultNodeConfig().electionMsMax;
      if (this.scheduler.now - quietSince >= settleMs) this.settledAt = quietSince + settleMs;
    }
    return this.settledAt !== null;
  }

  /** A calm run's verdict at the end of its faults: the first election must have settled. */
  calmVerdict(): string | undefined {
    if (this.options.calm !== true || this.calmSettled()) return undefined;
    return `calm: no master held its role for an election timeout with nobody standing for election, in ${this.scheduler.now} ms (the last candidacy: ${this.lastCandidacy})`;
  }

  private onStartFailed(proc: Proc, incarnation: number, error: unknown): void {
    if (proc.incarnation !== incarnation) return;
    const code = (error as { code?: unknown }).code;
    if (error instanceof StorageError && code !== "ERR_STORAGE_LOCKED") {
      if (!proc.flipped) {
        // Only damage may stop a restart: a crash alone must leave a disk recovery accepts.
        this.scheduler.fail(
          new SafetyViolation(
            `node ${proc.id} refused to start after a crash, with no damage to its disk: ${(error as Error).message}`,
          ),
        );
        return;
      }
      if (!explainedByStrikes(error, proc.fs.strikes)) {
        // Damaged, but this refusal is not about the damage this start read.
        this.scheduler.fail(
          new SafetyViolation(
            `node ${proc.id} refused to start with ${error.code}, which the damage it read (${describeStrikes(proc.fs.strikes)}) does not explain: ${(error as Error).message}`,
          ),
        );
        return;
      }
      // Corruption detected and refused, as it must be: the operator wipes and rejoins.
      this.corruptionsDetected++;
      this.log(`node ${proc.id} refused to start: ${(error as Error).message.slice(0, 160)}`);
      this.kill(proc);
      proc.state = "broken";
      this.world.setTimeout(() => this.wipe(proc), this.prng.int(200, 1500));
      return;
    }
    this.scheduler.fail(error);
  }

  /** The process dies: timers, network and unsynced writes go with it. */
  crash(proc: Proc, why: string): void {
    if (proc.state === "down" || proc.state === "broken") return;
    this.crashes++;
    this.log(`node ${proc.id} crashed (${why})`);
    this.kill(proc);
    proc.state = "down";
    this.world.setTimeout(() => this.maybeRestart(proc), this.prng.int(50, 1500));
  }

  /**
   * The process is asked to stop (SIGTERM): the node's own stop runs, with a hand-over when
   * asked, failing or settling what waits on it, then the process exits, leaving its writes
   * to the page cache. It comes back as after a crash. Clients may meet it while it stops.
   */
  private stopGracefully(proc: Proc, handOver: boolean): void {
    const node = proc.node;
    if (proc.state !== "up" || node === null) return;
    this.gracefulStops++;
    const incarnation = proc.incarnation;
    this.log(`node ${proc.id} is asked to stop${handOver ? ", handing over first" : ""}`);
    node.stop({ handOver }).then(
      () => {
        // A crash while it stopped took the process already.
        if (proc.incarnation !== incarnation || proc.state !== "up") return;
        this.log(`node ${proc.id} stopped and exited`);
        this.exit(proc);
        proc.state = "down";
        this.world.setTimeout(() => this.maybeRestart(proc), this.prng.int(50, 1500));
      },
      (error: unknown) => this.scheduler.fail(error),
    );
  }

  /** The process exits on its own: what it wrote stays in the page cache. */
  private exit(proc: Proc): void {
    this.endProcess(proc);
    proc.fs.processCrash(proc.clock);
  }

  /** The process's timers and network go, and the node and state machine with them. */
  private endProcess(proc: Proc): void {
    this.checkTransfersIntact(proc);
    proc.clock.kill();
    proc.transport?.kill();
    proc.transport = null;
    proc.node = null;
    proc.sm = null;
    proc.clock = this.newClock();
  }

  /**
   * No snapshot `proc` received failed its checksum. The network never changes a byte and
   * the receiver checks what it was sent, not what its disk kept: a failure means a sender
   * read its damaged file through and sent it (it must stop first) or chunks of two
   * snapshots were mixed into one.
   */
  checkTransfersIntact(proc: Proc): void {
    const verdict = damagedTransfers(proc);
    if (verdict !== undefined) this.scheduler.fail(new SafetyViolation(verdict));
  }

  private kill(proc: Proc): void {
    this.endProcess(proc);
    // Half the crashes are of the process alone (killed, or stopped on a storage error):
    // what it wrote stays in the page cache, readable by the next process and still lost
    // by a later power loss unless something syncs it. The others take the machine down.
    if (this.prng.chance(0.5)) {
      this.processCrashes++;
      proc.fs.processCrash(proc.clock);
    } else {
      proc.fs.crash(proc.clock);
    }
  }

  private maybeRestart(proc: Proc): void {
    if (proc.state === "down" && !proc.awaitingOperator) this.start(proc);
  }

  /**
   * The operator's repair of a node whose disk failed its checksums or was lost: its
   * directory is emptied and the member replaced (removed, added back as a learner with a
   * new incarnation, started with what --join learns, promoted). The negative control
   * restarts it empty as the member it was instead.
   */
  private wipe(proc: Proc): void {
    if (proc.state !== "broken") return;
    this.wipes++;
    this.stopAndWipe(proc);
    if (this.options.negativeControl === "no_join") {
      this.log(`node ${proc.id} wiped, restarting empty without --join (negative control)`);
      this.start(proc);
      return;
    }
    this.operator.replace(proc, true);
  }

  /** Stops a machine's process if it runs and gives it an empty data directory. */
  private stopAndWipe(proc: Proc): void {
    if (proc.state === "up" || proc.state === "starting")
      this.crash(proc, "stopped by the operator");
    proc.fs = new SimFileSystem(new Prng(this.prng.nextUint32()), proc.clock, this.scenario.disk);
    proc.joined = null;
    proc.flipped = false;
    proc.promised = false;
    proc.state = "down";
  }

  private logger(id: NodeId): Logger {
    if (!this.tracing) return pino({ level: "silent" });
    return pino(
      {
        level: "info",
        base: { node: id },
        timestamp: false,
        // No stack: its caller's frames differ between two replays of one seed.
        serializers: { err: (e: Error) => ({ type: e.name, message: e.message }) },
      },
      { write: (line: string) => this.log(`node ${id}: ${line.trim()}`) },
    );
  }

  // ---------------------------------------------------------------- checkers

  onApplied(
    node: NodeId,
    command: Uint8Array,
    context: ApplyContext,
    result: KvResult,
    changes: readonly KvChange[],
    kv: KvStateMachine,
  ): void {
    try {
      this.checkApplied(node, command, context, result, changes, kv);
    } catch (error) {
      // The node stops with it too, but the verdict must not depend on how it stops.
      this.scheduler.fail(error);
      throw error;
    }
  }

  private checkApplied(
    node: NodeId,
    command: Uint8Array,
    context: ApplyContext,
    result: KvResult,
    changes: readonly KvChange[],
    kv: KvStateMachine,
  ): void {
    const identity = `${context.term}:${Buffer.from(command).toString("base64")}`;
    const first = this.appliedAt.get(context.index);
    if (first === undefined) this.appliedAt.set(context.index, identity);
    else if (first !== identity) {
      throw new SafetyViolation(
        `node ${node} applied a different command at index ${context.index}`,
      );
    }
    const decoded = decodeCommand(command);
    const known = decoded.ok ? decoded.command : null;
    const changed = kv.revision === context.index && changedItself(known, changes);
    this.exactlyOnce.applied(node, context.index, known, result, changed);
    this.rangeAtomicity.applied(context.index, known, result, changed);
    const puts = changed && known !== null && result.ok ? putsOf(known, result) : [];
    this.committed.applied(node, context.index, changes, puts);
    this.leases.appliedOnNode(node, context.index, known, result, (id) => kv.lease(id) !== null);
    if (first === undefined) {
      // The earliest moment anyone sees the store after this index: leases are judged here.
      const step = this.scenario.kvLimits.logTimeStepMsMax;
      const slackMs = (sinceMs: number) =>
        this.forwardJumpsAt.filter((at) => at >= sinceMs).length * step + 2;
      const held = (id: number) => kv.lease(id) !== null;
      const valueAt = (key: string) => {
        const entry = kv.get(key);
        return entry === null ? null : leaseValueDecoder.decode(entry.value);
      };
      this.leases.applied(known, result, this.scheduler.now, held, valueAt, slackMs);
    }
  }

  /** A restore on a running node is a state transfer (at start it is recovery). */
  /** A node replaces its state: a state transfer when the node is running. */
  onRestore(node: NodeId): void {
    if (this.procs.find((p) => p.id === node)?.state === "up") this.transfers++;
  }

  /** After every step: at most one master per term (Raft §5.2). */
  checkStep(): void {
    for (const proc of this.procs) {
      const node = proc.node;
      if (node === null || node.role !== "master") continue;
      const term = node.term;
      const known = this.masters.get(term);
      if (known === undefined) this.masters.set(term, proc.id);
      else if (known !== proc.id) {
        throw new SafetyViolation(`two masters in term ${term}: nodes ${known} and ${proc.id}`);
      }
    }
  }

  // ---------------------------------------------------------------- clients

  startClients(): void {
    for (let c = 1; c <= this.scenario.clientCount; c++) {
      this.world.setTimeout(() => void this.clientLoop(c), this.prng.int(0, 50));
    }
    for (let h = 1; h <= this.scenario.leaseHolders; h++) {
      this.world.setTimeout(() => void holdLeases(this, h), this.prng.int(0, 50));
    }
    if (this.scenario.leaseHolders > 0)
      this.world.setTimeout(() => this.leaseTick(), LEASE_TICK_MS);
    this.startWatchers();
  }

  /** The watchers, with a generator of their own so that the rest of a seed stays put. */
  private startWatchers(): void {
    const prng = new Prng(this.seed ^ 0x5bd1e995);
    const run = this;
    const host = {
      get now() {
        return run.scheduler.now;
      },
      setTimeout: (callback: () => void, ms: number) => {
        this.world.setTimeout(callback, ms);
      },
      nodes: () => this.watchNodes(),
      node: (id: NodeId) => {
        const proc = this.procs.find((p) => p.id === id);
        return proc === undefined ? undefined : this.watchNode(proc);
      },
      log: (line: string) => this.log(line),
      fail: (error: Error) => this.scheduler.fail(error),
      revisionAt: (index: number) => this.committed.revisionAt(index),
    };
    for (const plan of this.scenario.watchers) {
      const watcher = new SimWatcher(host, prng, plan);
      this.watchers.push(watcher);
      watcher.start();
    }
  }

  /** Every node as a watcher sees it now. */
  private watchNodes(): WatchNode[] {
    return this.procs.map((p) => this.watchNode(p));
  }

  private watchNode(p: Proc): WatchNode {
    const node = p.state === "up" ? p.node : null;
    const masterId = node?.masterId ?? null;
    return {
      id: p.id,
      incarnation: p.incarnation,
      serving: node !== null && !p.clock.paused && p.sm !== null,
      paused: p.clock.paused,
      master: node?.role === "master",
      connected: masterId !== null && (masterId === p.id || !this.net.isCut(masterId, p.id)),
      applied: () => node?.status().appliedIndex ?? 0,
      source: node === null ? null : (p.sm?.source ?? null),
    };
  }

  /** Every watcher has what the nodes applied (the end of the run). */
  watchersCaughtUp(): boolean {
    const applied = this.committed.lastIndex;
    return this.watchers.every((w) => w.caughtUp(applied));
  }

  /**
   * The key-value server's lease ticker: while leases are held, the master proposes a tick
   * every 250 ms, one at a time, so that log time moves and leases expire without writes.
   */
  private leaseTick(): void {
    if (!this.clientsRunning) return;
    this.world.setTimeout(() => this.leaseTick(), LEASE_TICK_MS);
    const master = this.procs.find(
      (p) => p.state === "up" && !p.clock.paused && p.node?.role === "master",
    );
    if (this.ticking || master === undefined || master.sm!.kv.leaseCount === 0) return;
    this.ticking = true;
    const done = (error?: unknown) => {
      this.ticking = false;
      const bug = error === undefined ? null : unexpectedRefusal("the lease tick", error);
      if (bug !== null) this.scheduler.fail(bug);
    };
    try {
      master.node!.propose(encodeCommand({ type: "tick" })).then(() => done(), done);
    } catch (error) {
      done(error);
    }
  }

  busy(delta: 1 | -1): void {
    this.busyClients += delta;
  }

  get keys(): readonly string[] {
    return this.scenario.keys;
  }

  revisionOf(key: string, value: string): number | undefined {
    return this.exactlyOnce.revisionOf(key, value);
  }

  /** Per session-tagged client: its session's number and the last seq it used. */
  private readonly sessions = new Map<number, { count: number; seq: number }>();

  /**
   * The tags of `client`'s write number `n`: an idempotency key, and for a session-tagged
   * client its session and the next seq (without the key when the seed says so). A client
   * has one request outstanding, so its seqs follow its writes.
   */
  writeTags(client: number, n: number): WriteTags {
    const idempotencyKey = `c${client}-${n}`;
    if (client > this.scenario.sessionClients) return { idempotencyKey };
    const session = this.sessions.get(client) ?? { count: 1, seq: 0 };
    session.seq++;
    this.sessions.set(client, session);
    const tag = { clientId: `c${client}s${session.count}`, seq: session.seq };
    return this.scenario.sessionsOnly ? { session: tag } : { idempotencyKey, session: tag };
  }

  /**
   * The store answered that `client`'s session expired: it cannot tell a retry from a new
   * request, so the write's outcome is unknown, and the client opens a new session, as the
   * session contract asks.
   */
  private sessionExpired(client: number): void {
    const session = this.sessions.get(client);
    if (session === undefined) return;
    session.count++;
    session.seq = 0;
    this.log(`client ${client}: session expired; opening session c${client}s${session.count}`);
  }

  stopClients(): void {
    this.clientsRunning = false;
  }

  stopWatchers(): void {
    for (const watcher of this.watchers) watcher.stop();
  }

  get clientsBusy(): boolean {
    return this.busyClients > 0;
  }

  private async clientLoop(client: number): Promise<void> {
    let n = 0;
    while (this.clientsRunning) {
      n++;
      this.busyClients++;
      try {
        await this.operate(client, n);
      } finally {
        this.busyClients--;
      }
      await this.sleep(this.prng.int(0, 30));
    }
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.world.setTimeout(resolve, ms));
  }

  private async operate(client: number, n: number): Promise<void> {
    const key = this.prng.pick(this.scenario.keys);
    const roll = this.prng.next();
    const deadline = this.scheduler.now + CLIENT_DEADLINE_MS;
    const store = new StoreClient(this, client, n, deadline);
    if (roll >= 0.82) {
      // The store beyond single keys: a compare-and-set (as a put or a transaction), a
      // transaction over two keys, a range read, a prefix delete.
      if (roll < 0.89 || (roll < 0.94 && this.scenario.keys.length < 2)) await store.cas(key);
      else if (roll < 0.94) await store.txnTwoKeys(key);
      else if (roll < 0.97) await store.rangeRead();
      else await store.deletePrefix();
      return;
    }
    const op: KvOp =
      roll < 0.4
        ? { kind: "read" }
        : roll < 0.75
          ? { kind: "write", value: `c${client}-${n}` }
          : { kind: "delete" };
    const entry = this.record(client, key, op);
    if (op.kind === "read") await this.read(entry, deadline);
    else await this.write(entry, this.writeTags(client, n), deadline);
    if (entry.outcome !== "ok") return;
    if (op.kind === "read") this.saw(client, key, entry.output as string | null);
    else this.saw(client, key, op.kind === "write" ? op.value : null);
  }

  /** A new operation in the history, invoked now and not yet answered. */
  record(client: number, key: string, op: KvOp): HistoryOp {
    const entry: HistoryOp = {
      id: this.nextOpId++,
      client,
      key,
      op,
      invokedAt: this.scheduler.now,
      completedAt: null,
      outcome: "info",
      invokedSeq: this.nextSeq(),
    };
    this.history.push(entry);
    return entry;
  }

  /** The order of events in the run, for the revision-order checker (no draw, no timer). */
  private eventSeq = 0;

  nextSeq(): number {
    return ++this.eventSeq;
  }

  /** What each client last saw of each key, for the value its compare-and-sets expect. */
  private readonly lastSeen = new Map<string, string | null>();

  /** `client` saw `key` hold `value` (null: absent). */
  saw(client: number, key: string, value: string | null): void {
    this.lastSeen.set(`${client}\u0000${key}`, value);
  }

  lastSeenBy(client: number, key: string): string | null | undefined {
    return this.lastSeen.get(`${client}\u0000${key}`);
  }

  /**
   * Sends one command, retried with the same idempotency key on any node until it is
   * answered with anything but `table_full`, or null when the deadline passes first.
   */
  async submit(
    command: Uint8Array,
    deadline: number,
    client?: number,
  ): Promise<{ readonly result: KvResult; readonly node: NodeId } | null> {
    while (this.scheduler.now < deadline) {
      const proc = this.pickNode();
      if (proc === null) {
        await this.sleep(50);
        continue;
      }
      const outcome = await this.attempt(() => proc.node!.propose(command));
      if (outcome.ok) {
        const result = outcome.value as KvResult;
        if (!result.ok && result.code === "session_expired" && client !== undefined) {
          this.sessionExpired(client);
          return null;
        }
        if (result.ok || result.code !== "table_full") return { result, node: proc.id };
      }
      await this.sleep(this.prng.int(10, 100));
    }
    return null;
  }

  /** A read barrier on some running node, then `read` of that node's own store. */
  async barrierRead<T>(deadline: number, read: (kv: KvStateMachine, node: NodeId) => T) {
    while (this.scheduler.now < deadline) {
      const proc = this.pickNode();
      if (proc === null) {
        await this.sleep(50);
        continue;
      }
      const { incarnation, sm } = proc;
      const outcome = await this.attempt(() => proc.node!.readBarrier());
      if (outcome.ok && proc.incarnation === incarnation && proc.state === "up" && sm !== null) {
        return { value: read(sm.kv, proc.id) };
      }
      await this.sleep(this.prng.int(10, 100));
    }
    return null;
  }

  get now(): number {
    return this.scheduler.now;
  }

  /** A linearizable read: a read barrier on some node, then that node's own store. */
  private async read(entry: HistoryOp, deadline: number): Promise<void> {
    while (this.scheduler.now < deadline) {
      const proc = this.pickNode();
      if (proc === null) {
        await this.sleep(50);
        continue;
      }
      // The read is served by the process that confirmed the barrier, never by a later one.
      const { incarnation, sm } = proc;
      const outcome = await this.attempt(() => proc.node!.readBarrier());
      if (outcome.ok && proc.incarnation === incarnation && proc.state === "up" && sm !== null) {
        const value = sm.kv.get(entry.key);
        entry.outcome = "ok";
        entry.output = value === null ? null : Buffer.from(value.value).toString();
        entry.servedRevision = sm.kv.revision;
        entry.completedAt = this.scheduler.now;
        entry.completedSeq = this.nextSeq();
        this.log(
          `client ${entry.client}: op ${entry.id} read ${entry.key} on node ${proc.id}: ${entry.output} (revision ${value?.revision ?? 0})`,
        );
        return;
      }
      await this.sleep(this.prng.int(10, 100));
    }
    entry.outcome = "fail"; // a read that never completed changed nothing
  }

  /** A write with its tags, retried with the same tags until it is answered. */
  private async write(entry: HistoryOp, tags: WriteTags, deadline: number): Promise<void> {
    const encode = (sent: WriteTags) =>
      encodeCommand(
        entry.op.kind === "write"
          ? {
              type: "put",
              key: entry.key,
              value: new TextEncoder().encode(entry.op.value),
              ...sent,
            }
          : { type: "delete", key: entry.key, ...sent },
      );
    let command = encode(tags);
    const named = tags.idempotencyKey ?? `session ${tags.session?.clientId} ${tags.session?.seq}`;
    entry.writeName = writeName(tags);
    let anew = 0;
    // Whether an attempt under the current key may have been applied (no answer, or one
    // that says nothing either way): then only the same key may be sent again.
    let inDoubt = false;
    // Whether any attempt, under any key, may have been applied; and how many were answered.
    let everInDoubt = false;
    let refusals = 0;
    while (this.scheduler.now < deadline) {
      const proc = this.pickNode();
      if (proc === null) {
        await this.sleep(50);
        continue;
      }
      const outcome = await this.attempt(() => proc.node!.propose(command));
      if (outcome.ok) {
        const result = outcome.value as KvResult;
        // Only a delete may be answered not_found: a put so answered was not done.
        if (result.ok || (entry.op.kind === "delete" && result.code === "not_found")) {
          entry.outcome = "ok";
          if (entry.op.kind === "delete") entry.output = result.ok;
          entry.completedAt = this.scheduler.now;
          entry.completedSeq = this.nextSeq();
          this.log(
            `client ${entry.client}: op ${entry.id} ${entry.op.kind} ${entry.key} ${named} via node ${proc.id}: ${JSON.stringify(result)}`,
          );
          return;
        }
        if (result.code === "session_expired") {
          this.sessionExpired(entry.client);
          return; // Indeterminate: the store cannot tell whether it was applied.
        }
        assert(result.code === "table_full", `write refused: ${JSON.stringify(result)}`);
        refusals++;
      } else if (!notApplied(outcome.error)) {
        inDoubt = true;
        everInDoubt = true;
      } else {
        refusals++;
        if (tags.session === undefined && !inDoubt) {
          // Told the write was not applied, by every attempt under this key, a client may
          // send it again as a new request: under a new idempotency key, which the
          // exactly-once checker counts as the same write, so that a refusal that said "not
          // applied" of a write some master did apply shows as a write applied twice.
          anew++;
          const key = `${tags.idempotencyKey}~${anew}`;
          this.exactlyOnce.alias(key, tags.idempotencyKey!);
          command = encode({ idempotencyKey: key });
          this.rekeyed++;
          this.log(
            `client ${entry.client}: op ${entry.id} ${named}: ${(outcome.error as { code?: string }).code}, sent again as ${key}`,
          );
        }
      }
      await this.sleep(this.prng.int(10, 100));
    }
    // Never answered: it may or may not have been applied, unless every answer it got
    // said it was not (and no attempt went unanswered): then it must have changed nothing.
    if (!everInDoubt && refusals > 0) entry.refusedNotApplied = true;
  }

  private pickNode(): Proc | null {
    // A stopped process accepts no request: a client's attempt on it would only time out.
    const up = this.procs.filter((p) => p.state === "up" && p.node !== null && !p.clock.paused);
    return up.length === 0 ? null : this.prng.pick(up);
  }

  /** One attempt, bounded by the client's own timer (a dead node never answers). */
  private attempt(
    call: () => Promise<unknown>,
  ): Promise<{ ok: true; value: unknown } | { ok: false; error?: unknown }> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (outcome: { ok: true; value: unknown } | { ok: false; error?: unknown }) => {
        if (settled) return;
        settled = true;
        this.world.clearTimeout(timer);
        resolve(outcome);
      };
      const timer = this.world.setTimeout(() => settle({ ok: false }), ATTEMPT_MS);
      try {
        call().then(
          (value) => settle({ ok: true, value }),
          (error: unknown) => {
            const bug = unexpectedRefusal("a client's request", error);
            if (bug !== null) this.scheduler.fail(bug);
            settle({ ok: false, error });
          },
        );
      } catch (error) {
        const bug = unexpectedRefusal("a client's request", error);
        if (bug !== null) throw bug;
        settle({ ok: false, error });
      }
    });
  }

  // ---------------------------------------------------------------- nemesis

  scheduleNemesis(until: number): void {
    const delay = this.prng.int(1, 2 * this.scenario.nemesisMsMean);
    if (this.scheduler.now + delay >= until) return;
    this.world.setTimeout(() => {
      this.nemesis();
      this.scheduleNemesis(until);
    }, delay);
  }

  private nemesis(): void {
    if (this.options.calm === true) {
      this.calmNemesis();
      return;
    }
    const kind = this.prng.pick([
      "crash",
      "crash_master",
      "isolate",
      "split",
      "one_way",
      "heal",
      "heal",
      "flip_bit",
      "read_error",
      "eio",
      "wipe",
      "pause",
      "clock_jump",
      "switchover",
      "member_cycle",
      "stop",
    ]);
    const running = this.procs.filter((p) => p.state === "up");
    const master = running.find((p) => p.node?.role === "master") ?? null;
    switch (kind) {
      case "crash":
        if (running.length > 0) this.crash(this.prng.pick(running), "nemesis");
        break;
      case "crash_master":
        if (master !== null) this.crash(master, "nemesis: the master");
        break;
      case "isolate": {
        const target = master ?? this.prng.pick(this.procs);
        for (const other of this.procs) {
          if (other === target) continue;
          this.net.cut(target.id, other.id);
          this.net.cut(other.id, target.id);
        }
        this.log(`isolated node ${target.id}`);
        break;
      }
      case "split": {
        const shuffled = [...this.procs];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.prng.int(0, i);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const minority = shuffled.slice(0, Math.floor(shuffled.length / 2));
        for (const a of minority) {
          for (const b of shuffled.slice(minority.length)) {
            this.net.cut(a.id, b.id);
            this.net.cut(b.id, a.id);
          }
        }
        this.log(`split off ${minority.map((p) => p.id).join(",")}`);
        break;
      }
      case "one_way": {
        const from = this.prng.pick(this.procs);
        const to = this.prng.pick(this.procs.filter((p) => p !== from));
        this.net.cut(from.id, to.id);
        this.log(`cut ${from.id} -> ${to.id}`);
        break;
      }
      case "heal":
        this.net.healAll();
        this.log("healed the network");
        break;
      case "flip_bit":
        if (this.laterFaults.chance(0.3)) this.flipSnapshotBit(running);
        else this.flipBit(running);
        break;
      case "read_error":
        this.readError(running);
        break;
      case "wipe":
        this.wipeHealthy(running);
        break;
      case "pause":
        if (running.length > 0) this.pause(this.prng.pick(running), this.prng.int(100, 2600));
        break;
      case "clock_jump":
        this.clockJump(master);
        break;
      case "switchover":
        this.switchover(running);
        break;
      case "member_cycle":
        if (this.allHealthy(running)) this.operator.replace(this.prng.pick(running), false);
        break;
      case "stop": {
        // SIGTERM: `baton start`'s stop, the master's with a hand-over; any node's otherwise.
        const stoppable = running.filter((p) => p.node !== null && !p.clock.paused);
        if (stoppable.length === 0) break;
        const target =
          master !== null && this.prng.chance(0.5) ? master : this.prng.pick(stoppable);
        this.stopGracefully(target, this.prng.chance(0.5));
        break;
      }
      case "eio": {
        if (running.length === 0) break;
        const target = this.prng.pick(running);
        target.fs.failNext("datasync", "EIO");
        this.log(`node ${target.id}: its next fdatasync fails with EIO`);
        break;
      }
    }
    this.count(kind);
  }

  /**
   * A state transfer (or a retry of one) has just sent its first chunk from `sender` to
   * node `to`: while the faults last, with the seed's chance, a fault meets it within the
   * next 30 ms, when its chunks are on their way, being written or being restored. The
   * transfers of a simulated store are a few kilobytes and over in milliseconds, so the
   * nemesis alone, a fault every few hundred, left the runtime's aborts (a stalled or
   * lost transfer, a receiver gone idle, a node stopped with a transfer under way) and a
   * second transfer adopted while the first is restored unreached.
   */
  private maybeMidTransferFault(sender: Proc, to: NodeId): void {
    const chance = this.scenario.midTransferFaultChance;
    // No draw at all for a seed without these faults: its run stays as it was.
    if (chance === 0 || !this.faultsActive || this.options.calm === true) return;
    if (!this.prng.chance(chance)) return;
    const receiver = this.procs.find((p) => p.id === to);
    if (receiver === undefined) return;
    const senderIncarnation = sender.incarnation;
    // Not from inside the node's send: a fault is the world's, a moment later.
    this.world.setTimeout(() => {
      if (!this.faultsActive || sender.incarnation !== senderIncarnation) return;
      this.midTransferFault(sender, receiver);
    }, this.prng.next() * 30);
  }

  private midTransferFault(sender: Proc, receiver: Proc): void {
    // Pauses outlast the transfer's stall time, so that the other side gives up on it.
    const stallMs = this.scenario.transferStallMs;
    const kind = this.laterFaults.chance(0.1)
      ? "flip_sender_snapshot"
      : this.prng.pick([
          "crash_receiver",
          "crash_sender",
          "pause_receiver",
          "pause_sender",
          "cut",
          "stop_receiver",
          "stop_sender",
          "switchover",
          "eio_receiver",
        ] as const);
    this.log(
      `a fault meets the state transfer from node ${sender.id} to node ${receiver.id}: ${kind}`,
    );
    const live = (p: Proc): boolean => p.state !== "down" && p.state !== "broken";
    const pausable = (p: Proc): boolean =>
      p.state === "up" && !p.clock.paused && p.transport !== null;
    const stoppable = (p: Proc): boolean => p.state === "up" && p.node !== null && !p.clock.paused;
    // Counted only when it acts: a crash of a node already down, say, is no fault.
    let acted = false;
    switch (kind) {
      case "crash_receiver":
        acted = live(receiver);
        this.crash(receiver, "during a state transfer to it");
        break;
      case "crash_sender":
        acted = live(sender);
        this.crash(sender, "during a state transfer from it");
        break;
      case "pause_receiver":
        acted = pausable(receiver);
        if (receiver.state === "up") this.pause(receiver, this.prng.int(stallMs, stallMs + 1500));
        break;
      case "pause_sender":
        // Past two stall times, the receiver drops the session if no one sends it more.
        acted = pausable(sender);
        if (sender.state === "up") this.pause(sender, this.prng.int(stallMs, 2 * stallMs + 1500));
        break;
      case "cut":
        // Both ways: until a heal, or the end of the faults.
        acted = true;
        this.net.cut(sender.id, receiver.id);
        this.net.cut(receiver.id, sender.id);
        break;
      case "stop_receiver":
        acted = stoppable(receiver);
        if (!receiver.clock.paused) this.stopGracefully(receiver, this.prng.chance(0.5));
        break;
      case "stop_sender":
        acted = stoppable(sender);
        if (!sender.clock.paused) this.stopGracefully(sender, this.prng.chance(0.5));
        break;
      case "switchover":
        // A new master starts the transfer again: two may reach the receiver at once.
        acted = this.procs.some((p) => p.state === "up" && p.node !== null && !p.clock.paused);
        this.switchover(this.procs.filter((p) => p.state === "up"));
        break;
      case "eio_receiver":
        // The chunk it writes next, or its log's next write (which stops the node).
        acted = receiver.state === "up";
        if (acted) receiver.fs.failNext("write", "EIO");
        break;
      case "flip_sender_snapshot":
        // The snapshot under way is damaged on the sender's disk, and the link cut: the
        // transfer stalls, and the one that follows the heal (unless a newer snapshot came
        // meanwhile) reads the damage. One node's data at a time: not while the receiver
        // has lost its own, or another node holds damage (see allHealthy).
        if (sender.state === "up" && this.mayLoseDataBesideTransfer()) {
          acted = true;
          this.flipNewestSnapshot(sender);
          this.net.cut(sender.id, receiver.id);
          this.net.cut(receiver.id, sender.id);
        }
        break;
    }
    if (acted) this.count("mid_transfer");
  }

  /**
   * Flips a bit in a stored file of one node and crashes it, so that its restart reads the
   * file back. Only while every other node is healthy: two nodes' data lost at once is
   * beyond what replication can repair.
   */
  private flipBit(running: Proc[]): void {
    if (!this.allHealthy(running)) return;
    const target = this.prng.pick(running);
    const files = target.fs
      .files(`/data/n${target.id}`)
      .filter((f) => !f.endsWith("/LOCK") && !f.endsWith(".tmp"));
    if (files.length === 0) return;
    const file = this.prng.pick(files);
    // Not in the last records of the newest log segment: recovery cannot tell a flip there
    // from a write torn by a crash and trims it (docs/simulator.md), so a flip there loses
    // an acknowledged entry on this node by design.
    const segments = files.filter((f) => f.endsWith(".seg")).sort();
    let at: number | null;
    if (file === segments.at(-1)) {
      const size = target.fs.contents(file)?.length ?? 0;
      if (size <= TAIL_BYTES_SPARED) return;
      at = target.fs.flipBit(file, this.prng.int(0, size - TAIL_BYTES_SPARED - 1));
    } else {
      at = target.fs.flipBit(file);
    }
    target.flipped = true;
    this.log(`node ${target.id}: flipped a bit of ${file} at ${at}`);
    this.crash(target, "after a bit flip");
  }

  /**
   * Flips a bit of the master's newest snapshot and leaves it running (damage no read has
   * met yet): the next state transfer it sends reads it, and must stop the master naming
   * the file rather than send the damaged snapshot to every backup, again and again; a
   * restart refuses the file. Under the same rule as a bit flip: one node's data at a time
   * (`flipped` holds further damage off while the file is on the disk).
   */
  private flipSnapshotBit(running: Proc[]): void {
    if (!this.allHealthy(running)) return;
    const master = running.find((p) => p.node?.role === "master");
    if (master !== undefined) this.flipNewestSnapshot(master);
  }

  /** Flips a bit of `proc`'s newest snapshot file, if it has one, and leaves it running. */
  private flipNewestSnapshot(proc: Proc): void {
    const newest = proc.fs
      .files(`/data/n${proc.id}/snapshots`)
      .filter((f) => f.endsWith(".snap"))
      .sort()
      .at(-1);
    if (newest === undefined) return;
    const at = proc.fs.flipBit(newest);
    proc.flipped = true;
    this.latentSnapshotFlips++;
    this.log(`node ${proc.id}: flipped a bit of ${newest} at ${at}, left running`);
  }

  /**
   * Steps one node's wall clock (the master's half the time) an hour or ten minutes either
   * way, or back to where it started: log time must not run ahead with it, so no
   * idempotency key or lease may expire early.
   */
  private clockJump(master: Proc | null): void {
    const target = master !== null && this.prng.chance(0.5) ? master : this.prng.pick(this.procs);
    const clock = target.clock;
    const origin = this.skewOf.get(clock) ?? clock.wallOffsetMs;
    const step = this.prng.pick([3_600_000, -3_600_000, 600_000, -600_000, 0]);
    const to = step === 0 ? origin : clock.wallOffsetMs + step;
    if (to > clock.wallOffsetMs) this.forwardJumpsAt.push(this.scheduler.now);
    this.log(`node ${target.id}: wall clock steps by ${to - clock.wallOffsetMs} ms`);
    clock.wallOffsetMs = to;
    this.clockJumps++;
  }

  /** Asks a running node for a switchover, to a random member or to the best-placed backup. */
  private switchover(running: Proc[]): void {
    const asked = running.filter((p) => p.node !== null && !p.clock.paused);
    if (asked.length === 0) return;
    const proc = this.prng.pick(asked);
    const node = proc.node!;
    const to = this.prng.chance(0.5) ? null : this.prng.pick(this.procs).id;
    const what = `node ${proc.id}: switchover to ${to ?? "the best-placed backup"}`;
    const refused = (error: unknown) => {
      const bug = unexpectedRefusal(what, error, SWITCHOVER_REFUSALS);
      if (bug !== null) this.scheduler.fail(bug);
      else this.log(`${what}: refused (${(error as Error).message.slice(0, 100)})`);
    };
    try {
      node
        .switchover(to)
        .then((o) => this.log(`${what}: master ${o.master} in term ${o.term}`), refused);
    } catch (error) {
      refused(error);
    }
  }

  /**
   * The calm nemesis (WholeNodeOptions.calm): pauses only; the scenario's network delays
   * and disk stalls do the rest.
   */
  private calmNemesis(): void {
    // One pause at a time: backups paused one after another until a majority is stopped
    // would cut the master off from its majority, which is a partition, not slowness.
    // And only while every node takes part: with one still starting or catching up, the
    // master's majority needs every other node, and any pause of one cuts it off.
    if (this.procs.some((p) => p.clock.paused)) return;
    const running = this.procs.filter((p) => p.state === "up");
    if (!this.allHealthy(running)) return;
    const kind = this.prng.pick(["pause_backup", "pause_master", "pause_machine"]);
    const master = running.find((p) => p.node?.role === "master") ?? null;
    switch (kind) {
      case "pause_backup": {
        const backups = running.filter((p) => p !== master);
        if (backups.length > 0) this.pause(this.prng.pick(backups), this.prng.int(10, 2600));
        break;
      }
      case "pause_master": {
        const longest = calmMasterPauseMsMax(
          this.scenario.net.delayMsMax,
          this.options.electionMs?.min,
        );
        if (master !== null && longest > 0) this.pause(master, this.prng.int(1, longest));
        break;
      }
      case "pause_machine": {
        // Every process of a loaded machine stalls together, and resumes together.
        const ms = this.prng.int(10, 2600);
        this.log(`the machine stalls for ${ms} ms`);
        for (const proc of running) this.pause(proc, ms);
        break;
      }
    }
    this.count(kind);
  }

  /**
   * Stops a node's process for `ms` (a long garbage collection, SIGSTOP): its timers and
   * disk completions wait, what arrives for it is held, and it resumes as a process does.
   */
  private pause(proc: Proc, ms: number): void {
    if (proc.clock.paused || proc.transport === null) return;
    const { clock, incarnation } = proc;
    this.log(`node ${proc.id} paused for ${ms} ms`);
    clock.pause();
    proc.transport.pause();
    this.world.setTimeout(() => {
      if (proc.incarnation !== incarnation || clock.killed) return;
      // The end of the faults may have resumed it already (endFaults logs that).
      if (clock.paused) this.log(`node ${proc.id} resumed`);
      this.resume(proc);
    }, ms);
  }

  /**
   * A stopped process runs again as a Node.js process does: first the timers that came due
   * (the timers phase of its event loop), then what arrived on its sockets meanwhile (the
   * poll phase), then what those timers deferred with setImmediate (the check phase).
   */
  private resume(proc: Proc): void {
    const { clock, transport } = proc;
    clock.resume();
    clock.setImmediate(() => {
      if (!clock.paused) transport?.resume();
    });
  }

  /**
   * Whether every node runs, none is still catching up after losing its data, and each has
   * applied about what the master committed, and at least one entry: only then may the
   * nemesis take one node's data (losing two at once is beyond what replication can
   * repair). A member that has applied nothing may be one no master ever heard from, still
   * behind its bootstrap gate: it holds nothing either, and until it learns the cluster's
   * term from every peer but the lost one it must not vote (seeds 2402, 9238).
   */
  private allHealthy(running: Proc[]): boolean {
    if (running.length < this.procs.length) return false;
    // A replaced member is caught up under the operator (operator.busy).
    if (this.operator.busy) return false;
    // A node whose damage recovery has not read yet still holds it (seed 213044: node 1's
    // unread latent error, then node 3's disk, and two nodes of three without their data).
    if (this.procs.some((p) => p.flipped && p.fs.holdsDamage())) return false;
    const master = running.find((p) => p.node?.role === "master");
    if (master === undefined) return false;
    const commit = master.node!.status().commitIndex;
    const floor = Math.max(1, commit - 5);
    return running.every((p) => p.node!.status().appliedIndex >= floor);
  }

  /**
   * allHealthy's rule for taking one node's data, less "every node has applied about what
   * the master committed" (the receiver of a state transfer is behind by definition): every
   * node runs, none is broken, awaits the operator or catches up, no replacement is under
   * way or queued (a forced recovery's), and no node holds damage its recovery has not read.
   */
  private mayLoseDataBesideTransfer(): boolean {
    if (this.operator.busy || this.lostToReplace.length > 0) return false;
    return this.procs.every(
      (p) =>
        p.state === "up" &&
        p.node !== null &&
        !p.awaitingOperator &&
        !(p.flipped && p.fs.holdsDamage()),
    );
  }

  /**
   * Loses a healthy node's disk (a replaced machine): it restarts empty with --join and
   * catches up by state transfer. Under the same rule as a bit flip: one node without its
   * data at a time.
   */
  private wipeHealthy(running: Proc[]): void {
    if (!this.allHealthy(running)) return;
    const target = this.prng.pick(running);
    this.log(`node ${target.id}: its disk is lost`);
    this.crash(target, "its disk was replaced");
    target.state = "broken";
    this.wipe(target);
  }

  /**
   * Makes a stored file of one node unreadable from some byte on (a latent sector error)
   * and crashes it: its restart must stop with ERR_STORAGE_IO naming the file, unless
   * recovery never reads that part. Under the same rule as a bit flip.
   */
  private readError(running: Proc[]): void {
    if (!this.allHealthy(running)) return;
    const target = this.prng.pick(running);
    const files = target.fs
      .files(`/data/n${target.id}`)
      .filter((f) => !f.endsWith("/LOCK") && !f.endsWith(".tmp"));
    if (files.length === 0) return;
    const file = this.prng.pick(files);
    const size = target.fs.contents(file)?.length ?? 0;
    const from = this.prng.int(0, Math.max(0, size - 1));
    target.fs.damage(file, from, from + this.prng.int(1, 4096));
    target.flipped = true;
    this.log(`node ${target.id}: ${file} unreadable from byte ${from}`);
    this.crash(target, "after a read error appeared");
  }

  // ---------------------------------------------------------------- forced recovery

  /** Forced recoveries done, and the machines still to be brought back after one. */
  forcedRecoveries = 0;
  private readonly lostToReplace: Proc[] = [];

  /**
   * Loses a majority once, at a time the seed picks within the faults, as soon as no
   * member is being replaced and no disk is damaged or empty (those are repaired first).
   */
  scheduleForcedRecovery(until: number): void {
    const attempt = (): void => {
      const quiet =
        !this.operator.busy &&
        this.procs.every(
          // A flipped node whose damaged file is gone (a newer snapshot pruned it) is whole.
          (p) => p.state !== "broken" && !(p.flipped && p.fs.holdsDamage()) && !p.awaitingOperator,
        );
      if (quiet) {
        void this.loseMajority().catch((error: unknown) => this.scheduler.fail(error));
      } else if (this.scheduler.now < until) {
        this.world.setTimeout(attempt, 50);
      }
    };
    this.world.setTimeout(attempt, this.prng.int(Math.floor(until / 5), Math.floor(until / 2)));
  }

  /** A lock holder for the recovery tool run on `proc`'s stopped machine. */
  private toolLockHost(proc: Proc): LockHost {
    return {
      pid: 900_000 + proc.id,
      isRunning: (pid) => this.procs.some((p) => p.pid === pid && p.state !== "down"),
      held: new Set(),
    };
  }

  private recoverOn(proc: Proc, write: boolean): Promise<RecoveryPlan> {
    return forceNewCluster(`/data/n${proc.id}`, proc.id, {
      write,
      fs: proc.fs,
      clock: proc.clock,
      lockHost: this.toolLockHost(proc),
    });
  }

  private async loseMajority(): Promise<void> {
    this.forcedRecoveries++;
    this.log("nemesis: every node stops and a majority of the disks is lost");
    for (const proc of this.procs) {
      proc.awaitingOperator = true;
      this.crash(proc, "the majority is lost");
    }
    // The operator's dry run on each disk. Every committed entry is on a majority of the
    // voters, so the voter whose log is the most up to date of all the voters' holds each
    // of them (the argument of Raft §5.4.1); a learner's log proves nothing.
    const plans: { proc: Proc; plan: RecoveryPlan }[] = [];
    for (const proc of this.procs) {
      try {
        plans.push({ proc, plan: await this.recoverOn(proc, false) });
      } catch (error) {
        if ((error as { code?: string }).code !== "ERR_RECOVERY_REFUSED") throw error;
        this.log(`operator: baton recover on node ${proc.id}: ${(error as Error).message}`);
      }
    }
    const newer = (a: RecoveryPlan, b: RecoveryPlan): boolean =>
      a.survivor.lastTerm > b.survivor.lastTerm ||
      (a.survivor.lastTerm === b.survivor.lastTerm && a.survivor.lastIndex > b.survivor.lastIndex);
    const stale = this.options.negativeControl === "stale_survivor";
    const best = plans.reduce<(typeof plans)[number] | null>(
      (chosen, p) =>
        chosen === null || (stale ? newer(chosen.plan, p.plan) : newer(p.plan, chosen.plan))
          ? p
          : chosen,
      null,
    );
    if (best === null) throw new SafetyViolation("no voter's disk could be recovered by force");
    const done = await this.recoverOn(best.proc, true);
    this.log(
      `operator: recovered node ${best.proc.id} by force (last index ${done.survivor.lastIndex}, term ${done.survivor.lastTerm}; config entry ${done.entry.index} in term ${done.entry.term})`,
    );
    for (const proc of this.procs) {
      if (proc === best.proc) continue;
      this.stopAndWipe(proc);
      proc.awaitingOperator = true;
      this.lostToReplace.push(proc);
    }
    best.proc.awaitingOperator = false;
    this.start(best.proc);
    this.replaceLost();
  }

  /** Hands the lost machines to the operator, one replacement at a time. */
  private replaceLost(): void {
    if (this.lostToReplace.length === 0) return;
    if (!this.operator.busy) this.operator.replace(this.lostToReplace.shift()!, true);
    this.world.setTimeout(() => this.replaceLost(), 100);
  }

  // ---------------------------------------------------------------- the run

  /**
   * The faults are over: every stopped process resumes, no armed disk failure strikes any
   * more, and every node that is down starts again.
   */
  endFaults(): void {
    this.faultsActive = false;
    for (const proc of this.procs) {
      proc.fs.disarm();
      if (proc.clock.paused && proc.transport !== null) {
        this.log(`node ${proc.id} resumed (the faults are over)`);
        this.resume(proc);
      }
      if (proc.state === "down" && !proc.awaitingOperator) this.start(proc);
    }
  }

  /** The master every running node agrees on, or null. */
  agreedMaster(): NodeId | null {
    return this.agreedMasterOf(this.procs);
  }

  /**
   * The master that every node but the one the operator is replacing agrees on, while that
   * replacement is still under way (its node down, or up and not yet following), or null.
   */
  agreedMasterBesideReplacement(): NodeId | null {
    // Down, or up and still finding its master (seed 1391507: started 3 ms before the
    // deadline, its steps slowed by stalled fsyncs): either way it has until the later one.
    const replaced = this.procs.find((p) => this.operator.replacing(p));
    if (replaced === undefined) return null;
    return this.agreedMasterOf(this.procs.filter((p) => p !== replaced));
  }

  private agreedMasterOf(procs: readonly Proc[]): NodeId | null {
    const up = procs.filter((p) => p.node !== null);
    if (up.length === 0 || up.length < procs.length) return null;
    const master = up[0]!.node!.masterId;
    if (master === null) return null;
    for (const p of up) if (p.node!.masterId !== master) return null;
    return up.find((p) => p.id === master)?.node?.role === "master" ? master : null;
  }

  /** Each node's state and progress, for a liveness failure's message. */
  describeNodes(): string {
    return this.procs
      .map((p) => {
        if (p.node === null) return `node ${p.id} ${p.state}`;
        const s = p.node.status();
        const members = p.node.members().members.map((m) => `${m.id}${m.voter ? "" : "L"}`);
        const hash = p.sm?.kv.stateHash().slice(0, 8) ?? "-";
        return `node ${p.id} ${s.role} term ${s.term} last ${s.lastIndex} commit ${s.commitIndex} applied ${s.appliedIndex} members ${members.join(",")} state ${hash}`;
      })
      .join("; ");
  }

  converged(): boolean {
    const up = this.procs.filter((p) => p.node !== null);
    if (up.length < this.procs.length) return false;
    const statuses = up.map((p) => p.node!.status());
    const applied = statuses[0]!.appliedIndex;
    if (statuses.some((s) => s.appliedIndex !== applied || s.commitIndex !== applied)) return false;
    const hash = up[0]!.sm!.kv.stateHash();
    if (!up.every((p) => p.sm!.kv.stateHash() === hash)) return false;
    // Every replacement done: every node lists every node as a voter, one configuration.
    if (this.operator.busy) return false;
    const members = JSON.stringify(up[0]!.node!.members().members);
    return up.every(
      (p) =>
        JSON.stringify(p.node!.members().members) === members &&
        p.node!.members().members.filter((m) => m.voter).length === this.procs.length,
    );
  }
}

/** Runs one seed of the whole-node simulator. */
export async function runWholeNode(
  seed: number,
  options: WholeNodeOptions = {},
): Promise<RunResult> {
  const drawn = makeWholeNodeScenario(seed, options.faultPhaseMs);
  const scenario = options.calm === true ? calmScenario(drawn, seed) : drawn;
  const run = new WholeNodeRun(seed, scenario, options.trace === true, options);
  let violation: string | undefined;
  let recoveryMs: number | null = null;
  const leaks = new LeakWatch(options.trace === true);
  const unhandled = (reason: unknown) => run.scheduler.fail(reason);
  process.on("unhandledRejection", unhandled);
  run.scheduler.onStep = () => {
    run.checkStep();
    options.onStep?.(run.scheduler.now);
  };
  run.scheduler.guard = leaks;
  const drainWatched = async (until: number, stop?: () => boolean) => {
    leaks.start();
    try {
      await run.scheduler.run(until, stop);
    } finally {
      leaks.stop();
    }
  };
  try {
    for (const proc of run.procs) run.start(proc);
    run.startClients();
    run.scheduleNemesis(scenario.faultPhaseMs);
    if (options.forcedRecovery === true) run.scheduleForcedRecovery(scenario.faultPhaseMs);
    await drainWatched(scenario.faultPhaseMs);
    const unsettled = run.calmVerdict();
    if (unsettled !== undefined) throw new SafetyViolation(unsettled);
    recoveryMs = await settle(run, drainWatched);
    violation = checkEnd(run, leaks);
  } catch (error) {
    violation = describeFailure(error);
  } finally {
    process.off("unhandledRejection", unhandled);
    run.stopClients();
    for (const proc of run.procs) {
      proc.clock.kill();
      proc.transport?.kill();
    }
  }
  if (violation !== undefined) run.log(`VIOLATION: ${violation}`);
  return {
    seed,
    ok: violation === undefined,
    ...(violation === undefined ? {} : { violation }),
    nodeCount: scenario.nodeCount,
    clientCount: scenario.clientCount,
    operations: run.history.length,
    indeterminate: run.history.filter((h) => h.outcome === "info").length,
    elections: run.elections,
    failovers: run.failovers,
    faults: run.faults,
    checks: {
      "member replacements": run.operator.replacements,
      ...(options.forcedRecovery === true ? { "forced recoveries": run.forcedRecoveries } : {}),
      "lease expiries checked": run.leases.expired,
      "lease keys checked gone": run.leases.keysChecked,
      "range reads checked": run.rangeAtomicity.reads,
      "reads checked in log order": run.revisionOrder?.reads ?? 0,
      "writes checked in log order": run.revisionOrder?.writes ?? 0,
      "clock jumps": run.clockJumps,
      "snapshot bits flipped under a running node": run.latentSnapshotFlips,
      "nodes stopped on their own damaged snapshot": run.ownSnapshotDamageStops,
      "process-only crashes": run.processCrashes,
      "graceful stops": run.gracefulStops,
      "writes sent anew after a definite refusal": run.rekeyed,
      "duplicated messages": run.net.duplicated,
      "watch changes checked": run.watchStats.delivered,
      "watch resumes": run.watchers.reduce((n, w) => n + Math.max(0, w.opened - 1), 0),
      "watch compactions announced": run.watchStats.compactions,
      "watch changes missed after a compaction": run.watchStats.excused,
    },
    crashes: run.crashes,
    tornWrites: run.procs.reduce((n, p) => n + p.fs.stats.tornWrites, 0),
    transfers: run.transfers,
    corruptionsDetected: run.corruptionsDetected,
    wipes: run.wipes,
    clockJumps: run.clockJumps,
    retriesAnswered: run.exactlyOnce.answeredFromTable,
    refused: run.exactlyOnce.refused,
    messages: run.net.sent,
    dropped: run.net.dropped,
    recoveryMs,
    commitIndex: Math.max(0, ...run.procs.map((p) => p.node?.status().commitIndex ?? 0)),
    virtualMs: run.scheduler.now,
    trace: run.trace,
  };
}

type Drive = (until: number, stop?: () => boolean) => Promise<void>;

/** Heals everything and waits for a master, answered clients and converged replicas. */
async function settle(run: WholeNodeRun, drive: Drive): Promise<number> {
  run.net.healAll();
  run.endFaults();
  const healedAt = run.scheduler.now;
  await drive(healedAt + 5000, () => run.agreedMaster() !== null);
  if (run.agreedMaster() === null) {
    // A member the operator is still replacing may take longer than that: each of its
    // steps (the removal, the addition, the empty node's first files) waits for fsyncs,
    // and a disk that stalls one for up to 3 s keeps doing so after the faults (seed
    // 1177807: a replacement that began after the heal, two stalls of 2 s). The others
    // must have agreed on a master in time all the same; the replaced member then has
    // until the convergence deadline below, as its catching up always had.
    if (run.agreedMasterBesideReplacement() === null) {
      throw new SafetyViolation("liveness: no master agreed on 5000ms after healing");
    }
    await drive(healedAt + 15_000, () => run.agreedMaster() !== null);
    if (run.agreedMaster() === null) {
      throw new SafetyViolation(
        `liveness: no master agreed on 15000ms after healing, a member's replacement under way (${run.describeNodes()})`,
      );
    }
  }
  const recoveryMs = run.scheduler.now - healedAt;
  await drive(run.scheduler.now + 500);
  run.stopClients();
  await drive(healedAt + 15_000, () => !run.clientsBusy && run.converged());
  if (run.clientsBusy) throw new SafetyViolation("liveness: client requests still pending");
  if (!run.converged()) {
    throw new SafetyViolation(`liveness: replicas not converged (${run.describeNodes()})`);
  }
  await probe(run, drive);
  await drive(run.scheduler.now + 5000, () => run.converged());
  if (!run.converged()) {
    throw new SafetyViolation(
      `liveness: replicas not converged after the probe (${run.describeNodes()})`,
    );
  }
  // Convergence compares the stores' incrementally kept hashes: each must also be the hash
  // of what the store holds, recomputed from nothing, or two stores could differ unseen.
  for (const proc of run.procs) {
    const kv = proc.sm!.kv;
    if (kv.stateHashRecomputed() !== kv.stateHash()) {
      throw new SafetyViolation(
        `node ${proc.id}: the store's kept state hash ${kv.stateHash()} is not that of what it holds (${kv.stateHashRecomputed()})`,
      );
    }
  }
  await drive(run.scheduler.now + 5000, () => run.watchersCaughtUp());
  if (!run.watchersCaughtUp()) {
    throw new SafetyViolation(
      `liveness: a watcher did not reach index ${run.committed.lastIndex} within 5000 ms of convergence`,
    );
  }
  run.stopWatchers();
  return recoveryMs;
}

/** A key outside the workload's prefix, written once the run has healed. */
const PROBE_KEY = "liveness-probe";

/**
 * Healed, the cluster serves: a write is committed and a linearizable read then sees it,
 * each within 15 s. Without it a cluster that refused everything after the heal would pass,
 * its history of failed requests trivially linearizable.
 */
async function probe(run: WholeNodeRun, drive: Drive): Promise<void> {
  const value = "written after the heal";
  // No idempotency key and no session: a full table (small-table scenarios) refuses new
  // keys for as long as its window lasts, which is the table's promise, not a failure.
  const command = encodeCommand({
    type: "put",
    key: PROBE_KEY,
    value: new TextEncoder().encode(value),
  });
  const outcome: { written?: string; read?: string } = {};
  // 15 s each, as a master has after the heal: disks still stall (up to 3 s, one after
  // another), and an attempt started just before the deadline answers up to ATTEMPT_MS later.
  const budgetMs = 15_000;
  run.submit(command, run.scheduler.now + budgetMs).then(
    (answer) => {
      outcome.written = answer === null ? "no answer" : JSON.stringify(answer.result);
    },
    (error: unknown) => run.scheduler.fail(error),
  );
  await drive(run.scheduler.now + budgetMs + ATTEMPT_MS, () => outcome.written !== undefined);
  if (outcome.written === undefined || !outcome.written.startsWith('{"ok":true')) {
    throw new SafetyViolation(
      `liveness: a write after healing was not committed within ${budgetMs} ms (${outcome.written ?? "still pending"}; ${run.describeNodes()})`,
    );
  }
  run
    .barrierRead(run.scheduler.now + budgetMs, (kv) => {
      const entry = kv.get(PROBE_KEY);
      return entry === null ? "absent" : new TextDecoder().decode(entry.value);
    })
    .then(
      (answer) => {
        outcome.read = answer === null ? "no answer" : answer.value;
      },
      (error: unknown) => run.scheduler.fail(error),
    );
  await drive(run.scheduler.now + budgetMs + ATTEMPT_MS, () => outcome.read !== undefined);
  if (outcome.read !== value) {
    throw new SafetyViolation(
      `liveness: a read after the probe's write answered ${outcome.read ?? `nothing within ${budgetMs} ms`}, not ${JSON.stringify(value)}`,
    );
  }
}

/** A violation when `proc`'s running node received a snapshot failing its checksum. */
function damagedTransfers(proc: Proc): string | undefined {
  const failures = proc.node?.counters.snapshotChecksumFailures ?? 0;
  if (failures === 0) return undefined;
  return `node ${proc.id} received ${failures} snapshot(s) failing their checksum: a sender sent a damaged snapshot through, or chunks were mixed`;
}

function checkEnd(run: WholeNodeRun, leaks: LeakWatch): string | undefined {
  if (leaks.leaks.length > 0) {
    return `real I/O or timers leaked into the simulation: ${leaks.leaks[0]}`;
  }
  for (const proc of run.procs) {
    const verdict = damagedTransfers(proc);
    if (verdict !== undefined) return verdict;
  }
  const watches = checkWatches(run);
  if (watches !== undefined) return watches;
  const order = checkRevisionOrder(run.history, {
    executedIndex: (name) => run.exactlyOnce.executedIndex(name),
    valueAt: (key, revision) => run.committed.valueAt(key, revision),
    answeredIndex: (name) => run.exactlyOnce.answeredIndex(name),
    revisionAt: (index) => run.committed.revisionAt(index),
  });
  run.revisionOrder = order.stats;
  if (order.violation !== null) return `history not linearizable in log order: ${order.violation}`;
  const acknowledged = checkAcknowledged(run.history, {
    executedIndex: (name) => run.exactlyOnce.executedIndex(name),
  });
  if (acknowledged !== null) return `a write's answer and the log disagree: ${acknowledged}`;
  const verdict = checkLinearizable(run.history);
  if (verdict.ok) return undefined;
  const bad = verdict.keys.find((k) => !k.ok);
  return `history not linearizable (key ${bad?.key}): ${bad?.explanation ?? "search capped"}`;
}

/**
 * The watchers against the committed changes, once the applied history is shown to fold
 * into the converged store (so that it is the committed one).
 */
function checkWatches(run: WholeNodeRun): string | undefined {
  // The cluster goes on applying while the watchers catch up (a lease's expiry writes to
  // the log), so a backup may be an entry behind (seed 6235 at 150-300 ms): judge against
  // the store that applied the most, up to the index it applied.
  let best: { kv: KvStateMachine; applied: number } | null = null;
  for (const proc of run.procs) {
    const kv = proc.sm?.kv;
    const applied = proc.node?.status().appliedIndex;
    if (kv === undefined || applied === undefined) continue;
    if (best === null || applied > best.applied) best = { kv, applied };
  }
  if (best === null) return "no store to check the watches against";
  const { kv, applied: to } = best;
  const page = kv.range({
    prefix: "",
    after: null,
    limit: Number.MAX_SAFE_INTEGER,
    valueBytesMax: Number.POSITIVE_INFINITY,
  });
  const state = new Map(
    page.items.map((i) => [i.key, { value: decoder.decode(i.value), revision: i.revision }]),
  );
  const mismatch = run.committed.mismatch(to, state);
  if (mismatch !== null) return `watch history: ${mismatch}`;
  for (const watcher of run.watchers) {
    const verdict = checkWatcher(run.committed, watcher, to);
    run.watchStats.delivered += verdict.delivered;
    run.watchStats.compactions += verdict.compactions;
    run.watchStats.excused += verdict.missedAfterCompaction;
    if (verdict.problems.length > 0) {
      return `watcher ${watcher.id} of ${JSON.stringify(watcher.prefix)} from revision ${watcher.fromRevision}: ${verdict.problems.join("; ")}`;
    }
  }
  return undefined;
}

const decoder = new TextDecoder();

function describeFailure(error: unknown): string {
  if (error instanceof SafetyViolation || error instanceof AssertionError) {
    return `${error.name}: ${error.message}`;
  }
  const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return `unexpected error: ${stack.split("\n").slice(0, 4).join(" | ")}`;
}
