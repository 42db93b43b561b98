import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { EventFeed, type FeedItem } from "../http/event-feed.js";
import type { BatonNode } from "../server/node.js";
import { createFaultInjector } from "./fault-injector.js";

describe("fault injector", () => {
  it("faults: a partition asked for twice is one partition, reported once, and one heal ends it", () => {
    const calls: boolean[] = [];
    const node = { setPartitioned: (on: boolean) => calls.push(on) > 0 };
    const feed = new EventFeed(1);
    const faults: string[] = [];
    feed.subscribe((item: FeedItem) => {
      if (item.type === "fault") faults.push(item.fault);
    });
    const injector = createFaultInjector(
      node as unknown as BatonNode,
      feed,
      pino({ level: "silent" }),
    );
    injector.partition();
    injector.partition();
    expect(injector.partitioned()).toBe(true);
    injector.heal();
    injector.heal();
    expect(injector.partitioned()).toBe(false);
    expect(faults).toEqual(["partition", "heal"]);
    expect(calls).toEqual([true, false]);
  });
});
