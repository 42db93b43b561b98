/**
 * Switchover with real processes: the master hands its role over on request and on
 * SIGTERM, while a client keeps writing through the client library. The promise checked
 * here is the operator's: a planned move of the master role, or a rolling restart of every
 * node, costs clients a pause and no failed request, and no election waits out a timeout.
 *
 * Real time and real processes, hence `timing:` names. Every process is stopped by its
 * PID and every directory removed after each test, pass or fail (harness/vitest-hooks.ts).
 */

import { describe, expect, it } from "vitest";
import { Cluster, clientFor, httpRequest } from "../../harness/cluster.js";
import { sleep } from "../../harness/processes.js";
import {
  readThroughClient,
  SteadyRateWriter,
  verifyWrites,
  writeThroughClient,
} from "../../harness/steady-writer.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";

useClusterHarness();

// An election timeout no event-loop stall of a loaded CI machine reaches: what is judged is
// that every hand-over is asked, and a missed one still shows, as an election 1-2 s later.
const TIMING = { electionMs: "1000-2000", heartbeatMs: 100 } as const;

/**
 * Candidacies logged by any node since `sinceAt` (performance.now()) that no master asked
 * for: elections after a timeout or a lost connection.
 */
function electionsByTimeout(cluster: Cluster, sinceAt: number): string[] {
  const found: string[] = [];
  for (const id of [1, 2, 3]) {
    for (const e of cluster.node(id).events("role", sinceAt)) {
      const reason = String(e.reason ?? "");
      if (e.role === "candidate" && !reason.startsWith("switchover")) {
        found.push(`node ${id}: ${reason}`);
      }
    }
  }
  return found;
}

/**
 * Starts a cluster, writes through the client library every 10 ms while `act` runs, then
 * checks what an operator is promised: no write failed, none lost or applied twice, and no
 * node stood for election unless a master asked it to. Returns the writes acknowledged.
 */
async function underWriteLoad(
  keyPrefix: string,
  act: (cluster: Cluster) => Promise<void>,
): Promise<{ cluster: Cluster; acknowledged: number }> {
  const cluster = await Cluster.start(TIMING);
  const client = clientFor(cluster);
  const writer = new SteadyRateWriter(writeThroughClient(client), {
    intervalMs: 10,
    keyPrefix: `${keyPrefix}-${Date.now()}`,
  });
  try {
    writer.start();
    await writer.waitForAckIssuedAfter(performance.now(), 10_000);
    const settledAt = performance.now();
    await act(cluster);
    await writer.stop();
    const counts = writer.counts();
    expect(
      counts.error,
      JSON.stringify(writer.records.filter((r) => r.outcome?.kind === "error").slice(0, 3)),
    ).toBe(0);
    const verified = await verifyWrites(writer.records, readThroughClient(client));
    expect(verified.lost).toEqual([]);
    expect(verified.duplicated).toEqual([]);
    expect(electionsByTimeout(cluster, settledAt)).toEqual([]);
    return { cluster, acknowledged: counts.ok + counts.existed };
  } finally {
    await writer.stop();
    await client.close();
  }
}

describe("switchover", () => {
  it("timing: POST /v1/switchover to each backup in turn under write load: no failed write, no election by timeout", async () => {
    const { acknowledged } = await underWriteLoad("switch", async (cluster) => {
      for (let round = 0; round < 3; round++) {
        const master = await cluster.waitForMaster();
        const to = [1, 2, 3].find((id) => id !== master.id)!;
        // Asked of a backup, so the request also crosses the peer link to the master.
        const response = await httpRequest(`${cluster.node(to).url}/v1/switchover`, {
          method: "POST",
          body: JSON.stringify({ to }),
          timeoutMs: 5000,
        });
        expect(response.status, response.body.toString()).toBe(200);
        const answer = JSON.parse(response.body.toString()) as { master: number; term: number };
        expect(answer.master).toBe(to);
        expect(answer.term).toBeGreaterThan(master.term);
        await sleep(300);
      }
    });
    console.log(`switchovers: 3; writes ${acknowledged} acknowledged, 0 failed`);
  });

  it("timing: a rolling restart of every node with SIGTERM under write load: no failed write, no election by timeout", async () => {
    let first = 0;
    let order: number[] = [];
    const { cluster, acknowledged } = await underWriteLoad("rolling", async (cluster) => {
      first = (await cluster.waitForMaster()).id;
      // Backups first, the master last: its SIGTERM hands the role over before it stops.
      order = [...[1, 2, 3].filter((id) => id !== first), first];
      for (const id of order) {
        await cluster.stop(id);
        await sleep(200);
        cluster.startNode(id);
        await cluster.waitCaughtUp(id);
      }
    });
    const handedOver = cluster
      .node(first)
      .events("shutdown")
      .some((e) => e.master !== undefined);
    expect(handedOver, "the master handed its role over before it stopped").toBe(true);
    console.log(
      `rolling restart of ${order.join(", ")}: writes ${acknowledged} acknowledged, 0 failed`,
    );
  });
});
