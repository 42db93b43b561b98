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
 *
 * Five nodes, with the operator at work: wiped members replaced (member replace through the
 * HTTP API, a start with an empty directory and --join <url>, a promote once caught up)
 * and switchovers, among SIGKILLs. Every verdict must hold, the membership one included.
 *
 * On hosts of their own (network namespaces on a bridge, root only), a whole host drops off
 * the network with its process still running: no reset, no close. The cluster must fail
 * over and keep every verdict, the dropped master included once it is back.
 */

import { describe, expect, it } from "vitest";
import { useCampaigns } from "../../harness/campaigns.js";
import { netnsUnsupported } from "../../src/chaos/hosts.js";

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

  it("timing: chaos: five nodes keep every verdict while members are replaced and the master switched over (wipe-restart, replace, switchover, kill-any; 20 s)", async () => {
    const result = await runCampaign("five", {
      seed: 5,
      durationMs: 20_000,
      nodes: 5,
      clients: 4,
      nemeses: ["wipe-restart", "replace", "switchover", "kill-any"],
    });
    if (!result.ok) console.error(`${result.summary}\n`);
    expect(result.ok).toBe(true);
    const { faults } = result.totals;
    expect((faults["wipe-restart"] ?? 0) + (faults.replace ?? 0)).toBeGreaterThan(0);
    expect(faults.switchover ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it.skipIf(netnsUnsupported() !== null)(
    "timing: chaos: hosts of their own keep every verdict when a host drops off the network (host-down, isolate-master; 15 s)",
    async () => {
      const result = await runCampaign("netns", {
        seed: 3,
        durationMs: 15_000,
        clients: 4,
        nemeses: ["host-down", "isolate-master"],
        method: "auto",
        hosts: "netns",
      });
      if (!result.ok) console.error(`${result.summary}\n`);
      expect(result.method).toBe("netns");
      expect(result.ok).toBe(true);
      expect(result.totals.faults["host-down"] ?? 0).toBeGreaterThan(0);
    },
    180_000,
  );

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
