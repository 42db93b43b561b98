/**
 * The exactly-once checker: every write the simulated clients send carries an idempotency
 * key, and this checker watches every command every node applies to its key-value state
 * machine. It owns three rules:
 *
 * - no write is applied twice: a command with a given idempotency key changes the store
 *   at one log index at most (every node applies the same index, which is one
 *   application; a second index is a second application);
 * - a retried write's answer equals the first one: every answer given to a command with
 *   that key, at any index on any node, equals the first answer given to it, except a
 *   refusal that applied and recorded nothing (`table_full`, `session_stale`,
 *   `session_expired`), after which the client sends the same request again;
 * - every node gives the same answer at the same index (the state machine is
 *   deterministic), so a node restored from a snapshot answers as one that applied the log.
 *
 * A write the client sent again under a new idempotency key, after a refusal that said it
 * was not applied (`alias`), is one write under two keys: the first rule holds for both
 * together, so such a refusal of a write some master did apply shows as a write applied
 * twice.
 *
 * A write is known by its idempotency key and, when it carries one, by its session and
 * sequence number (dissertation §6.3): the first two rules hold for each, and a session's
 * writes change the store in the order of their sequence numbers (a write the session has
 * moved past is refused as `session_stale`, never applied).
 *
 * It also records which value each put wrote at which revision, first application only,
 * so that the workload can turn a compare-and-set on a value into one on the revision that
 * wrote it. It never changes what nodes do; a broken rule throws SafetyViolation.
 */

import type { KvCommand, KvResult } from "../../kv/index.js";
import type { NodeId } from "../../protocol/messages.js";
import { putsOf } from "../store-ops.js";
import { SafetyViolation } from "./safety.js";

/** Results that leave nothing behind: the same request is sent again and then answered. */
const REFUSALS: ReadonlySet<string> = new Set(["table_full", "session_stale", "session_expired"]);

const decoder = new TextDecoder();

interface FirstAnswer {
  readonly index: number;
  readonly node: NodeId;
  readonly answer: string;
}

export class ExactlyOnceChecker {
  /** Per idempotency key, the first answer that was not a refusal. */
  private readonly first = new Map<string, FirstAnswer>();
  /** Per idempotency key, the log index at which it changed the store. */
  private readonly executedAt = new Map<string, number>();
  /** Per log index, the answer the first node to apply it gave. */
  private readonly answerAt = new Map<number, { node: NodeId; answer: string }>();
  /** Per session, the index and seq of the last write of it that changed the store. */
  private readonly sessionLast = new Map<string, { index: number; seq: number }>();
  /** Per key and value, the revision (log index) of the put that first wrote it. */
  private readonly writtenAt = new Map<string, number>();
  /**
   * Per idempotency key a write was sent again under (after a refusal that said it was
   * not applied), the name of the write it stands for: both change the store once at most
   * between them.
   */
  private readonly aliasOf = new Map<string, string>();
  /** Where each write (by its own name) was first answered: see `answeredIndex`. */
  private readonly answeredAt = new Map<string, number>();
  /** Applications answered from an idempotency key or session already recorded. */
  answeredFromTable = 0;
  /** Applications refused because a table was full. */
  refused = 0;

  /**
   * Call after `node` applied the command at `index`. `command` is null when its bytes did
   * not decode; `changed` says whether the application changed the store (its revision
   * became `index`).
   */
  applied(
    node: NodeId,
    index: number,
    command: KvCommand | null,
    result: KvResult,
    changed: boolean,
  ): void {
    const answer = JSON.stringify(result);
    // Statistics count each index once, however many nodes apply it.
    const firstAtIndex = !this.answerAt.has(index);
    this.checkDeterministic(node, index, answer);
    if (command === null) throw new SafetyViolation(`node ${node}: entry ${index} does not decode`);
    for (const put of changed ? putsOf(command, result) : []) {
      const written = `${put.key}\u0000${decoder.decode(put.value)}`;
      if (!this.writtenAt.has(written)) this.writtenAt.set(written, index);
    }
    const names = namesOf(command);
    if (names.length === 0) return;
    if (!result.ok && REFUSALS.has(result.code)) {
      if (changed) {
        throw new SafetyViolation(
          `exactly-once: node ${node} refused the write with ${names[0]} at index ${index} (${answer}) but changed the store`,
        );
      }
      if (result.code === "table_full" && firstAtIndex) this.refused++;
      return;
    }
    if (
      !result.ok &&
      (result.code === "idempotency_key_reused" || result.code === "invalid_command")
    ) {
      throw new SafetyViolation(
        `exactly-once: node ${node} answered ${answer} to the write with ${names[0]} at index ${index}; the workload never sends that`,
      );
    }
    if (firstAtIndex && !changed && names.some((name) => this.first.has(name))) {
      this.answeredFromTable++;
    }
    for (const name of names) {
      const own = this.aliasOf.get(name) ?? name;
      if (!this.answeredAt.has(own)) this.answeredAt.set(own, index);
    }
    for (const name of names) {
      if (changed) this.checkOnce(node, index, this.aliasOf.get(name) ?? name, name);
      this.checkSameAnswer(node, index, name, answer);
    }
    if (changed && command.session !== undefined) this.checkSessionOrder(node, index, command);
  }

  /** A session's writes change the store in the order of their sequence numbers. */
  private checkSessionOrder(node: NodeId, index: number, command: KvCommand): void {
    const { clientId, seq } = command.session!;
    const last = this.sessionLast.get(clientId);
    if (last !== undefined && index > last.index && seq <= last.seq) {
      throw new SafetyViolation(
        `exactly-once: session ${clientId} changed the store with seq ${seq} at index ${index} (node ${node}) after seq ${last.seq} at index ${last.index}`,
      );
    }
    if (last === undefined || index > last.index) this.sessionLast.set(clientId, { index, seq });
  }

  /** The write with idempotency key `key` was sent again as `alias`: one write, two keys. */
  alias(alias: string, key: string): void {
    this.aliasOf.set(`idempotency key ${alias}`, `idempotency key ${key}`);
  }

  /** The revision that first wrote `value` to `key`, if a node has applied it. */
  revisionOf(key: string, value: string): number | undefined {
    return this.writtenAt.get(`${key}\u0000${value}`);
  }

  /**
   * The log index at which the write named `name` (or a key it was sent again under) was
   * first answered, changed or not; refusals (a full table) do not count.
   */
  answeredIndex(name: string): number | undefined {
    return this.answeredAt.get(name);
  }

  /** The log index at which the write named `name` (see `writeName`) changed the store. */
  executedIndex(name: string): number | undefined {
    return this.executedAt.get(name);
  }

  /** Whether the write with idempotency key `key` changed the store anywhere. */
  executed(key: string): boolean {
    return this.executedAt.has(`idempotency key ${key}`);
  }

  private checkDeterministic(node: NodeId, index: number, answer: string): void {
    const seen = this.answerAt.get(index);
    if (seen === undefined) {
      this.answerAt.set(index, { node, answer });
    } else if (seen.answer !== answer) {
      throw new SafetyViolation(
        `determinism: node ${node} answered ${answer} at index ${index}; node ${seen.node} answered ${seen.answer}`,
      );
    }
  }

  /** `name` is the write's own name, `sent` the key it came with (an alias, or the same). */
  private checkOnce(node: NodeId, index: number, name: string, sent: string): void {
    const at = this.executedAt.get(name);
    if (at === undefined) {
      this.executedAt.set(name, index);
    } else if (at !== index) {
      const how =
        sent === name
          ? ""
          : ` (as ${sent}, sent again after a refusal that said the write was not applied)`;
      throw new SafetyViolation(
        `exactly-once: the write with ${name} was applied twice, at index ${at} and again at index ${index}${how} (node ${node})`,
      );
    }
  }

  private checkSameAnswer(node: NodeId, index: number, name: string, answer: string): void {
    const first = this.first.get(name);
    if (first === undefined) {
      this.first.set(name, { index, node, answer });
    } else if (first.answer !== answer) {
      throw new SafetyViolation(
        `exactly-once: the write with ${name} was answered ${first.answer} at index ${first.index} (node ${first.node}) but ${answer} at index ${index} (node ${node})`,
      );
    }
  }
}

/**
 * The name `executedIndex` knows a write by: its idempotency key, else its session and seq
 * (the first of `namesOf`).
 */
export function writeName(tags: {
  readonly idempotencyKey?: string;
  readonly session?: { readonly clientId: string; readonly seq: number };
}): string {
  if (tags.idempotencyKey !== undefined) return `idempotency key ${tags.idempotencyKey}`;
  return `session ${tags.session?.clientId} seq ${tags.session?.seq}`;
}

/** The names a write is known by: its idempotency key, its session and seq. */
function namesOf(command: KvCommand): string[] {
  const names: string[] = [];
  if (command.idempotencyKey !== undefined) names.push(`idempotency key ${command.idempotencyKey}`);
  if (command.session !== undefined) {
    names.push(`session ${command.session.clientId} seq ${command.session.seq}`);
  }
  return names;
}
