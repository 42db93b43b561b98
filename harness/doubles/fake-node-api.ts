/**
 * An in-memory stand-in for a node, for tests of the HTTP API and of anything built on it
 * (the client library, the dashboard). It keeps keys in a map with revisions taken from a
 * counter, honours compare-and-set and idempotency keys, and can be switched to any role,
 * made to throw any catalogued error, or made to hang like a node waiting for an election.
 *
 * It is not a model of replication: a "backup" here only refuses linearizable requests with
 * NotMasterError and serves stale reads from its own map.
 */

import type { KvNodeApi, KvWriteOptions } from "../../src/http/node-api.js";
import type { KvEntry, KvResult } from "../../src/kv/index.js";
import type { NodeId } from "../../src/protocol/messages.js";
import type { MemberStatus, NodeStatus, Role } from "../../src/protocol/status.js";
import { NotMasterError } from "../../src/shared/errors.js";

/** One call the fake received, for assertions on what the HTTP layer passed through. */
/** A backup in a member list, connected, as a status shows it (address 127.0.0.1:710<id>). */
export function memberStatus(
  id: number,
  httpUrl: string | null,
  address = `127.0.0.1:710${id}`,
): MemberStatus {
  return {
    id,
    address,
    httpUrl,
    role: "backup",
    connected: true,
    matchIndex: null,
    lag: null,
    lastContactMs: null,
  };
}

export type FakeCall =
  | {
      readonly op: "put";
      readonly key: string;
      readonly value: Uint8Array;
      readonly options: KvWriteOptions;
    }
  | { readonly op: "delete"; readonly key: string; readonly options: KvWriteOptions }
  | { readonly op: "get"; readonly key: string; readonly stale: boolean };

export class FakeKvNodeApi implements KvNodeApi {
  role: Role = "master";
  term = 1;
  /** The master this node believes in; itself while `role` is "master". */
  masterId: NodeId | null;
  /** What `masterHttpUrl` returns while this node is not the master. */
  masterUrl: string | null = null;
  /** When set, every put, delete and get throws it. */
  failure: Error | null = null;
  /** When true, every put, delete and get never settles. */
  hang = false;
  readonly calls: FakeCall[] = [];
  members: readonly MemberStatus[] = [];
  private readonly entries = new Map<string, KvEntry>();
  private readonly idempotent = new Map<string, KvResult>();
  private lastIndex = 0;

  constructor(readonly id: NodeId = 1) {
    this.masterId = id;
  }

  /** Makes this node a backup of `masterId`, reachable for forwards at `masterUrl`. */
  becomeBackup(masterId: NodeId | null, masterUrl: string | null): void {
    this.role = "backup";
    this.masterId = masterId;
    this.masterUrl = masterUrl;
  }

  async put(key: string, value: Uint8Array, options: KvWriteOptions): Promise<KvResult> {
    this.calls.push({ op: "put", key, value: Uint8Array.from(value), options });
    await this.enter(false);
    return this.write(
      options,
      () => {
        this.lastIndex++;
        this.entries.set(key, { value: Uint8Array.from(value), revision: this.lastIndex });
        return { ok: true, revision: this.lastIndex };
      },
      key,
    );
  }

  async delete(key: string, options: KvWriteOptions): Promise<KvResult> {
    this.calls.push({ op: "delete", key, options });
    await this.enter(false);
    return this.write(
      options,
      () => {
        if (!this.entries.has(key)) return { ok: false, code: "not_found" };
        this.lastIndex++;
        this.entries.delete(key);
        return { ok: true, revision: this.lastIndex };
      },
      key,
    );
  }

  async get(key: string, options: { readonly stale: boolean }): Promise<KvEntry | null> {
    this.calls.push({ op: "get", key, stale: options.stale });
    await this.enter(options.stale);
    return this.entries.get(key) ?? null;
  }

  /** Why the fake node has stopped (a test sets it), or null while it runs. */
  stopped: string | null = null;

  stoppedReason(): string | null {
    return this.stopped;
  }

  status(): NodeStatus {
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      master: this.role === "master" ? this.id : this.masterId,
      commitIndex: this.lastIndex,
      appliedIndex: this.lastIndex,
      lastIndex: this.lastIndex,
      members: this.members,
    };
  }

  isMaster(): boolean {
    return this.role === "master";
  }

  masterHttpUrl(): string | null {
    return this.role === "master" ? null : this.masterUrl;
  }

  /** Records the call; the fake has no cluster to hand over to, so it names itself. */
  async switchover(to: number | null): Promise<{ master: number; term: number }> {
    if (this.failure !== null) throw this.failure;
    return { master: to ?? this.id, term: this.term + 1 };
  }

  /** Throws or hangs as configured, and refuses linearizable work on a non-master. */
  private async enter(stale: boolean): Promise<void> {
    if (this.hang) await new Promise<never>(() => {});
    if (this.failure !== null) throw this.failure;
    if (!stale && this.role !== "master") throw new NotMasterError(this.masterId);
  }

  private write(options: KvWriteOptions, apply: () => KvResult, key: string): KvResult {
    const remembered =
      options.idempotencyKey === undefined
        ? undefined
        : this.idempotent.get(options.idempotencyKey);
    if (remembered !== undefined) return remembered;
    let result: KvResult;
    const current = this.entries.get(key)?.revision ?? 0;
    if (options.ifRevision !== undefined && options.ifRevision !== current) {
      result = { ok: false, code: "precondition_failed", currentRevision: current };
    } else {
      result = apply();
    }
    if (options.idempotencyKey !== undefined) this.idempotent.set(options.idempotencyKey, result);
    return result;
  }
}
