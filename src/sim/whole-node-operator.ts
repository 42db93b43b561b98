/**
 * The operator of the whole-node simulator: it changes the members of the running cluster
 * through the production node's own `changeMembers` and `switchover`, one step at a time,
 * as `baton member remove`, `baton member add`, `baton start --join <url>` and
 * `baton member promote` do. A replacement removes a member (a switchover first when it is
 * the master), stops it and empties its data directory, adds it back as a learner with a
 * new member incarnation, starts it with what `--join` learns (that incarnation and the
 * members), and promotes it once it has caught up. A wiped or damaged node is repaired
 * the same way, which is what docs/operations.md tells operators to do.
 *
 * Every step goes to whichever node is the master now and is retried through refusals,
 * fail-overs and every other fault; a step ends only when that master's configuration
 * shows it and no change is in flight. It never decides anything the checkers judge: it
 * only asks, as an operator would, and a node's assertion reaching it fails the run.
 */

import { MEMBER_INCARNATION_MAX } from "../core/configuration.js";
import type { Prng } from "../core/prng.js";
import type { Member, NodeId } from "../protocol/messages.js";
import type { JoinedIdentity } from "../server/create-node.js";
import type { BatonNode } from "../server/node.js";
import { assert } from "../shared/assert.js";
import {
  MEMBER_CHANGE_REFUSALS,
  SWITCHOVER_REFUSALS,
  unexpectedRefusal,
} from "./checkers/refusals.js";
import type { SimClock } from "./sim-clock.js";

/** What the operator sees of one simulated machine. */
export interface OperatedProc {
  readonly id: NodeId;
  readonly node: BatonNode | null;
  readonly clock: SimClock;
  state: string;
  /** Stopped by the operator: only the operator starts it again. */
  awaitingOperator: boolean;
  /** What `--join <url>` learned for this machine's data directory; kept for restarts. */
  joined: JoinedIdentity | null;
}

/** What the operator may do to the simulated world. */
export interface OperatorHost {
  readonly procs: readonly OperatedProc[];
  readonly prng: Prng;
  readonly world: SimClock;
  readonly now: number;
  /** The faults are still on: the operator then waits a while between steps. */
  readonly faultsActive: boolean;
  log(line: string): void;
  /** Stops the machine's process (if it runs) and gives it an empty data directory. */
  stopAndWipe(proc: OperatedProc): void;
  /** Starts the machine's process with its `joined` identity. */
  startJoined(proc: OperatedProc): void;
  fail(error: unknown): void;
}

type Phase = "remove" | "stop" | "add" | "start" | "promote";

interface Replacement {
  readonly proc: OperatedProc;
  /** Its directory is empty already (a lost or damaged disk): no stop and wipe. */
  readonly wiped: boolean;
  phase: Phase;
  incarnation: number;
  /**
   * Every incarnation this replacement asked to add. An add asked of a master that turns
   * out to be stale never commits, while an earlier one may have: the operator then goes
   * on with whichever of its own the cluster lists.
   */
  readonly asked: Set<number>;
  notBefore: number;
}

export class MemberOperator {
  private replacement: Replacement | null = null;
  /** Members removed and added back, and each step the operator asked for. */
  replacements = 0;
  steps = 0;

  constructor(private readonly host: OperatorHost) {}

  /** A replacement is under way (one member at a time, as the protocol requires). */
  get busy(): boolean {
    return this.replacement !== null;
  }

  /** Whether `proc` is being replaced and not yet a voter again. */
  replacing(proc: OperatedProc): boolean {
    return this.replacement?.proc === proc;
  }

  /**
   * Replaces the member on `proc`. `wiped`: its directory is already empty (a lost or
   * damaged disk) and its process stopped, so the operator only removes it and adds it
   * back; otherwise it is a running member cycled out and in again.
   */
  replace(proc: OperatedProc, wiped: boolean): void {
    // A second machine without its data while one is being replaced is a lost majority
    // in a three-node cluster: the nemesis must not cause it (one damaged disk at a time).
    assert(
      !wiped || this.replacement === null || this.replacement.proc === proc,
      `simulator: node ${proc.id} lost its data while node ${this.replacement?.proc.id} is being replaced`,
    );
    if (this.replacement !== null) return;
    this.host.log(
      wiped
        ? `operator: node ${proc.id} lost its data: replacing the member`
        : `operator: removing node ${proc.id}, to add it back as a new member`,
    );
    if (wiped) proc.awaitingOperator = true;
    this.replacement = {
      proc,
      wiped,
      phase: "remove",
      incarnation: 0,
      asked: new Set(),
      notBefore: this.host.now,
    };
    this.next(20, 120);
  }

  private next(minMs: number, maxMs: number): void {
    this.host.world.setTimeout(() => this.step(), this.host.prng.int(minMs, maxMs));
  }

  private master(): BatonNode | null {
    for (const proc of this.host.procs) {
      const node = proc.node;
      if (node !== null && proc.state === "up" && !proc.clock.paused && node.role === "master") {
        return node;
      }
    }
    return null;
  }

  /** One step, retried until the replacement is done. */
  private step(): void {
    const r = this.replacement;
    if (r === null) return;
    if (this.host.now < r.notBefore) {
      this.next(r.notBefore - this.host.now, r.notBefore - this.host.now + 1);
      return;
    }
    if (r.phase === "stop") {
      this.host.stopAndWipe(r.proc);
      r.proc.awaitingOperator = true;
      this.host.log(`operator: node ${r.proc.id} stopped and its data directory emptied`);
      r.phase = "add";
      r.notBefore = this.host.now + (this.host.faultsActive ? this.host.prng.int(200, 1500) : 0);
      this.next(20, 60);
      return;
    }
    if (r.phase === "start") {
      r.proc.awaitingOperator = false;
      if (r.proc.state === "down") {
        this.host.log(`operator: start node ${r.proc.id} with --join`);
        this.host.startJoined(r.proc);
      }
      r.phase = "promote";
      this.next(50, 200);
      return;
    }
    const master = this.master();
    if (master === null) {
      this.next(50, 150);
      return;
    }
    this.stepOnMaster(r, master);
  }

  private stepOnMaster(r: Replacement, master: BatonNode): void {
    const { members, changeInProgress } = master.members();
    const listed = members.find((m) => m.id === r.proc.id);
    const id = r.proc.id;
    switch (r.phase) {
      case "remove":
        if (listed === undefined) {
          if (changeInProgress) return this.next(20, 80);
          this.host.log(`operator: node ${id} removed (master ${master.id})`);
          r.phase = r.wiped ? "add" : "stop";
          return this.next(20, 60);
        }
        if (master.id === id) {
          this.ask(`switchover away from node ${id}`, () => master.switchover(null));
          return this.next(100, 300);
        }
        this.ask(`remove node ${id} at master ${master.id}`, () =>
          master.changeMembers({ type: "remove", id }),
        );
        return this.next(30, 150);
      case "add":
        if (listed !== undefined && r.asked.has(listed.incarnation)) {
          if (changeInProgress) return this.next(20, 80);
          if (listed.incarnation !== r.incarnation) {
            // A stale master made this operator ask again (seed 22797): the earlier add
            // committed, and the later one never will.
            this.host.log(
              `operator: node ${id} was added with incarnation ${listed.incarnation} (an earlier request), not ${r.incarnation}`,
            );
            r.incarnation = listed.incarnation;
            if (r.proc.joined !== null && r.proc.joined.incarnation !== r.incarnation) {
              // Started with the other identity: it starts again, empty, with this one.
              this.host.stopAndWipe(r.proc);
              r.proc.awaitingOperator = true;
            }
          }
          r.proc.joined = { clusterId: master.clusterId, incarnation: r.incarnation, members };
          r.phase = "start";
          return this.next(10, 50);
        }
        if (listed !== undefined) return this.next(50, 150); // Not removed on this master yet.
        r.incarnation = this.host.prng.int(1, MEMBER_INCARNATION_MAX);
        r.asked.add(r.incarnation);
        this.ask(`add node ${id} as a learner (incarnation ${r.incarnation})`, () =>
          master.changeMembers({ type: "add", member: learner(id, r.incarnation) }),
        );
        return this.next(30, 150);
      case "promote":
        if (listed?.voter === true && listed.incarnation === r.incarnation) {
          if (changeInProgress) return this.next(20, 80);
          this.host.log(`operator: node ${id} is a voter again (master ${master.id})`);
          this.replacements++;
          this.replacement = null;
          return;
        }
        if (listed === undefined || listed.incarnation !== r.incarnation) {
          // Removed again meanwhile (never by this operator): start over from the add.
          r.phase = "add";
          return this.next(50, 150);
        }
        this.ask(`promote node ${id}`, () => master.changeMembers({ type: "promote", id }));
        return this.next(30, 150);
      default:
        return;
    }
  }

  /** The refusals the request `what` itself may earn, besides the transient ones. */
  private expected(what: string): readonly string[] {
    return what.startsWith("switchover") ? SWITCHOVER_REFUSALS : MEMBER_CHANGE_REFUSALS;
  }

  /** Asks a node for one change; a refusal is waited out, a bug fails the run. */
  private ask(what: string, call: () => Promise<unknown>): void {
    this.steps++;
    const settle = (outcome: string) => this.host.log(`operator: ${what}: ${outcome}`);
    const failed = (error: unknown) => {
      const bug = unexpectedRefusal(`operator: ${what}`, error, this.expected(what));
      if (bug !== null) this.host.fail(bug);
      else settle(`refused (${(error as Error).message.slice(0, 100)})`);
    };
    try {
      call().then(() => settle("done"), failed);
    } catch (error) {
      failed(error);
    }
  }
}

function learner(id: NodeId, incarnation: number): Member {
  return { id, incarnation, voter: false, peerAddress: `10.0.0.${id}:7100`, httpUrl: "" };
}
