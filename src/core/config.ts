/**
 * Configuration of one replica's protocol. All durations are in ticks: the runtime turns
 * wall-clock time into ticks (the server ticks every `tickMs`), the simulator into
 * virtual ticks. Nothing in the core reads a clock.
 */

import type { NodeId } from "../protocol/messages.js";

export interface ReplicaConfig {
  /** This node's id; must be one of `members`. */
  readonly id: NodeId;
  /** Every voting member of the cluster, this node included. */
  readonly members: readonly NodeId[];
  /** A master sends a heartbeat every this many ticks. @default 5 */
  readonly heartbeatTicks: number;
  /** Lower bound of the randomized election timeout, in ticks. @default 30 */
  readonly electionTicksMin: number;
  /** Upper bound (inclusive) of the randomized election timeout, in ticks. @default 60 */
  readonly electionTicksMax: number;
  /** Ask for pre-votes before a real election, so an isolated node cannot disrupt. @default true */
  readonly preVote: boolean;
  /** A master that has not heard from a majority for `electionTicksMin` steps down. @default true */
  readonly checkQuorum: boolean;
  /** Appends in flight per backup in the replicate state. @default 64 */
  readonly inflightMax: number;
  /** Entries per append message. @default 512 */
  readonly appendEntriesMax: number;
  /** Bytes of entry data per append message (at least one entry is always sent). @default 1 MiB */
  readonly appendBytesMax: number;
  /** Proposals accepted but not yet committed before new ones are refused as busy. @default 10000 */
  readonly uncommittedEntriesMax: number;
  /**
   * Bytes of entry data accepted but not yet committed before new proposals are refused as
   * busy (one is always accepted when nothing is uncommitted, whatever its size): a master
   * whose backups or disk fall behind holds a bounded amount in memory. @default 64 MiB
   */
  readonly uncommittedBytesMax: number;
  /**
   * A learner is promoted to voter only when it is at most this many entries behind the
   * master's last index (and answered lately). @default 64
   */
  readonly promoteLagEntriesMax: number;
  /**
   * The master writes down, in a config entry, the incarnation each member listed with 0
   * answered with, after which answers from any other incarnation of it are ignored; the
   * same entry carries the cluster id when there is one (see `drawClusterId`). A wiped
   * member then comes back only through the log (`baton member replace`). The node
   * runtime turns it on; off, a wiped node may rejoin with a bare `--join`. @default false
   */
  readonly bindIncarnations: boolean;
  /**
   * A master whose log holds no cluster id draws one and commits it in a config entry
   * (the members unchanged) once it has committed an entry of its term; every later
   * config entry copies it. The node runtime turns it on. @default false
   */
  readonly drawClusterId: boolean;
}

export function defaultReplicaConfig(id: NodeId, members: readonly NodeId[]): ReplicaConfig {
  return Object.freeze({
    id,
    members: Object.freeze([...members]),
    heartbeatTicks: 5,
    electionTicksMin: 30,
    electionTicksMax: 60,
    preVote: true,
    checkQuorum: true,
    inflightMax: 64,
    appendEntriesMax: 512,
    appendBytesMax: 1024 * 1024,
    uncommittedEntriesMax: 10_000,
    uncommittedBytesMax: 64 * 1024 * 1024,
    promoteLagEntriesMax: 64,
    bindIncarnations: false,
    drawClusterId: false,
  });
}

/** Reports every problem at once; returns the frozen, valid configuration. */
export function validateReplicaConfig(config: ReplicaConfig): ReplicaConfig {
  const problems: string[] = [];
  const positive = (name: keyof ReplicaConfig): void => {
    const value = config[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      problems.push(`${name} must be a positive integer (got ${String(value)})`);
    }
  };
  positive("heartbeatTicks");
  positive("electionTicksMin");
  positive("electionTicksMax");
  positive("inflightMax");
  positive("appendEntriesMax");
  positive("appendBytesMax");
  positive("uncommittedEntriesMax");
  positive("uncommittedBytesMax");
  positive("promoteLagEntriesMax");
  if (config.electionTicksMax < config.electionTicksMin) {
    problems.push("electionTicksMax must be at least electionTicksMin");
  }
  if (config.heartbeatTicks >= config.electionTicksMin) {
    problems.push("heartbeatTicks must be below electionTicksMin");
  }
  if (new Set(config.members).size !== config.members.length) {
    problems.push("members must not repeat");
  }
  if (!config.members.includes(config.id)) problems.push(`id ${config.id} is not in members`);
  if (config.members.some((m) => !Number.isInteger(m) || m < 1)) {
    problems.push("member ids must be positive integers");
  }
  if (problems.length > 0) throw new Error(`invalid replica config: ${problems.join("; ")}`);
  return Object.freeze({ ...config, members: Object.freeze([...config.members]) });
}
