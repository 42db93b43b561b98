/**
 * The checker has teeth: clients that read the local copy of whichever node they ask
 * (`?stale=true`) while partitions cut that node off from the master see values the rest
 * of the cluster has already overwritten, and the campaign must call that history not
 * linearizable. Partitions that isolate the master or split off a minority leave a node
 * serving old values for seconds while the majority writes on, so the violation is certain
 * within a few faults.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCampaign } from "../../src/chaos/campaign.js";

const out = mkdtempSync(join(tmpdir(), "baton-chaos-report-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("chaos", () => {
  it("timing: chaos: stale reads from cut-off nodes are reported not linearizable (isolate-master, split)", async () => {
    const result = await runCampaign({
      seed: 7,
      durationMs: 25_000,
      nodes: 3,
      clients: 5,
      nemeses: ["isolate-master", "split"],
      method: "auto",
      staleReads: true,
      out: join(out, "stale"),
    });
    expect(result.ok).toBe(false);
    expect(result.verdicts.linearizable.ok).toBe(false);
    expect(result.verdicts.linearizable.problems?.length).toBeGreaterThan(0);
    // The product itself did nothing wrong: the replicas still agree afterwards.
    expect(result.verdicts.converged.ok).toBe(true);
  }, 180_000);
});
