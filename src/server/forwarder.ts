/**
 * A backup's side of forwarding: the commands and linearizable reads that reach a backup
 * travel to the master over the peer link, so that a client may use any node. It owns the
 * requests in flight and the one promise each of them settles, and nothing else: the
 * master's side (proposing a forwarded command, confirming a read index) is the node's.
 *
 * A forwarded command is proposed by the master exactly once, and its result is learned
 * here by applying its entry, so results never cross the wire. What the caller is told
 * follows what this node can prove:
 *
 * - never sent, or refused by the receiver (not the master, busy): it was not applied;
 *   while no master is known it is held briefly for the next one, then NoMasterError.
 *   A refusal holds only while it can still be true (see Refusal): a candidate that
 *   refused and then won its election is sent the write again, under a new request id;
 * - sent, and the master it went to was replaced before it answered: it may or may not
 *   be applied (IndeterminateError; a retry with the same idempotency key is safe);
 * - proposed at (index, term): applied exactly when this node applies an entry of that
 *   term at that index; another term there means it was never applied (NoMasterError).
 *
 * Every send of a command carries a request id of its own, and a master answers a copy
 * of a send (a network that delivers a message twice) exactly as it answered the
 * original: a refusal therefore always means that send was not proposed, whatever copies
 * of it are still on their way.
 *
 * A forwarded read is always safe to send again, so a read is simply re-sent to the next
 * master until its deadline.
 */

import type { Logger } from "pino";
import type {
  Entry,
  ForwardProposalResponse,
  ForwardReadResponse,
  NodeId,
} from "../protocol/messages.js";
import type { Role } from "../protocol/status.js";
import { assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";
import {
  BusyError,
  IndeterminateError,
  NoMasterError,
  RETRY_ADVICE,
  TimeoutError,
} from "../shared/errors.js";

/** What the forwarder needs from its node. */
export interface ForwarderHost {
  readonly id: NodeId;
  /**
   * The first request id (then counting up), random per process, so that an answer the
   * master gives to a request of this node's previous process never matches one of this
   * process. @default 1
   */
  readonly firstRequestId?: number;
  readonly logger: Logger;
  /** Time and the requests' deadline timers. */
  readonly clock: Clock;
  /** Each request's deadline, ms. */
  readonly requestTimeoutMs: number;
  role(): Role;
  /** Whether this node, as master, takes new writes now (not while it hands over). */
  acceptsWrites(): boolean;
  masterId(): NodeId | null;
  term(): number;
  appliedIndex(): number;
  /** Queues a forward to `to`; false when it cannot leave (no connection). */
  sendProposal(to: NodeId, requestId: number, data: Uint8Array): boolean;
  sendRead(to: NodeId, requestId: number): boolean;
  /** The node's own paths, for when this node became the master while a request waited. */
  proposeLocally(data: Uint8Array): Promise<unknown>;
  readLocally(): Promise<void>;
}

/**
 * Longest a request waits for a master to be known (an election under way, or the link to
 * the master down), ms. Kept below the client's attempt timeout (1 s), so that a held
 * request ends in an answer rather than in doubt.
 */
export const FORWARD_HOLD_MS = 500;
/** Most requests in flight through one backup; more are refused with BusyError. */
export const FORWARDS_IN_FLIGHT_MAX = 65_536;
/** Results kept of entries applied while forwards wait for their answer, at most. */
const RECENT_RESULTS_MAX = 65_536;

/**
 * A node that answered not_master, in its term `term`. `asMaster`: this node had sent it
 * the request as the master of that very term, so the refusal came from the master this
 * node believed in (it stepped down, or hands over): it is not asked again until a newer
 * term, or another master. Otherwise it refused from a term newer than the one it was
 * sent in, as a candidate or as a backup not yet told of the election; it may still win
 * that term, and is asked again as soon as this node learns that it did.
 */
interface Refusal {
  readonly by: NodeId;
  readonly term: number;
  readonly asMaster: boolean;
}

type ProposalState =
  | { readonly kind: "held"; readonly since: number }
  | { readonly kind: "sent"; readonly to: NodeId; readonly term: number }
  | { readonly kind: "proposed"; readonly index: number; readonly entryTerm: number };

interface OutgoingProposal {
  /**
   * The id of its latest send. Each send gets an id of its own, so that the master, which
   * answers a copy of a forward as it answered the original, never takes a send after a
   * refusal for a copy of the refused one.
   */
  requestId: number;
  /** Whether `requestId` went out already (a send after it needs a new id). */
  idUsed: boolean;
  readonly data: Uint8Array;
  state: ProposalState;
  /** The last refusal: the node that gave it is not asked again while it holds. */
  refused: Refusal | null;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  timer: Timer | null;
}

type ReadState =
  | { readonly kind: "held"; readonly since: number }
  | { readonly kind: "sent"; readonly to: NodeId; readonly term: number }
  | { readonly kind: "waiting"; readonly index: number };

interface OutgoingRead {
  /**
   * A new one for every send, as a proposal's: a late copy of an answer to an earlier send
   * (a refusal from the term before, say) must not be taken for the answer to this one.
   */
  requestId: number;
  /** Whether `requestId` went out already (a send after it needs a new id). */
  idUsed: boolean;
  state: ReadState;
  refused: Refusal | null;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  timer: Timer | null;
}

/** Forwards made, by kind, and how forwarded writes ended, for metrics. */
export interface ForwardCounters {
  proposals: number;
  reads: number;
  applied: number;
  notApplied: number;
  indeterminate: number;
  timedOut: number;
  noMaster: number;
}

export class Forwarder {
  private readonly proposals = new Map<number, OutgoingProposal>();
  /** Proposed forwards by log index, waiting for this node to apply their entry. */
  /**
   * Proposed forwards by log index, waiting for this node to apply their entry: several
   * at one index when masters of different terms each proposed one there (only the entry
   * applied there, by its term, says which took effect).
   */
  private readonly byIndex = new Map<number, OutgoingProposal[]>();
  private readonly reads = new Map<number, OutgoingRead>();
  /** Results of entries applied while some forward had no answer yet, by index. */
  private readonly recent = new Map<number, { readonly term: number; readonly result: unknown }>();
  /** Proposals sent and not answered yet (kept in step by `moveProposal` and `settle`). */
  private unanswered = 0;
  /** Requests made in this turn of the event loop, sent together when it ends (sendSoon). */
  private freshProposals: OutgoingProposal[] = [];
  private freshReads: OutgoingRead[] = [];
  private nextRequestId: number;
  readonly counters: ForwardCounters = {
    proposals: 0,
    reads: 0,
    applied: 0,
    notApplied: 0,
    indeterminate: 0,
    timedOut: 0,
    noMaster: 0,
  };

  constructor(private readonly host: ForwarderHost) {
    this.nextRequestId = host.firstRequestId ?? 1;
  }

  /** Requests in flight, for status and tests. */
  get inFlight(): number {
    return this.proposals.size + this.reads.size;
  }

  /** Forwards `data` to the master; settles as the file's opening comment says. */
  propose(data: Uint8Array): Promise<unknown> {
    if (this.inFlight >= FORWARDS_IN_FLIGHT_MAX) throw new BusyError();
    const requestId = this.nextRequestId++;
    this.counters.proposals++;
    return new Promise((resolve, reject) => {
      const proposal: OutgoingProposal = {
        requestId,
        idUsed: false,
        data,
        state: { kind: "held", since: this.host.clock.monotonicMs() },
        refused: null,
        resolve,
        reject,
        timer: null,
      };
      proposal.timer = this.host.clock.setTimeout(
        () => this.expireProposal(proposal),
        this.host.requestTimeoutMs,
      );
      this.proposals.set(requestId, proposal);
      this.freshProposals.push(proposal);
      this.sendSoon();
    });
  }

  /** Resolves once this node has applied a read index the master confirmed after the call. */
  read(): Promise<void> {
    if (this.inFlight >= FORWARDS_IN_FLIGHT_MAX) throw new BusyError();
    const requestId = this.nextRequestId++;
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      const read: OutgoingRead = {
        requestId,
        idUsed: false,
        state: { kind: "held", since: this.host.clock.monotonicMs() },
        refused: null,
        resolve,
        reject,
        timer: null,
      };
      read.timer = this.host.clock.setTimeout(
        () => this.expireRead(read),
        this.host.requestTimeoutMs,
      );
      this.reads.set(requestId, read);
      this.freshReads.push(read);
      this.sendSoon();
    });
  }

  /**
   * Sends the requests made in this turn of the event loop once its I/O callbacks are done
   * (setImmediate), so that the requests of every client connection read in one turn leave
   * in one write, reach the master in one read and are proposed in one Ready: sent one by
   * one, each cost the backup a system call and the master a Ready, an append to each
   * backup and a write, and a backup's forwarded writes needed twice the CPU per request
   * of writes sent to the master.
   */
  private sendSoon(): void {
    // Scheduled when the first request of the turn arrived; the lists empty only when it runs.
    if (this.freshProposals.length + this.freshReads.length > 1) return;
    this.host.clock.setImmediate(() => {
      const proposals = this.freshProposals;
      const reads = this.freshReads;
      this.freshProposals = [];
      this.freshReads = [];
      for (const p of proposals) if (this.proposals.get(p.requestId) === p) this.advanceProposal(p);
      for (const r of reads) if (this.reads.get(r.requestId) === r) this.advanceRead(r);
    });
  }

  /**
   * Moves every request on after the node's view changed (a new master or term, a tick, a
   * connection): held ones are sent, sent ones whose master was replaced are settled.
   */
  poll(): void {
    for (const proposal of [...this.proposals.values()]) this.advanceProposal(proposal);
    for (const read of [...this.reads.values()]) this.advanceRead(read);
  }

  onProposalResponse(message: ForwardProposalResponse): void {
    const proposal = this.proposals.get(message.requestId);
    if (proposal === undefined || proposal.state.kind !== "sent") return; // late or repeated
    if (proposal.state.to !== message.from) return;
    if (message.outcome === "proposed") {
      this.moveProposal(proposal, {
        kind: "proposed",
        index: message.index,
        entryTerm: message.entryTerm,
      });
      const known = this.recent.get(message.index);
      if (known !== undefined) {
        this.settleApplied(proposal, known.term, known.result);
      } else if (message.index <= this.host.appliedIndex()) {
        // Applied here before the answer came, and its result is gone: say so honestly.
        this.settle(proposal, this.indeterminate("its result was not kept"));
      } else {
        const waiting = this.byIndex.get(message.index);
        if (waiting === undefined) this.byIndex.set(message.index, [proposal]);
        else waiting.push(proposal);
      }
      this.trimRecent();
      return;
    }
    if (message.outcome === "busy") {
      this.settle(proposal, new BusyError());
      return;
    }
    // not_master: this send was not proposed, and a copy of it gets the same answer (see
    // the file's opening comment). The next send carries a new request id, so sending the
    // write again, even to the node that refused once it is known to be the master, cannot
    // apply it twice.
    proposal.refused = refusal(message.from, message.term, proposal.state.term);
    this.moveProposal(proposal, { kind: "held", since: this.host.clock.monotonicMs() });
    this.advanceProposal(proposal);
  }

  onReadResponse(message: ForwardReadResponse): void {
    const read = this.reads.get(message.requestId);
    if (read === undefined || read.state.kind !== "sent" || read.state.to !== message.from) return;
    if (message.ok) {
      read.state = { kind: "waiting", index: message.index };
      this.maybeServe(read);
      return;
    }
    read.refused = refusal(message.from, message.term, read.state.term);
    read.state = { kind: "held", since: this.host.clock.monotonicMs() };
    this.advanceRead(read);
  }

  /** This node applied `entry` (with the state machine's `result` for a command). */
  onApplied(entry: Entry, result: unknown): void {
    const waiting = this.byIndex.get(entry.index);
    if (waiting !== undefined) {
      this.byIndex.delete(entry.index);
      const applied = entry.kind === "command" ? result : NOT_A_COMMAND;
      for (const proposal of waiting) this.settleApplied(proposal, entry.term, applied);
    }
    if (this.hasUnanswered()) {
      this.recent.set(entry.index, {
        term: entry.term,
        result: entry.kind === "command" ? result : NOT_A_COMMAND,
      });
      this.trimRecent();
    }
  }

  /** Entries up to `index` were applied in bulk (a state transfer): their results are unknown. */
  onSnapshotAdopted(index: number): void {
    for (const [at, waiting] of this.byIndex) {
      if (at > index) continue;
      this.byIndex.delete(at);
      for (const proposal of waiting) {
        this.settle(proposal, this.indeterminate("this node received a state transfer past it"));
      }
    }
    this.recent.clear();
    this.serveReads();
  }

  /** Applied index moved: serve the reads waiting for it. */
  serveReads(): void {
    for (const read of [...this.reads.values()]) this.maybeServe(read);
  }

  /**
   * Settles every request in flight, the node being about to stop (`why`): a command never
   * sent fails with `error`; one sent or proposed may still be applied (IndeterminateError).
   * Reads change nothing, so they fail with `error`.
   */
  failAll(error: Error, why: string): void {
    for (const proposal of [...this.proposals.values()]) {
      this.settle(
        proposal,
        proposal.state.kind === "held" ? error : this.indeterminate(`${why} before it answered`),
      );
    }
    for (const read of [...this.reads.values()]) this.settleRead(read, error);
  }

  // ------------------------------------------------------------------ proposals

  private advanceProposal(proposal: OutgoingProposal): void {
    const state = proposal.state;
    if (state.kind === "proposed") return;
    if (state.kind === "sent") {
      if (this.host.masterId() === state.to && this.host.term() === state.term) return;
      this.settle(
        proposal,
        this.indeterminate(`master ${state.to} was replaced before it answered`),
      );
      return;
    }
    if (this.host.role() === "master" && this.host.acceptsWrites()) {
      this.proposals.delete(proposal.requestId);
      this.clearTimer(proposal);
      this.host.proposeLocally(proposal.data).then(proposal.resolve, proposal.reject);
      return;
    }
    const master = this.usableMaster(proposal.refused);
    if (master !== null) {
      if (proposal.idUsed) {
        this.proposals.delete(proposal.requestId);
        proposal.requestId = this.nextRequestId++;
        proposal.idUsed = false;
        this.proposals.set(proposal.requestId, proposal);
      }
      if (this.host.sendProposal(master, proposal.requestId, proposal.data)) {
        proposal.idUsed = true;
        this.moveProposal(proposal, { kind: "sent", to: master, term: this.host.term() });
        return;
      }
    }
    if (this.host.clock.monotonicMs() - state.since >= FORWARD_HOLD_MS) {
      this.counters.noMaster++;
      this.settle(proposal, this.noMaster());
    }
  }

  private settleApplied(proposal: OutgoingProposal, term: number, result: unknown): void {
    assert(proposal.state.kind === "proposed", "settling a forward that was not proposed");
    if (term === proposal.state.entryTerm && result !== NOT_A_COMMAND) {
      this.counters.applied++;
      this.proposals.delete(proposal.requestId);
      this.clearTimer(proposal);
      proposal.resolve(result);
      return;
    }
    this.counters.notApplied++;
    this.settle(
      proposal,
      new NoMasterError(
        200,
        `the write was not applied: a new master (term ${term}) took over before it committed; retry`,
      ),
    );
  }

  private expireProposal(proposal: OutgoingProposal): void {
    if (this.proposals.get(proposal.requestId) !== proposal) return;
    if (proposal.state.kind === "held") {
      this.counters.noMaster++;
      this.settle(proposal, this.noMaster());
      return;
    }
    this.counters.timedOut++;
    this.settle(
      proposal,
      new TimeoutError(
        `the write did not commit within ${this.host.requestTimeoutMs} ms; it may still be applied`,
      ),
    );
  }

  private moveProposal(proposal: OutgoingProposal, state: ProposalState): void {
    if (proposal.state.kind === "sent") this.unanswered--;
    if (state.kind === "sent") this.unanswered++;
    proposal.state = state;
  }

  /** Removes `proposal`, and only it, from the ones waiting at `index`. */
  private forgetProposed(proposal: OutgoingProposal, index: number): void {
    const waiting = this.byIndex.get(index);
    if (waiting === undefined) return;
    const rest = waiting.filter((p) => p !== proposal);
    if (rest.length === 0) this.byIndex.delete(index);
    else this.byIndex.set(index, rest);
  }

  private settle(proposal: OutgoingProposal, error: Error): void {
    if (proposal.state.kind === "sent") this.unanswered--;
    this.proposals.delete(proposal.requestId);
    if (proposal.state.kind === "proposed") this.forgetProposed(proposal, proposal.state.index);
    this.clearTimer(proposal);
    proposal.reject(error);
    if (!this.hasUnanswered()) this.recent.clear();
  }

  // ------------------------------------------------------------------ reads

  private advanceRead(read: OutgoingRead): void {
    const state = read.state;
    if (state.kind === "waiting") return;
    if (state.kind === "sent") {
      if (this.host.masterId() === state.to && this.host.term() === state.term) return;
      read.state = { kind: "held", since: this.host.clock.monotonicMs() }; // a read may be asked again
    }
    if (this.host.role() === "master") {
      this.reads.delete(read.requestId);
      this.clearReadTimer(read);
      this.host.readLocally().then(read.resolve, read.reject);
      return;
    }
    const master = this.usableMaster(read.refused);
    if (master !== null) {
      if (read.idUsed) {
        this.reads.delete(read.requestId);
        read.requestId = this.nextRequestId++;
        read.idUsed = false;
        this.reads.set(read.requestId, read);
      }
      if (this.host.sendRead(master, read.requestId)) {
        read.idUsed = true;
        read.state = { kind: "sent", to: master, term: this.host.term() };
        return;
      }
    }
    if (
      read.state.kind === "held" &&
      this.host.clock.monotonicMs() - read.state.since >= FORWARD_HOLD_MS
    ) {
      this.settleRead(read, this.noMaster());
    }
  }

  private maybeServe(read: OutgoingRead): void {
    if (read.state.kind !== "waiting" || read.state.index > this.host.appliedIndex()) return;
    this.reads.delete(read.requestId);
    this.clearReadTimer(read);
    read.resolve();
  }

  private expireRead(read: OutgoingRead): void {
    if (this.reads.get(read.requestId) !== read) return;
    this.settleRead(
      read,
      read.state.kind === "held"
        ? this.noMaster()
        : new TimeoutError(
            `the read could not be confirmed within ${this.host.requestTimeoutMs} ms`,
          ),
    );
  }

  private settleRead(read: OutgoingRead, error: Error): void {
    this.reads.delete(read.requestId);
    this.clearReadTimer(read);
    read.reject(error);
  }

  private clearReadTimer(read: OutgoingRead): void {
    if (read.timer !== null) this.host.clock.clearTimeout(read.timer);
    read.timer = null;
  }

  // ------------------------------------------------------------------ helpers

  private clearTimer(proposal: OutgoingProposal): void {
    if (proposal.timer !== null) this.host.clock.clearTimeout(proposal.timer);
    proposal.timer = null;
  }

  /**
   * The master to send to now, unless its refusal still holds (see Refusal): it refused
   * from a term newer than the one this node knows it master of, or as the master of this
   * very term. One that refused as a candidate of this term is the master it became since.
   */
  private usableMaster(refused: Refusal | null): NodeId | null {
    const master = this.host.masterId();
    if (master === null || master === this.host.id) return null;
    if (refused === null || refused.by !== master) return master;
    const term = this.host.term();
    if (refused.term > term || (refused.term === term && refused.asMaster)) return null;
    return master;
  }

  /** Whether some proposal was sent and not answered: O(1), it runs for every entry applied. */
  private hasUnanswered(): boolean {
    assert(this.unanswered >= 0, "forwarder: negative count of unanswered proposals");
    return this.unanswered > 0;
  }

  private trimRecent(): void {
    if (!this.hasUnanswered()) {
      this.recent.clear();
      return;
    }
    while (this.recent.size > RECENT_RESULTS_MAX) {
      const oldest = this.recent.keys().next().value;
      if (oldest === undefined) break;
      this.recent.delete(oldest);
    }
  }

  private indeterminate(why: string): IndeterminateError {
    this.counters.indeterminate++;
    return new IndeterminateError(
      `the write was forwarded to the master, but ${why}; it may still be applied: ${RETRY_ADVICE}`,
    );
  }

  private noMaster(): NoMasterError {
    return new NoMasterError(
      200,
      `no master could be reached within ${FORWARD_HOLD_MS} ms; the request was not applied: retry`,
    );
  }
}

/**
 * The refusal `by` gave in its term `term` of a request sent to it as the master of
 * `sentTerm`. A term no newer than `sentTerm` (only a node that lost its state answers an
 * older one) counts as the believed master's, held until a term after `sentTerm`.
 */
function refusal(by: NodeId, term: number, sentTerm: number): Refusal {
  return { by, term: Math.max(term, sentTerm), asMaster: term <= sentTerm };
}

/** Marks an applied entry that carried no command (another master's no-op took the index). */
const NOT_A_COMMAND = Symbol("not a command");
