import { describe, expect, it } from "vitest";
import {
  Inbox,
  nextPeerEvent,
  numberedHeartbeat,
  transportConformanceSuite,
  whenConnected,
} from "../../test/conformance/transport.suite.js";
import { MemoryNetwork } from "./memory-transport.js";
import type { PeerInfo } from "./transport.js";

transportConformanceSuite("MemoryTransport", async (ids) => {
  const network = new MemoryNetwork();
  return {
    create: (id, limits) =>
      network.createTransport(
        id,
        ids.filter((other) => other !== id),
        limits ?? {},
      ),
    address: () => "memory",
    dispose: async () => {},
  };
});

/**
 * Nodes 1 and 2 on a network that delivers only when the test says (`runTasks` runs what
 * it scheduled, until nothing is left), started; `inbox` holds what node 2 received.
 */
async function manualPair() {
  const tasks: (() => void)[] = [];
  const network = new MemoryNetwork({ schedule: (task) => tasks.push(task) });
  const a = network.createTransport(1, [2]);
  const b = network.createTransport(2, [1]);
  await Promise.all([a.start(), b.start()]);
  const inbox = new Inbox(b);
  const runTasks = () => {
    while (tasks.length > 0) tasks.shift()?.();
  };
  return { network, a, b, inbox, runTasks };
}

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

  it("memory: what was queued while the peer was up and not delivered is dropped when it goes down, as a failed TCP connection's queue", async () => {
    const { network, a, b, inbox, runTasks } = await manualPair();
    runTasks();
    expect(a.stats().peers[0]?.connected).toBe(true);
    // Queued while up (a backup's forward, say); the link fails before it leaves.
    a.send(numberedHeartbeat(1, 2, 1));
    network.partition(1, 2);
    runTasks();
    expect(a.stats().peers[0]).toMatchObject({ queuedMessages: 0, connected: false });
    // Sent while down: kept for when the peer is back.
    a.send(numberedHeartbeat(1, 2, 2));
    network.heal(1, 2);
    runTasks();
    expect(inbox.messages).toEqual([numberedHeartbeat(1, 2, 2)]);
    await Promise.all([a.close(), b.close()]);
  });

  it("memory: nothing is delivered inside send (manual scheduler)", async () => {
    const { network, a, b, inbox, runTasks } = await manualPair();
    a.send(numberedHeartbeat(1, 2, 1));
    expect(inbox.messages).toEqual([]);
    runTasks();
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

  it.each([
    ["an httpUrl over 256 bytes", { httpUrl: `http://a/${"x".repeat(248)}` }],
    ["a non-http httpUrl", { httpUrl: "mailto:ops@example.com" }],
    ["an extra key", { httpUrl: null, role: "master" }],
  ])("memory: refuses to advertise %s, as the frame schema would (assertion)", (_, advertise) => {
    const network = new MemoryNetwork();
    expect(() => network.createTransport(1, [2], { advertise: advertise as PeerInfo })).toThrow(
      /invalid advertise for node 1/,
    );
  });

  it("memory: advertises a frozen copy the caller cannot change later", async () => {
    const network = new MemoryNetwork();
    const advertise = { httpUrl: "http://a:8080" };
    const a = network.createTransport(1, [2], { advertise });
    const b = network.createTransport(2, [1]);
    advertise.httpUrl = "http://changed:8080";
    await Promise.all([a.start(), b.start()]);
    await whenConnected(b, 1);
    expect(b.peerInfo(1)).toEqual({ httpUrl: "http://a:8080" });
    await Promise.all([a.close(), b.close()]);
  });
});
