/**
 * Membership changes with real processes, while a client keeps writing through the
 * client library: the cluster grows from three members to five and shrinks back to three
 * (new nodes start with `--join <url>`, are promoted once caught up; removed nodes stop by
 * themselves), and a node whose data directory was wiped is replaced (removed, added back
 * with a new incarnation, started empty with `--join`, promoted). No acknowledged write is
 * lost or applied twice.
 *
 * Real time and real processes, hence `timing:` names. Every process is stopped by its
 * PID and every directory removed after each test, pass or fail (harness/vitest-hooks.ts).
 */

import { describe, expect, it } from "vitest";
import { Cluster, clientFor, promoteWhenCaughtUp } from "../../harness/cluster.js";
import {
  readThroughClient,
  SteadyRateWriter,
  verifyWrites,
  writeThroughClient,
} from "../../harness/steady-writer.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import type { BatonClient } from "../../src/client/index.js";

useClusterHarness();

const TIMING = { electionMs: "300-600", heartbeatMs: 50 } as const;

/**
 * Removes `id`, handing the master role away first when `id` is the master. A master that
 * just took over refuses changes until it has committed an entry of its term (409, "retry
 * shortly"): retried for a few seconds.
 */
async function removeMember(cluster: Cluster, client: BatonClient, id: number) {
  const master = await cluster.waitForMaster();
  if (master.id === id) await client.switchover();
  const deadline = performance.now() + 5000;
  for (;;) {
    try {
      return await client.removeMember(id);
    } catch (error) {
      const notReady = /has not committed an entry of its term/.test((error as Error).message);
      if (!notReady || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Writes every 10 ms through the client library while `act` runs; checks nothing was lost. */
async function underWriteLoad(
  cluster: Cluster,
  keyPrefix: string,
  act: (client: BatonClient) => Promise<void>,
): Promise<void> {
  const client = clientFor(cluster);
  const writer = new SteadyRateWriter(writeThroughClient(client), {
    intervalMs: 10,
    keyPrefix: `${keyPrefix}-${Date.now()}`,
  });
  try {
    writer.start();
    await writer.waitForAckIssuedAfter(performance.now(), 10_000);
    await act(client);
    await writer.stop();
    const counts = writer.counts();
    expect(counts.ok + counts.existed).toBeGreaterThan(0);
    const verified = await verifyWrites(writer.records, readThroughClient(client));
    expect(verified.lost).toEqual([]);
    expect(verified.duplicated).toEqual([]);
  } finally {
    await writer.stop();
    await client.close();
  }
}

describe("membership", () => {
  it("timing: grow from 3 to 5 members and shrink back to 3 under write load: no acknowledged write lost", async () => {
    const cluster = await Cluster.start({
      ...TIMING,
      size: 5,
      bootstrapSize: 3,
      startIds: [1, 2, 3],
    });
    await underWriteLoad(cluster, "grow", async (client) => {
      for (const id of [4, 5]) {
        const node = cluster.node(id);
        const added = await client.addMember({
          id,
          peerAddress: node.peerAddress,
          httpUrl: node.url,
        });
        expect(added.find((m) => m.id === id)?.voter).toBe(false);
        cluster.startNode(id);
        const promoted = await promoteWhenCaughtUp(client, id);
        expect(promoted.find((m) => m.id === id)?.voter).toBe(true);
      }
      expect((await client.members()).map((m) => [m.id, m.voter])).toEqual([
        [1, true],
        [2, true],
        [3, true],
        [4, true],
        [5, true],
      ]);
      for (const id of [1, 2]) {
        await removeMember(cluster, client, id);
        // The removed node learns of it from the log, says so and stops.
        await cluster
          .node(id)
          .waitForLog("the removal notice", (l) => l.json?.event === "removed", 10_000);
        await cluster.node(id).exited();
      }
      expect((await client.members()).map((m) => m.id)).toEqual([3, 4, 5]);
    });
  }, 180_000);

  it("timing: a voter stopped while a member is added and made master follows that master when it starts again", async () => {
    // Node 3 never applies the configuration that adds node 5: when it starts again, node 5
    // is a stranger to it that calls from its own cluster, and the master it must follow.
    // The master that added node 5 is restarted before node 3 starts, so that no appends it
    // queued for node 3 while node 3 was down can tell node 3 of node 5 first (with four
    // other voters, the cluster keeps its quorum meanwhile).
    const cluster = await Cluster.start({
      ...TIMING,
      size: 5,
      bootstrapSize: 4,
      startIds: [1, 2, 3, 4],
    });
    const client = clientFor(cluster);
    try {
      let masterId = (await cluster.waitForMaster()).id;
      if (masterId === 3) masterId = (await client.switchover(1)).master;
      await client.put("before", "1");
      await cluster.stop(3);
      const node5 = cluster.node(5);
      await client.addMember({ id: 5, peerAddress: node5.peerAddress, httpUrl: node5.url });
      cluster.startNode(5);
      await promoteWhenCaughtUp(client, 5);
      expect((await client.switchover(5)).master).toBe(5);
      await cluster.restart(masterId);
      await client.put("under-5", "1");
      const since = performance.now();
      cluster.startNode(3);
      await cluster.node(3).waitForLog(
        "node 3 admitting node 5",
        (l) => l.json?.event === "peer_admitted" && l.json?.peer === 5,
        // The node's process starts first: seconds on a loaded machine.
        30_000,
        since,
      );
      await cluster.waitCaughtUp(3, 20_000);
      expect((await cluster.node(3).status(2000))?.master).toBe(5);
    } finally {
      await client.close();
    }
  }, 120_000);

  it("timing: a node whose data directory was wiped is replaced under write load: no acknowledged write lost", async () => {
    const cluster = await Cluster.start({ ...TIMING, snapshotEntries: 200 });
    await underWriteLoad(cluster, "replace", async (client) => {
      const master = await cluster.waitForMaster();
      const wiped = master.id === 3 ? 2 : 3;
      // baton member replace (remove, add back as a learner with a new incarnation),
      // start empty with --join <url>, baton member promote once caught up.
      await cluster.replace(wiped);
      const members = await client.members();
      expect(members.find((m) => m.id === wiped)?.voter).toBe(true);
      await cluster.waitCaughtUp(wiped, 20_000);
    });
  }, 180_000);

  it("timing: a learner whose directory was wiped after it acknowledged entries cannot join again under the same incarnation, even asked through a backup", async () => {
    const cluster = await Cluster.start(TIMING);
    const master = await cluster.waitForMaster();
    const learner = master.id === 3 ? 2 : 3;
    await cluster.replace(learner, { promote: false });
    await cluster.waitCaughtUp(learner, 20_000);
    const node = cluster.node(learner);
    await node.kill();
    node.wipe();
    // Joined again empty, it would be counted as holding what its first directory held.
    // Asked through the other backup, which must not hand the incarnation out itself (only
    // the master knows what the learner acknowledged).
    const backup = [1, 2, 3].find((id) => id !== master.id && id !== learner)!;
    const asked = await fetch(`${cluster.node(backup).url}/v1/members/${learner}/join`);
    expect(asked.status).toBe(503);
    expect(((await asked.json()) as { code: string }).code).toBe("ERR_NOT_MASTER");
    const since = performance.now();
    cluster.startNode(learner, ["--join", cluster.node(backup).url]);
    await node.exited();
    const refusal = await node.waitForLog(
      "the refusal",
      (line) =>
        /has already acknowledged entries up to \d+: its data directory exists/.test(line.text),
      15_000,
      since,
    );
    expect(refusal.text).toContain(`baton member replace ${learner}`);
  }, 120_000);

  it("timing: a directory left from before a replacement, started with --join, is refused and told to empty it", async () => {
    const cluster = await Cluster.start(TIMING);
    const master = await cluster.waitForMaster();
    const stale = master.id === 3 ? 2 : 3;
    const node = cluster.node(stale);
    await node.kill();
    const client = clientFor(cluster);
    try {
      await removeMember(cluster, client, stale);
      await client.addMember({ id: stale, peerAddress: node.peerAddress, httpUrl: node.url });
      // The operator forgot to empty the directory: its old incarnation is not the listed one.
      const since = performance.now();
      cluster.startNode(stale, ["--join", cluster.node(master.id).url]);
      await node.exited();
      const refusal = await node.waitForLog(
        "the refusal",
        (line) =>
          /holds incarnation \d+, whose votes and acknowledgements the cluster ignores: empty the data directory and start again with --join/.test(
            line.text,
          ),
        5_000,
        since,
      );
      expect(refusal.text).toContain(`the cluster lists node ${stale} as member incarnation`);
      // The harness notes the exit once the process's last output is read, which may come
      // just after exited() resolves: wait for the note rather than look once.
      await node.waitForLog("the exit", (l) => /exited \(code 1\)/.test(l.text), 5_000, since);
    } finally {
      await client.close();
    }
  }, 120_000);
});
