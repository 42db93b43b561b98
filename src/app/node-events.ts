/**
 * Feeds a running node's events into the HTTP layer's event feed (`GET /v1/events`, the
 * dashboard's timeline): role changes with the role before, fail-overs with their
 * duration, switchovers, connections to peers going up and down (once per change, not once per
 * reconnect attempt), state-transfer progress, and a fatal stop.
 *
 * It only listens and reports; it never changes the node. Its one timer (state-transfer
 * progress, which the node reports only when asked) is unref'd and stops with `stop`.
 *
 * The node lists the transfers under way but does not say how one ended: a transfer that
 * leaves the list completed, or was abandoned (its peer died, it stalled, a new one took
 * its place). The end is reported only once the node's status shows which: the backup
 * holds the snapshot's index (completed, `bytes` = `totalBytes`), or the link is down, the
 * sender is no longer master, another transfer with the same peer began, or no proof came
 * in time (abandoned, `bytes` = how far it got). A reader tells the two apart by
 * comparing `bytes` with `totalBytes`.
 */

import type { EventFeed } from "../http/event-feed.js";
import type { NodeId } from "../protocol/messages.js";
import type { NodeStatus, Role } from "../protocol/status.js";
import type { BatonNode } from "../server/node.js";
import type { TransferProgress } from "../server/state-transfer.js";

/** How often state-transfer progress is looked at, milliseconds. */
const TRANSFER_POLL_MS = 250;
/**
 * How long a transfer that left the node's list may wait for proof that it completed,
 * milliseconds: the backup answers the master only once it has installed the snapshot,
 * which for a large state takes seconds.
 */
const TRANSFER_CONFIRM_MS_MAX = 30_000;

/** Starts reporting `node`'s events to `feed`; returns the function that stops it. */
export function connectNodeEvents(node: BatonNode, feed: EventFeed): () => void {
  let role: Role = node.role;
  const started = node.status();
  feed.publish({ type: "started", term: started.term });
  // The master this node last followed: a switchover's target names it as the one that
  // handed over.
  let followed: NodeId | null = started.master === node.id ? null : started.master;
  const onRole: Parameters<typeof node.on<"role">>[1] = (event) => {
    const previousRole = role;
    role = event.role;
    if (event.role === "master" && event.handover) {
      feed.publish({ type: "switchover", term: event.term, previousMaster: followed });
    }
    if (event.masterId !== null && event.masterId !== node.id) followed = event.masterId;
    // Becoming master by an election is reported by the failover event, with its duration.
    if (event.role === "master") return;
    feed.publish({
      type: "role",
      role: event.role,
      previousRole,
      term: event.term,
      master: event.masterId,
      preVote: event.preVote,
      reason: event.reason,
    });
  };
  const onFailover: Parameters<typeof node.on<"failover">>[1] = (event) => {
    feed.publish({
      type: "failover",
      term: event.term,
      previousMaster: event.previousMaster,
      durationMs: event.durationMs,
    });
  };
  const peersUp = new Map<NodeId, boolean>();
  const onPeer: Parameters<typeof node.on<"peer">>[1] = (event) => {
    if (peersUp.get(event.peer) === event.up) return;
    // A peer never seen up that refuses connections is just not started yet.
    if (!peersUp.has(event.peer) && !event.up) {
      peersUp.set(event.peer, false);
      return;
    }
    peersUp.set(event.peer, event.up);
    feed.publish({ type: "peer", peer: event.peer, up: event.up, reason: event.reason });
  };
  const onFatal: Parameters<typeof node.on<"fatal">>[1] = (error) => {
    feed.publish({ type: "fatal", message: error.message });
  };
  node.on("role", onRole);
  node.on("failover", onFailover);
  node.on("peer", onPeer);
  node.on("fatal", onFatal);
  const transfers = watchTransfers(node, feed);
  return () => {
    clearInterval(transfers);
    node.off("role", onRole);
    node.off("failover", onFailover);
    node.off("peer", onPeer);
    node.off("fatal", onFatal);
  };
}

/** A transfer that left the node's list, waiting for the status to say how it ended. */
interface Ending {
  readonly transfer: TransferProgress;
  /** Looks at the status so far, counted to bound the wait. */
  polls: number;
}

/** Publishes progress of every state transfer under way, and how each one ended. */
function watchTransfers(node: BatonNode, feed: EventFeed): NodeJS.Timeout {
  let previous = new Map<string, TransferProgress>();
  const ending = new Map<string, Ending>();
  const timer = setInterval(() => {
    const current = new Map<string, TransferProgress>();
    // A retry of the same snapshot is another transfer: its start time tells them apart.
    for (const transfer of node.transfers()) current.set(transferKey(transfer), transfer);
    for (const [key, transfer] of previous) {
      if (!current.has(key)) ending.set(key, { transfer, polls: 0 });
    }
    // Ends first, so that a retry's first progress comes after the end of what it retries.
    if (ending.size > 0) settle(node, feed, ending, current);
    for (const [key, transfer] of current) {
      if (previous.get(key)?.bytes !== transfer.bytes)
        publish(feed, transfer, transfer.bytes, false);
    }
    previous = current;
  }, TRANSFER_POLL_MS);
  timer.unref();
  return timer;
}

function transferKey(transfer: TransferProgress): string {
  return `${transfer.direction}:${transfer.peer}:${transfer.snapshotIndex}:${transfer.startedAt}`;
}

/** Publishes the end of each transfer in `ending` whose outcome the node's status shows. */
function settle(
  node: BatonNode,
  feed: EventFeed,
  ending: Map<string, Ending>,
  current: ReadonlyMap<string, TransferProgress>,
): void {
  const status = node.status();
  for (const [key, entry] of ending) {
    entry.polls++;
    const outcome = outcomeOf(entry, status, current);
    if (outcome === null) continue;
    ending.delete(key);
    const { transfer } = entry;
    publish(feed, transfer, outcome === "completed" ? transfer.totalBytes : transfer.bytes, true);
  }
}

/** How a transfer that left the list ended, or null while the status does not tell yet. */
function outcomeOf(
  entry: Ending,
  status: NodeStatus,
  current: ReadonlyMap<string, TransferProgress>,
): "completed" | "abandoned" | null {
  const { transfer } = entry;
  if (transfer.direction === "sending") {
    const member = status.members.find((m) => m.id === transfer.peer);
    // The backup acknowledges entries past the snapshot only once it has installed it.
    if (member?.matchIndex != null && member.matchIndex >= transfer.snapshotIndex) {
      return "completed";
    }
    if (status.role !== "master" || member === undefined || !member.connected) return "abandoned";
  } else if (status.appliedIndex >= transfer.snapshotIndex) {
    return "completed";
  }
  // A retry to the same backup replaces the transfer it retries; and a node receives one
  // transfer at a time, so any other receiving transfer (a new master's) replaced it.
  for (const other of current.values()) {
    if (other.direction !== transfer.direction) continue;
    if (other.peer === transfer.peer || transfer.direction === "receiving") return "abandoned";
  }
  return entry.polls * TRANSFER_POLL_MS >= TRANSFER_CONFIRM_MS_MAX ? "abandoned" : null;
}

/** `bytes`: how far it got; `totalBytes` only for a transfer under way or completed. */
function publish(feed: EventFeed, transfer: TransferProgress, bytes: number, done: boolean): void {
  feed.publish({
    type: "transfer",
    peer: transfer.peer,
    direction: transfer.direction,
    snapshotIndex: transfer.snapshotIndex,
    bytes,
    totalBytes: transfer.totalBytes,
    done,
    startedAt: transfer.startedAt,
  });
}
