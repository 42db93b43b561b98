/**
 * The node's Prometheus metrics: role, term, indexes, per-backup lag, elections and
 * fail-overs with their duration, proposals, state transfers, and the write-ahead log's
 * fsyncs. Values that the node already holds are read when `/metrics` is scraped
 * (collect callbacks), so the request path pays nothing for them.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { BatonNode } from "./node.js";

const ROLES = ["master", "backup", "candidate"] as const;

export function createNodeMetrics(node: BatonNode): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: "baton_role",
    help: "1 for the role this node holds now (master, backup or candidate), 0 for the others",
    labelNames: ["role"],
    registers: [registry],
    collect() {
      for (const role of ROLES) this.set({ role }, node.role === role ? 1 : 0);
    },
  });
  const status = () => node.status();
  gauge(registry, "baton_term", "current term", () => status().term);
  gauge(
    registry,
    "baton_commit_index",
    "highest log index known committed",
    () => status().commitIndex,
  );
  gauge(
    registry,
    "baton_applied_index",
    "highest log index applied to the state machine",
    () => status().appliedIndex,
  );
  gauge(registry, "baton_last_index", "last index in this node's log", () => status().lastIndex);
  new Gauge({
    name: "baton_peer_lag_entries",
    help: "master only: entries each backup is behind the master's last index",
    labelNames: ["peer"],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of status().members)
        if (m.lag !== null && m.id !== node.id) this.set({ peer: String(m.id) }, m.lag);
    },
  });
  gauge(
    registry,
    "baton_state_transfer_bytes",
    "bytes acknowledged by state transfers under way",
    () => node.transfers().reduce((sum, t) => sum + t.bytes, 0),
  );
  counterFrom(
    registry,
    "baton_proposals_total",
    "commands proposed on this node as master",
    () => node.counters.proposals,
  );
  counterFrom(
    registry,
    "baton_elections_won_total",
    "elections this node won",
    () => node.counters.elections,
  );
  counterFrom(
    registry,
    "baton_failovers_total",
    "times this node took over from another master",
    () => node.counters.failovers,
  );
  counterFrom(
    registry,
    "baton_applied_entries_total",
    "entries applied to the state machine",
    () => node.counters.appliedEntries,
  );
  const failover = new Histogram({
    name: "baton_failover_seconds",
    help: "fail-over duration as this node saw it: last message of the old master to serving as master",
    buckets: [0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5],
    registers: [registry],
  });
  node.on("failover", (event) => {
    if (
      event.durationMs !== null &&
      event.previousMaster !== null &&
      event.previousMaster !== node.id
    ) {
      failover.observe(event.durationMs / 1000);
    }
  });
  counterFrom(
    registry,
    "baton_wal_fsyncs_total",
    "fdatasync calls made by the write-ahead log",
    () => node.walStats()?.fdatasyncs ?? 0,
  );
  counterFrom(
    registry,
    "baton_wal_group_commits_total",
    "group commits (batches made durable together)",
    () => node.walStats()?.batches ?? 0,
  );
  return registry;
}

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A counter whose value the node already counts; it is copied at scrape time. */
function counterFrom(registry: Registry, name: string, help: string, read: () => number): void {
  let copied = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const delta = read() - copied;
      if (delta > 0) {
        this.inc(delta);
        copied += delta;
      }
    },
  });
}
