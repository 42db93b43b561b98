/**
 * One simulation run from one seed: a fault phase under client load, then healing, a
 * liveness deadline for a master and for every pending request, convergence of every
 * replica, and the linearizability verdict on the clients' history. Exactly-once is
 * checked as the nodes apply (`checkers/exactly-once.ts`). A run either passes
 * or returns the first violation with enough context to replay it.
 */

import { AssertionError } from "../shared/assert.js";
import { checkLinearizable } from "./checkers/linearizability.js";
import { SafetyViolation } from "./checkers/safety.js";
import { SimCluster } from "./cluster.js";
import { makeScenario, type ScenarioOptions } from "./scenario.js";

export interface RunOptions extends ScenarioOptions {
  readonly trace?: boolean;
  /** Virtual ms after healing within which a master must be agreed on. @default 5000 */
  readonly masterDeadlineMs?: number;
  /** Virtual ms after healing within which every request must complete. @default 15000 */
  readonly settleDeadlineMs?: number;
}

export interface RunResult {
  readonly seed: number;
  readonly ok: boolean;
  /** What went wrong, first violation only. */
  readonly violation?: string;
  readonly nodeCount: number;
  readonly clientCount: number;
  readonly operations: number;
  readonly indeterminate: number;
  readonly elections: number;
  readonly failovers: number;
  readonly faults: Record<string, number>;
  /** What else the run did that checkers judged (whole node: leases, range reads, members). */
  readonly checks?: Record<string, number>;
  readonly crashes: number;
  readonly tornWrites: number;
  readonly transfers: number;
  readonly corruptionsDetected: number;
  readonly wipes: number;
  readonly clockJumps: number;
  /** Applications of a write answered from its idempotency key or session, not applied. */
  readonly retriesAnswered: number;
  /** Applications of a write refused because an exactly-once table was full. */
  readonly refused: number;
  readonly messages: number;
  readonly dropped: number;
  /** Virtual ms from healing until a master was agreed on. */
  readonly recoveryMs: number | null;
  readonly commitIndex: number;
  readonly virtualMs: number;
  readonly trace: readonly string[];
}

export function runSeed(seed: number, options: RunOptions = {}): RunResult {
  const scenario = makeScenario(seed, options);
  const cluster = new SimCluster(scenario, options.trace === true);
  let violation: string | undefined;
  let recoveryMs: number | null = null;
  try {
    recoveryMs = drive(cluster, options);
    violation = checkEnd(cluster);
  } catch (error) {
    if (error instanceof SafetyViolation || error instanceof AssertionError) {
      violation = `${error.name}: ${error.message}`;
    } else {
      // Anything else is a bug too (in the simulator or the core): report it with its seed.
      const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
      violation = `unexpected error: ${stack.split("\n").slice(0, 3).join(" | ")}`;
    }
  }
  if (violation !== undefined) cluster.log(`VIOLATION: ${violation}`);
  const stats = cluster.stats;
  return {
    seed,
    ok: violation === undefined,
    ...(violation === undefined ? {} : { violation }),
    nodeCount: scenario.nodeCount,
    clientCount: scenario.clientCount,
    operations: cluster.history.length,
    indeterminate: cluster.history.filter((h) => h.outcome === "info").length,
    elections: stats.elections,
    failovers: stats.failovers,
    faults: stats.faults,
    crashes: stats.crashes,
    tornWrites: stats.tornWrites,
    transfers: stats.transfers,
    corruptionsDetected: stats.corruptionsDetected,
    wipes: stats.wipes,
    clockJumps: stats.clockJumps,
    retriesAnswered: cluster.exactlyOnce.answeredFromTable,
    refused: cluster.exactlyOnce.refused,
    messages: cluster.network.sent,
    dropped: cluster.network.dropped,
    recoveryMs,
    commitIndex: cluster.checker.commitMax,
    virtualMs: cluster.now,
    trace: cluster.trace,
  };
}

/** Runs the phases; returns the time from healing to an agreed master. */
function drive(cluster: SimCluster, options: RunOptions): number {
  const scenario = cluster.scenario;
  cluster.runUntil(scenario.faultPhaseMs);
  cluster.healAll();
  const healedAt = cluster.now;
  const masterDeadline = healedAt + (options.masterDeadlineMs ?? 5000);
  while (cluster.agreedMaster() === null) {
    if (cluster.now >= masterDeadline) {
      throw new SafetyViolation(
        `liveness: no master agreed on ${masterDeadline - healedAt}ms after healing`,
      );
    }
    cluster.runUntil(cluster.now + 10);
  }
  const recoveryMs = cluster.now - healedAt;
  cluster.runUntil(cluster.now + 500);
  cluster.stopWorkload();
  const settleDeadline = healedAt + (options.settleDeadlineMs ?? 15000);
  while (cluster.clientsBusy || !converged(cluster)) {
    if (cluster.now >= settleDeadline) {
      const what = cluster.clientsBusy ? "client requests still pending" : "replicas not converged";
      throw new SafetyViolation(`liveness: ${what} ${settleDeadline - healedAt}ms after healing`);
    }
    cluster.runUntil(cluster.now + 10);
  }
  return recoveryMs;
}

/** Every node applied everything the master committed, and all hold the same state. */
function converged(cluster: SimCluster): boolean {
  const master = cluster.agreedMaster();
  if (master === null) return false;
  const commit = master.replica!.commitIndex;
  if (commit !== master.replica!.lastIndex) return false;
  // A node whose disk failed its checksum stays down: its operator would wipe it.
  return [...cluster.nodes.values()].every((n) => n.corrupt || (n.up && n.appliedIndex === commit));
}

function checkEnd(cluster: SimCluster): string | undefined {
  const running = [...cluster.nodes.values()].filter((n) => !n.corrupt);
  const prints = new Set(running.map((n) => n.kv.stateHash()));
  if (prints.size !== 1) return `convergence: replicas hold ${prints.size} different states`;
  const verdict = checkLinearizable(cluster.history);
  // A key whose search was capped is a failure too, named apart from a violation: the run
  // proved nothing about it, and the seed replays the history that was too hard.
  const bad = verdict.keys.find((k) => !k.ok && k.timedOut !== true);
  const capped = verdict.keys.find((k) => k.timedOut === true);
  const key = bad ?? capped;
  if (key === undefined) return undefined;
  const what = key.explanation ?? "not linearizable";
  return `linearizability: key ${key.key}: ${what} (seed ${cluster.scenario.seed})`;
}
