/**
 * The node's Prometheus metrics (every one is described in docs/metrics.md): role, term,
 * indexes, per-backup lag in entries and bytes, contact and connection per peer, elections,
 * step-downs and fail-overs with their duration, proposals and their latency, the
 * write-ahead log's fsyncs and their latency, state transfers, the event loop's delay as
 * the node's tick timer sees it, and prom-client's process metrics.
 *
 * Values the node already holds are read when `/metrics` is scraped (collect callbacks), so
 * the request path pays nothing for them; a scrape takes one status snapshot of the node
 * and every gauge reads it, so the numbers of one scrape agree with each other. Latencies
 * arrive as node events and go straight into histograms.
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EventFeed } from "../http/event-feed.js";
import { processMetrics } from "../http/process-metrics.js";
import type { NodeStatus } from "../protocol/status.js";
import type { BatonNode } from "../server/node.js";
import type { TransportStats } from "../transport/transport.js";

const ROLES = ["master", "backup", "candidate"] as const;

/** Seconds, from a write on a fast local disk to one held up by a fail-over. */
const PROPOSAL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Seconds a tick ran late: from scheduling noise to a stall past the election timeout. */
const LOOP_DELAY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Seconds, from a disk with a write cache to a slow network disk. */
const FSYNC_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
];

/**
 * A registry with the node's metrics and the process metrics. With `events`, state
 * transfers are also counted in bytes as they progress.
 */
export function createNodeMetrics(
  node: BatonNode,
  events?: EventFeed,
  transport?: { stats(): TransportStats },
): Registry {
  const registry = Registry.merge([processMetrics(), new Registry()]);
  const status = snapshotPerScrape(node);
  roleAndIndexes(registry, node, status);
  peers(registry, node, status);
  protocolCounters(registry, node);
  proposalsAndStorage(registry, node);
  stateTransfers(registry, node, events);
  eventLoopDelay(registry, node);
  if (transport !== undefined) {
    counterFrom(
      registry,
      "baton_peer_protocol_errors_total",
      "peer connections or frames refused for breaking the protocol: bad bytes, a refused handshake, a certificate that is not the cluster's or does not name the id claimed",
      () => transport.stats().protocolErrors,
    );
  }
  return registry;
}

/**
 * The node's status, taken once per scrape: prom-client calls every collect callback of
 * one scrape within the same turn of the event loop, so the snapshot is dropped on the next.
 */
function snapshotPerScrape(node: BatonNode): () => NodeStatus {
  let snapshot: NodeStatus | null = null;
  return () => {
    if (snapshot === null) {
      snapshot = node.status();
      setImmediate(() => {
        snapshot = null;
      });
    }
    return snapshot;
  };
}

function roleAndIndexes(registry: Registry, node: BatonNode, status: () => NodeStatus): void {
  new Gauge({
    name: "baton_role",
    help: "1 for the role this node holds now (master, backup or candidate), 0 for the others",
    labelNames: ["role"],
    registers: [registry],
    collect() {
      const role = status().role;
      for (const r of ROLES) this.set({ role: r }, role === r ? 1 : 0);
    },
  });
  gauge(registry, "baton_term", "current term", () => status().term);
  gauge(
    registry,
    "baton_master_id",
    "id of the master this node follows, 0 when it knows none",
    () => status().master ?? 0,
  );
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
  gauge(
    registry,
    "baton_role_age_seconds",
    "seconds since this node last changed role, or (a backup) the master it follows, or a learner became a voter",
    () => node.roleAgeMs() / 1000,
  );
}

function peers(registry: Registry, node: BatonNode, status: () => NodeStatus): void {
  const perPeer = (
    name: string,
    help: string,
    value: (m: NodeStatus["members"][number]) => number | null | undefined,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ["peer"],
      registers: [registry],
      collect() {
        this.reset();
        for (const m of status().members) {
          const v = value(m);
          if (m.id !== node.id && v !== null && v !== undefined)
            this.set({ peer: String(m.id) }, v);
        }
      },
    });
  perPeer(
    "baton_peer_lag_entries",
    "master only: entries each backup is behind the master's last index",
    (m) => m.lag,
  );
  perPeer(
    "baton_peer_lag_bytes",
    "master only: bytes of command data each backup is behind (absent while it needs a state transfer)",
    (m) => m.lagBytes,
  );
  perPeer(
    "baton_peer_last_contact_seconds",
    "seconds since this node last received a message from each peer",
    (m) => (m.lastContactMs === null ? null : m.lastContactMs / 1000),
  );
  perPeer("baton_peer_connected", "1 while this node has a live connection to each peer", (m) =>
    m.connected ? 1 : 0,
  );
}

function protocolCounters(registry: Registry, node: BatonNode): void {
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
    "baton_switchovers_total",
    "times this node became master because the master handed the role over (a switchover)",
    () => node.counters.switchovers,
  );
  counterFrom(
    registry,
    "baton_ignored_answers_total",
    "votes and acknowledgements dropped: their sender is not a member, or not the incarnation the configuration lists",
    () => node.counters.ignoredAnswers,
  );
  counterFrom(
    registry,
    "baton_forward_copies_total",
    "copies of a backup's forwarded write that reached this master after the original (a network that delivered a message twice), answered as the original was and not proposed",
    () => node.counters.forwardCopies,
  );
  counterFrom(
    registry,
    "baton_appends_deferred_total",
    "appends from the master dropped, to be sent again, while this node's disk was more than 128 MiB behind",
    () => node.counters.appendsDeferred,
  );
  counterFrom(
    registry,
    "baton_snapshot_checksum_failures_total",
    "snapshots received by state transfer that failed their checksum and were asked for again: the sender's disk damaged its file, or a bug; nonzero deserves a look",
    () => node.counters.snapshotChecksumFailures,
  );
  counterFrom(
    registry,
    "baton_busy_disk_total",
    "writes refused as busy (503 ERR_BUSY) while the master's disk was more than 128 MiB behind",
    () => node.counters.busyDisk,
  );
  counterFrom(
    registry,
    "baton_applied_entries_total",
    "entries applied to the state machine",
    () => node.counters.appliedEntries,
  );
  forwardCounters(registry, node);
  const elections = new Counter({
    name: "baton_elections_started_total",
    help: "elections this node started as a candidate (pre-votes not counted)",
    registers: [registry],
  });
  const stepDowns = new Counter({
    name: "baton_step_downs_total",
    help: "times this node stopped being master",
    registers: [registry],
  });
  let role = node.role;
  node.on("role", (event) => {
    if (event.role === "candidate" && !event.preVote) elections.inc();
    if (role === "master" && event.role !== "master") stepDowns.inc();
    role = event.role;
  });
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
}

function proposalsAndStorage(registry: Registry, node: BatonNode): void {
  counterFrom(
    registry,
    "baton_proposals_total",
    "commands proposed on this node as master",
    () => node.counters.proposals,
  );
  const proposals = new Histogram({
    name: "baton_proposal_duration_seconds",
    help: "time from proposing a command on the master to applying it, for commands that were applied",
    buckets: PROPOSAL_BUCKETS,
    registers: [registry],
  });
  node.on("proposal", (ms) => proposals.observe(ms / 1000));
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
  const fsyncs = new Histogram({
    name: "baton_wal_fsync_duration_seconds",
    help: "time each fdatasync of the write-ahead log took",
    buckets: FSYNC_BUCKETS,
    registers: [registry],
  });
  node.observeWalSyncs((seconds) => fsyncs.observe(seconds));
}

/**
 * How late the node's tick timer fires, which is the event loop's delay sampled every
 * tick: a histogram of every tick, and the longest delay since the previous scrape (a
 * stall that nears the election timeout shows there even when the histogram's rate hides
 * it).
 */
function eventLoopDelay(registry: Registry, node: BatonNode): void {
  const delays = new Histogram({
    name: "baton_event_loop_delay_seconds",
    help: "how late each tick of the node's timer fired (event-loop delay, sampled every tick)",
    buckets: LOOP_DELAY_BUCKETS,
    registers: [registry],
  });
  let maxMs = 0;
  node.on("tickDelay", (ms) => {
    delays.observe(ms / 1000);
    if (ms > maxMs) maxMs = ms;
  });
  new Gauge({
    name: "baton_event_loop_delay_max_seconds",
    help: "longest tick delay since the previous scrape (event-loop stalls)",
    registers: [registry],
    collect() {
      this.set(maxMs / 1000);
      maxMs = 0;
    },
  });
}

function stateTransfers(registry: Registry, node: BatonNode, events: EventFeed | undefined): void {
  new Gauge({
    name: "baton_state_transfer_bytes",
    help: "bytes acknowledged (sending) or received (receiving) by state transfers under way",
    labelNames: ["direction"],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of node.transfers()) this.inc({ direction: t.direction }, t.bytes);
    },
  });
  new Gauge({
    name: "baton_state_transfer_size_bytes",
    help: "total size of the snapshots being transferred now",
    labelNames: ["direction"],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of node.transfers()) this.inc({ direction: t.direction }, t.totalBytes);
    },
  });
  if (events === undefined) return;
  const moved = new Counter({
    name: "baton_state_transfer_bytes_total",
    help: "snapshot bytes moved by state transfers, counted as they progress",
    labelNames: ["direction"],
    registers: [registry],
  });
  const ended = new Counter({
    name: "baton_state_transfers_total",
    help: "state transfers that ended (completed or abandoned), by direction",
    labelNames: ["direction"],
    registers: [registry],
  });
  const seen = new Map<string, number>();
  events.subscribe((item) => {
    if (item.type !== "transfer") return;
    const key = `${item.direction}:${item.peer}:${item.snapshotIndex}`;
    const delta = item.bytes - (seen.get(key) ?? 0);
    if (delta > 0) moved.inc({ direction: item.direction }, delta);
    if (item.done) {
      seen.delete(key);
      ended.inc({ direction: item.direction });
    } else {
      seen.set(key, item.bytes);
    }
  });
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
/** Forwards this node made as a backup, by kind, and how forwarded writes ended. */
function forwardCounters(registry: Registry, node: BatonNode): void {
  const counters = node.forwardCounters;
  const copied = new Map<string, number>();
  const copy = (counter: Counter<string>, label: string, key: string, value: number): void => {
    const delta = value - (copied.get(key) ?? 0);
    if (delta <= 0) return;
    counter.inc({ [label]: key }, delta);
    copied.set(key, value);
  };
  new Counter({
    name: "baton_forwards_total",
    help: "writes (proposal) and linearizable reads (read) this backup forwarded to the master",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      copy(this, "kind", "proposal", counters.proposals);
      copy(this, "kind", "read", counters.reads);
    },
  });
  new Counter({
    name: "baton_forward_outcomes_total",
    help: "how writes this backup forwarded ended",
    labelNames: ["outcome"],
    registers: [registry],
    collect() {
      copy(this, "outcome", "applied", counters.applied);
      copy(this, "outcome", "not_applied", counters.notApplied);
      copy(this, "outcome", "indeterminate", counters.indeterminate);
      copy(this, "outcome", "timeout", counters.timedOut);
      copy(this, "outcome", "no_master", counters.noMaster);
    },
  });
}

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
