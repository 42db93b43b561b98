/**
 * Two short fault campaigns with a point each.
 *
 * The fallback for machines where the campaign may not touch iptables: every node reaches
 * its peers through the campaign's fault-injecting TCP relay, and partitions cut the relay
 * instead. A short campaign of partitions only must keep every verdict and say that it used
 * the relay.
 *
 * The checker has teeth: clients that read the local copy of whichever node they ask
 * (`?stale=true`) while partitions cut that node off from the master see values the rest
 * of the cluster has already overwritten, and the campaign must call that history not
 * linearizable. Partitions that isolate the master or split off a minority leave a node
 * serving old values for seconds while the majority writes on, so the violation is certain
 * within a few faults.
 */

import { describe, expect, it } from "vitest";
import { useCampaigns } from "../../harness/campaigns.js";

const runCampaign = useCampaigns();

describe("chaos", () => {
  it("timing: chaos: partitions through the TCP relay keep every verdict (isolate-master, split, one-way, flap; 20 s)", async () => {
    const result = await runCampaign("relay", {
      seed: 11,
      durationMs: 20_000,
      clients: 4,
      nemeses: ["isolate-master", "split", "one-way", "flap"],
      method: "relay",
    });
    if (!result.ok) console.error(`${result.summary}\n`);
    expect(result.method).toBe("relay");
    expect(result.ok).toBe(true);
    expect(Object.values(result.totals.faults).reduce((a, b) => a + (b ?? 0), 0)).toBeGreaterThan(
      0,
    );
  }, 240_000);

  it("timing: chaos: stale reads from cut-off nodes are reported not linearizable (isolate-master, split)", async () => {
    const result = await runCampaign("stale", {
      seed: 7,
      durationMs: 25_000,
      clients: 5,
      nemeses: ["isolate-master", "split"],
      staleReads: true,
    });
    expect(result.ok).toBe(false);
    expect(result.verdicts.linearizable.ok).toBe(false);
    expect(result.verdicts.linearizable.problems?.length).toBeGreaterThan(0);
    // The product itself did nothing wrong: the replicas still agree afterwards.
    expect(result.verdicts.converged.ok).toBe(true);
  }, 180_000);
});
