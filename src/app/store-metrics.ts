/**
 * The key-value store's own gauges on a node's `/metrics`: leases held, the
 * oldest revision a watch may start from on this node, and the keys and bytes held against
 * the store's quota. Read from the state machine at
 * scrape time; nothing here counts or changes anything.
 */

import { Gauge, type Registry } from "prom-client";
import type { KvStateMachine } from "../kv/index.js";

/** Registers the store's gauges for `stateMachine` on `registry`. */
export function registerStoreMetrics(registry: Registry, stateMachine: KvStateMachine): void {
  const gauges: [string, string, () => number][] = [
    ["baton_kv_leases", "leases held by the store", () => stateMachine.leaseCount],
    [
      "baton_kv_watch_start_revision",
      "the oldest revision a watch may start from on this node (older ones answer 410 ERR_COMPACTED)",
      () => stateMachine.watchStartRevision,
    ],
    ["baton_kv_keys", "keys the store holds on this node", () => stateMachine.size],
    [
      "baton_kv_bytes",
      "bytes of keys (UTF-8) and values the store holds on this node",
      () => stateMachine.bytes,
    ],
    [
      "baton_kv_quota_keys",
      "the store's quota of keys, 0 for none (writes past it answer 507 ERR_QUOTA_EXCEEDED)",
      () => stateMachine.quota.keyCountMax,
    ],
    [
      "baton_kv_quota_bytes",
      "the store's quota of bytes of keys and values, 0 for none",
      () => stateMachine.quota.bytesMax,
    ],
  ];
  for (const [name, help, read] of gauges) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  }
}
