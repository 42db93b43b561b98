import { describe, expect, it } from "vitest";
import {
  Inbox,
  nextPeerEvent,
  numberedHeartbeat,
  transportConformanceSuite,
  whenConnected,
} from "../../test/conformance/transport.suite.js";
import { MemoryNetwork } from "./memory-transport.js";

transportConformanceSuite("MemoryTransport", async (ids) => {
  const network = new MemoryNetwork();
  return {
    create: (id, limits) =>
      network.createTransport(
        id,
        ids.filter((other) => other !== id),
        limits ?? {},
      ),
    dispose: async () => {},
  };
});

describe("MemoryTransport", () => {
  it("memory: a partition holds messages and reports down until healed (two nodes)", async () => {
    const network = new MemoryNetwork();
    const a = network.createTransport(1, [2]);
    const b = network.createTransport(2, [1]);
    await Promise.all([a.start(), b.start()]);
    const inbox = new Inbox(b);
    await whenConnected(a, 2);
    const down = nextPeerEvent(a, "down", 2);
    network.partition(1, 2);
    expect(await down).toBe("partitioned");
    a.send(numberedHeartbeat(1, 2, 1));
    expect(a.stats().peers[0]).toMatchObject({ queuedMessages: 1, connected: false });
    const up = nextPeerEvent(a, "up", 2);
    network.heal(1, 2);
    await up;
    await inbox.until(1);
    expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 1)]);
    await Promise.all([a.close(), b.close()]);
  });

  it("memory: nothing is delivered inside send (manual scheduler)", async () => {
    const tasks: (() => void)[] = [];
    const network = new MemoryNetwork({ schedule: (task) => tasks.push(task) });
    const a = network.createTransport(1, [2]);
    const b = network.createTransport(2, [1]);
    await Promise.all([a.start(), b.start()]);
    const inbox = new Inbox(b);
    a.send(numberedHeartbeat(1, 2, 1));
    expect(inbox.messages).toEqual([]);
    while (tasks.length > 0) tasks.shift()?.();
    expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 1)]);
    expect(a.stats().peers[0]?.connected).toBe(true);
  });

  it("memory: a node that does not list the sender refuses it (one-sided config)", async () => {
    const network = new MemoryNetwork();
    const a = network.createTransport(1, [2]);
    const b = network.createTransport(2, []);
    await Promise.all([a.start(), b.start()]);
    const down = nextPeerEvent(a, "down", 2);
    expect(await down).toBe("handshake_refused");
    await Promise.all([a.close(), b.close()]);
  });
});
