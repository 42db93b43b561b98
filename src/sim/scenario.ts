/**
 * What a seed decides: the cluster's size, the client load and how hard each kind of
 * fault hits. Every field comes from the seeded generator, so a seed names a whole run.
 */

import { Prng } from "../core/prng.js";
import { defaultKvLimits, type KvLimits, parseKvLimits } from "../kv/index.js";
import type { NetworkFaults } from "./sim-network.js";

export interface Scenario {
  readonly seed: number;
  /** See ScenarioOptions.negativeControl; null in every real sweep. */
  readonly negativeControl: "keep_identity" | null;
  /** Whether masters write members' incarnations into the configuration. */
  readonly bindIncarnations: boolean;
  readonly nodeCount: number;
  readonly clientCount: number;
  readonly keys: readonly string[];
  readonly network: NetworkFaults;
  /** Virtual milliseconds per tick for each node (10 ms, give or take clock drift). */
  readonly tickMs: readonly number[];
  /** Disk write latency range, virtual ms. */
  readonly diskMsMin: number;
  readonly diskMsMax: number;
  /** Mean virtual ms between nemesis actions during the fault phase. */
  readonly nemesisEveryMs: number;
  /** Relative weights of the nemesis actions. */
  readonly nemesis: Readonly<Record<NemesisKind, number>>;
  /** Probability that a crash tears the write in progress. */
  readonly tornWrite: number;
  /** Virtual ms of the fault phase. */
  readonly faultPhaseMs: number;
  /** Protocol knobs that change how replication interleaves (small values stress it). */
  readonly appendEntriesMax: number;
  readonly inflightMax: number;
  /** Each node snapshots every this many applied entries (0: never). */
  readonly snapshotEvery: number;
  /** Entries kept below a snapshot. */
  readonly keepEntries: number;
  /** The key-value state machine's limits, the same on every node. */
  readonly kvLimits: KvLimits;
  /** Each node's wall clock minus the virtual clock at the start, in ms (clock skew). */
  readonly clockSkewMs: readonly number[];
  /** Share of the writes that are deletes (the rest: puts and compare-and-sets). */
  readonly deleteShare: number;
  /** Which clients tag writes with a session as well as an idempotency key. */
  readonly sessionClients: "none" | "even" | "all";
}

export type NemesisKind =
  | "crash"
  | "crash_master"
  | "pause"
  | "isolate_master"
  | "split"
  | "one_way"
  | "flap"
  | "unreachable"
  | "flip_bit"
  | "wipe"
  | "clock_jump"
  | "switchover"
  | "member_cycle"
  | "heal";

export interface ScenarioOptions {
  /** Run length of the fault phase in virtual ms. @default 6000 */
  readonly faultPhaseMs?: number;
  /** Force a cluster size instead of picking 3 or 5. */
  readonly nodeCount?: number;
  /** Disable every fault (for demonstrations of the happy path). */
  readonly calm?: boolean;
  /**
   * A deliberate bug the checkers must catch. `keep_identity`: a wiped data directory
   * keeps its identity and restarts as the member it was, without being replaced.
   */
  readonly negativeControl?: "keep_identity";
}

export function makeScenario(seed: number, options: ScenarioOptions = {}): Scenario {
  const prng = new Prng(seed ^ 0x51ed270b);
  const nodeCount = options.nodeCount ?? prng.pick([3, 3, 5]);
  const calm = options.calm === true;
  const drift = (): number => 10 * (1 + (prng.next() - 0.5) * 0.1);
  const scenario = {
    seed,
    nodeCount,
    clientCount: prng.int(1, 5),
    keys: ["a", "b", "c", "d", "e"].slice(0, prng.int(1, 5)),
    network: {
      loss: calm ? 0 : prng.pick([0, 0.01, 0.05, 0.15]),
      duplicate: calm ? 0 : prng.pick([0, 0.01, 0.05]),
      reorder: calm ? 0 : prng.pick([0, 0.02, 0.1]),
      delayMsMin: 0.1,
      delayMsMax: prng.pick([1, 3, 10]),
      reorderDelayMsMax: prng.pick([20, 100, 400]),
    },
    tickMs: Array.from({ length: nodeCount }, drift),
    diskMsMin: 0.1,
    diskMsMax: prng.pick([0.5, 2, 8]),
    nemesisEveryMs: prng.pick([150, 400, 1000]),
    nemesis: {
      crash: calm ? 0 : prng.int(0, 3),
      crash_master: calm ? 0 : prng.int(1, 3),
      pause: calm ? 0 : prng.int(0, 2),
      isolate_master: calm ? 0 : prng.int(1, 3),
      split: calm ? 0 : prng.int(0, 2),
      one_way: calm ? 0 : prng.int(0, 2),
      flap: calm ? 0 : prng.int(0, 2),
      unreachable: calm ? 0 : prng.int(0, 2),
      flip_bit: calm ? 0 : prng.int(0, 1),
      heal: calm ? 0 : prng.int(1, 3),
    },
    tornWrite: calm ? 0 : prng.pick([0, 0.3, 0.8]),
    faultPhaseMs: options.faultPhaseMs ?? 6000,
    appendEntriesMax: prng.pick([1, 2, 8, 512]),
    inflightMax: prng.pick([1, 4, 64]),
    snapshotEvery: prng.pick([0, 10, 50, 200]),
    keepEntries: prng.pick([0, 5, 50]),
  };
  // Drawn last, so that every knob above stays what it was for seeds recorded before wipes
  // existed (a seed whose wipe weight is 0 replays exactly as it did).
  // The identity negative control wipes often: it exists to show the bug is caught.
  const wipe = calm
    ? 0
    : options.negativeControl === "keep_identity"
      ? 3 + prng.int(0, 1)
      : prng.int(0, 1);
  // Drawn after the wipe for the same reason: a seed whose clock jump weight is 0, with the
  // default limits, no deletes and no sessions, replays as it did before the simulator ran
  // the product's key-value store.
  const clockJump = calm ? 0 : prng.pick([0, 0, 1, 2]);
  const clockSkewMs = Array.from({ length: nodeCount }, () => prng.int(-2000, 2000));
  const kvLimits = prng.chance(0.25) ? smallKvLimits(prng) : defaultKvLimits();
  const deleteShare = prng.pick([0, 0, 0.05, 0.15]);
  const sessionClients = prng.pick(["none", "even", "all"] as const);
  // Drawn last too: a seed whose switchover weight is 0 replays as it did before.
  const switchover = calm ? 0 : prng.pick([0, 0, 1, 2]);
  // And again: a seed whose membership weight is 0 replays as it did before.
  const memberCycle = calm ? 0 : prng.pick([0, 1, 1, 2]);
  // Half the seeds write members' incarnations down (as the core can), half keep the
  // command line's 0s (as the node runtime does today).
  const bindIncarnations = prng.chance(0.5);
  return {
    ...scenario,
    negativeControl: options.negativeControl ?? null,
    bindIncarnations,
    nemesis: {
      ...scenario.nemesis,
      wipe,
      clock_jump: clockJump,
      switchover,
      member_cycle: memberCycle,
    },
    kvLimits,
    clockSkewMs,
    deleteShare,
    sessionClients,
  };
}

/**
 * Tables small enough to fill and windows short enough to expire within a run, so that
 * refusals and expiry happen under faults. A window stays longer than a request can live:
 * a client retries for 4 s, a paused node may hold a request 2.6 s more before proposing
 * it, and each change of master or clock jump can add one log-time step (100 ms here).
 */
function smallKvLimits(prng: Prng): KvLimits {
  const parsed = parseKvLimits({
    sessionCountMax: prng.pick([2, 4, 100]),
    sessionTtlMs: prng.pick([10_000, 20_000]),
    idempotencyKeyCountMax: prng.pick([8, 64, 512]),
    idempotencyWindowMs: prng.pick([10_000, 20_000]),
    logTimeStepMsMax: 100,
    expiryCountMaxPerApply: prng.pick([1, 64]),
    snapshotChunkBytesMax: prng.pick([64, 4096]),
  });
  if (!parsed.ok) throw new Error(`simulator limits: ${parsed.errors.join("; ")}`);
  return parsed.limits;
}
