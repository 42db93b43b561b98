/**
 * The contract between Baton and an application's state machine. Baton replicates a log
 * of opaque commands; every node feeds the committed commands, in log order and exactly
 * once per node, to its own instance of the state machine. Because every instance starts
 * from the same state and applies the same commands, all replicas stay identical.
 *
 * Obligations of an implementation:
 * - `apply` is deterministic: its effect and result depend only on the current state, the
 *   command bytes and the context. No clocks, no randomness, no I/O. Time, when needed,
 *   comes from `context.time`, which the master stamps into the log.
 * - `apply` never throws. A command it cannot carry out is answered with a result that
 *   says so (the key-value store answers "not found", "precondition failed"): an exception
 *   stops the node, and since every node applies the same entry, every node stops at it,
 *   again after each restart.
 * - `snapshot` captures the state as of the moment it is called, even if `apply` keeps
 *   being called while the returned chunks are consumed (copy-on-write or equivalent).
 * - `restore` replaces the whole state with the one a snapshot captured.
 * - `beginRestore`, when there is one, reads a snapshot's bytes as they arrive and replaces
 *   the state only when asked to, in one synchronous step.
 */

export interface ApplyContext {
  /** Log index of the command, starting at 1. */
  readonly index: number;
  /** Term of the master that proposed it. */
  readonly term: number;
  /**
   * Milliseconds since the Unix epoch as stamped by the master that proposed the command.
   * The same on every node, so it may drive deterministic expiry.
   */
  readonly time: number;
}

export interface StateMachine<Result = unknown> {
  /** Applies one committed command and returns the result handed to the proposer. */
  apply(command: Uint8Array, context: ApplyContext): Result;
  /**
   * Streams the current state as chunks of bytes. A state machine that serialises a large
   * state should await `options.pause()` every few milliseconds of work: the runtime passes
   * one that lets the node's event loop run (heartbeats, answers to the master) in between.
   */
  snapshot(options?: SnapshotOptions): AsyncIterable<Uint8Array>;
  /** Replaces the state with the one streamed by `snapshot`. */
  restore(chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Optional: starts reading a snapshot whose bytes arrive over time (a state transfer),
   * leaving the current state as it is, so that adopting the snapshot later costs little.
   * `apply` may go on meanwhile; the restore's state is a separate one.
   */
  beginRestore?(): IncrementalRestore;
}

/** What the runtime gives a state machine that writes a snapshot. */
export interface SnapshotOptions {
  /**
   * Resolves once the node's event loop has run what was waiting (a timer, a message).
   * Serialising a state of many entries in one synchronous stretch stalls the node for as
   * long: its answers to the master, and its clients, wait meanwhile.
   */
  readonly pause: () => Promise<void>;
}

/** A snapshot being read as its bytes arrive; see `StateMachine.beginRestore`. */
export interface IncrementalRestore {
  /**
   * The snapshot stream's next bytes, in order, split anywhere. Throws when they cannot be
   * part of a valid snapshot; the restore is then of no further use.
   */
  push(chunk: Uint8Array): void;
  /**
   * Replaces the state with the one the pushed bytes describe, as `restore` would. Throws
   * as `restore` does for an incomplete or invalid snapshot, leaving the state as it was.
   * At most once.
   */
  install(): void;
}
