/**
 * Atomic visibility of multi-key changes in range reads. A transaction that puts several
 * keys does so at one revision r; a range read consistent at revision R >= r must then show
 * each of those keys at revision r or later (or not at all, when a later change deleted
 * it), never one at r and another still older; and no key of a range read may be newer
 * than the revision it was read at. The per-key linearizability checker cannot see a torn
 * read, since each key's history alone may still be linearizable.
 */

import type { KvCommand, KvResult } from "../../kv/index.js";
import { SafetyViolation } from "./safety.js";

export class RangeAtomicityChecker {
  /** Multi-key transactions that took effect: their revision and the keys they put. */
  private readonly changes: { readonly revision: number; readonly keys: readonly string[] }[] = [];
  private readonly seen = new Set<number>();
  /** Range reads checked. */
  reads = 0;

  /** Call on every application; only changes that took effect at `index` are kept. */
  applied(index: number, command: KvCommand | null, result: KvResult, changed: boolean): void {
    if (!changed || command?.type !== "txn" || !result.ok || this.seen.has(index)) return;
    this.seen.add(index);
    const ops = result.succeeded === true ? command.success : command.failure;
    const keys = [...new Set(ops.filter((op) => op.type === "put").map((op) => op.key))];
    if (keys.length > 1) this.changes.push({ revision: index, keys });
  }

  /** A range read on `node` at `revision` listed `items`. */
  checkRange(
    node: number,
    revision: number,
    items: readonly { readonly key: string; readonly revision: number }[],
  ): void {
    this.reads++;
    const at = new Map(items.map((item) => [item.key, item.revision]));
    for (const item of items) {
      if (item.revision > revision) {
        throw new SafetyViolation(
          `range read on node ${node} at revision ${revision} lists ${item.key} at the newer revision ${item.revision}`,
        );
      }
    }
    for (const change of this.changes) {
      if (change.revision > revision) continue;
      for (const key of change.keys) {
        const seen = at.get(key);
        if (seen !== undefined && seen < change.revision) {
          throw new SafetyViolation(
            `range read on node ${node} at revision ${revision} is torn: the transaction at revision ${change.revision} put ${change.keys.join(", ")}, but ${key} shows revision ${seen}`,
          );
        }
      }
    }
  }
}
