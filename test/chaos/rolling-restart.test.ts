/**
 * A rolling restart as an operator does it, with real processes, under a steady write load
 * through the client library: each of the three nodes in turn gets SIGTERM, is started
 * again with the same command line and serves caught up before the next one goes. The
 * order is the hard one: the node stopped is always the master of the moment, so every
 * restart is a hand-over (test/integration/switchover.test.ts stops the backups first).
 *
 * The operator's promise: no request fails, no acknowledged write is lost or applied twice,
 * and no election waits out a timeout. The last is read two ways: no node logged a
 * candidacy that no master asked for, and the term grew by exactly one per hand-over, as
 * `/v1/status` reports it (an election by timeout, or a pre-vote that won, adds a term of
 * its own).
 *
 * Real time and real processes, hence a `timing:` name. Every process is stopped by its
 * PID and every directory removed after the test, pass or fail (harness/vitest-hooks.ts).
 */

import { expect, it } from "vitest";
import { Cluster, clientFor } from "../../harness/cluster.js";
import { sleep } from "../../harness/processes.js";
import {
  readThroughClient,
  SteadyRateWriter,
  verifyWrites,
  writeThroughClient,
} from "../../harness/steady-writer.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { isUnaskedCandidacy } from "../../src/chaos/processes.js";

useClusterHarness();

const IDS = [1, 2, 3] as const;

/** Candidacies logged since `sinceAt` (performance.now()) that no master asked for. */
function unaskedCandidacies(cluster: Cluster, sinceAt: number): string[] {
  return IDS.flatMap((id) =>
    cluster
      .node(id)
      .events("role", sinceAt)
      .filter((e) => isUnaskedCandidacy(e.role, e.reason))
      .map((e) => `node ${id}: ${String(e.reason)}`),
  );
}

it("timing: chaos: a rolling restart that always stops the master, under write load: no failed or lost write, one term per hand-over", async () => {
  // An election timeout no event-loop stall of a loaded CI machine reaches (the 300-600 ms
  // default did, beside the simulator's lanes): what is judged is that every hand-over is
  // asked, and a missed one still shows, as an election 1-2 s later.
  const cluster = await Cluster.start({ electionMs: "1000-2000", heartbeatMs: 100 });
  const client = clientFor(cluster);
  const writer = new SteadyRateWriter(writeThroughClient(client), {
    intervalMs: 10,
    keyPrefix: `rolling-master-${Date.now()}`,
  });
  try {
    writer.start();
    await writer.waitForAckIssuedAfter(performance.now(), 10_000);
    const settledAt = performance.now();
    const first = await cluster.waitForMaster();
    const stopped: number[] = [];
    let master = first;
    for (let round = 0; round < IDS.length; round++) {
      // Each round's master is a node not yet restarted: a hand-over goes to the backup
      // that holds the most of the log, which may be the node restarted just before.
      if (stopped.includes(master.id)) break;
      stopped.push(master.id);
      await cluster.stop(master.id);
      await sleep(200);
      cluster.startNode(master.id);
      await cluster.waitCaughtUp(master.id);
      master = await cluster.waitForMaster();
    }
    // The nodes a hand-over never reached are restarted too: every node restarts once.
    for (const id of IDS.filter((id) => !stopped.includes(id))) {
      stopped.push(id);
      const wasMaster = (await cluster.waitForMaster()).id === id;
      await cluster.stop(id);
      await sleep(200);
      cluster.startNode(id);
      await cluster.waitCaughtUp(id);
      if (wasMaster) master = await cluster.waitForMaster();
    }
    await writer.stop();

    const counts = writer.counts();
    const failed = writer.records.filter((r) => r.outcome?.kind === "error");
    expect(counts.error, JSON.stringify(failed.slice(0, 3))).toBe(0);
    const verified = await verifyWrites(writer.records, readThroughClient(client));
    expect(verified.lost).toEqual([]);
    expect(verified.duplicated).toEqual([]);
    expect(unaskedCandidacies(cluster, settledAt)).toEqual([]);

    const masters = IDS.flatMap((id) =>
      cluster
        .node(id)
        .events("role", settledAt)
        .filter((e) => e.role === "master"),
    );
    const handovers = masters.filter((e) => e.switchover === true);
    expect(masters.length - handovers.length, "masters that were not handed the role").toBe(0);
    const last = await cluster.waitForMaster();
    expect(handovers.length).toBeGreaterThanOrEqual(1);
    expect(last.term - first.term, "the term grew by one per hand-over").toBe(handovers.length);
    console.log(
      `rolling restart of ${stopped.join(", ")} (master first): ${handovers.length} hand-overs, ` +
        `terms ${first.term} → ${last.term}, writes ${counts.ok + counts.existed} acknowledged, 0 failed`,
    );
  } finally {
    await writer.stop();
    await client.close();
  }
}, 180_000);
