/**
 * How the event layer reports the end of a state transfer. The node lists the transfers
 * under way and nothing more, so these tests play a node whose list and status the test
 * sets, tick by tick (fake timers), and read what the feed publishes: an abandoned transfer
 * must not read as complete, and a retry must not be mistaken for the transfer it replaces.
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { memberStatus } from "../../harness/doubles/fake-node-api.js";
import { type ClusterEvent, EventFeed, type FeedItem } from "../http/event-feed.js";
import type { MemberStatus, NodeStatus } from "../protocol/status.js";
import type { BatonNode } from "../server/node.js";
import type { TransferProgress } from "../server/state-transfer.js";
import { connectNodeEvents } from "./node-events.js";

const MIB = 1024 * 1024;

/** A node as the event layer sees it: its transfers and its status, set by the test. */
class PlayedNode {
  readonly id = 1;
  role: NodeStatus["role"] = "master";
  transfersUnderWay: TransferProgress[] = [];
  appliedIndex = 10;
  members: MemberStatus[] = [memberStatus(1, null), { ...memberStatus(2, null), matchIndex: 3 }];

  status(): NodeStatus {
    return {
      id: this.id,
      role: this.role,
      term: 2,
      master: this.role === "master" ? this.id : null,
      commitIndex: this.appliedIndex,
      appliedIndex: this.appliedIndex,
      lastIndex: this.appliedIndex,
      members: this.members,
    };
  }

  transfers(): TransferProgress[] {
    return this.transfersUnderWay;
  }

  on(): void {}
  off(): void {}

  setMember(id: number, change: Partial<MemberStatus>): void {
    this.members = this.members.map((m) => (m.id === id ? { ...m, ...change } : m));
  }
}

function sending(bytes: number, startedAt = 1000): TransferProgress {
  return {
    peer: 2,
    direction: "sending",
    snapshotIndex: 500,
    bytes,
    totalBytes: 100 * MIB,
    startedAt,
  };
}

let stop: () => void = () => {};

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  stop();
  vi.useRealTimers();
});

/** The transfer events `node` publishes, as they come. */
function watch(node: PlayedNode): ClusterEvent[] {
  const feed = new EventFeed(node.id);
  const seen: ClusterEvent[] = [];
  feed.subscribe((item: FeedItem) => {
    if (item.type === "transfer") seen.push(item);
  });
  stop = connectNodeEvents(node as unknown as BatonNode, feed);
  return seen;
}

const ends = (events: ClusterEvent[]) =>
  events.filter((e) => e.type === "transfer" && e.done) as (ClusterEvent & { bytes: number })[];

describe("node events: state transfers", () => {
  it("events: a transfer whose receiver died at 58% ends with the bytes it got to, not the total (link lost)", () => {
    const node = new PlayedNode();
    const events = watch(node);
    node.transfersUnderWay = [sending(58 * MIB)];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [];
    node.setMember(2, { connected: false });
    vi.advanceTimersByTime(250);
    expect(ends(events)).toMatchObject([{ done: true, bytes: 58 * MIB, totalBytes: 100 * MIB }]);
    // Every event of it says when it began, so a page that joins late places it right.
    expect(events.every((e) => e.type === "transfer" && e.startedAt === 1000)).toBe(true);
  });

  it("events: a transfer ends as complete only once the backup holds the snapshot's index", () => {
    const node = new PlayedNode();
    const events = watch(node);
    node.transfersUnderWay = [sending(97 * MIB)];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [];
    // The backup installs the snapshot before it answers: no end is told meanwhile.
    vi.advanceTimersByTime(2000);
    expect(ends(events)).toEqual([]);
    node.setMember(2, { matchIndex: 520 });
    vi.advanceTimersByTime(250);
    expect(ends(events)).toMatchObject([{ done: true, bytes: 100 * MIB }]);
  });

  it("events: a retry of the same snapshot ends the transfer it replaces (abandoned) before its own progress", () => {
    const node = new PlayedNode();
    const events = watch(node);
    node.transfersUnderWay = [sending(40 * MIB, 1000)];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [sending(1 * MIB, 9000)];
    vi.advanceTimersByTime(250);
    expect(events.map((e) => e.type === "transfer" && [e.bytes / MIB, e.done])).toEqual([
      [40, false],
      [40, true],
      [1, false],
    ]);
  });

  it("events: a transfer that leaves the list with no proof it completed ends as abandoned after 30 s", () => {
    const node = new PlayedNode();
    const events = watch(node);
    node.transfersUnderWay = [sending(70 * MIB)];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [];
    vi.advanceTimersByTime(29_000);
    expect(ends(events)).toEqual([]);
    vi.advanceTimersByTime(1500);
    expect(ends(events)).toMatchObject([{ bytes: 70 * MIB }]);
  });

  it("events: a receiving transfer completes when the node's applied index reaches the snapshot's", () => {
    const node = new PlayedNode();
    node.role = "backup";
    const events = watch(node);
    const receiving: TransferProgress = { ...sending(90 * MIB), direction: "receiving" };
    node.transfersUnderWay = [receiving];
    vi.advanceTimersByTime(250);
    node.transfersUnderWay = [];
    vi.advanceTimersByTime(250);
    expect(ends(events)).toEqual([]);
    node.appliedIndex = 500;
    vi.advanceTimersByTime(250);
    expect(ends(events)).toMatchObject([{ direction: "receiving", bytes: 100 * MIB }]);
  });

  it("events: a receiving transfer replaced by a new master's ends abandoned at once, not completed when the new one installs", () => {
    const node = new PlayedNode();
    node.role = "backup";
    const events = watch(node);
    const first: TransferProgress = { ...sending(20 * MIB), peer: 1, direction: "receiving" };
    node.transfersUnderWay = [first];
    vi.advanceTimersByTime(250);
    // Master 1 is gone; master 2 sends its own snapshot, and the node drops the first.
    const second: TransferProgress = {
      ...first,
      peer: 2,
      snapshotIndex: 600,
      bytes: 5 * MIB,
      startedAt: 5000,
    };
    node.transfersUnderWay = [second];
    vi.advanceTimersByTime(250);
    expect(ends(events)).toMatchObject([{ peer: 1, done: true, bytes: 20 * MIB }]);
    // Its end came before the new transfer's progress.
    const firstEnd = events.findIndex((e) => e.type === "transfer" && e.done);
    const secondProgress = events.findIndex((e) => e.type === "transfer" && e.peer === 2);
    expect(firstEnd).toBeLessThan(secondProgress);
    node.transfersUnderWay = [];
    node.appliedIndex = 600;
    vi.advanceTimersByTime(500);
    expect(ends(events)).toMatchObject([
      { peer: 1, bytes: 20 * MIB },
      { peer: 2, bytes: 100 * MIB },
    ]);
  });
});
