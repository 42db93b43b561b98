/**
 * The node's live event feed, served as server-sent events at `GET /v1/events` and drawn
 * by the dashboard's timeline: role changes, fail-overs with their duration, connections
 * to peers going up and down, state-transfer progress, injected faults, and once a second
 * a sample of the requests this node answered. It keeps the last events and samples, so a
 * dashboard opened (or reconnected) later still shows what just happened.
 *
 * It only records and fans out: it never decides anything, and a slow or failing
 * subscriber can never block the node (subscribers are called synchronously and must
 * only queue; an exception from one is caught and the subscriber dropped).
 */

import type { NodeId } from "../protocol/messages.js";
import type { Role } from "../protocol/status.js";

/** Fields every event has. */
interface EventBase {
  /** Per-node sequence number, increasing from 1; the SSE `id`. */
  readonly seq: number;
  /** The node that saw the event. */
  readonly node: NodeId;
  /** Wall-clock time on that node, milliseconds since the epoch. */
  readonly at: number;
}

/** What a node reports; `seq`, `node` and `at` are added by the feed. */
export type ClusterEventBody =
  /** The node started serving (first event of every process). */
  | { readonly type: "started"; readonly term: number }
  /** The node changed role (a candidate with `preVote` only asks whether it could win). */
  | {
      readonly type: "role";
      readonly role: Role;
      readonly previousRole: Role;
      readonly term: number;
      readonly master: NodeId | null;
      readonly preVote: boolean;
      readonly reason: string;
    }
  /**
   * The node became master. `previousMaster` is the master it last heard from (null for
   * the first master of a fresh cluster); `durationMs` is the time from that master's last
   * message to this node serving, the fail-over as this node saw it.
   */
  | {
      readonly type: "failover";
      readonly term: number;
      readonly previousMaster: NodeId | null;
      readonly durationMs: number | null;
    }
  /**
   * The node became master by a switchover: `previousMaster` (the master it last followed)
   * handed the role over to it.
   */
  | {
      readonly type: "switchover";
      readonly term: number;
      readonly previousMaster: NodeId | null;
    }
  /** The connection to `peer` came up, or went down for `reason`. */
  | {
      readonly type: "peer";
      readonly peer: NodeId;
      readonly up: boolean;
      readonly reason: string | null;
    }
  /** State-transfer progress with `peer`, and a last one with `done` when it ended. */
  | {
      readonly type: "transfer";
      readonly peer: NodeId;
      readonly direction: "sending" | "receiving";
      readonly snapshotIndex: number;
      readonly bytes: number;
      readonly totalBytes: number;
      readonly done: boolean;
      /** When the transfer began, on the node's clock (as `at`). */
      readonly startedAt: number;
    }
  /** A fault was injected into this node (only with --allow-fault-injection). */
  | {
      readonly type: "fault";
      readonly fault: "kill" | "pause" | "partition" | "heal";
      readonly durationMs: number | null;
    }
  /** The node must stop (a storage failure, for example). */
  | { readonly type: "fatal"; readonly message: string };

export type ClusterEvent = EventBase & ClusterEventBody;

/** Requests this node answered during one second, the dashboard's chart. */
export interface RequestSample {
  readonly type: "sample";
  readonly node: NodeId;
  readonly at: number;
  /** Key-value requests answered per second (counted where the client sent them). */
  readonly requestsPerSecond: number;
  /** Of those, answers with a 5xx status per second. */
  readonly errorsPerSecond: number;
  /** Latency percentiles in milliseconds, null when no request was answered. */
  readonly latencyMs: {
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
  } | null;
}

export type FeedItem = ClusterEvent | RequestSample;
export type FeedListener = (item: FeedItem) => void;

/** Events kept for late subscribers; enough for a few minutes of an eventful demo. */
const EVENTS_KEPT_MAX = 200;
/** Samples kept: two minutes of chart. */
const SAMPLES_KEPT_MAX = 120;

export class EventFeed {
  /**
   * When this feed began, milliseconds since the epoch: with `seq` it makes an event's SSE
   * id, so a browser reconnecting to a restarted node (whose `seq` began again) is not
   * mistaken for one that saw its events already.
   */
  readonly epoch: number;
  private seq = 0;
  private readonly events: ClusterEvent[] = [];
  private readonly samples: RequestSample[] = [];
  private readonly listeners = new Set<FeedListener>();

  constructor(
    readonly node: NodeId,
    private readonly now: () => number = Date.now,
  ) {
    this.epoch = now();
  }

  /** Records an event and hands it to every subscriber. */
  publish(body: ClusterEventBody): ClusterEvent {
    this.seq++;
    const event = { seq: this.seq, node: this.node, at: this.now(), ...body } as ClusterEvent;
    this.events.push(event);
    if (this.events.length > EVENTS_KEPT_MAX) this.events.shift();
    this.fanOut(event);
    return event;
  }

  /** Records a request sample and hands it to every subscriber. */
  publishSample(sample: Omit<RequestSample, "type" | "node" | "at">): void {
    const item: RequestSample = { type: "sample", node: this.node, at: this.now(), ...sample };
    this.samples.push(item);
    if (this.samples.length > SAMPLES_KEPT_MAX) this.samples.shift();
    this.fanOut(item);
  }

  /** Kept events with a sequence number above `afterSeq`, oldest first. */
  recentEvents(afterSeq = 0): ClusterEvent[] {
    return this.events.filter((event) => event.seq > afterSeq);
  }

  /** Kept samples, oldest first. */
  recentSamples(): RequestSample[] {
    return [...this.samples];
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  /** Calls `listener` with every later event and sample; returns the unsubscribe. */
  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private fanOut(item: FeedItem): void {
    for (const listener of this.listeners) {
      try {
        listener(item);
      } catch {
        this.listeners.delete(listener);
      }
    }
  }
}
