/**
 * A disk that stops answering for a while (a journal commit on a shared disk, a busy
 * host) must not cost a fail-over when every process and link is fine. Backups' answers
 * to heartbeats used to wait behind their pending fsyncs: under a steady write load, a
 * stall longer than the check-quorum window on a majority of backups (one shared disk
 * stalls them all at once) made a healthy master step down, and the cluster spent an
 * election timeout or more without one (seen with `npm start` on an idle machine).
 */

import { describe, expect, it } from "vitest";
import { SimCluster } from "../../src/sim/cluster.js";
import { makeScenario } from "../../src/sim/scenario.js";

/** A calm cluster under client load, with its master elected and settled. */
function settledCluster(seed: number): SimCluster {
  const cluster = new SimCluster(makeScenario(seed, { calm: true, nodeCount: 3 }));
  cluster.runUntil(2000);
  expect(cluster.agreedMaster(), "a master after 2 s").not.toBeNull();
  return cluster;
}

describe("sim: disk stalls", () => {
  it("sim: a 400 ms stall of every disk deposes no master (calm network, write load)", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const cluster = settledCluster(seed);
      const master = cluster.agreedMaster()!;
      const term = master.replica!.term;
      const elections = cluster.stats.elections;
      // Longer than the check-quorum window (24 ticks of 10 ms) and than the shortest
      // election timeout; the processes and the network stay healthy throughout.
      cluster.stallDisks(400);
      cluster.runUntil(cluster.now + 2000);
      expect(cluster.stats.elections, `seed ${seed}: elections after the stall`).toBe(elections);
      expect(master.replica!.role, `seed ${seed}: the master's role`).toBe("master");
      expect(master.replica!.term, `seed ${seed}: the term`).toBe(term);
    }
  });
});
