/**
 * Feeds a running node's events into the HTTP layer's event feed (`GET /v1/events`, the
 * dashboard's timeline): role changes with the role before, fail-overs with their
 * duration, switchovers, connections to peers going up and down (once per change, not once per
 * reconnect attempt), state-transfer progress, and a fatal stop.
 *
 * It only listens and reports; it never changes the node. Its one timer (state-transfer
 * progress, which the node reports only when asked) is unref'd and stops with `stop`.
 */

import type { EventFeed } from "../http/event-feed.js";
import type { NodeId } from "../protocol/messages.js";
import type { Role } from "../protocol/status.js";
import type { BatonNode } from "../server/node.js";
import type { TransferProgress } from "../server/state-transfer.js";

/** How often state-transfer progress is looked at, milliseconds. */
const TRANSFER_POLL_MS = 250;

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

/** Publishes progress of every state transfer under way, and its end. */
function watchTransfers(node: BatonNode, feed: EventFeed): NodeJS.Timeout {
  let previous = new Map<string, TransferProgress>();
  const timer = setInterval(() => {
    const current = new Map<string, TransferProgress>();
    for (const transfer of node.transfers()) {
      const key = `${transfer.direction}:${transfer.peer}:${transfer.snapshotIndex}`;
      current.set(key, transfer);
      if (previous.get(key)?.bytes !== transfer.bytes) publish(feed, transfer, false);
    }
    for (const [key, transfer] of previous) {
      if (!current.has(key)) publish(feed, transfer, true);
    }
    previous = current;
  }, TRANSFER_POLL_MS);
  timer.unref();
  return timer;
}

function publish(feed: EventFeed, transfer: TransferProgress, done: boolean): void {
  feed.publish({
    type: "transfer",
    peer: transfer.peer,
    direction: transfer.direction,
    snapshotIndex: transfer.snapshotIndex,
    bytes: done ? transfer.totalBytes : transfer.bytes,
    totalBytes: transfer.totalBytes,
    done,
  });
}
