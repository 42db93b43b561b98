/**
 * A one-node stand-in that runs the real `KvStateMachine` and the real `KvStore` without a
 * log, storage or peers: a proposal is applied at once at the next index, stamped with
 * `now()` (the real clock unless a test sets its own) and the current `term`. For tests of
 * the HTTP API, the client library and anything else that needs the store's true
 * behaviour (ranges, transactions, leases, watches) without starting a cluster.
 *
 * It is not a model of replication: it is always the master, and a read barrier is free.
 */

import { KvStore } from "../../src/app/kv-store.js";
import type { KvNodeApi, KvWriteOptions, StatusOptions } from "../../src/http/node-api.js";
import {
  defaultKvLimits,
  type KvEntry,
  type KvLimits,
  type KvResult,
  KvStateMachine,
} from "../../src/kv/index.js";
import type { NodeStatus } from "../../src/protocol/status.js";

export class LocalKvNode implements KvNodeApi {
  readonly stateMachine: KvStateMachine;
  readonly store: KvStore;
  /** The term stamped on proposals; raising it acts like a fail-over to a new master. */
  term = 1;
  /** The master's clock, in milliseconds. */
  now: () => number = () => Date.now();
  /** Nodes that apply every command this one applies, as backups would (same index, term, time). */
  readonly followers: LocalKvNode[] = [];
  /** What its status lists as the members (their advertised URLs are the cluster's origins). */
  members: NodeStatus["members"] = [];
  private index = 0;

  constructor(
    readonly id = 1,
    limits: Partial<KvLimits> = {},
  ) {
    this.stateMachine = new KvStateMachine({ ...defaultKvLimits(), ...limits });
    const node = {
      role: "master",
      propose: async (command: Uint8Array) => this.apply(command),
      readBarrier: async () => {},
    };
    this.store = new KvStore(node, this.stateMachine);
  }

  /** Applies a command as the next log entry. */
  apply(command: Uint8Array): KvResult {
    this.index++;
    const context = { index: this.index, term: this.term, time: this.now() };
    for (const follower of this.followers) {
      follower.index = context.index;
      follower.stateMachine.apply(command, context);
    }
    return this.stateMachine.apply(command, context);
  }

  put(key: string, value: Uint8Array, options: KvWriteOptions): Promise<KvResult> {
    return this.store.propose({ type: "put", key, value: Uint8Array.from(value), ...options });
  }

  delete(key: string, options: KvWriteOptions): Promise<KvResult> {
    const { lease: _, ...rest } = options;
    return this.store.propose({ type: "delete", key, ...rest });
  }

  async get(key: string): Promise<KvEntry | null> {
    return this.stateMachine.get(key);
  }

  status(options: StatusOptions = {}): NodeStatus {
    const status: NodeStatus = {
      id: this.id,
      role: "master",
      term: this.term,
      master: this.id,
      commitIndex: this.index,
      appliedIndex: this.index,
      lastIndex: this.index,
      members: this.members,
    };
    return options.digest === true
      ? { ...status, stateDigest: this.stateMachine.stateHash() }
      : status;
  }

  isMaster(): boolean {
    return true;
  }

  masterHttpUrl(): string | null {
    return null;
  }

  async switchover(): Promise<{ master: number; term: number }> {
    return { master: this.id, term: this.term };
  }
}
